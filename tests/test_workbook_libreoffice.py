"""The built 目标任务分解表.xlsm opened, recalculated and printed by LibreOffice headless.

- Every native formula compiled from the plan agrees with xl_ecom.rules.engine over a table of cases
  (threshold −0.01 / exactly / +0.01, cap edges, half cents, rates, choices, blanks, errors,
  cumulative sequences, and seeded random amounts), written to a separate .xlsx with the same
  compiled formulas the workbook uses;
- the worked examples on 奖补测算 (read from the recalculated workbook itself) agree with the engine;
- the annex 合计 / 核对 rows compute (示范村 14 vs 正文 15以上 is flagged 不足), and 完成率 / 差额
  compute once 完成数 is filled;
- the workbook renders to PDF, every sheet with its title and page numbers.

LibreOffice is run twice in all (one batch recalculation, one PDF).  These tests FAIL, never skip,
when LibreOffice is missing.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from openpyxl.utils import get_column_letter

from xl_ecom.common.errors import InputError
from xl_ecom.policy import load_plan
from xl_ecom.rules import engine, formulas
from xl_ecom.rules.model import Rate, Tiers
from xl_ecom.workflows import build, layout
from xl_ecom.workflows.tables import TABLES

from libreoffice import cached_disagreements, convert, formula_results

ON = build.POLICY_DATE
INPUT_COLS = 4  # D..G
FIRST_CASE_ROW = 2


# ---------------------------------------------------------------------------
# The table of cases
# ---------------------------------------------------------------------------


def _random_cases(rule_id: str, rng: random.Random, n: int = 20) -> list[build.Case]:
    """Seeded random inputs around each rule's thresholds and caps (2 and 3 decimals)."""
    plan = load_plan()
    rule = plan.rules[rule_id]
    res = engine.resolve(rule_id, on=ON)
    scale = []
    for body in res.variants.values():
        for c in body.conditions:
            scale.append(int(c.threshold))
        if isinstance(body.amount, Tiers):
            scale += [int(t.threshold) for t in body.amount.tiers]
        if body.limit is not None and isinstance(body.amount, Rate):
            scale.append(int(Decimal(body.limit.cents) / body.amount.rate))
    top = max(scale + [10_000_000])  # cents
    cases = []
    for k in range(n):
        args = []
        for spec in rule.inputs:
            if spec.kind == "money":
                if spec.optional and rng.random() < 0.3:
                    args.append(None)
                    continue
                cents = rng.randint(0, int(top * 1.3))
                value = Decimal(cents) / 100
                if k % 4 == 3:  # a third decimal, as a clerk might type
                    value = value + Decimal(rng.choice((1, 4, 5, 6, 9))) / 1000
                args.append(value)
            elif spec.kind == "count":
                args.append(rng.randint(0, 120))
            elif spec.kind == "years":
                args.append(Decimal(rng.randint(0, 10)) / 2)
            elif spec.kind == "rate":
                ceiling = next(iter(res.variants.values())).amount.rate
                args.append(None if rng.random() < 0.5 else (ceiling * Decimal(rng.randint(0, 100)) / 100))
            elif spec.kind == "choice":
                args.append(rng.choice(list(spec.choices) + [None]) or None)
            else:
                args.append(None)
        cases.append(build.Case(rule_id, f"随机{k + 1}", tuple(args)))
    return cases


def case_table() -> list[build.Case]:
    plan = load_plan()
    rng = random.Random(20201231)
    cases = []
    for rule_id in plan.rules:
        cases += build.rule_cases(rule_id)
        cases += _random_cases(rule_id, rng)
    return cases


def _cell_value(spec, value):
    if value is None:
        return None
    if spec.kind in ("money", "rate", "years"):
        return float(value)
    return value


