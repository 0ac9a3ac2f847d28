"""进展通报 (xl-ecom report, issue 11): the bulletin as .docx and PDF through the real LibreOffice.

The city workbook is the real one (xl_ecom.workflows.build) with input rows typed in by openpyxl; the
ledger is a real SQLite file beside it with two rounds: “2020-09” (寿县 reported one sales row) and the
current “2020-10” (due 2020-10-25; 凤台县 sent a file with problems).  The bulletin is dated 2020-10-28,
so every unit without a valid submission in 2020-10 is overdue.

Expected figures are computed in the test: the award total by the scalar engine row by row
(engine.calculate), formatted here with Decimal half-up; the targets met from refresh.compute; the
totals compared with what ``xl-ecom refresh`` prints for the same workbook.  The PDF's text is read with
pdftotext, its page size with pdfinfo, its first page rendered with pdftoppm.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import struct
import subprocess
import zipfile
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import openpyxl
import pytest

from xl_ecom.frontends import cli
from xl_ecom.ledger import open_ledger
from xl_ecom.policy import load_plan
from xl_ecom.rules import engine
from xl_ecom.workflows import layout, refresh, report
from xl_ecom.workflows.tables import table

from pg_server import pg_database_url, pg_url  # noqa: F401

PLAN = load_plan()
REFERENCE_PNG = Path(__file__).parent / "reference" / "进展通报_第1页.png"
ISSUED = "2020-10-28"

ROWS = {
    "T_SALES": [
        {"county": "寿县", "enterprise": "甲公司", "uplink_sales": 12000000, "livestream_sales": 500000},
        {"county": "凤台县", "enterprise": "丙公司", "uplink_sales": 150000000, "platform_retail": 30000000,
         "livestream_sales": 1000000},
        {"county": "田家庵区", "enterprise": "丁公司", "uplink_sales": 10000000.01},
    ],
    "T_TRAINING": [
        {"county": "谢家集区", "training": "基础班一", "kind": "基础", "attendees": 80, "costs": 60000},
    ],
    "T_POOR_SITE": [
        {"county": "寿县", "site": "一号网点", "sales": 100000},
    ],
    "T_PURCHASE": [  # 10% of 55,555.55 = 5,555.555, half up 5,555.56: the totals carry cents
        {"county": "大通区", "enterprise": "寅公司", "amount": 55555.55},
    ],
    "T_DEMO": [
        {"county": "寿县", "name": "正阳关镇", "kind": "省级电商示范镇"},
        {"county": "凤台县", "name": "某镇", "kind": "省级电商示范镇"},
        {"county": "大通区", "name": "上窑镇", "kind": "省级特色旅游名镇"},
        {"county": "大通区", "name": "九龙岗镇", "kind": "省级特色旅游名镇"},
    ],
}

#: the earlier round's data in the ledger: one 寿县 sales row
SEPT_ROW = {"county": "寿县", "enterprise": "甲公司", "livestream_sales": 1000000}


def expected_total_cents(rows=ROWS) -> int:
    """Σ awards, one row at a time with the scalar engine (no row here is under a cumulative cap)."""
    total = 0
    for key, items in rows.items():
        t = table(key)
        for row in items:
            for award in t.awards:
                args = {inp: (row.get(col) if not str(col).startswith("=") else col[1:]) for inp, col in award.inputs.items()}
                if all(v is None for k, v in args.items() if not str(award.inputs[k]).startswith("=")):
                    continue
                cents = engine.calculate_cents(award.rule, **args, on=dt.date(2020, 12, 31))
                total += cents or 0
    # 省级特色旅游名镇: paid per county from the T_DEMO counts (大通区: 2 towns)
    total += engine.calculate_cents("AWARD_TOURISM", 2, 0, on=dt.date(2020, 12, 31))
    return total


def wan(cents: int) -> str:
    return f"{(Decimal(cents) / 1_000_000).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


def yuan(cents: int) -> str:
    return f"{Decimal(cents) / 100:,.2f}"


def make_workbook(folder: Path, rows=ROWS) -> Path:
    from xl_ecom.workflows import build
    from xl_ecom.workflows.collect import save_city_workbook

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / layout.WORKBOOK_NAME
    original = build.build_bytes()
    wb = openpyxl.load_workbook(io.BytesIO(original), keep_vba=True)
    for key, items in rows.items():
        t = table(key)
        ws = wb[t.sheet]
        for i, row in enumerate(items):
            for c, col in enumerate(t.columns, start=1):
                ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c).value = row.get(col.key)
    data, _ = save_city_workbook(wb, path, original)
    path.write_bytes(data)
    return path


def fill_ledger(workbook: Path, url: str | None = None) -> None:
    with open_ledger(workbook, url) as ledger:
        sept = ledger.new_round("2020-09", dt.date(2020, 9, 25))
        with ledger.submission("寿县.xlsx", "a" * 64, 1000, "寿县", "寿县", round_id=sept.id) as sub:
            sub.add_rows("T_SALES", [SEPT_ROW], [layout.INPUT_FIRST_ROW])
        octo = ledger.new_round("2020-10", dt.date(2020, 10, 25))
        with ledger.submission("凤台县.xlsx", "b" * 64, 2000, "凤台县", "凤台县", round_id=octo.id) as sub:
            sub.add_problem("企业销售", "E7", "上行网络销售额不是数值：“很多”", "很多")
            sub.add_problem("企业销售", "B8", "县区为空：这一行填了数据，但没有填写县区")


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    workbook = make_workbook(folder / "市级")
    fill_ledger(workbook)
    out = folder / "通报"
    code = cli.main(["report", str(workbook), "--out", str(out), "--date", ISSUED])
    assert code == 0
    docx, pdf = out / "进展通报_2020-10.docx", out / "进展通报_2020-10.pdf"
    assert docx.is_file() and pdf.is_file()
    return {"workbook": workbook, "folder": folder, "docx": docx, "pdf": pdf, "text": pdf_text(pdf)}


def test_pdf_holds_title_summary_counties_and_page_number(made):
    text = made["text"]
    flat = squeeze(text)
    assert squeeze(report.REPORT_TITLE) in flat
    assert "（2020-10）" in flat and "2020年10月28日" in flat
    total = expected_total_cents()
    assert total > 0
    assert f"累计测算奖补资金{wan(total)}万元（{yuan(total)}元" in flat
    result = refresh.compute(refresh.read_package(refresh.Package(made["workbook"].read_bytes(), "x"), PLAN)[0], plan=PLAN)
    met = sum(1 for t in result.city if t.met is True)
    behind = sum(1 for t in result.city if t.met is False)
    assert met >= 1 and behind >= 1  # the fixture meets some targets and misses others
    assert f"截至2020年10月，方案{len(PLAN.targets)}项目标中已完成{met}项，{behind}项进度滞后" in flat
    for county in PLAN.counties:
        assert county in flat
    assert "— 1 —" in text
    assert "— 2 —" in text  # more than one page: the even page's number too


def test_pdf_is_a4(made):
    info = subprocess.run(["pdfinfo", str(made["pdf"])], capture_output=True, text=True, check=True).stdout
    m = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert m, info
    w, h = float(m.group(1)), float(m.group(2))
    assert abs(w - 595.28) < 1 and abs(h - 841.89) < 1  # 210 × 297 mm
    fonts = subprocess.run(["pdffonts", str(made["pdf"])], capture_output=True, text=True, check=True).stdout
    body = fonts.splitlines()[2:]
    assert body and all(" yes " in line for line in body), fonts  # every font embedded


def test_summary_agrees_with_refresh(made, tmp_path, capsys):
    copy = tmp_path / layout.WORKBOOK_NAME
    shutil.copy(made["workbook"], copy)
    code, out, err = run(["refresh", str(copy), "--no-backup"], capsys)
    assert code == 0, err
    m = re.search(r"奖补合计：([\d,]+\.\d\d) 元（(\d+)笔）", out)
    assert m, out
    flat = squeeze(made["text"])
    assert f"（{m.group(1)}元，共{m.group(2)}笔）" in flat
    for line in out.splitlines():  # each county's award total from refresh is in the county table
        cm = re.match(r"\s+(\S+)：奖补 ([\d,]+\.\d\d) 元", line)
        if cm and cm.group(1) in PLAN.counties:
            assert f"{cm.group(1)}" in flat and cm.group(2) in flat


def test_docx_layout_follows_gb_t_9704(made):
    from docx import Document
    from docx.shared import Cm

    doc = Document(str(made["docx"]))
    s = doc.sections[0]
    assert abs(s.page_width - Cm(21.0)) < Cm(0.01) and abs(s.page_height - Cm(29.7)) < Cm(0.01)
    for got, want in ((s.top_margin, 3.7), (s.bottom_margin, 3.5), (s.left_margin, 2.8), (s.right_margin, 2.6)):
        assert abs(got - Cm(want)) < Cm(0.01)
    normal = doc.styles["Normal"]
    assert normal.font.size.pt == 16
    ns = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    fonts = normal.element.rPr.find(f"{ns}rFonts")
    assert fonts.get(f"{ns}eastAsia") == report.find_font(report.BODY_FONTS)[0]
    with zipfile.ZipFile(made["docx"]) as z:
        footers = [z.read(n).decode() for n in z.namelist() if n.startswith("word/footer")]
        document = z.read("word/document.xml").decode()
        pictures = [n for n in z.namelist() if n.startswith("word/media/")]
    assert any("PAGE" in f and "—" in f for f in footers)
    assert 'w:eastAsia="' in document
    assert len(pictures) == 3  # completion by county, awards by clause, the trend
    title = doc.paragraphs[0]
    assert title.text == report.REPORT_TITLE and title.runs[0].font.size.pt == 22
    # a table by target, one by county, one by clause, the overdue units, the open problems
    assert len(doc.tables) == 5
    assert len(doc.tables[0].rows) == len(PLAN.targets) + 1
    assert [r.cells[0].text for r in doc.tables[1].rows[1:-1]] == list(PLAN.counties)


def test_overdue_units_and_open_problems(made):
    flat = squeeze(made["text"])
    assert "逾期未报单位" in flat
    from xl_ecom.workflows import cycle

    expected = sum(u.reports for u in cycle.plan_units(PLAN))
    assert f"本轮（2020-10）报送截止日期为2020年10月25日。截至2020年10月28日，应报{expected}个单位" in flat
    assert "市农业农村局" in flat  # a department with no submission in 2020-10, deadline passed
    assert "凤台县.xlsx" in flat
    assert "上行网络销售额不是数值" in flat
    from docx import Document

    doc = Document(str(made["docx"]))
    overdue = {r.cells[1].text for r in doc.tables[3].rows[1:]}
    problems = {r.cells[0].text: r for r in doc.tables[4].rows[1:]}
    assert "凤台县" in overdue and "寿县" in overdue  # 寿县 reported only in 2020-09
    assert set(problems) == {"凤台县"}
    assert problems["凤台县"].cells[2].text == "2"


def test_trend_from_the_ledgers_rounds(made):
    sept = engine.calculate_cents("AWARD_LIVESTREAM", SEPT_ROW["livestream_sales"], on=dt.date(2020, 12, 31))
    flat = squeeze(made["text"])
    assert f"自“2020-09”以来共2轮，测算奖补资金由{wan(sept)}万元变为{wan(expected_total_cents())}万元" in flat


def test_first_page_png(made, tmp_path):
    prefix = tmp_path / "page"
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", str(made["pdf"]), str(prefix)], check=True)
    made_png = next(tmp_path.glob("page*.png")).read_bytes()
    want = (round(21.0 / 2.54 * 60), round(29.7 / 2.54 * 60))
    w, h = png_size(made_png)
    assert abs(w - want[0]) <= 1 and abs(h - want[1]) <= 1
    if os.environ.get("XL_ECOM_UPDATE_REFERENCE"):
        REFERENCE_PNG.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE_PNG.write_bytes(made_png)
    assert REFERENCE_PNG.is_file(), "XL_ECOM_UPDATE_REFERENCE=1 写出参考图"
    rw, rh = png_size(REFERENCE_PNG.read_bytes())
    assert (rw, rh) == (w, h)


def test_an_earlier_round_uses_the_ledgers_rows(made, tmp_path, capsys):
    code, out, err = run(["report", str(made["workbook"]), "--round", "2020-09", "--out", str(tmp_path),
                          "--date", "2020-09-30", "--no-pdf"], capsys)
    assert code == 0, err
    sept = engine.calculate_cents("AWARD_LIVESTREAM", SEPT_ROW["livestream_sales"], on=dt.date(2020, 12, 31))
    from docx import Document

    text = "\n".join(p.text for p in Document(str(tmp_path / "进展通报_2020-09.docx")).paragraphs)
    assert f"累计测算奖补资金{wan(sept)}万元（{yuan(sept)}元，共1笔）" in text
    assert "截至2020年9月" in text and "台账中“2020-09”轮次的数据" in text
    assert "目前台账中只有本轮，趋势图只有一个点" in text  # nothing before 2020-09


def test_a_workbook_without_rounds(tmp_path, capsys):
    workbook = make_workbook(tmp_path / "市级", rows={})
    code, out, err = run(["report", str(workbook), "--no-pdf", "--date", "2020-12-01"], capsys)
    assert code == 0, err
    docx = tmp_path / "市级" / "输出" / report.SUBDIR / "进展通报_本期.docx"
    from docx import Document

    text = "\n".join(p.text for p in Document(str(docx)).paragraphs)
    assert "累计测算奖补资金0.00万元（0.00元，共0笔）" in text
    assert "方案12项目标中已完成0项" in text and "只有一个点" in text


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--round", "2030-01"], ("台账中没有报送轮次“2030-01”", "2020-09")),
        (["--date", "明天"], ("发文日期“明天”",)),
    ],
)
def test_bad_input_is_a_chinese_error(made, tmp_path, capsys, argv, words):
    code, out, err = run(["report", str(made["workbook"]), "--out", str(tmp_path), *argv], capsys)
    assert code == 2
    assert err.startswith("错误：") and "Traceback" not in err
    for w in words:
        assert w in err
    assert not list(tmp_path.iterdir())


def test_missing_workbook(tmp_path, capsys):
    missing = tmp_path / "没有这个文件.xlsm"
    code, out, err = run(["report", str(missing)], capsys)
    assert code == 2 and err.startswith("错误：") and "没有这个文件.xlsm" in err
    with pytest.raises(report.ReportError, match="找不到工作簿"):
        report.write_report(missing)


def test_without_libreoffice_the_docx_is_kept_and_the_exit_code_is_1(made, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "空"))  # no soffice on the PATH
    if report.find_soffice() is not None:  # a Windows install path: not on this machine
        pytest.fail("soffice found outside PATH")
    code, out, err = run(["report", str(made["workbook"]), "--out", str(tmp_path / "通报"), "--date", ISSUED], capsys)
    assert code == 1
    assert (tmp_path / "通报" / "进展通报_2020-10.docx").is_file()
    assert not (tmp_path / "通报" / "进展通报_2020-10.pdf").exists()
    assert "找不到 LibreOffice" in out + err


def docx_text(path: Path) -> str:
    from docx import Document

    doc = Document(str(path))
    cells = [c.text for tb in doc.tables for r in tb.rows for c in r.cells]
    return "\n".join([p.text for p in doc.paragraphs] + cells)


def test_the_ledger_on_postgresql(tmp_path, capsys, pg_database_url):  # noqa: F811
    workbook = make_workbook(tmp_path / "市级")
    fill_ledger(workbook, pg_database_url)
    assert not list((tmp_path / "市级").glob("*.sqlite"))
    code, out, err = run(["report", str(workbook), "--db", pg_database_url, "--out", str(tmp_path / "通报"),
                          "--date", ISSUED, "--no-pdf"], capsys)
    assert code == 0, err
    text = docx_text(tmp_path / "通报" / "进展通报_2020-10.docx")
    sept = engine.calculate_cents("AWARD_LIVESTREAM", SEPT_ROW["livestream_sales"], on=dt.date(2020, 12, 31))
    assert f"自“2020-09”以来共2轮，测算奖补资金由{wan(sept)}万元变为{wan(expected_total_cents())}万元" in text
    assert "凤台县.xlsx" in text and "上行网络销售额不是数值" in text
    assert not list((tmp_path / "市级").glob("*.sqlite"))  # nothing written beside the workbook


def test_not_a_city_workbook(tmp_path, capsys):
    text = tmp_path / "文本.xlsm"
    text.write_text("不是工作簿", encoding="utf-8")
    code, out, err = run(["report", str(text), "--no-pdf"], capsys)
    assert code == 2 and err.startswith("错误：") and "文本.xlsm" in err
    plain = tmp_path / "空白.xlsx"
    openpyxl.Workbook().save(plain)
    code, out, err = run(["report", str(plain), "--no-pdf"], capsys)
    assert code == 2 and err.startswith("错误：") and "不是本方案的市级工作簿" in err
    assert not list(tmp_path.glob("*.sqlite"))  # no ledger created for a file that is not the city workbook
