"""`xl-ecom build`: the city workbook's sheets, package and reproducibility (no LibreOffice here;
see test_workbook_libreoffice.py for recalculation and printing).

The committed workbook/目标任务分解表.xlsm must equal a fresh build, compared part by part as
XlsxWriter's test suite compares files; a few parts are also kept in tests/reference/ and compared
exactly, so that an unintended change to the package shows in review.  To accept an intended
change: `xl-ecom build` and `XL_ECOM_UPDATE_REFERENCE=1 python -m pytest tests/test_build.py`.
"""

from __future__ import annotations

import argparse
import difflib
import io
import os
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from oletools.olevba import VBA_Parser

from xl_ecom.frontends import addin
from xl_ecom.ooxml import vba, xlsm
from xl_ecom.policy import load_plan
from xl_ecom.policy.boundaries import boundary
from xl_ecom.rules import formulas
from xl_ecom.workflows import build, layout, settings
from xl_ecom.workflows.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / build.DEFAULT_OUT
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"
REFERENCE_PARTS = ("[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/_rels/workbook.xml.rels", "docProps/core.xml")


@pytest.fixture(scope="module")
def built() -> bytes:
    return build.build_bytes()


@pytest.fixture(scope="module")
def book(built):
    return openpyxl.load_workbook(io.BytesIO(built), keep_vba=True)


def parts_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def first_difference(expected: dict[str, bytes], got: dict[str, bytes]) -> str | None:
    """The first differing part, with a line diff of XML parts (XlsxWriter's _compare_xlsx_files idea)."""
    if list(expected) != list(got):
        return f"parts differ: only committed {sorted(set(expected) - set(got))}, only fresh {sorted(set(got) - set(expected))}, or order"
    for name in expected:
        if expected[name] == got[name]:
            continue
        if name.endswith((".xml", ".rels")):
            split = lambda b: re.sub(rb">\s*<", b">\n<", b).decode("utf-8").splitlines()  # noqa: E731
            diff = list(difflib.unified_diff(split(expected[name]), split(got[name]), "committed", "fresh", n=1, lineterm=""))
            return f"part {name} differs:\n" + "\n".join(diff[:40])
        return f"part {name} differs ({len(expected[name])} vs {len(got[name])} bytes)"
    return None


# ---------------------------------------------------------------------------
# Reproducibility and the committed file
# ---------------------------------------------------------------------------


def test_two_builds_are_byte_identical(built):
    assert build.build_bytes() == built


def test_committed_workbook_is_a_fresh_build(built):
    assert COMMITTED.exists(), f"{COMMITTED} is missing: run `xl-ecom build`"
    committed = COMMITTED.read_bytes()
    problem = first_difference(parts_of(committed), parts_of(built))
    assert problem is None, f"{COMMITTED.name} is not what the build makes now (run `xl-ecom build`):\n{problem}"
    assert committed == built, "same parts but different zip bytes"


@pytest.mark.parametrize("part", REFERENCE_PARTS)
def test_reference_parts(built, part):
    path = REFERENCE_DIR / part
    got = parts_of(built)[part]
    if os.environ.get("XL_ECOM_UPDATE_REFERENCE") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(got)
    assert path.exists(), f"{path} is missing: XL_ECOM_UPDATE_REFERENCE=1 python -m pytest tests/test_build.py"
    problem = first_difference({part: path.read_bytes()}, {part: got})
    assert problem is None, problem


def test_core_times_are_pinned_not_the_clock(built):
    core = parts_of(built)["docProps/core.xml"].decode("utf-8")
    assert f">{xlsm.PINNED_TIMESTAMP}</dcterms:created>" in core
    assert f">{xlsm.PINNED_TIMESTAMP}</dcterms:modified>" in core
    assert re.findall(r">(\d{4}-\d\d-\d\dT[^<]*)<", core) == [xlsm.PINNED_TIMESTAMP] * 2


# ---------------------------------------------------------------------------
# Package: macro-enabled main part, VBA project, ribbon, code names
# ---------------------------------------------------------------------------


def test_package_parts_relationships_and_code_names(built):
    parts = parts_of(built)
    types = parts["[Content_Types].xml"].decode("utf-8")
    assert 'PartName="/xl/workbook.xml" ContentType="application/vnd.ms-excel.sheet.macroEnabled.main+xml"' in types
    assert xlsm.VBA_PROJECT_REL_TYPE in parts["xl/_rels/workbook.xml.rels"].decode("utf-8")
    rels = parts["_rels/.rels"].decode("utf-8")
    assert f'Type="{xlsm.CUSTOM_UI_REL_TYPE}" Target="customUI/customUI14.xml"' in rels
    assert parts["customUI/customUI14.xml"] == xlsm.ribbon_xml()
    assert 'codeName="ThisWorkbook"' in parts["xl/workbook.xml"].decode("utf-8")
    codes = xlsm.sheet_code_names(build.build_xlsx_bytes())
    assert [name for name, _ in codes] == build.sheet_names()
    assert [code for _, code in codes] == [f"Sheet{n}" for n in range(1, len(codes) + 1)]


