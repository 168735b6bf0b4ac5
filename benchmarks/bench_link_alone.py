"""The link stage alone: its peak memory and CPU in a fresh process, on a warehouse as the stage finds it.

    .venv/bin/python benchmarks/bench_night.py --scale 100 --nights 1 --snapshot-link data/snap100
    .venv/bin/python benchmarks/bench_link_alone.py data/snap100/night-1.db
    .venv/bin/python benchmarks/bench_link_alone.py data/snap100/night-1.db --plugins ../other/plugins

``bench_night.py --snapshot-link DIR`` copies the SQLite warehouse as each night's link stage finds
it (the night's rows loaded, none linked yet). This script copies such a snapshot to a temporary
file and runs ``rosterlink.link.night.link`` on it in a fresh Python process (``--plugins``: which
tree's package; this one's by default), without Airflow: the process imports the package, the
stage's modules, DuckDB and Splink first, notes its RSS (the baseline), resets the peak (Linux:
``/proc/self/clear_refs``), runs the stage and reads the peak (``VmHWM``) and the CPU seconds
(user + system) the stage took. ``--runs N`` repeats it (a fresh copy and process each time).

``--postgres URL`` (a server's URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
runs it on PostgreSQL instead: the snapshot's tables are copied once into a template database
(``rl_link_alone_<snapshot's size>``, kept for the next runs), and each run gets a fresh copy of it.

It also prints a digest of what the stage wrote (every table it writes, with the columns that hold
the time of the night left out) and of its summary (timings left out): two trees that give the same
digest on the same snapshot linked the same way. Figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what the link stage writes, in a fixed order (the columns that stamp the night's time left out)
WRITTEN = {
    "source_record": "record_id, entity_kind",
    "source_row": "file_id, sheet, row_number, entity_kind, entity_key, link_method, match_probability",
    "household": "household_key, head_name, head_id_number, town, village, phone, first_seen_file, status",
    "household_category": "household_key, category, status",
    "cadre": "cadre_key, name, id_number, phone, town, sex, rank, rank_title, unit, post, status",
    "petition_case": "case_key, case_number, petitioner_name, petitioner_id_number, town, topic, summary, "
    "status, responsible_unit, registered_on, work_team, resolution_plan, stabilisation_measures",
    "link_model": "entity_kind, source, records, id_less_records, entities, parameters",
    "household_merge": "retired_key, surviving_key, reason, review_id, match_probability, evidence",
    "link_review": "entity_kind, reason, record_id_l, record_id_r, entity_key_l, entity_key_r, display_l, "
    "display_r, match_weight, match_probability, evidence, signature, status",
    "rejected_row": "file_id, sheet, row_number, field, header, value, reason_code, message",
    "intake_file": "file_id, rows_loaded, rows_rejected",
}


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def digest(url: str) -> dict[str, str]:
    """A digest per table the stage writes (rows in a fixed order)."""
    import sqlalchemy as sa

    out = {}
    with sa.create_engine(url).connect() as conn:
        for table, columns in WRITTEN.items():
            h = hashlib.sha256()
            n = 0
            order = ", ".join(str(i + 1) for i in range(min(3, len(columns.split(",")))))
            for row in conn.exec_driver_sql(f"SELECT {columns} FROM {table} ORDER BY {order}"):
                h.update(repr(tuple(_plain(v) for v in row)).encode())
                n += 1
            out[table] = f"{n} rows {h.hexdigest()[:16]}"
    return out


def _plain(value: object) -> object:
    """A value as SQLite gives it back (PostgreSQL gives dates and decimals as objects)."""
    return value if value is None or isinstance(value, (int, float, str)) else str(value)


def to_postgres(snapshot: Path, server: str) -> str:
    """The snapshot's tables in a PostgreSQL template database (made once); its URL."""
    import sqlalchemy as sa

    from rosterlink import warehouse
    from rosterlink.warehouse import schema

    name = f"rl_link_alone_{snapshot.stat().st_size}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        if conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first():
            return url
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng = warehouse.connect(url)
    source = sa.create_engine(f"sqlite:///{snapshot}")
    with source.connect() as src, eng.begin() as dst:
        for table in schema.metadata.sorted_tables:
            if not sa.inspect(src).has_table(table.name):
                continue
            rows = (dict(row) for row in src.execute(sa.select(table)).mappings())
            warehouse.insert_many(dst, table, rows)
            keys = list(table.primary_key.columns)
            for column in [c.name for c in keys if len(keys) == 1 and isinstance(c.type, sa.Integer)]:
                dst.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), "
                    f"COALESCE((SELECT MAX({column}) FROM {table.name}), 0) + 1, false)"
                )
    warehouse.analyze(eng, tuple(t.name for t in schema.metadata.sorted_tables))
    eng.dispose()
    return url


