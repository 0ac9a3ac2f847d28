"""校验数据: the input tables of the real city workbook, the plan's own warnings, the 校验结果 sheet
(openpyxl and a real xlwings Book), the CLI; the row checks are the ones collect uses."""

from __future__ import annotations

import argparse
from pathlib import Path

import openpyxl
import pytest

from xl_ecom.ooxml import safeio
from xl_ecom.policy import check
from xl_ecom.workflows import build, collect, counties, layout, validate
from xl_ecom.workflows.tables import Award, Column, InputTable, table

BAD_ROWS = {
    "T_SALES": [
        ["寿县", "寿县甲企业", None, 12_000_000, None, None],  # row 4: clean
        ["寿县", "寿县乙企业", None, -5, None, None],  # 5: negative
        ["凤台县", "凤台县丙企业", None, "一千万", None, None],  # 6: not a number
        ["凤台县", "凤台县丁企业", None, "1200万", None, None],  # 7: text that reads as a number
        ["淮南新区", "某企业", None, 1, None, None],  # 8: unknown county
        ["寿县", None, None, 1, None, None],  # 9: required name missing
        ["寿县", "寿县甲企业", None, 5, None, None],  # 10: duplicate of row 4
        ["寿县", '=HYPERLINK("http://x.example","领奖")', None, 1, None, None],  # 11: formula-like text
        ["寿县", "寿县戊企业", None, "#N/A", None, None],  # 12: error value
    ],
    "T_TRAINING": [
        ["寿县", "培训一", "中级", 10, 1000],  # 4: invalid choice
        ["寿县", "培训二", "基础", 2.5, 1000],  # 5: count not an integer
    ],
    "T_PROMO": [["寿县", "年货节", "2020-13-45", 100]],  # 4: not a date
}


@pytest.fixture(scope="module")
def city_bytes() -> bytes:
    return build.build_bytes()


@pytest.fixture
def city(tmp_path, city_bytes) -> Path:
    path = tmp_path / layout.WORKBOOK_NAME
    path.write_bytes(city_bytes)
    return path


def put_rows(path: Path, data: dict) -> None:
    wb = openpyxl.load_workbook(path, keep_vba=True)
    for key, rows in data.items():
        ws = wb[table(key).sheet]
        for i, row in enumerate(rows):
            for j, value in enumerate(row, start=1):
                safeio.write_cell_value(ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j), value)
    wb.save(path)


def keyed(problems) -> set[tuple[str, str, str]]:
    return {(p.sheet, p.cell, p.severity) for p in problems}


def test_every_kind_of_bad_input_is_placed_and_explained(city):
    put_rows(city, BAD_ROWS)
    problems = validate.validate_workbook(city, include_plan=False)
    by_place = {(p.sheet, p.cell): p for p in problems}
    expected = {
        ("企业销售", "D5"): (validate.ERROR, "上行网络销售额(元)“-5”不能为负数"),
        ("企业销售", "D6"): (validate.ERROR, "“一千万”无法识别为数值"),
        ("企业销售", "D7"): (validate.WARNING, "文本“1200万”，已按数值12000000读取"),
        ("企业销售", "A8"): (validate.ERROR, "县区“淮南新区”不是淮南市的县区（应为：寿县、凤台县"),
        ("企业销售", "B9"): (validate.ERROR, "必填项“企业名称”为空"),
        ("企业销售", "A10"): (validate.ERROR, "与第4行重复（县区“寿县”、企业名称“寿县甲企业”）"),
        ("企业销售", "B11"): (validate.WARNING, "以公式符号开头，已按文本保存"),
        ("企业销售", "D12"): (validate.ERROR, "错误值“#N/A”"),
        ("电商培训", "C4"): (validate.ERROR, "培训类型“中级”无效，应为：基础、高管"),
        ("电商培训", "D5"): (validate.ERROR, "参训人数“2.5”应为整数"),
        ("促销活动", "C4"): (validate.ERROR, "活动日期“2020-13-45”不是有效日期"),
    }
    for place, (severity, text) in expected.items():
        assert place in by_place, (place, [str(p) for p in problems])
        assert by_place[place].severity == severity and text in by_place[place].message, str(by_place[place])
    assert len(problems) == len(expected), [str(p) for p in problems]


