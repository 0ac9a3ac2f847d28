"""Engine speed, measured side by side in one run.

    python bench/bench_engine.py [--rows 1000000] [--loop-rows 20000] [--udf-cells 10000]

Prints, in one run and on the same data:

1. for every rule, the engine's vector path over N rows against a hand-written numpy one-liner of
   the same rule (the peer, :data:`PEERS`: constants typed in by hand, no validation, no exact
   half-cent handling) and against a per-row loop of the scalar path (timed on a sample and scaled);
2. a whole-column UDF call (one range of ``--udf-cells`` cells) against the engine's vector path on
   the same cells.  The range goes through xlwings' own conversion stages with the options the UDF
   declares (``Ensure2DStage``, ``AdjustDimensionsStage``; the result through ``Ensure2DStage``),
   read from the ``__xlfunc__`` metadata xlwings' Windows decorators record
   (:func:`xl_ecom.frontends.addin.load_udf_module`).  Left out: the Windows engine's cell-by-cell
   ``clean_value_data``/``prepare_xl_data_element`` (COM dates and errors), which needs Excel;
3. the per-call cost of scalar UDFs (arguments as those stages hand them over).

Targets (issue #8): all rules within 3× of the numpy peer, a column UDF within 5× of the vector
path, a scalar UDF call ≤ 20 µs.
"""

from __future__ import annotations

import argparse
import time
import timeit
from functools import partial

import numpy as np
from xlwings.conversion.standard import AdjustDimensionsStage, Ensure2DStage

from xl_ecom.frontends import addin, udfs
from xl_ecom.policy import load_plan
from xl_ecom.rules import engine


class _Ctx:
    """The part of xlwings' ConversionContext its engine-free stages use."""

    __slots__ = ("meta", "value")

    def __init__(self, value):
        self.value, self.meta = value, {}


def xl_read(value, options: dict):
    """A cell value (list of rows, or a scalar) as xlwings hands it to a UDF argument."""
    c = _Ctx(value)
    Ensure2DStage()(c)
    AdjustDimensionsStage(options)(c)
    return c.value


def xl_write(value):
    """A UDF's result as xlwings writes it back (rows of cells)."""
    c = _Ctx(value)
    Ensure2DStage()(c)
    return c.value


def arg_options(name: str) -> list[dict]:
    """The xlwings options each argument of UDF ``name`` declares."""
    info = getattr(_XL_UDFS, name).__xlfunc__
    return [a["options"] for a in info["args"]]


_XL_UDFS = addin.load_udf_module()


def _r2(x):
    return np.floor(x * 100.0 + 0.5) / 100.0


def _promo(s):
    paid = _r2(s * 0.05)
    total = np.cumsum(paid)
    return np.minimum(total, 100_000) - np.minimum(total - paid, 100_000)


#: The peer: each rule as one numpy expression, written by hand from the plan's text.
PEERS = {
    "AWARD_UPLINK": lambda d: np.where(d["sales"] > 1e7, np.minimum(_r2(d["sales"] * 0.01), 1e6), 0.0),
    "AWARD_LINKAGE": lambda d: np.where(
        (d["agreement_years"] >= 2) & (d["annual_purchase"] >= 5e5), np.minimum(_r2(d["online_purchase"] * 0.05), 2e5), 0.0
    ),
    "AWARD_PLATFORM": lambda d: np.where(d["retail"] > 2e6, np.minimum(_r2(d["retail"] * 0.02), 2e5), 0.0),
    "SUBSIDY_EXPO": lambda d: _r2((d["booth_fees"] + d["personnel_costs"]) * 0.5),
    "SUBSIDY_PROMO": lambda d: _promo(d["event_sales"]),
    "AWARD_TOURISM": lambda d: d["towns"] * 300_000 + d["villages"] * 100_000,
    "SUBSIDY_FACILITY": lambda d: np.minimum(_r2(d["investment"] * 0.2), 1e6),
    "SUBSIDY_COLD_RENT": lambda d: np.minimum(_r2(d["rent"] * 0.2), 2e5),
    "TRAINING_SUBSIDY": lambda d: np.where(
        d["kind"] == "高管", d["costs"], np.where(d["attendees"] >= 80, np.minimum(d["costs"], 50_000), 0.0)
    ),
    "AWARD_LIVESTREAM": lambda d: np.select([d["sales"] >= 1e6, d["sales"] >= 5e5], [1e5, 5e4], 0.0),
    "AWARD_POOR_SITE": lambda d: np.where(d["sales"] >= 1e5, 1e4, 0.0),
    "SUBSIDY_POVERTY_PURCHASE": lambda d: np.where(d["order_based"] == "是", _r2(d["amount"] * 0.15), _r2(d["amount"] * 0.10)),
    "REGION_UPLIFT": lambda d: np.where(d["region_type"] == "", d["amount"], _r2(d["amount"] * 1.2)),
}


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