def write_cases_workbook(path: Path, cases: list[build.Case]) -> list[tuple[build.Case, int, int]]:
    """One row per evaluation: A rule, B label, C group, D..G inputs, H native formula.

    Returns (case, row index within the case's sequence, sheet row) for every row."""
    plan = load_plan()
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "cases"
    ws.append(["rule", "label", "group", "in1", "in2", "in3", "in4", "native"])
    placed = []
    r = FIRST_CASE_ROW
    for group, case in enumerate(cases, start=1):
        rule = plan.rules[case.rule]
        rows = case.args if case.sequence else (case.args,)
        for k, args in enumerate(rows):
            ws.cell(row=r, column=1, value=case.rule)
            ws.cell(row=r, column=2, value=case.label)
            ws.cell(row=r, column=3, value=group)
            refs = {}
            for i, spec in enumerate(rule.inputs):
                col = 4 + i
                ws.cell(row=r, column=col, value=_cell_value(spec, args[i]))
                refs[spec.name] = f"{get_column_letter(col)}{r}"
            prior = None
            if rule.cumulative:
                # what earlier rows of the same group were paid: the workbook's own SUMIFS form
                prior = "0" if r == FIRST_CASE_ROW else f"SUMIFS(H${FIRST_CASE_ROW}:H{r - 1},C${FIRST_CASE_ROW}:C{r - 1},C{r})"
            ws.cell(row=r, column=8, value=formulas.compile_rule(case.rule, refs, on=ON, prior_paid=prior))
            placed.append((case, k, r))
            r += 1
    wb.save(path)
    return placed


def expected(case: build.Case) -> list:
    """Engine result per row: cents (int), None for blank, InputError for refused input."""
    if case.sequence:
        return list(engine.calculate_sequence(case.rule, case.args, on=ON))
    try:
        return [engine.calculate_cents(case.rule, *case.args, on=ON)]
    except InputError as exc:
        return [exc]


# ---------------------------------------------------------------------------
# One LibreOffice batch for everything
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lo")
    src = tmp / "in"
    src.mkdir()
    book = src / layout.WORKBOOK_NAME
    book.write_bytes(build.build_bytes())

    cases = case_table()
    cases_path = src / "cases.xlsx"
    placed = write_cases_workbook(cases_path, cases)

    # the workbook with 完成数 filled in, as refresh would (same sheets, no VBA needed)
    filled = build.build_openpyxl()
    annex = filled[layout.SHEET_ANNEX]
    first, total, check = layout.annex_rows(len(load_plan().counties))
    done = {}
    for k, county in enumerate(load_plan().counties):
        for i, col in enumerate(load_plan().annex_columns):
            value = (k + i) % 3  # 0, 1, 2: a mix of short, on and over target
            annex.cell(row=first + k, column=layout.annex_col(i, "完成数"), value=value)
            done[(county, col["key"])] = value
    input_rows = fill_input_tables(filled)
    filled_path = src / "annex_filled.xlsx"
    filled.save(filled_path)

    # the same data kept through a rebuild (build/run on a filled workbook): written by the builder,
    # so its formula cells carry the engine's values as cached results
    kept_path = src / "kept.xlsm"
    floats = {k: [{c: float(v) if isinstance(v, Decimal) else v for c, v in row.items()} for row in rows]
              for k, rows in input_rows.items()}
    kept_path.write_bytes(build.build_bytes(kept=build.KeptData(table_rows=floats, annex_done=done)))

    out = tmp / "out"
    recalculated = convert([book, cases_path, filled_path, kept_path], out, "xlsx")
    pdf = convert([book], tmp / "pdf", "pdf")[0]
    return {
        "book": openpyxl.load_workbook(recalculated[0], data_only=True),
        "book_formulas": openpyxl.load_workbook(book, keep_vba=False),
        "cases": openpyxl.load_workbook(recalculated[1], data_only=True)["cases"],
        "placed": placed,
        "filled": openpyxl.load_workbook(recalculated[2], data_only=True),
        "done": done,
        "book_path": book,
        "kept_path": kept_path,
        "kept": openpyxl.load_workbook(recalculated[3], data_only=True),
        "input_rows": input_rows,
        "pdf": pdf,
    }


