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
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# what the link stage writes, in a fixed order (the columns that stamp the night's time left out)
WRITTEN = {
    "source_record": "record_id, entity_kind, entity_key",
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


def digest(db: Path) -> dict[str, str]:
    """A digest per table the stage writes (rows in a fixed order)."""
    out = {}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for table, columns in WRITTEN.items():
            h = hashlib.sha256()
            n = 0
            for row in conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1, 2, 3"):
                h.update(repr(row).encode())
                n += 1
            out[table] = f"{n} rows {h.hexdigest()[:16]}"
    return out


def child(db: Path) -> dict:
    """Run the link stage on ``db`` (in the fresh process) and return its figures."""
    import duckdb  # noqa: F401 (imported before the baseline: the stage's engine)
    import splink  # noqa: F401

    import rosterlink
    from rosterlink import warehouse
    from rosterlink.link import model  # noqa: F401
    from rosterlink.link import night as link_stage
    from rosterlink.link.config import load_config

    eng = warehouse.connect(f"sqlite:///{db}")
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
        "tables": digest(db),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snapshot", type=Path, help="a warehouse copied by bench_night.py --snapshot-link")
    p.add_argument("--plugins", type=Path, default=ROOT / "plugins", help="the tree whose package runs")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--json", type=Path)
    p.add_argument("--_child", dest="child_db", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_db:
        print(json.dumps(child(args.child_db)))
        return 0
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="rl-link-alone-") as tmp:
            db = Path(tmp) / "warehouse.db"
            shutil.copyfile(args.snapshot, db)
            env = {
                **os.environ,
                "PYTHONPATH": str(args.plugins.resolve()),
                "ROSTERLINK_WAREHOUSE_URL": f"sqlite:///{db}",
            }
            proc = subprocess.run(
                [sys.executable, __file__, str(args.snapshot), "--_child", str(db)],
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
