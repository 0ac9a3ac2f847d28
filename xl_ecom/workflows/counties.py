"""County workbooks (生成县区工作簿 / ``xl-ecom counties``).

One .xlsx per county or district in ``<out>/县区工作簿/<县区>.xlsx``, filled in by a county clerk
without Python (Excel, WPS or LibreOffice) and sent back for ``xl-ecom collect``:

- 填报说明   how to fill it in, and the marker collect checks (county and structure version);
- 目标任务   the county's annex targets, 完成数 counted by native COUNTIFS over its input sheets,
             完成率 and 差额;
- 工作任务   the measures assigned to 各县区人民政府 (lead or cooperating);
- one sheet per input table (xl_ecom.workflows.tables.TABLES) with data validation and native award formulas;
- 奖补汇总   native SUMIFS per award rule and the tourism award (AWARD_TOURISM compiled from the plan).

Marker (read back by :func:`county_marker`):
- workbook defined names ``XL_ECOM_COUNTY`` = "<县区>" and ``XL_ECOM_VERSION`` = STRUCTURE_VERSION
  (hidden names, constant string values);
- the same two values, visible, in 填报说明!B3 (县区) and 填报说明!B4 (结构版本); that sheet is protected.

Issue token (read back by :func:`issue_token`): when the workbooks are generated with a ledger
(``xl-ecom counties --workbook 市级工作簿`` or ``--db URL``), each file is recorded as issued
(``ledger.issue_file(县区, "县区", 文件名, render)``) and carries the token the ledger returns, in the
hidden defined name ``_xl_ecom_token`` and in the custom document property ``xl_ecom_token``.  The sha256
recorded is that of the file as written, token included (the bytes that are mailed).  collect verifies
the token against the county the file claims.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from openpyxl import Workbook
from openpyxl.packaging.custom import StringProperty
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.workbook.defined_name import DefinedName

from xl_ecom.common.errors import InputError
from xl_ecom.policy import Plan, load_plan
from xl_ecom.rules import engine, formulas
from xl_ecom.workflows import layout, sheets
from xl_ecom.workflows.departments import (
    Progress,
    _add_common,
    _date_text,
    check_not_open,
    fit_height,
    issue_workbook,
    pin_properties,
    run_export_cli,
    write_task_sheet,
)
from xl_ecom.workflows.tables import ACTUALS, TABLES, TOURISM_COUNTS, InputTable
from xl_ecom.workflows.tables import table as get_table

SUBDIR = "县区工作簿"  # <out>/县区工作簿/<县区>.xlsx (= settings.COUNTY_SUBDIR)
COUNTY_UNIT = "各县区人民政府"

SHEET_README = "填报说明"
SHEET_TARGETS = "目标任务"
SHEET_TASKS = "工作任务"
SHEET_SUMMARY = "奖补汇总"
#: sheet order of every county workbook
#: the sheets in tab (and print) order: the totals near the front, after the targets
COUNTY_SHEETS: tuple[str, ...] = (SHEET_README, SHEET_TARGETS, SHEET_SUMMARY, SHEET_TASKS, *(t.sheet for t in TABLES))

# --- the marker collect checks ----------------------------------------------------------------------
COUNTY_MARKER_SHEET = SHEET_README
COUNTY_CELL = "B3"
VERSION_CELL = "B4"
COUNTY_NAME = "XL_ECOM_COUNTY"
VERSION_NAME = "XL_ECOM_VERSION"
_STRUCTURE_MAJOR = 1


def _structure_fingerprint() -> str:
    """Changes whenever a sheet name, header or award column of the input tables changes."""
    shape = [
        COUNTY_SHEETS,
        layout.INPUT_HEADER_ROW,
        layout.INPUT_FIRST_ROW,
        [[t.key, t.sheet, t.headers, [a.header for a in t.awards]] for t in TABLES],
    ]
    return hashlib.sha256(json.dumps(shape, ensure_ascii=False).encode("utf-8")).hexdigest()[:8]


#: e.g. "1-5d0c2a7e": major layout version, then a fingerprint of sheet names and input headers
STRUCTURE_VERSION = f"{_STRUCTURE_MAJOR}-{_structure_fingerprint()}"


def _name_value(wb, name: str):
    try:
        dn = wb.defined_names[name]
    except KeyError:
        return None
    text = (dn.attr_text or "").strip()
    if text.startswith("="):
        text = text[1:].strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('""', '"')
    return text or None


def _cell_text(value):
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def county_marker(wb) -> tuple[str | None, str | None]:
    """(county, structure version) a county workbook says it is, or (None, None) without a marker.

    Reads the defined names XL_ECOM_COUNTY / XL_ECOM_VERSION and the cells 填报说明!B3 / B4 (works
    on read-only openpyxl workbooks).  Where both exist they must agree; if they do not (someone
    edited one of them) an InputError names both values.
    """
    names = (_name_value(wb, COUNTY_NAME), _name_value(wb, VERSION_NAME))
    cells: tuple = (None, None)
    if COUNTY_MARKER_SHEET in wb.sheetnames:
        ws = wb[COUNTY_MARKER_SHEET]
        rows = list(ws.iter_rows(min_row=3, max_row=4, min_col=2, max_col=2, values_only=True))
        vals = [(_cell_text(r[0]) if r else None) for r in rows] + [None, None]
        cells = (vals[0], vals[1])
    out = []
    for what, by_name, by_cell, where in (
        ("县区", names[0], cells[0], f"{COUNTY_MARKER_SHEET}!{COUNTY_CELL}"),
        ("结构版本", names[1], cells[1], f"{COUNTY_MARKER_SHEET}!{VERSION_CELL}"),
    ):
        if by_name and by_cell and by_name != by_cell:
            raise InputError(f"县区工作簿的{what}标记不一致：隐藏名称为“{by_name}”，{where} 为“{by_cell}”")
        out.append(by_name or by_cell)
    return out[0], out[1]


# --- formula helpers ----------------------------------------------------------------------------------

def _col(table: InputTable, key: str) -> str:
    return get_column_letter([c.key for c in table.columns].index(key) + 1)


def _award_col(table: InputTable, award_key: str) -> str:
    return get_column_letter(len(table.columns) + 1 + [a.key for a in table.awards].index(award_key))


def _range(table: InputTable, letter: str) -> str:
    """A whole column of an input sheet: rows a clerk adds below the table are still counted; the
    title and header cells never equal a county name and are text, so COUNTIFS/SUMIFS ignore them."""
    return f"{quote_sheetname(table.sheet)}!${letter}:${letter}"


def _q(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def actual_formula(annex_key: str, county: str, on=None, plan: Plan | None = None) -> str:
    """Native COUNTIFS counting the county's actual figure for one annex column (tables.ACTUALS)."""
    actual = next((a for a in ACTUALS if a.annex_key == annex_key), None)
    if actual is None:
        raise KeyError(annex_key)
    t = get_table(actual.table)
    parts = [_range(t, _col(t, "county")), _q(county)]
    if actual.kind_column:
        assert actual.kind_value is not None, annex_key  # tables.ACTUALS declares the two together
        parts += [_range(t, _col(t, actual.kind_column)), _q(actual.kind_value)]
    if actual.rule_condition:
        rule_id, column = actual.rule_condition
        award = next(a for a in t.awards if a.rule == rule_id)
        input_name = next(name for name, key in award.inputs.items() if key == column)
        # the award's own condition on the amount rounded to the cent (as the award cell tests it)
        parts += [_range(t, _col(t, column)), formulas.count_criteria(rule_id, input_name, on=on, plan=plan)]
    return "=COUNTIFS(" + ",".join(parts) + ")"


