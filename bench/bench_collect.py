"""Speed of collect: 8 returned county workbooks × N rows (default 10,000 each, in 企业销售 with the
county file's own award formulas, as a clerk's Excel leaves them) collected into the city workbook
and its ledger, against the peer: openpyxl in read-only mode merely iterating the same files' cells.
Both run side by side in one process; the ratio is printed (target ≤ 2×).

    python bench/bench_collect.py [--rows 10000] [--files 8] [--repeat 1] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import openpyxl

from xl_ecom.policy import load_plan
from xl_ecom.workflows import build, collect, counties, layout
from xl_ecom.workflows.tables import table


def make_files(folder: Path, n_files: int, rows: int) -> list[Path]:
    plan = load_plan()
    t = table("T_SALES")
    paths = []
    for county in plan.counties[:n_files]:
        wb = counties.county_workbook(county, plan)
        ws = wb[t.sheet]
        for i in range(rows):
            r = layout.INPUT_FIRST_ROW + i
            values = [county, f"{county}电商企业{i:05d}", None, 9_000_000 + (i * 7919) % 3_000_000,
                      (i * 104729) % 2_000_000 or None, (i * 15485863) % 1_000_000 or None]
            for j, v in enumerate(values, start=1):
                ws.cell(row=r, column=j).value = v
        counties._write_award_formulas(ws, t, county, None, plan)
        path = folder / f"{county}.xlsx"
        wb.save(path)
        paths.append(path)
    return paths


def peer(paths: list[Path]) -> int:
    """openpyxl read-only, cached values, every cell of every sheet visited."""
    cells = 0
    for path in paths:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        for ws in wb.worksheets:
            for row in ws.iter_rows(values_only=True):
                cells += len(row)
        wb.close()
    return cells


def run_collect(folder: Path, city_bytes: bytes, work: Path) -> collect.CollectReport:
    city = work / layout.WORKBOOK_NAME
    for old in work.glob("*"):
        old.unlink()
    city.write_bytes(city_bytes)
    report = collect.collect(folder, into=city)
    assert report.written, report.to_text()
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="generate the files into DIR (reused when present)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-collect-"))
    try:
        folder = Path(args.keep) if args.keep else tmp / "报回"
        folder.mkdir(parents=True, exist_ok=True)
        paths = sorted(folder.glob("*.xlsx"))
        if len(paths) != args.files:
            t0 = time.perf_counter()
            paths = make_files(folder, args.files, args.rows)
            print(f"生成 {args.files} 个县区工作簿 × {args.rows} 行：{time.perf_counter() - t0:.1f}s", file=sys.stderr)
        city_bytes = build.build_bytes()
        work = tmp / "市级"
        work.mkdir()
        best_peer = best_collect = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            cells = peer(paths)
            best_peer = min(best_peer, time.perf_counter() - t0)
            t0 = time.perf_counter()
            if args.profile:
                prof = cProfile.Profile()
                report = prof.runcall(run_collect, folder, city_bytes, work)
                pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
            else:
                report = run_collect(folder, city_bytes, work)
            best_collect = min(best_collect, time.perf_counter() - t0)
        merged = sum(f.counts()[0] for f in report.files)
        print(f"files={len(paths)} rows/file={args.rows} cells visited by peer={cells} rows merged={merged}")
        print(f"peer  openpyxl read-only iterate : {best_peer:8.2f} s")
        print(f"xl-ecom collect (ledger + city)  : {best_collect:8.2f} s")
        print(f"ratio collect / peer             : {best_collect / best_peer:8.2f}x  (target <= 2x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