def test_a_clean_workbook_has_only_the_plans_warnings(city):
    put_rows(city, {"T_SALES": [BAD_ROWS["T_SALES"][0]], "T_DEMO": [["寿县", "正阳关镇", "省级电商示范镇", None]]})
    problems = validate.validate_workbook(city)
    plan_warnings = [f for f in check.check_plan() if f.severity == check.WARNING]
    assert plan_warnings, "the plan document has known flaws the check reports"
    assert [p.message for p in problems] == [f.message for f in plan_warnings]
    assert all(p.file == "方案" and p.subject and p.severity == validate.WARNING for p in problems)


def test_rate_over_the_plans_ceiling_is_an_error():
    """A table carrying a rate column: the engine's ceiling for the rule decides (1%以内)."""
    rated = InputTable(
        key="T_RATED",
        sheet="上行奖励",
        title="上行奖励（含比例）",
        columns=(Column("county", "县区", "county"), Column("sales", "上行网络销售额(元)", "money"), Column("rate", "奖励比例", "rate")),
        awards=(Award("AWARD_UPLINK", {"sales": "sales", "rate": "rate"}, "奖励(元)", "award"),),
    )
    counties_ = ("寿县",)
    ok = validate.check_row(rated, 4, {"county": "寿县", "sales": 20_000_000, "rate": 0.008}, counties=counties_)
    over = validate.check_row(rated, 5, {"county": "寿县", "sales": 20_000_000, "rate": "1.5%"}, counties=counties_)
    silly = validate.check_row(rated, 6, {"county": "寿县", "sales": 20_000_000, "rate": 3}, counties=counties_)
    assert ok.ok and ok.problems == []
    assert [(p.cell, p.severity) for p in over.problems if p.is_error] == [("C5", validate.ERROR)]
    assert "超过条款二（一）规定的上限1%" in over.problems[-1].message and "1.5%" in over.problems[-1].message
    assert not silly.ok and "超过100%" in silly.problems[0].message


def test_collect_and_validate_report_the_same_row_problems(city, tmp_path):
    """One set of row checks: the same bad rows give the same messages in a returned county file."""
    folder = tmp_path / "报回"
    folder.mkdir()
    rows = [r for r in BAD_ROWS["T_SALES"] if r[0] == "寿县"]
    wb = counties.county_workbook("寿县")
    ws = wb[table("T_SALES").sheet]
    for i, row in enumerate(rows):
        for j, value in enumerate(row, start=1):
            safeio.write_cell_value(ws.cell(row=layout.INPUT_FIRST_ROW + i, column=j), value)
    wb.save(folder / "寿县.xlsx")
    put_rows(city, {"T_SALES": rows})
    report = collect.collect(folder)
    from_collect = {(p.sheet, p.cell, p.severity, p.message) for p in report.all_problems()}
    from_validate = {(p.sheet, p.cell, p.severity, p.message) for p in validate.validate_workbook(city, include_plan=False)}
    assert from_validate and from_collect == from_validate


def test_validation_sheet_in_openpyxl_replaces_the_previous_one(city):
    put_rows(city, BAD_ROWS)
    wb = openpyxl.load_workbook(city, keep_vba=True)
    problems = validate.validate_workbook(wb)
    assert problems
    validate.write_validation_sheet(wb, problems)
    validate.write_validation_sheet(wb, problems[:2])  # a second run leaves no stale rows
    wb.save(city)
    ws = openpyxl.load_workbook(city)[layout.SHEET_VALIDATION]
    rows = [r for r in ws.iter_rows(values_only=True) if any(v is not None for v in r)]
    assert rows[0][0] == "校验结果"
    header = rows.index(tuple(validate.VALIDATION_HEADERS))
    body = rows[header + 1 :]
    assert len(body) == 2
    assert body[0][1:] == (problems[0].severity, None, problems[0].sheet, problems[0].cell, problems[0].message)