def test_olevba_reads_every_module_back(built):
    parser = VBA_Parser(layout.WORKBOOK_NAME, data=built)
    try:
        assert parser.detect_vba_macros()
        found = {name.rsplit(".", 1)[0]: code for _, _, name, code in parser.extract_macros()}
    finally:
        parser.close()
    for module in addin.vba_modules():
        code = found.pop(module.name)
        if module.kind == "document":
            code = vba.split_header(code)[1]
        assert code == module.source, module.name
    assert sorted(found) == sorted(f"Sheet{n}" for n in range(1, len(build.sheet_names()) + 1))


# ---------------------------------------------------------------------------
# Sheets
# ---------------------------------------------------------------------------


def test_sheet_order(book):
    assert book.sheetnames == build.sheet_names()
    assert book.sheetnames[:4] == ["说明", "目标任务分解表", "任务清单", "奖补测算"]
    assert book.sheetnames[4:13] == [t.sheet for t in TABLES]
    assert book.sheetnames[-3:] == ["通讯录", "设置", "xlwings.conf"]


def test_every_sheet_prints_a4_landscape_with_page_numbers(book):
    for ws in book.worksheets:
        assert int(ws.page_setup.paperSize) == int(ws.PAPERSIZE_A4), ws.title
        assert ws.page_setup.orientation == "landscape", ws.title
        assert "&P" in ws.oddFooter.center.text and "&N" in ws.oddFooter.center.text, ws.title
        if ws.title != layout.SHEET_XLWINGS:
            assert ws.print_title_rows, ws.title


def test_annex_follows_the_plan_and_layout(book):
    plan = load_plan()
    ws = book[layout.SHEET_ANNEX]
    first, total, check = layout.annex_rows(len(plan.counties))
    assert ws.cell(row=layout.ANNEX_HEADER_ROW, column=1).value == "地区"
    for i, col in enumerate(plan.annex_columns):
        t = layout.annex_col(i, "目标任务数")
        d = layout.annex_col(i, "完成数")
        rate = layout.annex_col(i, "完成率")
        diff = layout.annex_col(i, "差额")
        assert ws.cell(row=layout.ANNEX_HEADER_ROW, column=t).value == col["short"]
        for j, name in enumerate(layout.ANNEX_BLOCK):
            assert ws.cell(row=layout.ANNEX_SUBHEADER_ROW, column=t + j).value.startswith(name)
        tl, dl = openpyxl.utils.get_column_letter(t), openpyxl.utils.get_column_letter(d)
        for k, county in enumerate(plan.counties):
            r = first + k
            assert ws.cell(row=r, column=1).value == county
            assert ws.cell(row=r, column=t).value == plan.annex_value(county, col["key"])
            assert ws.cell(row=r, column=d).value is None  # 刷新 fills it
            assert ws.cell(row=r, column=rate).value == f'=IF(OR({dl}{r}="",N({tl}{r})=0),"",{dl}{r}/{tl}{r})'
            assert ws.cell(row=r, column=diff).value == f'=IF({dl}{r}="","",{tl}{r}-{dl}{r})'
        assert ws.cell(row=total, column=1).value == "合计"
        assert ws.cell(row=total, column=t).value == f"=SUM({tl}{first}:{tl}{first + len(plan.counties) - 1})"
        target = plan.target(col["target"])
        flag = ws.cell(row=check, column=t).value
        assert flag == f'=IF({tl}{total}{boundary(target.word).symbol}{target.value},"符合","不足")'
        assert target.text in ws.cell(row=check, column=t + 1).value


def test_annex_checks_use_the_boundary_word(book):
    """14 villages vs 15以上 is short; 8 towns vs 3以上 and 9 enterprises vs 达到4 are met."""
    plan = load_plan()
    checks = {c.column_key: c for c in build.annex_checks(plan)}
    totals = {col["key"]: sum(plan.annex_value(c, col["key"]) for c in plan.counties) for col in plan.annex_columns}
    assert totals == {"demo_towns": 8, "demo_villages": 14, "uplink_enterprises": 9}
    assert checks["demo_villages"].holds(14) is False and checks["demo_villages"].holds(15) is True
    assert checks["demo_towns"].holds(8) is True
    assert checks["uplink_enterprises"].symbol == ">=" and checks["uplink_enterprises"].holds(4) is True