#: what an award cell of a county workbook shows instead of an amount (text, so SUM/SUMIFS skip it)
FLAG_NUMBER = "请填数字"  # a money/number cell holds text such as "50万" (= formulas' own guard, if any)
FLAG_COUNTY = "县区不符"  # the row names another county: collect does not merge it
NUMERIC_KINDS = ("money", "count", "years", "rate")


def _county_group(county: str) -> list[str]:
    """SUMIFS/COUNTIFS criteria whose rows belong to ``county`` in its own workbook: the county's
    name and a blank 县区 (collect fills a blank 县区 with the workbook's county)."""
    return [_q(county), '""']


def award_formula(table: InputTable, award, row: int, county: str, on=None, plan: Plan | None = None) -> str:
    """The native award formula of one row of an input sheet of ``county``'s workbook.

    Differs from the city's (sheets.award_formula) in three ways a county clerk needs:
    - a blank 县区 counts as the workbook's county (as collect reads it), so a promo row with a
      blank 县区 shares the county's cumulative cap instead of starting a fresh one;
    - a row naming another county shows FLAG_COUNTY (collect rejects such a row);
    - a number column holding text ("50万") shows FLAG_NUMBER instead of #VALUE!.
    """
    first = layout.INPUT_FIRST_ROW
    keys = [c.key for c in table.columns]
    refs = {name: f"{get_column_letter(keys.index(key) + 1)}{row}" for name, key in award.inputs.items()}
    prior = None
    if award.cumulative_by:
        own = _award_col(table, award.key)
        grp = _col(table, award.cumulative_by)
        if row == first:
            prior = "0"
        else:
            prior = "(" + "+".join(
                f"SUMIFS({own}${first}:{own}{row - 1},{grp}${first}:{grp}{row - 1},{crit})" for crit in _county_group(county)
            ) + ")"
    body = formulas.compile_rule(award.rule, refs, on=on, plan=plan, prior_paid=prior)[1:]
    # outermost, so the flag wins over a blank input of the same row whatever compile_rule checks inside
    numeric = [refs[name] for name, key in award.inputs.items() if table.column(key).kind in NUMERIC_KINDS]
    if numeric:
        tests = [f'AND({r}<>"",NOT(ISNUMBER({r})))' for r in numeric]
        test = tests[0] if len(tests) == 1 else f"OR({','.join(tests)})"
        body = f"IF({test},{_q(FLAG_NUMBER)},{body})"
    c = f"{_col(table, 'county')}{row}"
    return f'=IF(AND({c}<>"",{c}<>{_q(county)}),{_q(FLAG_COUNTY)},{body})'


