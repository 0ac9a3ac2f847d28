"""A clustered column chart of a sheet's ranges: the chart part (``xl/charts/chartN.xml``) and the
drawing that anchors it (``xl/drawings/drawingN.xml``), written with lxml, one short
``_write_<element>`` per element in the XlsxWriter style.

The parts have the structure openpyxl 3.1 saves for the same ``BarChart`` (tests/test_ooxml.py
compares them element by element), with the axes shown (openpyxl writes them deleted unless told).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from xl_ecom.ooxml import xml
from xl_ecom.ooxml.namespaces import CHART, DRAWINGML, SPREADSHEET_DRAWING, R, q
from xl_ecom.ooxml.worksheet import col_letter

EMU_PER_CM = 360_000
_CAT_AX, _VAL_AX = "10", "100"


@dataclass(frozen=True)
class ColumnChart:
    """Series in columns of one sheet: ``categories`` (col, first row, last row) label the bars;
    each series is (col, header row, first row, last row) with its name in the header cell."""

    sheet: str
    title: str
    y_title: str
    categories: tuple[int, int, int]
    series: Sequence[tuple[int, int, int, int]]
    anchor: tuple[int, int]  # (row, col) of the top-left cell, 1-based
    width_cm: float = 24
    height_cm: float = 10
    y_num_format: str = "0%"


def _c(tag: str) -> str:
    return q(CHART, tag)


def _a(tag: str) -> str:
    return q(DRAWINGML, tag)


def _val(parent, tag: str, value: str) -> etree._Element:
    return etree.SubElement(parent, _c(tag), val=value)


def _sheet_ref(sheet: str) -> str:
    return "'" + sheet.replace("'", "''") + "'"


def _range(sheet: str, col: int, first: int, last: int) -> str:
    letter = col_letter(col)
    return f"{_sheet_ref(sheet)}!${letter}${first}:${letter}${last}"


# --- the chart part --------------------------------------------------------------------------


def chart_xml(chart: ColumnChart) -> bytes:
    space = etree.Element(_c("chartSpace"), nsmap={"c": CHART, "a": DRAWINGML, "r": R})
    el = etree.SubElement(space, _c("chart"))
    _write_title(el, chart.title)
    plot = etree.SubElement(el, _c("plotArea"))
    _write_bar_chart(plot, chart)
    _write_cat_ax(plot)
    _write_val_ax(plot, chart)
    _write_legend(el)
    _val(el, "plotVisOnly", "1")
    _val(el, "dispBlanksAs", "gap")
    return xml.to_bytes(space)


def _write_title(parent, text: str) -> None:
    rich = etree.SubElement(etree.SubElement(etree.SubElement(parent, _c("title")), _c("tx")), _c("rich"))
    etree.SubElement(rich, _a("bodyPr"))
    p = etree.SubElement(rich, _a("p"))
    etree.SubElement(etree.SubElement(p, _a("pPr")), _a("defRPr"))
    etree.SubElement(etree.SubElement(p, _a("r")), _a("t")).text = text


def _write_bar_chart(plot, chart: ColumnChart) -> None:
    bar = etree.SubElement(plot, _c("barChart"))
    _val(bar, "barDir", "col")
    _val(bar, "grouping", "clustered")
    for i, s in enumerate(chart.series):
        _write_ser(bar, chart, i, s)
    _val(bar, "gapWidth", "150")
    _val(bar, "axId", _CAT_AX)
    _val(bar, "axId", _VAL_AX)


def _write_ser(bar, chart: ColumnChart, i: int, series: tuple[int, int, int, int]) -> None:
    col, header, first, last = series
    ser = etree.SubElement(bar, _c("ser"))
    _val(ser, "idx", str(i))
    _val(ser, "order", str(i))
    etree.SubElement(etree.SubElement(etree.SubElement(ser, _c("tx")), _c("strRef")), _c("f")).text = (
        f"{_sheet_ref(chart.sheet)}!{col_letter(col)}{header}"
    )
    ln = etree.SubElement(etree.SubElement(ser, _c("spPr")), _a("ln"))
    etree.SubElement(ln, _a("prstDash"), val="solid")
    cat_col, cat_first, cat_last = chart.categories
    _write_num_ref(etree.SubElement(ser, _c("cat")), _range(chart.sheet, cat_col, cat_first, cat_last))
    _write_num_ref(etree.SubElement(ser, _c("val")), _range(chart.sheet, col, first, last))


def _write_num_ref(parent, formula: str) -> None:
    etree.SubElement(etree.SubElement(parent, _c("numRef")), _c("f")).text = formula


def _write_axis_common(ax, ax_id: str) -> None:
    _val(ax, "axId", ax_id)
    _val(etree.SubElement(ax, _c("scaling")), "orientation", "minMax")
    _val(ax, "delete", "0")  # shown in current Excel
    _val(ax, "axPos", "l")


def _write_cat_ax(plot) -> None:
    ax = etree.SubElement(plot, _c("catAx"))
    _write_axis_common(ax, _CAT_AX)
    _val(ax, "majorTickMark", "none")
    _val(ax, "minorTickMark", "none")
    _val(ax, "crossAx", _VAL_AX)
    _val(ax, "lblOffset", "100")


def _write_val_ax(plot, chart: ColumnChart) -> None:
    ax = etree.SubElement(plot, _c("valAx"))
    _write_axis_common(ax, _VAL_AX)
    etree.SubElement(ax, _c("majorGridlines"))
    _write_title(ax, chart.y_title)
    etree.SubElement(ax, _c("numFmt"), formatCode=chart.y_num_format, sourceLinked="0")
    _val(ax, "majorTickMark", "none")
    _val(ax, "minorTickMark", "none")
    _val(ax, "crossAx", _CAT_AX)


def _write_legend(parent) -> None:
    _val(etree.SubElement(parent, _c("legend")), "legendPos", "r")


# --- the drawing part ------------------------------------------------------------------------


def _x(tag: str) -> str:
    return q(SPREADSHEET_DRAWING, tag)


def drawing_xml(chart: ColumnChart, chart_rid: str = "rId1") -> bytes:
    """The drawing holding the chart (relationship ``chart_rid`` to the chart part) at its anchor."""
    dr = etree.Element(_x("wsDr"), nsmap={"xdr": SPREADSHEET_DRAWING, "a": DRAWINGML})
    anchor = etree.SubElement(dr, _x("oneCellAnchor"))
    _write_from(anchor, chart.anchor)
    etree.SubElement(anchor, _x("ext"), cx=str(round(chart.width_cm * EMU_PER_CM)), cy=str(round(chart.height_cm * EMU_PER_CM)))
    _write_graphic_frame(anchor, chart_rid)
    etree.SubElement(anchor, _x("clientData"))
    return xml.to_bytes(dr)


def _write_from(anchor, cell: tuple[int, int]) -> None:
    frm = etree.SubElement(anchor, _x("from"))
    row, col = cell
    for tag, value in (("col", col - 1), ("colOff", 0), ("row", row - 1), ("rowOff", 0)):
        etree.SubElement(frm, _x(tag)).text = str(value)


def _write_graphic_frame(anchor, chart_rid: str) -> None:
    frame = etree.SubElement(anchor, _x("graphicFrame"))
    nv = etree.SubElement(frame, _x("nvGraphicFramePr"))
    etree.SubElement(nv, _x("cNvPr"), id="1", name="Chart 1")
    etree.SubElement(nv, _x("cNvGraphicFramePr"))
    etree.SubElement(frame, _x("xfrm"))
    data = etree.SubElement(etree.SubElement(frame, _a("graphic")), _a("graphicData"), uri=CHART)
    etree.SubElement(data, _c("chart"), {q(R, "id"): chart_rid}, nsmap={"c": CHART, "r": R})