def test_task_list_has_every_measure(book):
    plan = load_plan()
    ws = book[layout.SHEET_TASKS]
    assert [c.value for c in ws[3]] == list(build.TASK_HEADERS)
    rows = {ws.cell(row=r, column=1).value: [c.value for c in ws[r]] for r in range(4, ws.max_row + 1)}
    for m in plan.measures:
        row = rows[m.id]
        assert row[1] == m.task_title and row[2] == m.text and row[3] == m.lead
        assert (row[4] or "") == "、".join(m.cooperating)
        for t in plan.targets_for_measure(m.id):
            assert t.text in row[5]
        assert (row[6] or "") == (settings.format_date(m.deadline) if m.deadline else "")
        for rule in plan.rules_for_measure(m.id):
            assert rule.id in row[7]
    assert sum(1 for k in rows if k and "-" in k) == len(plan.measures)


def test_worked_examples_show_udf_and_native_twin(book):
    plan = load_plan()
    ws = book[layout.SHEET_EXAMPLES]
    per_rule: dict[str, int] = {}
    for r in range(4, ws.max_row + 1):
        udf = ws.cell(row=r, column=build.COL_UDF).value
        if not (isinstance(udf, str) and udf.startswith("=")):
            continue
        native = ws.cell(row=r, column=build.COL_NATIVE).value
        m = re.fullmatch(r"=([A-Z_]+)\(([A-Z]+\d+(?:,[A-Z]+\d+)*)\)", udf)
        if m:
            rule_id, refs = m.group(1), m.group(2).split(",")
            rule = plan.rules[rule_id]
            assert refs == [f"{openpyxl.utils.get_column_letter(2 + i)}{r}" for i in range(len(rule.inputs))]
            assert native == formulas.compile_rule(rule_id, dict(zip(rule.input_names, refs)), on=build.POLICY_DATE)
        else:  # a cumulative cap: the UDF over the rows so far, the native twin with SUM of earlier rows
            m = re.fullmatch(r"=INDEX\(([A-Z_]+)\(B\$(\d+):B(\d+)\),ROWS\(B\$\2:B\3\)\)", udf)
            assert m, udf
            rule_id = m.group(1)
            assert plan.rules[rule_id].cumulative
            start = int(m.group(2))
            prior = "0" if start == r else f"SUM(G${start}:G{r - 1})"
            assert native == formulas.compile_rule(rule_id, {"event_sales": f"B{r}"}, on=build.POLICY_DATE, prior_paid=prior)
        assert ws.cell(row=r, column=build.COL_AGREE).value.startswith("=IF(ISERROR(")
        assert ws.cell(row=r, column=build.COL_TEXT).value == udf and ws.cell(row=r, column=build.COL_TEXT).data_type == "s"
        per_rule[rule_id] = per_rule.get(rule_id, 0) + 1
    assert set(per_rule) == set(plan.rules), "every rule UDF has a worked example"
    assert all(n >= 2 for n in per_rule.values()), per_rule


def test_input_tables_are_excel_tables_with_validation(book):
    plan = load_plan()
    for table in TABLES:
        ws = book[table.sheet]
        assert table.key in ws.tables
        assert [c.value for c in ws[layout.INPUT_HEADER_ROW]][: len(table.columns)] == table.headers
        county_lists = [dv for dv in ws.data_validations.dataValidation if dv.type == "list" and "寿县" in (dv.formula1 or "")]
        assert county_lists and all(c in county_lists[0].formula1 for c in plan.counties)


def test_contacts_and_settings_read_back(book, built, tmp_path):
    plan = load_plan()
    path = tmp_path / layout.WORKBOOK_NAME
    path.write_bytes(built)
    contacts = settings.read_contacts(path)
    departments = [d["name"] for d in plan.departments if d["kind"] == "部门"]
    assert [(c.unit, c.category) for c in contacts] == [(d, "部门") for d in departments] + [(c, "县区") for c in plan.counties]
    assert all(c.addresses == () for c in contacts)
    values = settings.read_settings(path)
    assert values == settings.SETTINGS_DEFAULTS
    ws = book[settings.SETTINGS_SHEET]
    keys = [ws.cell(row=r, column=1).value for r in range(1, ws.max_row + 1)]
    assert [k for k in keys if k] == ["项目"] + [k for k, _, _ in settings.SETTINGS_ROWS]
    assert not any(re.search("密码|password", k, re.I) for k in keys if k), "never a password row"