def _left_out_formula(table: InputTable, award) -> str:
    """How many data rows of an award column show something other than an amount or "" (a flag
    such as FLAG_NUMBER / FLAG_COUNTY, or a value typed over the formula): cells − numbers − blanks,
    as COUNTBLANK also counts formulas giving "".  No wildcards (LibreOffice may read them as
    regular expressions), over every row from the first data row down (rows a clerk adds below)."""
    letter = _award_col(table, award.key)
    rng = f"{quote_sheetname(table.sheet)}!${letter}${layout.INPUT_FIRST_ROW}:${letter}$1048576"
    return f"=ROWS({rng})-COUNT({rng})-COUNTBLANK({rng})"


def _write_award_formulas(ws, table: InputTable, county: str, on, plan: Plan) -> None:
    """(Re)write the award columns of an input sheet for ``county`` (every pre-formatted row)."""
    first = layout.INPUT_FIRST_ROW
    last = max(ws.max_row, first)
    for award in table.awards:
        col = len(table.columns) + 1 + [a.key for a in table.awards].index(award.key)
        for r in range(first, last + 1):  # an empty row's award shows blank
            sheets.put_formula(ws.cell(row=r, column=col), award_formula(table, award, r, county, on=on, plan=plan), "")


# --- sheets ------------------------------------------------------------------------------------------

def _check_county(county: str, plan: Plan) -> str:
    name = str(county or "").strip()
    if name not in plan.counties:
        raise InputError(f"县区“{county}”不在目标任务分解表中（可用：{'、'.join(plan.counties)}）")
    return name


def _input_subtitle(county: str) -> str:
    return f"填报单位：{county}　　金额单位：元　　灰底列为按方案条款自动计算的奖补金额（公式），请勿改动"


