"""Follow-through figures at scale: the full rebuild against the nightly update, per night.

On a fresh PostgreSQL database (the machine's server, ``postgresql+psycopg://postgres@127.0.0.1:5432``)
and a fresh SQLite file, ``--households`` households (one pair each, cadres a tenth of that, two
visits for every other household) are written straight into the warehouse; then:

- night 1: ``figures.refresh_followup`` with no record of a last build, i.e. the full rebuild
  (``figures.rebuild_followup``, what every night did before);
- a quiet night (the next day, nothing new): the nightly update, then a read of every row through
  the view ``followup_household`` (which adds the night's date and the days since contact to each
  row: what a quiet night no longer writes, every reader now computes);
- a churn night (the day after): 1 % of the pairs ended and made again with another cadre, 1 % of
  the households visited, one household's town corrected: the nightly update, and the full rebuild
  of the same night, rolled back, for comparison.

    .venv/bin/python benchmarks/bench_followup.py [--households 150000] [--engines postgresql sqlite]

Wall and CPU seconds (CPU: this process only; the database server's own work shows in wall time)
are printed as one JSON line per engine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from bench_warehouse import TOWNS, database  # a fresh database per engine, as there

ROOT = Path(__file__).resolve().parents[1]
NIGHT1 = dt.date(2026, 10, 1)


def _visit(i: int, n: int, day: dt.date, household: str, cadre: str, pairing_id: int) -> dict:
    from rosterlink import warehouse

    return {
        "file_id": 1,
        "sheet": "Sheet1",
        "row_number": n,
        "record_id": n,
        "cadre_key": cadre,
        "household_key": household,
        "pairing_id": pairing_id,
        "visit_date": day,
        "visit_kind": "in_person" if i % 3 else "phone",
        "problems_found": i % 3,
        "problems_solved": i % 2,
        "help_value": float(100 * (i % 7)) or None,
        "help_source_kind": "own",
        "matched_at": warehouse.now(),
    }


def _world(eng: sa.Engine, households: int) -> None:
    from rosterlink import warehouse
    from rosterlink.warehouse import insert_many, schema

    cadres = max(1, households // 10)
    with eng.begin() as conn:
        insert_many(
            conn,
            schema.household,
            (
                {
                    "household_key": f"H{i:07d}",
                    "head_name": f"户主{i}",
                    "town": TOWNS[i % 50],
                    "status": "active",
                }
                for i in range(households)
            ),
        )
        insert_many(
            conn,
            schema.pairing,
            (
                {
                    "cadre_key": f"C{i % cadres:06d}",
                    "target_kind": "household",
                    "target_key": f"H{i:07d}",
                    "valid_from": NIGHT1 - dt.timedelta(days=60),
                    "made_reason": "new_target",
                }
                for i in range(households)
            ),
        )
        conn.execute(
            schema.intake_file.insert().values(
                file_id=1,
                department="visits",
                file_name="visits.xlsx",
                sha256="0" * 64,
                size_bytes=1,
                status="loaded",
                received_at=warehouse.now(),
            )
        )
        insert_many(
            conn,
            schema.visit,
            (
                _visit(
                    i,
                    2 * i + k,
                    NIGHT1 - dt.timedelta(days=10 + 20 * k),
                    f"H{i:07d}",
                    f"C{i % cadres:06d}",
                    i + 1,
                )
                for i in range(0, households, 2)
                for k in (0, 1)
            ),
        )
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")


def _timed(eng: sa.Engine, work, *, keep: bool = True) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    with eng.connect() as conn:
        tx = conn.begin()
        out = work(conn)
        if keep:
            tx.commit()
        else:
            tx.rollback()
    return {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        **({"households": out.households, "changed": out.changed, "full": out.full} if out else {}),
    }


def _churn(conn: sa.Connection, households: int, day: dt.date) -> tuple[set[str], int]:
    """1 % of the pairs ended and made again with another cadre, 1 % of the households visited, a
    town corrected: what the follow-through stage is told (households touched, visits added)."""
    from rosterlink.warehouse import insert_many, schema

    p, h, v = schema.pairing, schema.household, schema.visit
    step = 100
    ending = list(range(0, households, step))
    conn.execute(p.update().where(p.c.pairing_id.in_([i + 1 for i in ending])).values(valid_to=day))
    insert_many(
        conn,
        p,
        (
            {
                "cadre_key": "C000000",
                "target_kind": "household",
                "target_key": f"H{i:07d}",
                "valid_from": day,
                "made_reason": "cadre_left",
            }
            for i in ending
        ),
    )
    conn.execute(h.update().where(h.c.household_key == "H0000001").values(town="镇改"))
    first = 2 * households + 1  # row numbers after the first night's visits
    visited = list(range(1, households, step))
    insert_many(
        conn, v, (_visit(i, first + n, day, f"H{i:07d}", "C000001", i + 1) for n, i in enumerate(visited))
    )
    return {f"H{i:07d}" for i in visited}, len(visited)


def bench(kind: str, households: int) -> dict:
    from rosterlink import warehouse
    from rosterlink.followup import figures
    from rosterlink.followup.config import FollowupConfig
    from rosterlink.warehouse import schema

    cfg = FollowupConfig.load()
    out: dict = {"engine": kind, "households": households}
    with database(kind) as url:
        eng = warehouse.connect(url)
        _world(eng, households)
        out["night1_full"] = _timed(eng, lambda c: figures.refresh_followup(c, NIGHT1, cfg))
        quiet = NIGHT1 + dt.timedelta(days=1)
        out["quiet_night"] = _timed(eng, lambda c: figures.refresh_followup(c, quiet, cfg))
        fh = schema.followup_household

        def read_all(conn: sa.Connection) -> None:
            conn.execute(sa.select(sa.func.count(), sa.func.sum(fh.c.days_since_contact))).one()

        out["read_every_row_through_the_view"] = _timed(eng, read_all, keep=False)
        churn = quiet + dt.timedelta(days=1)
        with eng.begin() as conn:
            touched, added = _churn(conn, households, churn)
        out["churn_full_rebuild"] = _timed(eng, lambda c: figures.rebuild_followup(c, churn, cfg), keep=False)
        out["churn_night"] = _timed(eng, lambda c: figures.refresh_followup(c, churn, cfg, touched, added))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=150_000)
    parser.add_argument(
        "--engines", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"]
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if "postgresql" in args.engines:
        from conftest import ensure_postgres

        ensure_postgres()
    for kind in args.engines:
        print(json.dumps(bench(kind, args.households), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