def remote_xlwings(monkeypatch):
    """xlwings with its remote engine: XLWINGS_LICENSE_KEY=noncommercial (PolyForm Noncommercial
    permits use by a government institution); registered here if xlwings was imported without it."""
    monkeypatch.setenv("XLWINGS_LICENSE_KEY", "noncommercial")
    import xlwings as xw

    if "remote" not in [e.name for e in xw.engines]:
        from xlwings.pro import _xlremote

        xw.engines.add(xw.Engine(impl=_xlremote.engine))
    return xw


def test_validation_sheet_and_reading_through_a_real_xlwings_book(monkeypatch):
    """xlwings' remote-interpreter Book: the values Excel would send, the actions it would run."""
    xw = remote_xlwings(monkeypatch)

    t = table("T_SALES")
    values = [[t.title] + [None] * 8, ["单位：元"] + [None] * 8, t.headers + [a.header for a in t.awards]]
    values.append(["寿县", "寿县甲企业", None, 12_000_000.0, None, None, 120_000.0, None, None])
    values.append(["寿县", "寿县乙企业", None, -3.0, None, None, None, None, None])
    sheets = []
    for other in validate.TABLES:
        if other.key == "T_SALES":
            sheets.append({"name": other.sheet, "values": values, "pictures": [], "tables": []})
        else:
            sheets.append({"name": other.sheet, "values": [[other.title], ["单位：元"], other.headers], "pictures": [], "tables": []})
    book = xw.Book(json={
        "client": "Microsoft Office Scripts", "version": xw.__version__,
        "book": {"name": layout.WORKBOOK_NAME, "active_sheet_index": 0, "selection": "A1"},
        "names": [], "sheets": sheets,
    })
    problems = validate.validate_workbook(book, include_plan=False)
    assert [(p.sheet, p.cell, p.severity) for p in problems] == [("企业销售", "D5", validate.ERROR)]
    validate.write_validation_sheet(book, problems)
    actions = book.json()["actions"]
    assert actions[0]["func"] == "addSheet" and actions[0]["args"][1] == layout.SHEET_VALIDATION
    written = [a["values"] for a in actions if a["func"] == "setValues"]
    assert [list(validate.VALIDATION_HEADERS)] in written
    assert [[1, "错误", "", "企业销售", "D5", problems[0].message]] in written


def test_cli(city, capsys, tmp_path):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    validate.add_cli(sub)
    args = parser.parse_args(["validate", str(city)])
    assert args.func(args) == 0  # the plan's warnings alone are not errors
    out = capsys.readouterr().out
    assert "[警告] “方案”" in out and "0个错误" in out
    put_rows(city, BAD_ROWS)
    assert args.func(args) == 1
    out = capsys.readouterr().out
    assert "[错误] 工作表“企业销售”单元格 D5：上行网络销售额(元)“-5”不能为负数" in out
    args = parser.parse_args(["validate", str(tmp_path / "无.xlsm")])
    assert args.func(args) == 2
    assert "不存在" in capsys.readouterr().out


def test_award_cells_typed_over_are_reported(city):
    put_rows(city, {"T_SALES": [["寿县", "寿县甲企业", None, 12_000_000, None, None, 99_999]]})
    problems = validate.validate_workbook(city, include_plan=False)
    assert [(p.sheet, p.cell, p.severity) for p in problems] == [("企业销售", "G4", validate.WARNING)]
    assert "上行奖励(元)不是公式（现为“99999”）" in problems[0].message
    # the same through an openpyxl workbook in formula mode
    wb = openpyxl.load_workbook(city)
    assert [(p.sheet, p.cell) for p in validate.validate_workbook(wb, include_plan=False, check_awards=True)] == [("企业销售", "G4")]
    # workbook objects may be value snapshots: no award check unless asked for
    assert validate.validate_workbook(wb, include_plan=False) == []
    values_only = openpyxl.load_workbook(city, data_only=True)
    assert validate.validate_workbook(values_only, include_plan=False, check_awards=True) == []