def _write_readme(ws, county: str, plan: Plan, on, due) -> None:
    widths = (16, 30, 40, 40)
    sheets.title(ws, f"{county}农村电商提质增效工作报表", 4, f"（{plan.meta['title']}，{plan.meta['issuer']}制）")
    info = [
        ("县区", county),
        ("结构版本", STRUCTURE_VERSION),
        ("报送截止日期", _date_text(due) if due else "按通知要求"),
        ("政策日期", _date_text(on) if on else "现行方案"),
    ]
    for i, (label, value) in enumerate(info):
        r = 3 + i
        a = ws.cell(row=r, column=1, value=label)
        sheets.body_cell(a, "center")
        a.font = sheets.HEADER_FONT
        a.fill = sheets.HEADER_FILL
        b = ws.cell(row=r, column=2, value=value)
        sheets.body_cell(b, "text")
        ws.row_dimensions[r].height = 22
    for col, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(col)].width = w
    lines = [
        f"1. 本工作簿供{county}填报农村电商提质增效工作情况，填好后按原文件名保存为 .xlsx 报市商务局。"
        "“县区”“结构版本”两项用于汇总核对，请勿修改；请勿增删、重命名工作表，勿改动表头。",
        f"2. “{SHEET_TARGETS}”表为本县区的目标任务（方案附件），完成数由各填报表自动统计；"
        f"“{SHEET_TASKS}”表为方案分配给各县区人民政府的工作措施，请填写进展情况、完成时间、责任人和联系电话（随报表一并汇总，显示在市级“完成情况”表中）。",
        f"3. 各填报表从第{layout.INPUT_FIRST_ROW}行起逐行填写，“县区”一列从下拉列表选择“{county}”"
        f"（留空的按{county}计入，与市级汇总一致）；金额以元为单位填写数字"
        f"（不要写“万元”“50万”等文字，否则奖补金额列显示“{FLAG_NUMBER}”，该行不计入本县区合计）。",
        "4. 灰底列为奖补金额，按方案条款用普通公式自动计算（无需宏，Excel、WPS 均可）；结果仅供测算，以有关部门认定为准。",
        f"5. “{SHEET_SUMMARY}”表按奖补项目自动汇总本县区金额。",
    ]
    r = 8
    head = ws.cell(row=r, column=1, value="填报要求")
    head.font = sheets.HEADER_FONT
    r += 1
    total = sum(widths)
    for text in lines:
        ws.cell(row=r, column=1, value=text).font = sheets.BODY_FONT
        ws.cell(row=r, column=1).alignment = sheets.TOP_LEFT
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=4)
        ws.row_dimensions[r].height = fit_height([text], [total])
        r += 1
    r += 1
    sheets.header(ws, r, ["填报表", "内容", "说明", "奖补项目"])
    r += 1
    for t in TABLES:
        rules = "、".join(plan.rules[a.rule].name for a in t.awards)
        values = [t.sheet, t.title, t.note or "", rules]
        for col, value in enumerate(values, start=1):
            cell = ws.cell(row=r, column=col, value=value)
            sheets.body_cell(cell, "center" if col == 1 else "text")
        ws.row_dimensions[r].height = fit_height(values, widths)
        r += 1
    ws.protection.sheet = True
    sheets.page_setup(ws, "1:1")  # the title on each page it runs over


TARGET_HEADERS = ("序号", "指标", "目标任务数", "完成数", "完成率", "差额", "单位", "统计口径")
TARGET_WIDTHS = (6, 30, 12, 12, 10, 10, 6, 48)
TARGET_HEADER_ROW = 3
TARGET_FIRST_ROW = 4


def _actual_note(annex_key: str, plan: Plan) -> str:
    actual = next(a for a in ACTUALS if a.annex_key == annex_key)
    t = get_table(actual.table)
    if actual.kind_column:
        return f"“{t.sheet}”表中本县区类型为“{actual.kind_value}”的行数"
    assert actual.rule_condition is not None, annex_key  # an actual counts rows of a kind or rows meeting a rule
    rule_id, column = actual.rule_condition
    return f"“{t.sheet}”表中本县区“{t.column(column).header}”满足{plan.rules[rule_id].name}门槛的企业数"


