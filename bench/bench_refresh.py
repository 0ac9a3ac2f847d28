"""Benchmark: 刷新 (xl-ecom refresh) on the real city workbook with 8 counties × 10,000 input rows.

The workbook is built with xl_ecom.workflows.build; 80,000 rows (10,000 per county) are spread over the
nine input tables and typed in with openpyxl (setup, not timed).  Then the CLI implementation
(refresh.refresh_workbook: open the .xlsm, read the tables, check every value, compute with the
vectorised engine, write the generated sheets, save keeping the VBA project and ribbon, atomic
replace with backup) is timed end to end, and its phases from the progress callback.

Target: ≤ 5 s.  Run: python bench/bench_refresh.py [--rows-per-county N] [--repeat K]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openpyxl

from xl_ecom.workflows import layout, refresh, sheets
from xl_ecom.policy import load_plan
from xl_ecom.workflows.tables import TABLES

TARGET_SECONDS = 5.0

# share of the rows each table gets (sales and promotions are the long ones in practice)
WEIGHTS = {
    "T_SALES": 0.30, "T_LINKAGE": 0.10, "T_EXPO": 0.08, "T_PROMO": 0.14, "T_TRAINING": 0.08,
    "T_FACILITY": 0.08, "T_POOR_SITE": 0.10, "T_PURCHASE": 0.08, "T_DEMO": 0.04,
}


def _money(rng, n, scale):
    v = np.round(rng.lognormal(np.log(scale), 1.0, n), 2)
    v[rng.random(n) < 0.1] = np.nan  # some optional amounts left blank
    return v


def rows_for(table, county_of, rng):
    n = len(county_of)
    cols = {}
    for col in table.columns:
        if col.kind == "county":
            cols[col.key] = county_of
        elif col.kind == "text":
            cols[col.key] = np.array([f"{col.header[:2]}{i}" for i in range(n)], dtype=object)
        elif col.kind == "money":
            cols[col.key] = _money(rng, n, 3_000_000 if "sales" in col.key or "retail" in col.key else 200_000)
        elif col.kind == "count":
            cols[col.key] = rng.integers(10, 200, n)
        elif col.kind == "years":
            cols[col.key] = rng.choice([1, 1.5, 2, 3, 5], n)
        elif col.kind == "choice":
            cols[col.key] = rng.choice(list(col.choices), n)
        elif col.kind == "date":
            cols[col.key] = [dt.datetime(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 360, n)]
    out = []
    for i in range(n):
        row = {}
        for k, arr in cols.items():
            v = arr[i]
            if isinstance(v, float) and np.isnan(v):
                v = None
            elif isinstance(v, np.generic):
                v = v.item()
            row[k] = v
        out.append(row)
    return out


def make_workbook(path: Path, per_county: int, seed: int = 7) -> int:
    from xl_ecom.workflows import build
    from xl_ecom.workflows.collect import save_city_workbook

    plan = load_plan()
    rng = np.random.default_rng(seed)
    original = build.build_bytes()
    wb = openpyxl.load_workbook(io.BytesIO(original), keep_vba=True)
    total = 0
    for t in TABLES:
        n_per = max(1, int(round(per_county * WEIGHTS[t.key])))
        county_of = np.repeat(np.array(plan.counties, dtype=object), n_per)
        rng.shuffle(county_of)
        rows = rows_for(t, county_of, rng)
        ws = wb[t.sheet]
        keys = [c.key for c in t.columns]
        for i, row in enumerate(rows):
            r = layout.INPUT_FIRST_ROW + i
            for c, k in enumerate(keys, start=1):
                v = row[k]
                if v is not None:
                    ws.cell(row=r, column=c, value=v)
            # every row carries its native award formulas, as in a workbook filled by collect
            for j, award in enumerate(t.awards, start=len(keys) + 1):
                ws.cell(row=r, column=j, value=sheets.award_formula(t, award, r, layout.INPUT_FIRST_ROW))
        total += len(rows)
    data, _ = save_city_workbook(wb, path, original)
    path.write_bytes(data)
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows-per-county", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / layout.WORKBOOK_NAME
        t0 = time.perf_counter()
        n = make_workbook(path, args.rows_per_county)
        print(f"setup: {n} input rows ({args.rows_per_county} per county × 8) typed into {path.name} "
              f"({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s (not timed)")
        times = []
        for k in range(args.repeat):
            marks = []
            start = time.perf_counter()
            report = refresh.refresh_workbook(path, backup=False, progress=lambda m: marks.append((time.perf_counter(), m)))
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            phases = {}
            prev_t, prev_m = start, "开始"
            for t, m in marks + [(start + elapsed, "完成")]:
                key = prev_m.split("“")[0].rstrip("……")
                phases[key] = phases.get(key, 0.0) + (t - prev_t)
                prev_t, prev_m = t, m
            shown = "，".join(f"{k} {v:.2f}s" for k, v in phases.items() if v >= 0.01)
            print(f"run {k + 1}: {elapsed:.2f} s — {shown}")
        r = report.result
        print(f"rows read: {sum(r.rows_read.values())}; awards paid: {sum(c for c, _ in r.by_rule.values())}; "
              f"total {r.total_cents / 100:,.2f} 元")
        best, median = min(times), statistics.median(times)
        print(f"refresh, 8 counties × {args.rows_per_county} rows: best {best:.2f} s, median {median:.2f} s; "
              f"target ≤ {TARGET_SECONDS:.0f} s → ratio {median / TARGET_SECONDS:.2f} of target "
              f"({'met' if median <= TARGET_SECONDS else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
