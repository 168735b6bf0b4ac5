"""The night's Data Docs: time to build them from the validate tasks' kept results.

    .venv/bin/python benchmarks/bench_datadocs.py [--scale 10]

Writes the sample district at ``--scale``, reads and validates every file through the tasks the
DAG calls (which keep their GX results), then times ``datadocs.build_night`` (rendering only: no
suite runs again) and prints the rows, sheets, seconds and the size of the site.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

from rosterlink import tasks
from rosterlink.core import settings
from rosterlink.synthetic import sample
from rosterlink.validate import datadocs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-datadocs-") as tmp:
        root = Path(tmp)
        sample.generate(root / "intake", night=1, scale=args.scale)
        cfg = settings.load(
            intake_dir=str(root / "intake"),
            warehouse_url=f"sqlite:///{root / 'w.db'}",
            export_dir=str(root / "exports"),
        )
        started = time.perf_counter()
        items = [tasks.validate_file(cfg, tasks.read_file(cfg, i)) for i in tasks.scan(cfg, "bench")]
        read_validate = time.perf_counter() - started
        started = time.perf_counter()
        result = datadocs.build_night(cfg, items, as_of=dt.date(2026, 11, 25), run_id="bench")
        build = time.perf_counter() - started
        site = Path(result["data_docs"])
        size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
        rows = sum(int(i.get("rows_read") or 0) for i in items)
        print(f"scale {args.scale:g}: {rows:,} rows in {len(items)} files, {result['sheets']} sheets")
        print(f"read + validate (keeps the GX results): {read_validate:.1f} s")
        print(f"Data Docs from the kept results: {build:.2f} s, site {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
