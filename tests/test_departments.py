"""Department task sheets: one file per unit, exactly its measures, rule figures from the plan data.

Expected sets and figures are read from plan.yaml directly here (not through xl_ecom.policy), so a
mistake in the plan loader or the sheet writer cannot hide behind itself.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from openpyxl import Workbook, load_workbook

from xl_ecom.common.errors import InputError, XlEcomError
from xl_ecom.policy import PLAN_PATH, parse_plan
from xl_ecom.workflows import departments

RAW = yaml.safe_load(PLAN_PATH.read_text(encoding="utf-8"))
ON = dt.date(2020, 12, 31)
MEASURE_IDS = {m["id"] for t in RAW["tasks"] for m in t["measures"]}


def yaml_units() -> dict[str, str]:
    """file stem -> full unit name, from the YAML."""
    return {(d.get("short") or d["name"]): d["name"] for d in RAW["departments"]}


def yaml_measures(unit: str) -> dict[str, dict]:
    out = {}
    for task in RAW["tasks"]:
        for m in task["measures"]:
            if m["lead"] == unit or unit in (m.get("cooperating") or []):
                out[m["id"]] = m
    return out


def yaml_general_targets(unit: str) -> set[str]:
    """Texts of targets without a measure that name the unit."""
    out = set()
    for t in RAW["targets"]:
        deps = t.get("departments")
        if t.get("measure") or not deps:
            continue
        if deps["lead"] == unit or unit in (deps.get("cooperating") or []):
            out.add(t["text"])
    return out


def yaml_param(param: dict, on: dt.date = ON):
    chosen = None
    for since, value in sorted(param["values"].items()):
        if since <= on:
            chosen = value
    return chosen


def yaml_figures(rule: dict, on: dt.date = ON) -> list[float]:
    """Every number of a rule as of ``on``: thresholds, rates, fixed amounts, tiers, unit amounts, caps."""
    bodies = list(rule["variants"].values()) if "variants" in rule else [rule["body"]]
    out = []
    for body in bodies:
        for c in body.get("conditions", []) or []:
            out.append(yaml_param(c["threshold"], on))
        a = body["amount"]
        if a["type"] == "rate":
            out.append(yaml_param(a["rate"], on))
        elif a["type"] == "factor":
            out.append(yaml_param(a["factor"], on))
        elif a["type"] == "fixed":
            out.append(yaml_param(a["amount"], on))
        elif a["type"] == "tiers":
            for t in a["tiers"]:
                out += [yaml_param(t["threshold"], on), yaml_param(t["amount"], on)]
        elif a["type"] == "per_unit":
            out += [yaml_param(u["amount"], on) for u in a["units"]]
        if body.get("cap"):
            out.append(yaml_param(body["cap"], on))
    return sorted(float(x) for x in out)


def yaml_figures_by_kind(rule: dict, on: dt.date = ON):
    """(rates, money amounts, other numbers) of a rule as of ``on``."""
    kinds = {i["name"]: i["kind"] for i in rule["inputs"]}
    bodies = list(rule["variants"].values()) if "variants" in rule else [rule["body"]]
    rates, money, other = [], [], []
    for body in bodies:
        for c in body.get("conditions", []) or []:
            (money if kinds[c["input"]] == "money" else other).append(yaml_param(c["threshold"], on))
        a = body["amount"]
        if a["type"] == "rate":
            rates.append(yaml_param(a["rate"], on))
        elif a["type"] == "factor":
            rates.append(yaml_param(a["factor"], on))
        elif a["type"] == "fixed":
            money.append(yaml_param(a["amount"], on))
        elif a["type"] == "tiers":
            for t in a["tiers"]:
                money += [yaml_param(t["threshold"], on), yaml_param(t["amount"], on)]
        elif a["type"] == "per_unit":
            money += [yaml_param(u["amount"], on) for u in a["units"]]
        if body.get("cap"):
            money.append(yaml_param(body["cap"], on))
    return rates, money, other


def rules_of_measure(mid: str) -> dict[str, dict]:
    return {rid: r for rid, r in RAW["rules"].items() if r["measure"] == mid}


def money_words(value) -> str:
    value = float(value)
    return f"{int(value):,}元" if value == int(value) else f"{value:,.2f}元"


def task_rows(ws):
    """Item rows of the task list (those with a 序号), as lists of 12 values."""
    rows = []
    for row in ws.iter_rows(min_row=departments.TASK_FIRST_ROW, max_col=len(departments.TASK_COLUMNS), values_only=True):
        if isinstance(row[0], int):
            rows.append(list(row))
    return rows


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("deps")
    paths = departments.make_department_sheets(out, on=ON)
    return out, paths


def test_one_file_per_unit_named_after_it(generated):
    out, paths = generated
    assert {p.name for p in paths} == {f"{stem}.xlsx" for stem in yaml_units()}
    assert len(paths) == len(RAW["departments"]) == 17
    assert all(p.parent == out / "部门任务表" for p in paths)
    assert sorted(p.name for p in (out / "部门任务表").iterdir()) == sorted(p.name for p in paths)
    # the subfolder is the one mail looks in
    from xl_ecom.workflows.settings import DEPARTMENT_SUBDIR

    assert departments.SUBDIR == DEPARTMENT_SUBDIR


@pytest.mark.parametrize("stem", sorted(yaml_units()))
def test_each_file_holds_exactly_its_measures(generated, stem):
    out, _ = generated
    unit = yaml_units()[stem]
    wb = load_workbook(out / "部门任务表" / f"{stem}.xlsx")
    ws = wb[departments.TASK_SHEET]
    assert ws["A2"].value.startswith(f"填报单位：{unit}")
    rows = task_rows(ws)
    expected = yaml_measures(unit)
    measure_rows = [r for r in rows if r[1] in MEASURE_IDS]
    assert [r[1] for r in measure_rows] == list(expected), "its own measures, in plan order, each once"
    general = {r[2] for r in rows if r[1] not in MEASURE_IDS}
    assert general == yaml_general_targets(unit)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))
    for r in measure_rows:
        m = expected[r[1]]
        assert r[2] == m["text"]
        assert r[3] == ("牵头" if m["lead"] == unit else "配合")
        assert f"牵头：{m['lead']}" in r[4]
        for coop in m.get("cooperating") or []:
            assert coop in r[4]
        targets = [t["text"] for t in RAW["targets"] if t.get("measure") == r[1]]
        for text in targets:
            assert text in (r[5] or "")
        if not targets:
            assert not r[5]
        if m.get("deadline"):
            assert r[6].date() == m["deadline"]
        else:
            assert r[6] == departments.NO_DEADLINE
        rules = rules_of_measure(r[1])
        for rid, rule in rules.items():
            assert rule["name"] in r[7]
            rates, money, other = yaml_figures_by_kind(rule)
            for rate in rates:
                assert f"{rate * 100:g}%" in r[7], (rid, rate)
            for value in money:
                assert money_words(value) in r[7], (rid, value)
            for value in other:
                assert f"{value:g}" in r[7], (rid, value)
        if not rules:
            assert not r[7]
        assert r[8:12] == [None, None, None, None], "进展情况/完成时间/责任人/联系电话 are left for the unit"
    headers = [c.value for c in ws[departments.TASK_HEADER_ROW]][: len(departments.TASK_COLUMNS)]
    for h in ("条款", "目标任务", "完成时限", "奖补政策及标准", "进展情况", "完成时间", "责任人", "联系电话"):
        assert any(h in (x or "") for x in headers), h


def test_rule_figures_sheet_matches_plan_data(generated):
    """Every number of every rule a unit administers is listed, as a number, with its boundary word."""
    out, _ = generated
    for stem, unit in yaml_units().items():
        wb = load_workbook(out / "部门任务表" / f"{stem}.xlsx")
        expected_rules = {rid: r for mid in yaml_measures(unit) for rid, r in rules_of_measure(mid).items()}
        if not expected_rules:
            assert departments.RULES_SHEET not in wb.sheetnames, stem
            continue
        ws = wb[departments.RULES_SHEET]
        found: dict[str, list[float]] = {}
        words: dict[str, list[str]] = {}
        current = None
        for row in ws.iter_rows(min_row=4, max_col=len(departments.RULE_COLUMNS), values_only=True):
            if row[2]:
                current = row[2]
            if current is None or row[8] is None:
                continue
            found.setdefault(current, []).append(float(row[8]))
            words.setdefault(current, []).append(row[7] or "")
        by_name = {r["name"]: r for r in expected_rules.values()}
        assert set(found) == set(by_name), stem
        for name, rule in by_name.items():
            assert sorted(found[name]) == yaml_figures(rule), (stem, name)
            for body in (rule.get("variants") or {"": rule.get("body")}).values():
                for c in body.get("conditions") or []:
                    inclusive = c["word"] not in ("超", "超过", "不满", "以外")
                    assert f"“{c['word']}”{'含' if inclusive else '不含'}本数" in words[name], (name, c["word"])


def test_boundary_words_and_figures_in_words():
    text = departments.rule_summary("AWARD_UPLINK", on=ON)
    assert "10,000,000元（“超”不含本数）" in text
    assert "1%以内" in text and "最高1,000,000元" in text
    text = departments.rule_summary("SUBSIDY_PROMO", on=ON)
    assert "累计最高100,000元" in text
    text = departments.rule_summary("AWARD_LIVESTREAM", on=ON)
    assert "≥1,000,000元（“以上”含本数）的，给予100,000元" in text
    assert "≥500,000元（“达到”含本数）的，给予50,000元" in text


def test_figures_follow_a_revised_plan_by_policy_date():
    """Nothing is retyped: a dated revision in the plan data changes the sheet from that date on."""
    data = copy.deepcopy(RAW)
    data["rules"]["AWARD_UPLINK"]["body"]["cap"]["values"][dt.date(2021, 1, 1)] = 1500000
    plan = parse_plan(data)
    before = departments.department_workbook("市商务局", plan, on=dt.date(2020, 12, 31))
    after = departments.department_workbook("市商务局", plan, on=dt.date(2021, 6, 30))

    def uplink_cell(wb):
        rows = task_rows(wb[departments.TASK_SHEET])
        return next(r[7] for r in rows if r[1] == "二（一）-1")

    assert "最高1,000,000元" in uplink_cell(before) and "1,500,000元" not in uplink_cell(before)
    assert "最高1,500,000元" in uplink_cell(after)
    figures = [c.value for c in after[departments.RULES_SHEET]["I"] if isinstance(c.value, (int, float))]
    assert 1500000 in figures and 1000000 in figures  # the new uplink cap; other rules keep 100万


def test_short_name_and_unknown_unit(generated):
    out, _ = generated
    wb = load_workbook(out / "部门任务表" / "领导小组成员单位.xlsx")
    rows = task_rows(wb[departments.TASK_SHEET])
    assert [r[1] for r in rows] == ["三-2"]
    assert departments.department_workbook("领导小组成员单位")[departments.TASK_SHEET]["A2"].value.startswith(
        "填报单位：市加快电子商务发展工作领导小组成员单位"
    )
    with pytest.raises(InputError, match="市宣传部"):
        departments.department_workbook("市宣传部")


def test_official_layout(generated):
    out, _ = generated
    wb = load_workbook(out / "部门任务表" / "市商务局.xlsx")
    for ws in wb.worksheets:
        assert ws.page_setup.orientation == "landscape"
        assert int(ws.page_setup.paperSize) == 9  # A4
        assert ws.print_title_rows and ws.print_title_rows.replace("$", "") in ("3:3", "2:2")
        assert "&P" in ws.oddFooter.center.text and "&N" in ws.oddFooter.center.text
        assert ws["A1"].font.name == "宋体" and ws["A1"].font.b
    ws = wb[departments.TASK_SHEET]
    assert ws["A1"].value == "农村电商提质增效工作方案任务落实情况表"
    body = [c for row in ws.iter_rows(min_row=departments.TASK_FIRST_ROW) for c in row if isinstance(row[0].value, int)]
    assert body and {c.font.name for c in body} == {"仿宋"}


def test_no_macros_no_formulas_and_reproducible(generated, tmp_path):
    out, paths = generated
    again = departments.make_department_sheets(tmp_path, on=ON)
    for a, b in zip(paths, again):
        assert a.read_bytes() == b.read_bytes(), a.name
        with zipfile.ZipFile(a) as z:
            assert not any("vba" in n.lower() for n in z.namelist())
            assert b"macroEnabled" not in z.read("[Content_Types].xml")
            assert b"2020-01-01T00:00:00Z" in z.read("docProps/core.xml")
        wb = load_workbook(a)
        for ws in wb.worksheets:
            for row in ws.iter_rows(values_only=True):
                assert not any(isinstance(v, str) and v.startswith("=") for v in row)


def _parser():
    parser = argparse.ArgumentParser(prog="xl-ecom")
    sub = parser.add_subparsers()
    departments.add_cli(sub)
    return parser


def test_cli_out(tmp_path, capsys):
    args = _parser().parse_args(["departments", "--out", str(tmp_path / "o")])
    assert args.func(args) == 0
    assert len(list((tmp_path / "o" / "部门任务表").glob("*.xlsx"))) == 17
    assert "已生成部门任务表17个" in capsys.readouterr().out


def _settings_workbook(path: Path, **values) -> Path:
    from xl_ecom.workflows.settings import SETTINGS_HEADERS, SETTINGS_ROWS

    wb = Workbook()
    ws = wb.active
    ws.title = "设置"
    ws.append(list(SETTINGS_HEADERS))
    for key, default, note in SETTINGS_ROWS:
        ws.append([key, values.get(key, default), note])
    wb.save(path)
    return path


def test_cli_reads_settings_from_workbook(tmp_path, capsys):
    wb = _settings_workbook(tmp_path / "目标任务分解表.xlsx", 政策日期=dt.date(2021, 6, 30), 输出文件夹="下发", 报送截止日期=dt.date(2021, 1, 15))
    args = _parser().parse_args(["departments", "--workbook", str(wb)])
    assert args.func(args) == 0
    target = tmp_path / "下发" / "部门任务表" / "市财政局.xlsx"
    ws = load_workbook(target)[departments.TASK_SHEET]
    assert ws["A2"].value == "填报单位：市财政局　　报送截止日期：2021年1月15日"
    notes = [c.value for c in ws["A"] if isinstance(c.value, str) and c.value.startswith("说明")]
    assert notes and "政策日期2021年6月30日" in notes[0]


def test_cli_bad_settings_and_missing_workbook(tmp_path, capsys):
    wb = _settings_workbook(tmp_path / "wb.xlsx", 政策日期="下个月")
    args = _parser().parse_args(["departments", "--workbook", str(wb), "--out", str(tmp_path / "o")])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "下个月" in err and "政策日期" in err
    assert not (tmp_path / "o").exists()
    args = _parser().parse_args(["departments", "--workbook", str(tmp_path / "没有.xlsx")])
    assert args.func(args) == 2
    assert "没有.xlsx" in capsys.readouterr().err


def test_refuses_file_open_in_excel(tmp_path, capsys):
    folder = tmp_path / "部门任务表"
    folder.mkdir()
    (folder / "~$市商务局.xlsx").write_bytes(b"lock")
    with pytest.raises(XlEcomError, match="市商务局.xlsx"):
        departments.make_department_sheets(tmp_path)
    assert not (folder / "市财政局.xlsx").exists(), "nothing written when a target is locked"
    args = _parser().parse_args(["departments", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert "正在被 Excel 或 WPS 打开" in capsys.readouterr().err


def test_pdf_render_is_a4_landscape_with_page_numbers(generated, tmp_path):
    """LibreOffice prints the sheet: A4 landscape pages (the PNG was also looked at by eye)."""
    from libreoffice import convert

    out, _ = generated
    pdf = convert([out / "部门任务表" / "市商务局.xlsx"], tmp_path, "pdf")[0]
    data = pdf.read_bytes()
    boxes = re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert boxes
    for w, h in boxes:
        assert round(float(w)) == 842 and round(float(h)) == 595
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2
