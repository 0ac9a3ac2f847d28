"""Engine speed, measured side by side in one run.

    python bench/bench_engine.py [--rows 1000000] [--loop-rows 20000]

Prints, for every rule: the vectorised engine over N rows, a per-row loop of the scalar path (timed on
a sample of the same rows and scaled to N, since the full loop takes minutes), and their ratio; then
the per-call cost of a scalar UDF.  Targets (issue #2): all rules over 1M rows ≤ 1 s, ≥ 50× the loop,
a scalar UDF call ≤ 20 µs.
"""

from __future__ import annotations

import argparse
import time
import timeit

import numpy as np

from xl_ecom import engine, udfs
from xl_ecom.policy import load_plan


def make_columns(rule, n: int, rng) -> dict:
    data = {}
    for spec in rule.inputs:
        if spec.kind == "money":
            data[spec.name] = np.round(rng.uniform(0, 30_000_000, n), 2)
        elif spec.kind == "count":
            data[spec.name] = rng.integers(0, 200, n).astype(float)
        elif spec.kind == "years":
            data[spec.name] = rng.integers(0, 6, n).astype(float)
        elif spec.kind == "choice":
            data[spec.name] = rng.choice(np.array(spec.choices, dtype=object), n)
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--loop-rows", type=int, default=20_000)
    args = ap.parse_args()
    plan = load_plan()
    rng = np.random.default_rng(2020)
    on = "2020-12-31"
    total_vec = 0.0
    total_loop = 0.0
    print(f"{'rule':28} {'vector(s)':>10} {'loop(s, scaled)':>16} {'ratio':>8}")
    for rule_id, rule in plan.rules.items():
        data = make_columns(rule, args.rows, rng)
        engine.calculate_columns(rule_id, {k: v[:10] for k, v in data.items()}, on=on)  # warm caches
        t0 = time.perf_counter()
        vec = engine.calculate_columns_cents(rule_id, data, on=on)
        t_vec = time.perf_counter() - t0
        m = min(args.loop_rows, args.rows)
        names = [s.name for s in rule.inputs if s.name in data]
        rows = list(zip(*(data[k][:m].tolist() for k in names)))
        t0 = time.perf_counter()
        if rule.cumulative:
            loop = engine.calculate_sequence(rule_id, rows, on=on)
        else:
            loop = [engine.calculate_cents(rule_id, **dict(zip(names, r)), on=on) for r in rows]
        t_loop = (time.perf_counter() - t0) * args.rows / m
        assert [int(x) for x in vec[:m]] == loop, rule_id  # the two paths agree on the sample
        total_vec += t_vec
        total_loop += t_loop
        print(f"{rule_id:28} {t_vec:10.3f} {t_loop:16.2f} {t_loop / t_vec:7.0f}x")
    print(f"{'ALL RULES':28} {total_vec:10.3f} {total_loop:16.2f} {total_loop / total_vec:7.0f}x"
          f"   (target: vector ≤ 1 s, ratio ≥ 50x)")
    n = 50_000
    for name, a in [("AWARD_LIVESTREAM", (800000,)), ("AWARD_UPLINK", (12345678.9,)),
                    ("TRAINING_SUBSIDY", (80, 60000)), ("SUBSIDY_POVERTY_PURCHASE", (100000, "是"))]:
        f = getattr(udfs, name)
        f(*a)
        per = min(timeit.repeat(lambda: f(*a), number=n, repeat=3)) / n * 1e6
        print(f"scalar UDF {name}{a}: {per:.1f} µs/call   (target ≤ 20 µs)")


if __name__ == "__main__":
    main()