def _write_targets(ws, county: str, plan: Plan, on) -> None:
    ncols = len(TARGET_HEADERS)
    sheets.title(ws, f"{county}目标任务完成情况", ncols, f"填报单位：{county}　　完成数由各填报表自动统计，无需填写")
    sheets.header(ws, TARGET_HEADER_ROW, TARGET_HEADERS, TARGET_WIDTHS)
    r = TARGET_FIRST_ROW
    for i, col in enumerate(plan.annex_columns, start=1):
        name = col["header"].removesuffix("目标任务数")
        target = plan.annex_value(county, col["key"])
        values = [
            (i, "center"),
            (name, "text"),
            (target, "count"),
            (actual_formula(col["key"], county, on=on, plan=plan), "count"),
            (f'=IF(C{r}=0,"",D{r}/C{r})', "percent"),
            (f"=C{r}-D{r}", "count"),
            (col["unit"], "center"),
            (_actual_note(col["key"], plan), "text"),
        ]
        # the values an issued (empty) workbook shows: nothing done yet, the whole target outstanding
        empty = {4: 0, 5: ("" if not target else 0), 6: target}
        for c, (value, kind) in enumerate(values, start=1):
            cell = ws.cell(row=r, column=c, value=value)
            if c in empty:
                sheets.put_formula(cell, value, empty[c])
            sheets.body_cell(cell, kind)
            if c >= 4 and c <= 6:
                cell.fill = sheets.FORMULA_FILL
        ws.row_dimensions[r].height = fit_height([v for v, _ in values], TARGET_WIDTHS)
        r += 1
    note = "说明：完成率＝完成数÷目标任务数；差额＝目标任务数－完成数，为0或负数表示已完成目标任务。"
    ws.cell(row=r + 1, column=1, value=note).font = sheets.NOTE_FONT
    ws.merge_cells(start_row=r + 1, start_column=1, end_row=r + 1, end_column=ncols)
    ws.protection.sheet = True
    sheets.page_setup(ws, f"{TARGET_HEADER_ROW}:{TARGET_HEADER_ROW}")


SUMMARY_HEADERS = ("序号", "条款", "奖补项目", "数据来源", "笔数/个数", "金额(元)", "未计入(行)")
SUMMARY_WIDTHS = (6, 10, 28, 36, 12, 16, 10)
#: 奖补汇总 columns: E count, F amount, G rows left out (award cell shows a flag instead of an amount)
SUMMARY_COUNT_COL, SUMMARY_AMOUNT_COL, SUMMARY_LEFT_OUT_COL = 5, 6, 7
SUMMARY_HEADER_ROW = 3
SUMMARY_FIRST_ROW = 4


def summary_rows(plan: Plan | None = None) -> list[tuple[str, str]]:
    """(kind, key) of each row of 奖补汇总 in order: ('award', 'T_SALES/award_uplink'),
    ('count', 'towns'), ('count', 'villages'), ('rule', 'AWARD_TOURISM'), ('total', '')."""
    rows = [("award", f"{t.key}/{a.key}") for t in TABLES for a in t.awards]
    rows += [("count", k) for k in TOURISM_COUNTS] + [("rule", "AWARD_TOURISM"), ("total", "")]
    return rows


