"""Warehouse at scale: rows/s of the bulk paths, status refresh and pairing write times.

On a fresh PostgreSQL database (the machine's server, ``postgresql+psycopg://postgres@127.0.0.1:5432``)
and a fresh SQLite file, at ``--rows`` household rows (cadres a tenth of that), it measures:

- staging: ``staged_row`` rows/s through ``warehouse.insert_many`` (COPY on PostgreSQL, executemany
  batches on SQLite) and, on PostgreSQL, through plain executemany for comparison;
- load: the real ``tasks.load`` (staged rows -> ``source_record``, one transaction per file) over
  ``--files`` files;
- status refresh: ``status.refresh`` (the SQL of ``sql/status``, plus the pairing engine's count of
  the pairs it would end), on the first night and again after 3 % of the households exit, and the
  status SQL alone (compute and write, rolled back);
- pairing: ``pairing.rebuild`` (read, plan, solve, write) on the first night, where every pair is
  written, and the pairs' write alone (COPY vs executemany on PostgreSQL).

    .venv/bin/python benchmarks/bench_warehouse.py [--rows 200000] [--files 40] [--engines postgresql sqlite]

Figures are printed as one JSON line per engine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
NIGHT1, NIGHT2 = dt.date(2026, 12, 1), dt.date(2026, 12, 2)
TOWNS = [f"镇{i:03d}" for i in range(50)]


@contextlib.contextmanager
def database(kind: str):
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="rl-bench-wh-") as tmp:
            yield f"sqlite:///{tmp}/warehouse.db"
        return
    name = f"rl_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from rosterlink import warehouse

        warehouse.engine.cache_clear()
        warehouse.db.forget_migrations()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _payload(i: int) -> dict:
    return {
        "head_name": f"户主{i}",
        "head_id_number": None,
        "town": TOWNS[i % len(TOWNS)],
        "village": f"{i % 700}村",
        "household_size": str(1 + i % 6),
        "cause": "因病致困",
        "income": "3600",
        "phone": None,
    }


def _staged_rows(file_id: int, first: int, count: int):
    from rosterlink.warehouse import dumps

    for n in range(count):
        i = first + n
        yield {
            "file_id": file_id,
            "sheet": "Sheet1",
            "row_number": n + 3,
            "roster": "hardship",
            "payload": dumps(_payload(i)),
            "findings": "[]",
            "state": "valid",
        }


def _ledger(conn: sa.Connection, files: int, per_file: int) -> list[dict]:
    from rosterlink import warehouse
    from rosterlink.warehouse import schema

    items = []
    for f in range(1, files + 1):
        conn.execute(
            schema.intake_file.insert().values(
                file_id=f,
                department="civil_affairs",
                file_name=f"花名册{f:02d}.xlsx",
                sha256=f"{f:064d}",
                size_bytes=1,
                status="pending",
                rows_read=per_file,
                rows_rejected=0,
                received_at=warehouse.now(),
            )
        )
        items.append({"file_id": f, "file_name": f"花名册{f:02d}.xlsx", "status": "validated"})
    return items


def rate(rows: int, seconds: float) -> dict:
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": int(rows / seconds) if seconds else None,
    }


def bench(kind: str, rows: int, files: int) -> dict:
    from rosterlink import status, tasks, warehouse
    from rosterlink.core import settings as settings_mod
    from rosterlink.pairing import rebuild as pairing
    from rosterlink.pairing.solve import PairingConfig
    from rosterlink.warehouse import schema

    out: dict = {"engine": kind, "household_rows": rows, "cadres": rows // 10, "files": files}
    per_file = rows // files
    with database(kind) as url:
        eng = warehouse.connect(url)
        settings = settings_mod.load(
            warehouse_url=url, intake_dir=Path(tempfile.gettempdir()), export_dir=Path(tempfile.gettempdir())
        )
        # staging through the bulk path
        with eng.begin() as conn:
            items = _ledger(conn, files, per_file)
        t0 = time.perf_counter()
        for f in range(1, files + 1):
            with eng.begin() as conn:
                warehouse.insert_many(conn, schema.staged_row, _staged_rows(f, (f - 1) * per_file, per_file))
        out["staging_bulk"] = rate(files * per_file, time.perf_counter() - t0)
        if kind == "postgresql":  # the same rows through executemany, for comparison (then removed)
            sample = min(per_file * files, 200_000)
            with eng.begin() as conn:
                conn.execute(
                    schema.intake_file.insert().values(
                        file_id=9999,
                        department="x",
                        file_name="cmp",
                        sha256="x",
                        size_bytes=1,
                        status="rejected",
                        received_at=warehouse.now(),
                    )
                )
            t0 = time.perf_counter()
            with eng.begin() as conn:
                batch = []
                for row in _staged_rows(9999, 0, sample):
                    batch.append(row)
                    if len(batch) == 5000:
                        conn.execute(schema.staged_row.insert(), batch)
                        batch = []
                if batch:
                    conn.execute(schema.staged_row.insert(), batch)
            out["staging_executemany"] = rate(sample, time.perf_counter() - t0)
            with eng.begin() as conn:
                conn.execute(schema.staged_row.delete().where(schema.staged_row.c.file_id == 9999))
        # the real load stage
        t0 = time.perf_counter()
        loaded = tasks.load(settings, items)
        out["load"] = rate(loaded["rows_loaded"], time.perf_counter() - t0)

        # entities as the link stage leaves them (the rows' keys in their lineage, households,
        # categories, cadres)
        t0 = time.perf_counter()
        with eng.begin() as conn:
            r = schema.source_record
            places = conn.execute(
                sa.select(r.c.file_id, r.c.sheet, r.c.row_number).order_by(r.c.record_id)
            ).all()
            keyed = len(places)  # every loaded row is a household of its own
            warehouse.insert_rows(
                conn,
                schema.source_row,
                ("file_id", "sheet", "row_number", "entity_kind", "entity_key", "link_method"),
                ((f, s, n, "household", f"H{i + 1:07d}", "id") for i, (f, s, n) in enumerate(places)),
            )
            warehouse.insert_many(
                conn,
                schema.household,
                (
                    {
                        "household_key": f"H{n + 1:07d}",
                        "head_name": f"户主{n}",
                        "town": TOWNS[n % len(TOWNS)],
                        "status": "active",
                    }
                    for n in range(keyed)
                ),
            )
            warehouse.insert_many(
                conn,
                schema.household_category,
                (
                    {"household_key": f"H{n + 1:07d}", "category": "hardship", "status": "active"}
                    for n in range(keyed)
                ),
            )
            warehouse.insert_many(
                conn,
                schema.cadre,
                (
                    {
                        "cadre_key": f"C{n + 1:06d}",
                        "name": f"干部{n}",
                        "rank": ("county", "section", "ordinary")[n % 3],
                        "unit": f"单位{n % 400}",
                        "town": TOWNS[n % len(TOWNS)],
                        "status": "active",
                    }
                    for n in range(rows // 10)
                ),
            )
            if kind == "postgresql":
                conn.exec_driver_sql("ANALYZE")
        out["entity_keys_and_entities"] = rate(keyed, time.perf_counter() - t0)

        t0 = time.perf_counter()
        out["status_first"] = {"seconds": round(time.perf_counter() - t0 + _refresh(status, eng, NIGHT1), 2)}
        t0 = time.perf_counter()
        per = -(-rows // max(rows // 10, 1))  # as bench_pairing's province: every household placed
        config = PairingConfig(max_households={"county": per + 2, "section": 2 * per, "ordinary": 2 * per})
        summary = pairing.rebuild(eng, NIGHT1, "bench-1", config)
        out["pairing_rebuild"] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "made": summary["made_total"],
        }

        # night 2: 3 % of the households exit by an adjustment row, status refresh again
        with eng.begin() as conn:
            conn.execute(
                schema.intake_file.insert().values(
                    file_id=files + 1,
                    department="civil_affairs",
                    file_name="动态调整.xlsx",
                    sha256="y" * 64,
                    size_bytes=1,
                    status="loaded",
                    received_at=warehouse.now(),
                )
            )
            warehouse.insert_many(
                conn,
                schema.source_record,
                (
                    {
                        "file_id": files + 1,
                        "sheet": "Sheet1",
                        "row_number": n + 3,
                        "department": "civil_affairs",
                        "roster": "hardship_adjustment",
                        "entity_kind": "household",
                        "category": "hardship",
                        "event": "exit",
                        "event_date": NIGHT2,
                        "attrs": "{}",
                        "loaded_at": warehouse.now(),
                    }
                    for n in range(keyed // 33)
                ),
            )
            warehouse.insert_rows(  # linked, as the link stage would
                conn,
                schema.source_row,
                ("file_id", "sheet", "row_number", "entity_kind", "entity_key", "link_method"),
                (
                    (files + 1, "Sheet1", n + 3, "household", f"H{n * 33 + 1:07d}", "id")
                    for n in range(keyed // 33)
                ),
            )
        conn = eng.connect()  # the status SQL alone (compute + write), rolled back
        trans = conn.begin()
        t0 = time.perf_counter()
        changed = status.write(conn, NIGHT2)
        out["status_second_sql_only"] = {"seconds": round(time.perf_counter() - t0, 2), "changed": changed}
        trans.rollback()
        conn.close()
        out["status_second"] = {
            "seconds": round(_refresh(status, eng, NIGHT2), 2),
            "households_exited": keyed // 33,
        }

        # the pairs' write alone: every current pair once more, in a transaction rolled back
        with eng.connect() as conn:
            pairs = [
                dict(m)
                for m in conn.execute(
                    sa.select(schema.pairing).where(schema.pairing.c.valid_to.is_(None))
                ).mappings()
            ]
        for p in pairs:
            p.pop("pairing_id")
        for name, write in (
            ("pairs_write_bulk", lambda c: warehouse.insert_many(c, schema.pairing, pairs)),
            ("pairs_write_executemany", lambda c: c.execute(schema.pairing.insert(), pairs)),
        ):
            if name == "pairs_write_executemany" and kind == "sqlite":
                continue
            conn = eng.connect()
            trans = conn.begin()
            t0 = time.perf_counter()
            write(conn)
            out[name] = rate(len(pairs), time.perf_counter() - t0)
            trans.rollback()
            conn.close()
        eng.dispose()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def _refresh(status, eng: sa.Engine, day: dt.date) -> float:
    t0 = time.perf_counter()
    status.refresh(eng, allow_mass_end=True, as_of=day)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=40)
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
        print(json.dumps(bench(kind, args.rows, args.files), ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