def test_text_values_excel_cannot_hold():
    t = table("T_DEMO")
    row = validate.check_row(t, 4, {"county": "寿县", "name": "x" * 40_000, "kind": "省级电商示范村"}, counties=("寿县",))
    assert [(p.cell, p.severity) for p in row.problems] == [("B4", validate.ERROR)]
    assert "40000个字符，超过 Excel 单元格上限32767个字符" in row.problems[0].message
    row = validate.check_row(t, 5, {"county": "寿县", "name": "正阳\x07关镇", "kind": "省级电商示范镇"}, counties=("寿县",))
    assert row.ok and row.values["name"] == "正阳关镇"
    assert "含有不可见的控制字符，已删除" in row.problems[0].message


def test_validation_sheet_through_xlwings_clears_an_existing_one(monkeypatch):
    xw = remote_xlwings(monkeypatch)
    book = xw.Book(json={
        "client": "Microsoft Office Scripts", "version": xw.__version__,
        "book": {"name": layout.WORKBOOK_NAME, "active_sheet_index": 0, "selection": "A1"}, "names": [],
        "sheets": [
            {"name": "说明", "values": [["x"]], "pictures": [], "tables": []},
            {"name": layout.SHEET_VALIDATION, "values": [["旧结果"], ["旧结果"]], "pictures": [], "tables": []},
        ],
    })
    problem = validate.Problem("企业销售", "B4", "=1+1 开头的说明", validate.ERROR, "=evil.xlsx")
    validate.write_validation_sheet(book, [problem])
    actions = book.json()["actions"]
    assert actions[0]["func"] == "sheetClear" and actions[0]["sheet_position"] == 1
    assert not any(a["func"] == "addSheet" for a in actions)
    rows = [a["values"] for a in actions if a["func"] == "setValues"]
    assert [[1, "错误", "'=evil.xlsx", "企业销售", "B4", "'=1+1 开头的说明"]] in rows  # text stays text


@pytest.mark.filterwarnings("ignore:Cell .* is marked as a date:UserWarning")  # openpyxl, on 1234567890123456
def test_read_sheet_reads_a_returned_file_as_openpyxl_data_only_does(tmp_path):
    """collect reads the input sheets of returned files through validate.ReadSheet (Package.rows,
    data_only): every value is the one openpyxl's data_only reader gives — numbers (int vs float as
    written, 16-digit integers exact), dates, text, booleans, error values, cached formula results
    (text and number), a formula without one (None) — on every input sheet of a county workbook."""
    import datetime as dt

    from xl_ecom.ooxml.package import Package
    from xl_ecom.ooxml.worksheet import set_cached
    from xl_ecom.workflows.tables import TABLES

    wb = counties.county_workbook("寿县")
    values = [12, 12.0, 1234567890123456, 0.1 + 0.2, -5, "文本", " 前后空格 ", "=SUM(1,2)", "=\"a\"&\"b\"", True,
              dt.datetime(2021, 3, 4), "50万", "１２３", None, "#N/A", "=1/0"]
    for t in TABLES:
        ws = wb[t.sheet]
        for i in range(30):
            for c in range(1, len(t.columns) + 1):
                v = values[(i * 7 + c) % len(values)]
                cell = ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c, value=v)
                if isinstance(v, dt.datetime):
                    cell.number_format = "yyyy-mm-dd"
    path = tmp_path / "寿县.xlsx"
    wb.save(path)
    # cached results for some formulas, as Excel would have saved them: a number, a text, none for the rest
    pkg = Package(path.read_bytes())
    for t in TABLES:
        part = pkg.sheet_part(t.sheet)
        refs = {}
        for i in range(30):
            for c in range(1, len(t.columns) + 1):
                v = values[(i * 7 + c) % len(values)]
                ref = f"{openpyxl.utils.get_column_letter(c)}{layout.INPUT_FIRST_ROW + i}"
                if v == "=SUM(1,2)":
                    refs[ref] = 3
                elif v == "=\"a\"&\"b\"":
                    refs[ref] = "ab"
        pkg.parts[part] = set_cached(pkg.parts[part], refs)
    path.write_bytes(pkg.to_bytes())

    ours = Package(path.read_bytes())
    theirs = openpyxl.load_workbook(path, data_only=True, read_only=True)
    compared = 0
    for t in TABLES:
        n = len(t.columns)
        mine = validate.ReadSheet(ours, t.sheet, n)
        want = [[c.value for c in row] + [None] * (n - len(row))
                for row in theirs[t.sheet].iter_rows(min_row=layout.INPUT_HEADER_ROW, max_col=n)]
        got = [[c.value for c in row] for row in mine.iter_rows(min_row=layout.INPUT_HEADER_ROW, max_col=n)]
        while want and all(v is None for v in want[-1]):
            want.pop()
        assert got == want, t.sheet
        assert [type(v) for r in got for v in r] == [type(v) for r in want for v in r], t.sheet
        assert mine.cell(layout.INPUT_HEADER_ROW, 1).value == theirs[t.sheet].cell(layout.INPUT_HEADER_ROW, 1).value
        compared += sum(1 for r in got for v in r if v is not None)
    assert compared > 1000