def test_xlwings_conf_sheet_in_xlwings_format(book):
    ws = book[layout.SHEET_XLWINGS]
    rows = []
    r = 1
    while ws.cell(row=r, column=1).value not in (None, ""):  # how xlwings' GetConfigFromSheet reads it
        rows.append((ws.cell(row=r, column=1).value, ws.cell(row=r, column=2).value))
        r += 1
    assert rows == addin.xlwings_conf_rows()
    assert dict(rows)["UDF Modules"] == "xl_ecom.frontends.udfs"


def test_readme_lists_every_button_and_udf(book):
    from xl_ecom.frontends.udfs import UDF_SPECS

    ws = book[layout.SHEET_README]
    text = "\n".join(str(c.value) for row in ws.iter_rows() for c in row if c.value is not None)
    for button in build.ribbon_buttons():
        assert button.label in text
    assert [b.label for b in build.ribbon_buttons()] == [
        "刷新", "生成部门任务表", "生成县区工作簿", "汇总县区报表", "校验数据",
        "新建轮次", "发送邮件", "报送情况", "催报", "退回", "进展通报",
    ]
    for name in UDF_SPECS:
        assert f"{name}(" in text
    for sheet in build.sheet_names():
        assert sheet in text
    assert "{" not in text and "xlwings.conf" in text and "pip install" in text


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(prog="xl-ecom")
    build.add_cli(parser.add_subparsers(dest="command"))
    return parser


def test_cli_build_writes_the_workbook(built, tmp_path, capsys):
    out = tmp_path / "sub" / "城市.xlsm"
    args = _parser().parse_args(["build", "--out", str(out)])
    assert args.func(args) == 0
    assert out.read_bytes() == built
    assert "已生成" in capsys.readouterr().out


def test_cli_build_default_path_is_relative_to_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _parser().parse_args(["build"])
    assert args.out is None
    assert args.func(args) == 0
    assert (tmp_path / "workbook" / "目标任务分解表.xlsm").is_file()


def test_cli_build_refuses_a_non_xlsm_name(tmp_path, capsys):
    args = _parser().parse_args(["build", "--out", str(tmp_path / "x.xlsx")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "x.xlsx" in err and ".xlsm" in err
    assert not (tmp_path / "x.xlsx").exists()


def test_build_refuses_non_ascii_vba_and_writes_nothing(tmp_path, monkeypatch, capsys):
    bad = vba.VBAModuleSource("Ribbon", "standard", vba.crlf('Attribute VB_Name = "Ribbon"\nSub X()\n    MsgBox "刷新"\nEnd Sub\n'), "Ribbon.bas")
    monkeypatch.setattr(addin, "template_modules", lambda *a, **k: [bad])
    out = tmp_path / "目标任务分解表.xlsm"
    args = _parser().parse_args(["build", "--out", str(out)])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "非 ASCII" in err and "Ribbon" in err and "刷" in err
    assert not out.exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# The add-in is the caller's (the workflow layer imports no front end)
# ---------------------------------------------------------------------------


class PlainAddIn:
    """An add-in without xlwings: the hand-written VBA only, one listed function, no settings sheet."""

    name = "plain"

    def functions(self):
        return [("求和(甲，乙)", "两数之和")]

    def vba_modules(self):
        return vba.template_modules()

    def config_sheet(self):
        return None


def test_the_installed_add_in_is_the_xlwings_one():
    assert build.installed_addin() is addin.XLWINGS_ADDIN
    assert build.build_bytes() == build.build_bytes(addin=addin.XLWINGS_ADDIN)


def test_the_build_takes_what_only_the_add_in_knows_from_the_caller():
    plain = PlainAddIn()
    data = build.build_bytes(addin=plain)
    book = openpyxl.load_workbook(io.BytesIO(data))
    assert book.sheetnames == build.sheet_names(plain) == build.sheet_names()[:-1]
    readme = [c.value for row in book[layout.SHEET_README].iter_rows() for c in row if c.value]
    assert "求和(甲，乙)" in readme and "两数之和" in readme
    assert not any(isinstance(v, str) and v.startswith("AWARD_") for v in readme)
    assert addin.XLWINGS_CONF_SHEET not in readme  # no row for a sheet the workbook does not have
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        modules = xlsm.project_modules(z.read(xlsm.VBA_PROJECT_PART))
    assert {m.name for m in vba.template_modules()} <= set(modules)
    assert not {"xlwings", "Dictionary", addin.UDF_WRAPPER_MODULE, addin.UDF_DESCRIPTIONS_MODULE} & set(modules)
