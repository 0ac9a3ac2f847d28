"""Benchmark: 刷新 (xl-ecom refresh) on the real city workbook, 8 counties × N input rows, at two sizes.

The workbook is built with xl_ecom.workflows.build; the rows are spread over the nine input tables and
typed in with openpyxl (setup, not timed, in its own process; cached under the temp folder by size).
Then, in a fresh process per size, the CLI implementation (refresh.refresh_workbook: open the .xlsm,
read the tables, check every value, compute with the vectorised engine, write the generated sheets,
save keeping the VBA project and ribbon, atomic replace) is timed end to end, with its phases from the
progress callback, and the process's peak memory is read with resource.getrusage.

Targets, side by side in one run:
- refresh grows linearly: time(8 × 50,000 rows) / time(8 × 5,000 rows) ≤ 12 (10× the rows);
- peak memory of the refresh process < 500 MB at 8 × 50,000 rows;
- 8 × 10,000 rows ≤ 5 s (printed when 10000 is among --sizes).

Run: python bench/bench_refresh.py [--sizes 5000 50000] [--repeat K] [--fresh]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openpyxl

from xl_ecom.policy import load_plan
from xl_ecom.workflows import layout, refresh, sheets
from xl_ecom.workflows.tables import TABLES

TARGET_SECONDS = 5.0  # at 8 × 10,000 rows
TARGET_GROWTH = 12.0  # time ratio 8 × 50,000 vs 8 × 5,000 rows
TARGET_PEAK_MB = 500.0

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


def _cached(per_county: int, fresh: bool) -> Path:
    """The workbook with 8 × ``per_county`` rows, made in a child process (openpyxl's memory stays there)."""
    folder = Path(tempfile.gettempdir()) / "xl_ecom_bench_refresh"
    folder.mkdir(exist_ok=True)
    path = folder / f"{per_county}.xlsm"
    if fresh or not path.is_file():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--make", str(per_county), str(path)], check=True)
        print(f"setup: 8 × {per_county} rows typed into {path} ({path.stat().st_size / 1e6:.1f} MB) "
              f"in {time.perf_counter() - t0:.1f} s (not timed)", flush=True)
    return path


def _child(source: Path, repeat: int) -> dict:
    """Refresh a copy of ``source`` ``repeat`` times in this (fresh) process; times, phases, peak memory."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / layout.WORKBOOK_NAME
        times, phases_all = [], []
        for _ in range(repeat):
            path.write_bytes(source.read_bytes())
            marks: list = []
            start = time.perf_counter()
            report = refresh.refresh_workbook(path, backup=False, progress=lambda m, i=None, n=None, marks=marks: marks.append((time.perf_counter(), m)))
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            phases: dict = {}
            prev_t, prev_m = start, "开始"
            for t, m in marks + [(start + elapsed, "完成")]:
                key = prev_m.split("“")[0].removesuffix("……")
                phases[key] = phases.get(key, 0.0) + (t - prev_t)
                prev_t, prev_m = t, m
            phases_all.append(phases)
            r = report.result
            summary = {"rows": sum(r.rows_read.values()), "paid": sum(c for c, _ in r.by_rule.values()),
                       "total": r.total_cents / 100}
            del report, r  # a clerk's next refresh does not run while the last one's report is still held
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"times": times, "phases": phases_all, **summary, "peak_mb": peak_kb / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 50_000], help="rows per county, smallest first")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached workbooks")
    ap.add_argument("--make", nargs=2, metavar=("N", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--child", nargs=2, metavar=("PATH", "REPEAT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make:
        make_workbook(Path(args.make[1]), int(args.make[0]))
        return 0
    if args.child:
        print(json.dumps(_child(Path(args.child[0]), int(args.child[1]))))
        return 0
    results = {}
    for n in args.sizes:
        path = _cached(n, args.fresh)
        env = dict(os.environ, PYTHONHASHSEED="0")
        out = subprocess.run([sys.executable, __file__, "--child", str(path), str(args.repeat)], check=True,
                             capture_output=True, text=True, env=env).stdout
        res = results[n] = json.loads(out.strip().splitlines()[-1])
        for k, (t, ph) in enumerate(zip(res["times"], res["phases"])):
            shown = "，".join(f"{key} {v:.2f}s" for key, v in ph.items() if v >= 0.01)
            print(f"8 × {n}: run {k + 1}: {t:.2f} s — {shown}")
        print(f"8 × {n}: rows read {res['rows']}; awards paid {res['paid']}; total {res['total']:,.2f} 元; "
              f"best {min(res['times']):.2f} s, median {statistics.median(res['times']):.2f} s; "
              f"peak memory {res['peak_mb']:.0f} MB", flush=True)
    med = {n: statistics.median(r["times"]) for n, r in results.items()}
    if 10_000 in med:
        print(f"refresh, 8 × 10000 rows: median {med[10_000]:.2f} s; target ≤ {TARGET_SECONDS:.0f} s → "
              f"ratio {med[10_000] / TARGET_SECONDS:.2f} of target ({'met' if med[10_000] <= TARGET_SECONDS else 'NOT met'})")
    small, big = min(med), max(med)
    if big != small:
        growth = med[big] / med[small]
        print(f"growth: 8 × {big} vs 8 × {small} rows ({big / small:.0f}× the rows): {growth:.1f}× the time; "
              f"target ≤ {TARGET_GROWTH:.0f}× ({'met' if growth <= TARGET_GROWTH else 'NOT met'})")
    peak = results[big]["peak_mb"]
    print(f"peak memory at 8 × {big} rows: {peak:.0f} MB; target < {TARGET_PEAK_MB:.0f} MB "
          f"({'met' if peak < TARGET_PEAK_MB else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