def fill_input_tables(wb) -> dict[str, list[dict]]:
    """Type rows into every input table of the city workbook: each award column's rule gets its
    boundary cases (those that only use the inputs the table has).  Returns table key -> rows."""
    plan = load_plan()
    filled: dict[str, list[dict]] = {}
    for table in TABLES:
        if not table.awards:
            continue
        per_award = []
        for award in table.awards:
            rule = plan.rules[award.rule]
            usable = []
            for case in build.rule_cases(award.rule):
                if case.error:
                    continue
                # a cumulative cap: the sequence that reaches it, twice, over two counties
                for args in (case.args + case.args if case.sequence else (case.args,)):
                    values = dict(zip(rule.input_names, args))
                    if any(values[n] is not None for n in rule.input_names if n not in award.inputs):
                        continue
                    usable.append({award.inputs[n]: values[n] for n in award.inputs})
            per_award.append(usable)
        rows = []
        for i in range(max(len(u) for u in per_award)):
            spread = 2 if any(a.cumulative_by for a in table.awards) else 3
            row = {"county": plan.counties[i % spread]}  # several counties: cumulative caps group by county
            for c in table.columns:
                if c.kind == "text":
                    row[c.key] = f"{c.header}{i + 1}"
            for usable in per_award:
                if usable:
                    row.update(usable[i % len(usable)])
            rows.append(row)
        ws = wb[table.sheet]
        for i, row in enumerate(rows):
            for c, col in enumerate(table.columns, start=1):
                value = row.get(col.key)
                ws.cell(row=layout.INPUT_FIRST_ROW + i, column=c, value=float(value) if isinstance(value, Decimal) else value)
        filled[table.key] = rows
    return filled


def _blank(value) -> bool:
    return value is None or value == ""


def _check(native, want, what: str) -> str | None:
    if isinstance(want, InputError):
        if isinstance(native, str) and native.strip():
            return None
        return f"{what}: engine refuses ({want}), native gave {native!r}"
    if want is None:
        return None if _blank(native) else f"{what}: engine blank, native {native!r}"
    if not isinstance(native, (int, float)) or isinstance(native, bool):
        return f"{what}: engine {Decimal(want) / 100} 元, native {native!r}"
    if abs(native * 100 - want) > 1e-6:
        return f"{what}: engine {Decimal(want) / 100} 元, native {native!r}"
    return None


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


def test_native_formulas_agree_with_the_engine_over_the_case_table(lo):
    ws = lo["cases"]
    problems = []
    by_case: dict[int, list] = {}
    for case, k, r in lo["placed"]:
        want = by_case.setdefault(id(case), expected(case))[k]
        native = ws.cell(row=r, column=8).value
        problem = _check(native, want, f"{case.rule} {case.label} row {k + 1} args={case.args}")
        if problem:
            problems.append(problem)
    assert not problems, f"{len(problems)} of {len(lo['placed'])} disagree:\n" + "\n".join(problems[:30])
    assert len(lo["placed"]) > 300


def test_case_table_covers_every_threshold_and_cap_edge():
    """The table holds threshold −0.01, threshold, +0.01 for every condition and tier, the cap
    edge ±0.01 for every capped rate, and a refused input for every rate or choice input."""
    plan = load_plan()
    cases = case_table()
    missing = []
    for rule_id, rule in plan.rules.items():
        mine = [c for c in cases if c.rule == rule_id and not c.sequence]
        names = rule.input_names
        values = {n: {c.args[i] for c in mine if c.args[i] is not None} for i, n in enumerate(names)}
        res = engine.resolve(rule_id, on=ON)
        for variant, body in res.variants.items():
            edges = [(c.input, c.threshold) for c in body.conditions]
            if isinstance(body.amount, Tiers):
                edges += [(body.amount.basis, t.threshold) for t in body.amount.tiers]
            for name, t in edges:
                kind = rule.input(name).kind
                centre = Decimal(t) / 100 if kind == "money" else Decimal(t)
                step = Decimal("0.01") if kind == "money" else None
                wanted = [centre] + ([centre - step, centre + step] if step else [])
                for w in wanted:
                    if not any(Decimal(str(v)) == w for v in values[name]):
                        missing.append(f"{rule_id}/{variant} {name}={w}")
            if body.limit is not None and isinstance(body.amount, Rate) and not body.cumulative:
                edge = Decimal(body.limit.cents) / body.amount.rate / 100
                basis = body.amount.basis[0]
                for w in (edge, edge + Decimal("0.01")):
                    if not any(Decimal(str(v)) == w for v in values[basis]):
                        missing.append(f"{rule_id}/{variant} cap edge {basis}={w}")
        if any(s.kind in ("rate", "choice") for s in rule.inputs):
            if not any(c.error for c in mine):
                missing.append(f"{rule_id}: no refused rate/choice case")
        if rule.cumulative and not any(c.sequence and c.rule == rule_id for c in cases):
            missing.append(f"{rule_id}: no cumulative sequence")
    assert not missing, missing


