"""Benchmark: department task sheets plus county workbooks export (target ≤ 3 s).

    python bench/bench_export.py [--repeat N] [--out DIR]

Prints the measured seconds of each part and of the whole, best of N runs, and the ratio to the
target.  openpyxl writes XML noticeably faster when lxml is installed; the line "lxml" says
whether it was used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_SECONDS = 3.0


def run_once(out: Path) -> tuple[float, float, int, int]:
    from xl_ecom.workflows import counties, departments

    t0 = time.perf_counter()
    deps = departments.make_department_sheets(out)
    t1 = time.perf_counter()
    cts = counties.make_county_workbooks(out)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(deps), len(cts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", help="output folder (default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)

    import openpyxl

    from xl_ecom.policy import load_plan

    load_plan()  # parsing the plan is not part of an export
    temp = None
    if args.out:
        base = Path(args.out)
    else:
        temp = tempfile.mkdtemp(prefix="xl-ecom-bench-")
        base = Path(temp)
    runs = []
    try:
        for i in range(max(1, args.repeat)):
            out = base / f"run{i}"
            runs.append(run_once(out))
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    best = min(runs, key=lambda r: r[0] + r[1])
    dep_s, cty_s, n_dep, n_cty = best
    total = dep_s + cty_s
    print(f"lxml used by openpyxl: {'yes' if openpyxl.LXML else 'no'}; cpus: {os.cpu_count()}")
    print(f"runs: {len(runs)} (best shown); all totals: " + ", ".join(f"{d + c:.3f}s" for d, c, _, _ in runs))
    print(f"departments: {n_dep} files in {dep_s:.3f}s")
    print(f"counties:    {n_cty} files in {cty_s:.3f}s")
    print(f"total:       {total:.3f}s  (target ≤ {TARGET_SECONDS:.1f}s, ratio {total / TARGET_SECONDS:.2f} of target) "
          f"-> {'OK' if total <= TARGET_SECONDS else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