def child(url: str) -> dict:
    """Run the link stage on ``url`` (in the fresh process) and return its figures."""
    import duckdb  # noqa: F401 (imported before the baseline: the stage's engine)
    import splink  # noqa: F401

    import rosterlink
    from rosterlink import warehouse
    from rosterlink.link import model  # noqa: F401
    from rosterlink.link import night as link_stage
    from rosterlink.link.config import load_config

    eng = warehouse.connect(url)
    cfg = load_config()
    baseline = _status_mb("VmRSS")
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    t0, c0 = time.perf_counter(), time.process_time()
    result = link_stage.link(eng, config=cfg)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    eng.dispose()
    summary = {k: v for k, v in result.items() if k not in ("timings", "seconds")}
    summary["model"] = {k: v for k, v in summary["model"].items() if k not in ("seconds", "trained_at")}
    return {
        "package": str(Path(rosterlink.__file__).parent),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "stage_peak_mb": round(peak - baseline, 1),
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "rows_linked": result["rows_linked"],
        "summary_digest": hashlib.sha256(
            json.dumps(summary, sort_keys=True, default=str).encode()
        ).hexdigest()[:16],
        "tables": digest(url),
    }


@contextlib.contextmanager
def _copy(snapshot: Path, tmp: str, template: str | None) -> Iterator[str]:
    """A fresh copy of the snapshot for one run (a SQLite file, or a database made from the
    PostgreSQL template); its URL."""
    if template is None:
        db = Path(tmp) / "warehouse.db"
        shutil.copyfile(snapshot, db)
        yield f"sqlite:///{db}"
        return
    import sqlalchemy as sa

    base = sa.make_url(template)
    name = f"{base.database}_run"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{base.database}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snapshot", type=Path, help="a warehouse copied by bench_night.py --snapshot-link")
    p.add_argument("--plugins", type=Path, default=ROOT / "plugins", help="the tree whose package runs")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--postgres", help="a PostgreSQL server's URL: run there instead of on SQLite")
    p.add_argument("--json", type=Path)
    p.add_argument("--_child", dest="child_url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_url:
        print(json.dumps(child(args.child_url)))
        return 0
    template = to_postgres(args.snapshot, args.postgres) if args.postgres else None
    results = []
    for run in range(args.runs):
        with (
            tempfile.TemporaryDirectory(prefix="rl-link-alone-") as tmp,
            _copy(args.snapshot, tmp, template) as url,
        ):
            env = {**os.environ, "PYTHONPATH": str(args.plugins.resolve()), "ROSTERLINK_WAREHOUSE_URL": url}
            proc = subprocess.run(
                [sys.executable, __file__, str(args.snapshot), "--_child", url],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"run {run + 1} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        peak, baseline, stage = result["peak_rss_mb"], result["baseline_rss_mb"], result["stage_peak_mb"]
        print(
            f"run {run + 1}: peak RSS {peak:.0f} MB (baseline {baseline:.0f}, the stage {stage:.0f}), "
            f"CPU {result['cpu_s']:.2f} s, wall {result['wall_s']:.2f} s, "
            f"{result['rows_linked']:,} rows linked; summary {result['summary_digest']}",
            flush=True,
        )
    print(f"package: {results[0]['package']}")
    for table, value in results[0]["tables"].items():
        print(f"  {table:<20} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