def test_worked_examples_on_the_sheet_agree_with_the_engine(lo):
    plan = load_plan()
    values = lo["book"][layout.SHEET_EXAMPLES]
    formulas_ws = lo["book_formulas"][layout.SHEET_EXAMPLES]
    seen = set()
    problems = []
    sequences: dict[tuple[str, int], list] = {}
    for r in range(4, formulas_ws.max_row + 1):
        udf = formulas_ws.cell(row=r, column=build.COL_UDF).value
        if not (isinstance(udf, str) and udf.startswith("=")):
            continue
        rule_id = udf[1:].split("(")[0]
        if rule_id == "INDEX":
            rule_id = udf[len("=INDEX("):].split("(")[0]
        rule = plan.rules[rule_id]
        seen.add(rule_id)
        args = [values.cell(row=r, column=2 + i).value for i in range(len(rule.inputs))]
        native = values.cell(row=r, column=build.COL_NATIVE).value
        if udf.startswith("=INDEX("):
            start = int(udf.split("$")[1].split(":")[0])
            rows = sequences.setdefault((rule_id, start), [])
            rows.append(args)
            want = engine.calculate_sequence(rule_id, rows, on=ON)[-1]
        else:
            want = engine.calculate_cents(rule_id, *args, on=ON)
        problem = _check(native, want, f"奖补测算 row {r} {rule_id}{tuple(args)}")
        if problem:
            problems.append(problem)
        # without Python (LibreOffice, WPS) the check cell says so instead of a false 一致/不一致
        assert values.cell(row=r, column=build.COL_AGREE).value == "未启用Python"
        assert formulas_ws.cell(row=r, column=build.COL_TEXT).value == udf
    assert not problems, "\n".join(problems)
    assert seen == set(plan.rules)


def test_annex_totals_and_checks_compute(lo):
    plan = load_plan()
    ws = lo["book"][layout.SHEET_ANNEX]
    first, total, check = layout.annex_rows(len(plan.counties))
    flags = {}
    for i, col in enumerate(plan.annex_columns):
        t = layout.annex_col(i, "目标任务数")
        want = sum(plan.annex_value(c, col["key"]) for c in plan.counties)
        assert ws.cell(row=total, column=t).value == want
        flags[col["key"]] = ws.cell(row=check, column=t).value
        detail = ws.cell(row=check, column=t + 1).value
        assert f"分解合计{want}" in detail and str(plan.target(col["target"]).value) in detail
        # 完成数 is empty: 完成率 and 差额 show blank, the 合计 of 完成数 too
        for r in list(range(first, first + len(plan.counties))) + [total]:
            for field in ("完成数", "完成率", "差额"):
                assert _blank(ws.cell(row=r, column=layout.annex_col(i, field)).value), (r, field)
    assert ws.cell(row=total, column=layout.annex_col(1, "目标任务数")).value == 14
    assert flags == {"demo_towns": "符合", "demo_villages": "不足", "uplink_enterprises": "符合"}


def test_annex_completion_formulas_once_actuals_are_filled(lo):
    plan = load_plan()
    ws = lo["filled"][layout.SHEET_ANNEX]
    first, total, _ = layout.annex_rows(len(plan.counties))
    for i, col in enumerate(plan.annex_columns):
        sum_done = 0
        for k, county in enumerate(plan.counties):
            r = first + k
            target = plan.annex_value(county, col["key"])
            done = lo["done"][(county, col["key"])]
            sum_done += done
            assert ws.cell(row=r, column=layout.annex_col(i, "完成率")).value == pytest.approx(done / target)
            assert ws.cell(row=r, column=layout.annex_col(i, "差额")).value == target - done
        sum_target = sum(plan.annex_value(c, col["key"]) for c in plan.counties)
        assert ws.cell(row=total, column=layout.annex_col(i, "完成数")).value == sum_done
        assert ws.cell(row=total, column=layout.annex_col(i, "完成率")).value == pytest.approx(sum_done / sum_target)
        assert ws.cell(row=total, column=layout.annex_col(i, "差额")).value == sum_target - sum_done