def _write_summary(ws, county: str, plan: Plan, on) -> None:
    ncols = len(SUMMARY_HEADERS)
    sheets.title(ws, f"{county}奖补测算汇总", ncols, f"填报单位：{county}　　单位：元　　按方案条款自动计算，仅供测算，以认定为准")
    sheets.header(ws, SUMMARY_HEADER_ROW, SUMMARY_HEADERS, SUMMARY_WIDTHS)
    r = SUMMARY_FIRST_ROW
    money_rows = []
    count_rows = {}
    n = 0

    def put(values, kinds, cached=0):
        for c, (value, kind) in enumerate(zip(values, kinds), start=1):
            cell = ws.cell(row=r, column=c, value=value)
            sheets.body_cell(cell, kind)
            if isinstance(value, str) and value.startswith("="):
                # an issued workbook has no rows: no count, no amount, nothing left out
                sheets.put_formula(cell, value, cached if c == SUMMARY_AMOUNT_COL else 0)
                cell.fill = sheets.FORMULA_FILL
        ws.row_dimensions[r].height = fit_height(values[:4], SUMMARY_WIDTHS[:4])

    kinds = ("center", "center", "text", "text", "count", "money", "count")
    group = _county_group(county)
    for t in TABLES:
        county_rng = _range(t, _col(t, "county"))
        for a in t.awards:
            n += 1
            rule = plan.rules[a.rule]
            amount = _range(t, _award_col(t, a.key))
            source = f"“{t.sheet}”表“{a.header}”列"
            # a blank 县区 is this county (as collect reads it); SUMIFS skips text flags, and the
            # rows whose award cell shows a flag are counted as left out
            values = [
                n,
                rule.clause,
                rule.name,
                source,
                "=" + "+".join(f'COUNTIFS({county_rng},{g},{amount},">0")' for g in group),
                "=" + "+".join(f"SUMIFS({amount},{county_rng},{g})" for g in group),
                _left_out_formula(t, a),
            ]
            put(values, kinds)
            money_rows.append(r)
            r += 1
    labels = {"towns": "新培育省级特色旅游名镇", "villages": "新培育省级特色旅游名村"}
    for key, (tkey, kind_col, kind_value) in TOURISM_COUNTS.items():
        t = get_table(tkey)
        count = "=" + "+".join(
            f"COUNTIFS({_range(t, _col(t, 'county'))},{g},{_range(t, _col(t, kind_col))},{_q(kind_value)})" for g in group
        )
        values = ["", "", f"{labels.get(key, kind_value)}（个）", f"“{t.sheet}”表中类型为“{kind_value}”的行数", count, None, None]
        put(values, kinds)
        count_rows[key] = r
        r += 1
    n += 1
    rule = plan.rules["AWARD_TOURISM"]
    refs = {name: f"E{row}" for name, row in count_rows.items()}
    values = [
        n,
        rule.clause,
        rule.name,
        "按上两行个数计算",
        "=" + "+".join(f"E{row}" for row in count_rows.values()),
        formulas.compile_rule("AWARD_TOURISM", refs, on=on, plan=plan),
        None,
    ]
    cents = engine.calculate_cents("AWARD_TOURISM", on=on, plan=plan, **dict.fromkeys(refs, 0))
    put(values, kinds, "" if cents is None else cents / 100)
    money_rows.append(r)
    r += 1
    values = [
        "合计",
        "",
        "",
        "",
        None,
        "=SUM(" + ",".join(f"F{row}" for row in money_rows) + ")",
        "=SUM(" + ",".join(f"G{row}" for row in money_rows) + ")",
    ]
    put(values, kinds)
    for c in range(1, ncols + 1):
        ws.cell(row=r, column=c).font = sheets.HEADER_FONT
    ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=4)
    note = (
        f"注：“未计入(行)”为奖补金额列显示提示文字而非金额的行数（“{FLAG_NUMBER}”：金额等数值列填了文字，如“50万”；"
        f"“{FLAG_COUNTY}”：县区不是{county}），这些行未计入金额合计，请按提示改正后再报送。"
        f"市级汇总时这两类行同样不予汇总（“50万”这类文字金额不按识别出的数值计入），请改填数字后再报送。"
        f"“县区”留空的行按{county}计入（与市级汇总一致），并参与累计封顶。"
    ) + "".join(
        f"{plan.rules[a.rule].name}按县区累计封顶（“{plan.rules[a.rule].text}”），按“{t.sheet}”表中的行序累计。"
        for t in TABLES
        for a in t.awards
        if a.cumulative_by
    )
    ws.cell(row=r + 2, column=1, value=note).font = sheets.NOTE_FONT
    ws.cell(row=r + 2, column=1).alignment = sheets.TOP_LEFT
    ws.merge_cells(start_row=r + 2, start_column=1, end_row=r + 2, end_column=ncols)
    ws.row_dimensions[r + 2].height = fit_height([note], [sum(SUMMARY_WIDTHS)], 10)
    ws.protection.sheet = True
    sheets.page_setup(ws, f"{SUMMARY_HEADER_ROW}:{SUMMARY_HEADER_ROW}")