def test_read_sheet_leaves_out_phonetic_runs_as_openpyxl_does(tmp_path):
    """Excel and WPS may store a phonetic guide (<rPh>) with East Asian text in sharedStrings.xml; it is
    not part of the cell's text: "寿县" with a pinyin guide still reads "寿县", so the county matches.
    Rich-text runs (<r>) are joined."""
    from lxml import etree

    from xl_ecom.ooxml.namespaces import MAIN, REL_SHARED_STRINGS
    from xl_ecom.ooxml.package import Package
    from xl_ecom.ooxml.relationships import append_relationship
    from xl_ecom.workflows.tables import table as _table

    t = _table("T_SALES")
    wb = counties.county_workbook("寿县")
    r = layout.INPUT_FIRST_ROW
    wb[t.sheet].cell(row=r, column=1, value="寿县")
    wb[t.sheet].cell(row=r, column=2, value="富文本")
    plain = tmp_path / "plain.xlsx"
    wb.save(plain)
    pkg = Package(plain.read_bytes())
    part = pkg.sheet_part(t.sheet)
    root = etree.fromstring(pkg.parts[part])
    for c in root.iter(f"{{{MAIN}}}c"):  # the two cells as shared strings 0 and 1
        if c.get("r") in (f"A{r}", f"B{r}"):
            for child in list(c):
                c.remove(child)
            c.set("t", "s")
            etree.SubElement(c, f"{{{MAIN}}}v").text = "0" if c.get("r").startswith("A") else "1"
    pkg.parts[part] = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    sst = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="{MAIN}" count="2" uniqueCount="2">'
           '<si><t>寿县</t><rPh sb="0" eb="2"><t>shouxian</t></rPh><phoneticPr fontId="1"/></si>'
           '<si><r><t>富</t></r><r><rPr><b/></rPr><t>文本</t></r></si></sst>').encode()
    pkg._put("xl/sharedStrings.xml", sst, "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml")
    pkg.parts[pkg.main_rels], _ = append_relationship(pkg.parts[pkg.main_rels], REL_SHARED_STRINGS, "sharedStrings.xml")
    path = tmp_path / "寿县.xlsx"
    path.write_bytes(pkg.to_bytes())

    theirs = openpyxl.load_workbook(path, data_only=True, read_only=True)[t.sheet]
    want = [c.value for c in next(theirs.iter_rows(min_row=r, max_row=r, max_col=2))]
    mine = validate.ReadSheet(Package(path.read_bytes()), t.sheet, len(t.columns))
    assert want == ["寿县", "富文本"]
    assert [mine.cell(r, c).value for c in (1, 2)] == want