def best(f, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description="引擎速度基准（同一次运行中并排测量）")
    ap.add_argument("--rows", type=int, default=1_000_000, help="每条规则的行数")
    ap.add_argument("--loop-rows", type=int, default=20_000, help="逐行循环实测的行数（按比例折算）")
    ap.add_argument("--udf-cells", type=int, default=10_000, help="整列 UDF 调用的单元格数")
    args = ap.parse_args()
    plan = load_plan()
    rng = np.random.default_rng(2020)
    on = "2020-12-31"
    tot_vec = tot_peer = tot_loop = 0.0
    print(f"{'rule':26} {'vector(s)':>9} {'numpy(s)':>9} {'÷numpy':>7} {'loop(s)':>9} {'loop÷vec':>9}")
    for rule_id, rule in plan.rules.items():
        data = make_columns(rule, args.rows, rng)
        engine.calculate_columns(rule_id, {k: v[:10] for k, v in data.items()}, on=on)  # warm caches
        t_vec = best(partial(engine.calculate_columns_cents, rule_id, data, on=on))
        peer = PEERS[rule_id]
        t_peer = best(partial(peer, data))
        vec = engine.calculate_columns_cents(rule_id, data, on=on)
        diff = np.nanmax(np.abs(vec / 100.0 - peer(data)))
        assert diff <= 0.0100001, (rule_id, diff)  # the peer differs at most by a half-cent tie
        m = min(args.loop_rows, args.rows)
        names = [s.name for s in rule.inputs if s.name in data]
        rows = list(zip(*(data[k][:m].tolist() for k in names)))
        t0 = time.perf_counter()
        if rule.cumulative:
            loop = engine.calculate_sequence(rule_id, rows, on=on)
        else:
            loop = [engine.calculate_cents(rule_id, **dict(zip(names, r)), on=on) for r in rows]
        t_loop = (time.perf_counter() - t0) * args.rows / m
        assert [int(x) for x in vec[:m]] == loop, rule_id  # the two engine paths agree on the sample
        tot_vec, tot_peer, tot_loop = tot_vec + t_vec, tot_peer + t_peer, tot_loop + t_loop
        print(f"{rule_id:26} {t_vec:9.3f} {t_peer:9.3f} {t_vec / t_peer:6.1f}x {t_loop:9.2f} {t_loop / t_vec:8.0f}x")
    print(f"{'ALL RULES':26} {tot_vec:9.3f} {tot_peer:9.3f} {tot_vec / tot_peer:6.1f}x {tot_loop:9.2f} {tot_loop / tot_vec:8.0f}x"
          f"   (target: ≤ 3x numpy)")

    n = args.udf_cells
    print(f"\nwhole-column UDF, {n} cells, against the engine's vector path on the same cells:")
    for name in ("AWARD_UPLINK", "AWARD_LIVESTREAM", "SUBSIDY_PROMO", "TRAINING_SUBSIDY"):
        rule = plan.rules[name]
        data = make_columns(rule, n, rng)
        names = [s.name for s in rule.inputs if s.name in data]
        options = arg_options(name)
        cells = [[[v] for v in data[k].tolist()] for k in names]  # a column: one row of one cell each
        f = getattr(udfs, name)

        def call(f=f, cells=cells, options=options):
            return xl_write(f(*(xl_read(c, o) for c, o in zip(cells, options))))

        out = call()
        assert len(out) == n and all(len(r) == 1 for r in out), "a column range must come back as a column"
        assert [r[0] for r in out] == (engine.calculate_columns_cents(name, data) / 100).tolist()
        t_udf = best(call, 5)
        t_vec = best(partial(engine.calculate_columns_cents, name, data), 5)
        # the floor of any UDF that takes and returns an n-cell column: unpack each argument's rows of one
        # cell, and build the n rows of one cell xlwings hands back to Excel (no computation at all)
        result = engine.calculate_columns_cents(name, data) / 100

        def floor(cells=cells, result=result):
            for c in cells:
                [x for (x,) in c]
            return result.reshape(-1, 1).tolist()

        t_floor = best(floor, 5)
        print(f"  {name:26} UDF {t_udf * 1e3:7.2f} ms   vector {t_vec * 1e3:6.2f} ms   {t_udf / t_vec:5.1f}x   (target ≤ 5x)"
              f"   column in/out alone {t_floor * 1e3:5.2f} ms = {t_floor / t_vec:4.1f}x")

    print()
    calls = 50_000
    for name, a in [("AWARD_LIVESTREAM", (800000,)), ("AWARD_UPLINK", (12345678.9,)),
                    ("TRAINING_SUBSIDY", (80, 60000)), ("SUBSIDY_POVERTY_PURCHASE", (100000, "是"))]:
        f = getattr(udfs, name)
        args_in = [xl_read(v, o) for v, o in zip(a, arg_options(name))]  # [[800000]] under ndim=2
        f(*args_in)
        per = min(timeit.repeat(partial(f, *args_in), number=calls, repeat=3)) / calls * 1e6
        print(f"scalar UDF {name}{a}: {per:.1f} µs/call   (target ≤ 20 µs)")


if __name__ == "__main__":
    main()