TOKEN_NAME = "_xl_ecom_token"  # hidden defined name
TOKEN_PROPERTY = "xl_ecom_token"  # custom document property
ISSUE_KIND = "县区"


def set_token(wb, token: str | None) -> None:
    """Write (or, with None, remove) the issue token in both places."""
    if TOKEN_NAME in wb.defined_names:
        del wb.defined_names[TOKEN_NAME]
    props = wb.custom_doc_props
    for prop in [q for q in props if q.name == TOKEN_PROPERTY]:
        props.props.remove(prop)
    if token:
        wb.defined_names[TOKEN_NAME] = DefinedName(TOKEN_NAME, attr_text=_q(token), hidden=True)
        props.append(StringProperty(name=TOKEN_PROPERTY, value=token))


def issue_token(wb) -> tuple[str | None, str | None]:
    """(token in the hidden defined name, token in the custom document property); None where absent."""
    by_name = _name_value(wb, TOKEN_NAME)
    by_prop = None
    for prop in getattr(wb, "custom_doc_props", None) or []:
        if prop.name == TOKEN_PROPERTY:
            value = getattr(prop, "value", None)
            by_prop = str(value).strip() if value is not None and str(value).strip() else None
    return by_name, by_prop


def _set_marker(wb, county: str) -> None:
    for name, value in ((COUNTY_NAME, county), (VERSION_NAME, STRUCTURE_VERSION)):
        if name in wb.defined_names:
            del wb.defined_names[name]
        wb.defined_names[name] = DefinedName(name, attr_text=_q(value), hidden=True)


def county_measures(county: str, plan: Plan) -> list:
    """The measures whose text names the county (e.g. 寿县: 二（五）-2 国家电子商务进农村综合示范, 二（五）-3
    出村进城 pilot), other than those assigned to 各县区人民政府 (every county workbook lists those)."""
    return [m for m in plan.measures if county in m.text and not m.role_of(COUNTY_UNIT)]


def _write_county_sheets(wb, county: str, plan: Plan, on, due) -> None:
    """(Re)write everything that depends on the county except the input sheets' data validation."""
    small = {
        SHEET_README: lambda ws: _write_readme(ws, county, plan, on, due),
        SHEET_TARGETS: lambda ws: _write_targets(ws, county, plan, on),
        SHEET_TASKS: lambda ws: write_task_sheet(
            ws, COUNTY_UNIT, plan, on=on, due=due, filler=f"{county}人民政府", heading=f"{county}{plan.meta['title']}任务落实情况表",
            named=(f"方案点名{county}的工作措施（由牵头单位负责，{county}做好落实）", county_measures(county, plan)),
        ),
        SHEET_SUMMARY: lambda ws: _write_summary(ws, county, plan, on),
    }
    for name in sorted(small, key=COUNTY_SHEETS.index):  # in tab order, so each lands at its index
        write = small[name]
        index = COUNTY_SHEETS.index(name)
        if name in wb.sheetnames:
            wb.remove(wb[name])
        write(wb.create_sheet(name, index))
    for t in TABLES:
        wb[t.sheet]["A2"].value = _input_subtitle(county)
        _write_award_formulas(wb[t.sheet], t, county, on, plan)
    _set_marker(wb, county)
    pin_properties(wb, f"{county}农村电商提质增效工作报表")
    wb.active = 0


