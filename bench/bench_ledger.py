"""Benchmark: the ledger against a bare sqlite3 table, side by side in one run.

Write: N county files of R rows each (T_SALES-shaped dicts) through the submission API — one transaction per
file, versions, status, change log, the index that serves current_rows — against the peer: ``json.dumps``
of the same rows and a plain ``sqlite3.executemany`` into a bare table (unit, row_number, data), committed
once per file. Both on a fresh file in the temp folder; the ledger in WAL mode with synchronous=FULL, the peer
with sqlite3's defaults.

Read: ``ledger.current_rows("T_SALES")`` (a DataFrame with one column per key plus provenance) against
``pandas.read_sql`` of the bare table (which leaves the JSON unparsed), and against read_sql followed by
``pd.DataFrame(map(json.loads, ...))`` (the same product as current_rows).

Target: every ratio ≤ 2.

``--province``: 16,000,000 generated rows (128 units × 125,000) written through the submission API, then read
back with current_rows (pyarrow-backed columns); prints the times and the peak RSS of the process.

``--pg URL``: the same comparison on a PostgreSQL server (the URL of a role that may create databases): the
ledger (COPY inside its transaction) against a bare table filled with psycopg's COPY, read back with read_sql.

Run: python bench/bench_ledger.py [--sizes 8x10000 8x125000] [--province] [--repeat K] [--pg URL]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from xl_ecom.ledger import open_ledger

TARGET = 2.0
TABLE = "T_SALES"


def make_rows(unit_index: int, count: int, seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed * 7919 + unit_index)
    county = f"县区{unit_index:03d}"
    return [
        {
            "county": county,
            "enterprise": f"{county}电子商务有限公司{i}",
            "credit_code": f"91340400{rng.randrange(10**9):09d}X",
            "uplink_sales": f"{rng.randrange(10**9) / 100:.2f}",
            "platform_retail": rng.randrange(10**7),
            "livestream_sales": None if i % 3 else f"{rng.randrange(10**8) / 100:.2f}",
            "year": 2020,
        }
        for i in range(count)
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ledger_write(url: str, files: list[list[dict]]) -> float:
    with open_ledger(url=url) as ledger:
        ledger.ensure_round()
        start = time.perf_counter()
        for i, rows in enumerate(files):
            unit = rows[0]["county"]
            with ledger.submission(f"{unit}.xlsx", f"{i:064x}", 1, unit, unit) as sub:
                sub.add_rows(TABLE, rows, list(range(3, 3 + len(rows))))
        return time.perf_counter() - start


def peer_write(path: Path, files: list[list[dict]]) -> float:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE bare (unit TEXT, row_number INTEGER, data TEXT)")
    con.commit()
    start = time.perf_counter()
    for rows in files:
        unit = rows[0]["county"]
        con.executemany(
            "INSERT INTO bare VALUES (?, ?, ?)",
            [(unit, n, json.dumps(r, ensure_ascii=False, separators=(",", ":"))) for n, r in enumerate(rows, 3)],
        )
        con.commit()
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def pg_peer_write(url: str, files: list[list[dict]]) -> float:
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con:
        con.execute("CREATE TABLE bare (unit TEXT, row_number INTEGER, data TEXT)")
        con.commit()
        start = time.perf_counter()
        for rows in files:
            unit = rows[0]["county"]
            with con.cursor() as cur, cur.copy("COPY bare FROM STDIN") as copy:
                for n, r in enumerate(rows, 3):
                    copy.write_row((unit, n, json.dumps(r, ensure_ascii=False, separators=(",", ":"))))
            con.commit()
        return time.perf_counter() - start


def pg_peer_read(url: str) -> float:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    start = time.perf_counter()
    with engine.connect() as con:
        frame = pd.read_sql("SELECT unit, row_number, data FROM bare", con)
    elapsed = time.perf_counter() - start
    engine.dispose()
    assert len(frame)
    return elapsed


def run_pg(admin_url: str, units: int, per_unit: int) -> dict[str, float]:
    import secrets

    import sqlalchemy as sa

    files = [make_rows(u, per_unit) for u in range(units)]
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    names = [f"bench_ledger_{secrets.token_hex(4)}" for _ in range(2)]
    with admin.connect() as conn:
        for name in names:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    urls = [sa.engine.make_url(admin_url).set(database=n).render_as_string(hide_password=False) for n in names]
    try:
        t = {"pw": pg_peer_write(urls[0], files), "lw": ledger_write(urls[1], files)}
        t["pr"] = pg_peer_read(urls[0])
        t["lr"], frame = ledger_read(urls[1])
        assert len(frame) == units * per_unit
        return t
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def ledger_read(url: str) -> tuple[float, pd.DataFrame]:
    with open_ledger(url=url) as ledger:
        start = time.perf_counter()
        frame = ledger.current_rows(TABLE)
        return time.perf_counter() - start, frame


def peer_read(path: Path, parse: bool) -> tuple[float, pd.DataFrame]:
    con = sqlite3.connect(path)
    start = time.perf_counter()
    frame = pd.read_sql("SELECT unit, row_number, data FROM bare", con)
    if parse:
        values = pd.DataFrame(map(json.loads, frame["data"]))
        values["_unit"] = frame["unit"].to_numpy()
        values["_row"] = frame["row_number"].to_numpy()
        frame = values
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed, frame


def run_size(units: int, per_unit: int, repeat: int) -> dict[str, float]:
    files = [make_rows(u, per_unit) for u in range(units)]
    times: dict[str, list[float]] = {k: [] for k in ("lw", "pw", "lr", "pr", "pp")}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench_ledger_") as tmp:
            folder = Path(tmp)
            url = "sqlite:///" + str(folder / "bench.台账.sqlite")
            peer = folder / "bare.sqlite"
            times["pw"].append(peer_write(peer, files))
            times["lw"].append(ledger_write(url, files))
            gc.collect()
            elapsed, peer_frame = peer_read(peer, parse=False)
            times["pr"].append(elapsed)
            elapsed, parsed = peer_read(peer, parse=True)
            times["pp"].append(elapsed)
            elapsed, frame = ledger_read(url)
            times["lr"].append(elapsed)
            assert len(frame) == len(peer_frame) == len(parsed) == units * per_unit
            assert list(frame["enterprise"].iloc[:3]) == list(parsed["enterprise"].iloc[:3])
            del frame, peer_frame, parsed
            gc.collect()
    return {k: statistics.median(v) for k, v in times.items()}


def province(units: int = 128, per_unit: int = 125_000) -> int:
    total = units * per_unit
    with tempfile.TemporaryDirectory(prefix="bench_province_") as tmp:
        url = "sqlite:///" + str(Path(tmp) / "省.台账.sqlite")
        with open_ledger(url=url) as ledger:
            ledger.ensure_round()
            start = time.perf_counter()
            for u in range(units):
                rows = make_rows(u, per_unit)
                unit = rows[0]["county"]
                with ledger.submission(f"{unit}.xlsx", f"{u:064x}", 1, unit, unit) as sub:
                    sub.add_rows(TABLE, rows, list(range(3, 3 + per_unit)))
                del rows, sub
            write = time.perf_counter() - start
            size = (Path(tmp) / "省.台账.sqlite").stat().st_size
            rss_write = peak_rss_mb()
            print(f"写入 {total:,} 行（{units} 个单位 × {per_unit:,}）：{write:.1f} s，"
                  f"{total / write:,.0f} 行/秒，台账 {size / 2**30:.2f} GiB，峰值内存 {rss_write:,.0f} MB")
            gc.collect()
            start = time.perf_counter()
            frame = ledger.current_rows(TABLE, arrow=True)
            read = time.perf_counter() - start
            assert len(frame) == total, len(frame)
            print(f"读回 DataFrame（pyarrow 列）：{read:.1f} s，{total / read:,.0f} 行/秒，"
                  f"DataFrame {frame.memory_usage(deep=True).sum() / 2**30:.2f} GiB，峰值内存 {peak_rss_mb():,.0f} MB")
            print(f"合计 {write + read:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["8x10000", "8x125000"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--province", action="store_true")
    parser.add_argument("--pg", metavar="URL")
    args = parser.parse_args(argv)
    if args.province:
        return province()
    if args.pg:
        worst = 0.0
        for size in args.sizes:
            units, per_unit = (int(x) for x in size.lower().split("x"))
            t = run_pg(args.pg, units, per_unit)
            w, r = t["lw"] / t["pw"], t["lr"] / t["pr"]
            worst = max(worst, w, r)
            print(f"PostgreSQL {units} × {per_unit:,} = {units * per_unit:,} 行")
            print(f"  写入：台账 {t['lw']:.2f} s，裸表 COPY {t['pw']:.2f} s，比值 {w:.2f}")
            print(f"  读取：current_rows {t['lr']:.2f} s，read_sql {t['pr']:.2f} s，比值 {r:.2f}")
        print(f"最大比值 {worst:.2f}（目标 ≤ {TARGET}）：{'达标' if worst <= TARGET else '未达标'}")
        return 0 if worst <= TARGET else 1
    worst = 0.0
    for size in args.sizes:
        units, per_unit = (int(x) for x in size.lower().split("x"))
        t = run_size(units, per_unit, args.repeat)
        n = units * per_unit
        w, r, rp = t["lw"] / t["pw"], t["lr"] / t["pr"], t["lr"] / t["pp"]
        worst = max(worst, w, r)
        print(f"{units} × {per_unit:,} = {n:,} 行")
        print(f"  写入：台账 {t['lw']:.2f} s，裸表 executemany {t['pw']:.2f} s，比值 {w:.2f}")
        print(f"  读取：current_rows {t['lr']:.2f} s，read_sql {t['pr']:.2f} s，比值 {r:.2f}；"
              f"read_sql+json 展开 {t['pp']:.2f} s，比值 {rp:.2f}")
    verdict = "达标" if worst <= TARGET else "未达标"
    print(f"最大比值 {worst:.2f}（目标 ≤ {TARGET}）：{verdict}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