def test_input_table_award_columns_agree_with_the_engine(lo):
    """The award columns of the city workbook's own input tables (native formulas written by
    sheets.write_input_table), with cumulative caps summed per county in row order."""
    plan = load_plan()
    problems = []
    checked = 0
    for table in TABLES:
        rows = lo["input_rows"].get(table.key)
        if not rows:
            continue
        ws = lo["filled"][table.sheet]
        for j, award in enumerate(table.awards):
            rule = plan.rules[award.rule]
            paid: dict[str, int] = {}
            for i, row in enumerate(rows):
                args = [row.get(award.inputs[n]) if n in award.inputs else None for n in rule.input_names]
                prior = paid.get(row["county"], 0) if award.cumulative_by else 0
                want = engine.calculate_cents(award.rule, *args, on=ON, paid_before=prior)
                if award.cumulative_by and want:
                    paid[row["county"]] = prior + want
                native = ws.cell(row=layout.INPUT_FIRST_ROW + i, column=len(table.columns) + 1 + j).value
                problem = _check(native, want, f"{table.sheet} row {layout.INPUT_FIRST_ROW + i} {award.header} {args}")
                if problem:
                    problems.append(problem)
                checked += 1
            # rows nobody typed stay blank
            after = ws.cell(row=layout.INPUT_FIRST_ROW + len(rows), column=len(table.columns) + 1 + j).value
            assert _blank(after), (table.sheet, award.header, after)
    assert not problems, "\n".join(problems[:30])
    assert checked > 50


def _python_cells(sheet: str, ref: str) -> bool:
    """The UDF and 核对 cells of 奖补测算: LibreOffice has no Python (they show #NAME? / 未启用Python)."""
    col = ref.rstrip("0123456789")
    return sheet == layout.SHEET_EXAMPLES and col in (get_column_letter(build.COL_UDF), get_column_letter(build.COL_AGREE))


@pytest.mark.parametrize("which", ["book", "kept"])
def test_every_formula_carries_the_value_libreoffice_computes(lo, which):
    """#11: a previewer that does not recalculate (a mail client, a phone) shows what Excel would.
    Every formula cell of the built workbook — and of one rebuilt with input rows and 完成数 kept —
    carries a cached result, and it is the value LibreOffice computes on recalculating."""
    path = lo[f"{which}_path"]
    ours = formula_results(path)
    missing = [k for k, v in ours.items() if v == "(no value)"]
    assert len(ours) > 2000 and not missing, missing[:10]
    bad = cached_disagreements(path, lo[which], skip=_python_cells)
    assert not bad, bad[:20]
    # with Python, the UDF gives the engine's value: the same as its native twin, so 核对 says 一致
    for (sheet, ref), value in ours.items():
        if sheet == layout.SHEET_EXAMPLES and ref.startswith(get_column_letter(build.COL_UDF)):
            row = ref[len(get_column_letter(build.COL_UDF)):]
            assert value == ours[(sheet, get_column_letter(build.COL_NATIVE) + row)], ref
            assert ours[(sheet, get_column_letter(build.COL_AGREE) + row)] == "一致", ref
    if which == "kept":  # the rows kept are computed, not left blank
        amounts = [v for (sheet, _), v in ours.items() if sheet in {t.sheet for t in TABLES} and isinstance(v, float)]
        assert sum(1 for v in amounts if v > 0) > 50


def test_workbook_renders_to_pdf_with_every_sheet(lo):
    pdf = lo["pdf"]
    assert pdf.stat().st_size > 10_000
    exe = shutil.which("pdfinfo")
    assert exe, "poppler-utils (pdfinfo, pdftotext) is not installed: apt-get install -y poppler-utils"
    info = subprocess.run([exe, str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    # every sheet prints at least one page; the input tables several (200 prepared rows each)
    assert pages >= len(build.sheet_names()) + len(TABLES)
    text = subprocess.run([shutil.which("pdftotext"), str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    compact = re.sub(r"\s+", "", text)  # wrapped cells break lines anywhere
    for heading in ["工作簿说明", "目标任务分解表", "任务清单", "奖补测算", *[t.title for t in TABLES], "通讯录", "Interpreter_Win"]:
        assert heading in compact, heading
    assert "第 1 页" in text and f"共 {pages} 页" in text
    assert "单位：元" in compact and "单位：个" in compact
    # the printed annex shows the flagged check with its figures
    assert "不足" in compact and "分解合计14个" in compact