def county_workbook(county: str, plan: Plan | None = None, *, on=None, due=None) -> Workbook:
    """The workbook one county fills in, as an openpyxl Workbook."""
    plan = plan or load_plan()
    county = _check_county(county, plan)
    wb = Workbook()
    wb.remove(wb.active)
    for t in TABLES:
        ws = wb.create_sheet(t.sheet)
        sheets.write_input_table(ws, t, [county], subtitle=_input_subtitle(county), on=on)
    _write_county_sheets(wb, county, plan, on, due)
    return wb


def _retarget(wb, old: str, new: str, plan: Plan, on, due) -> None:
    """Turn the workbook of county ``old`` into that of ``new`` without rebuilding the input sheets
    (writing them is most of the cost).  Tests check the result equals county_workbook(new) byte
    for byte."""
    for t in TABLES:
        ws = wb[t.sheet]
        hits = [dv for dv in ws.data_validations.dataValidation if dv.type == "list" and dv.formula1 == _q(old)]
        if len(hits) != 1:
            raise AssertionError(f"{t.sheet}: expected one county list validation for {old}, found {len(hits)}")
        hits[0].formula1 = _q(new)
    _write_county_sheets(wb, new, plan, on, due)


def make_county_workbooks(out_dir, plan: Plan | None = None, on=None, *, due=None, counties=None, progress: Progress | None = None,
                          ledger=None, workbook=None, db: str | None = None) -> list[Path]:
    """Write ``<out_dir>/县区工作簿/<县区>.xlsx`` for every county of the annex; returns the paths.

    With a ledger (``ledger``, or opened beside the city ``workbook`` / at ``db``) every file is
    recorded as issued and carries its issue token (:func:`set_token`); without one the files have
    no token (collect accepts such files only while the ledger has no issue record at all)."""
    plan = plan or load_plan()
    names = [_check_county(c, plan) for c in (counties or plan.counties)]
    folder = Path(out_dir) / SUBDIR
    paths = [folder / f"{c}.xlsx" for c in names]
    for p in paths:
        check_not_open(p)
    own = None
    if ledger is None and (workbook is not None or db):
        from xl_ecom.ledger import open_ledger

        ledger = own = open_ledger(workbook, db)
    try:
        wb = None
        previous: str | None = None
        for i, (county, path) in enumerate(zip(names, paths), start=1):
            if progress:
                progress(county, i, len(names))
            if wb is None:
                wb = county_workbook(county, plan, on=on, due=due)
            else:
                assert previous is not None  # the first county made the workbook
                _retarget(wb, previous, county, plan, on, due)
            set_token(wb, None)  # the previous county's
            issue_workbook(wb, path, ledger, county, ISSUE_KIND)
            previous = county
    finally:
        if own is not None:
            own.close()
    return paths


# --- command line ---------------------------------------------------------------------------------------

def make_for_cli(args):
    """make_county_workbooks with the ledger the command line names: ``--db``, else beside ``--workbook``."""
    workbook, db = getattr(args, "workbook", None), getattr(args, "db", None)

    def make(folder, **kwargs):
        return make_county_workbooks(folder, workbook=workbook, db=db, **kwargs)

    return make


def run_cli(args, stdout=None, stderr=None) -> int:
    return run_export_cli(args, make_for_cli(args), "县区工作簿", SUBDIR, stdout, stderr)


def add_cli(subparsers):
    parser = subparsers.add_parser(
        "counties",
        help="生成县区工作簿：每个县区一个 .xlsx",
        description=f"为目标任务分解表中的每个县区生成填报工作簿，写入输出文件夹的“{SUBDIR}”子文件夹。",
    )
    _add_common(parser)
    parser.add_argument(
        "--db", metavar="URL",
        help="台账数据库（如 postgresql://用户:密码@主机/库名）；默认为 --workbook 旁的“<工作簿名>.台账.sqlite”。"
        "指定 --workbook 或 --db 时，每个县区工作簿都登记为已下发并带下发凭证，汇总时据此核对县区",
    )
    parser.set_defaults(func=run_cli)
    return parser
