"""A fingerprint of what `make demo` wrote: every warehouse table dumped in a stable order and the
SHA-256 of every file under the intake and export folders (workbooks, Data Docs, review queue).

Used to show that a behaviour-neutral change (a refactor) writes the same warehouse and the same
workbooks as before it:

    .venv/bin/python scripts/demo_fingerprint.py data > before.txt
    ... change, make demo ...
    .venv/bin/python scripts/demo_fingerprint.py data > after.txt
    diff before.txt after.txt

Wall-clock values are the only thing that may differ between two runs of the same code on the same
day: columns of type DATETIME and TIMESTAMP, Airflow run ids (they carry the moment the run was
triggered), the figures JSON a night records with its timings, and files whose content carries the
moment they were written (Data Docs pages, the night's alert log). Those are replaced by a
placeholder (``<clock>``) so that the diff shows real differences only.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import sys
import zipfile
from pathlib import Path

CLOCK = "<clock>"
RUN_ID = re.compile(r"(manual|scheduled|backfill|asset_triggered)__[0-9T:.+\-]+(_[A-Za-z0-9]+)?")
CLOCK_TYPES = ("DATETIME", "TIMESTAMP")
# surrogate ids of tables written by the mapped per-file tasks: they number rows in the order the
# parallel tasks happened to finish, so only the rows, not their ids, are compared
PARALLEL_IDS = {"rejected_row": "id", "row_warning": "id", "intake_sheet": "id"}
# files whose bytes carry the moment they were written: listed by name, never hashed
CLOCK_FILES = re.compile(r"(^|/)data_docs/|\.log$|\.lock$|alerts\.jsonl$|-wal$|-shm$|migrate-lock$")
# inside a workbook: the document's creation stamps and a time of day written in a cell (feedback
# workbooks say when a file was received and processed)
# the town workbooks' records (``.rosterlink/*.json``): the run that wrote them and the file's mtime
RECORD_CLOCK = re.compile(r'"mtime_ns": \d+')
XLSX_CLOCK = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z|\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?")


def _workbook(path: Path) -> str:
    """``bytes=<sha256>`` when the workbook carries no clock, else ``content=<sha256>`` of its parts
    with the clock values replaced (two runs of the same code differ only there)."""
    raw = path.read_bytes()
    digest, clocked = hashlib.sha256(), False
    with zipfile.ZipFile(path) as book:
        for info in sorted(book.infolist(), key=lambda i: i.filename):
            part = book.read(info)
            plain = XLSX_CLOCK.sub(b"<clock>", part)
            clocked |= plain != part
            digest.update(info.filename.encode() + b"\0" + plain + b"\0")
    if clocked:
        return f"content={digest.hexdigest()}"
    return f"bytes={hashlib.sha256(raw).hexdigest()}"


def _dump_warehouse(db: Path) -> list[str]:
    out: list[str] = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    for table in tables:
        columns = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        names = [c[1] for c in columns]
        clock = {i for i, c in enumerate(columns) if any(t in (c[2] or "").upper() for t in CLOCK_TYPES)}
        if PARALLEL_IDS.get(table) in names:
            clock.add(names.index(PARALLEL_IDS[table]))
        if table == "night_run":
            clock |= {names.index("summary")} if "summary" in names else set()
        rows = []
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            cells = [CLOCK if i in clock and v is not None else v for i, v in enumerate(row)]
            rows.append("|".join(RUN_ID.sub("<run>", repr(c)) for c in cells))
        out.append(f"## {table} ({len(rows)} rows) {','.join(names)}")
        out.extend(sorted(rows))
    conn.close()
    return out


def _hash_files(root: Path) -> list[str]:
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = RUN_ID.sub("<run>", path.relative_to(root).as_posix())
        if rel.startswith("airflow/"):  # the CLI's private Airflow home: metadata and logs, not outputs
            continue
        if rel.endswith(".db") or CLOCK_FILES.search(rel):
            if rel.endswith(("-wal", "-shm")):  # SQLite's journal beside the database, there or not
                continue
            out.append(f"{rel} {CLOCK}")
            continue
        if path.suffix == ".xlsx":
            out.append(f"{rel} {_workbook(path)}")
            continue
        if "/.rosterlink/" in f"/{rel}" and path.suffix == ".json":
            text = RUN_ID.sub("<run>", path.read_text(encoding="utf-8"))
            text = RECORD_CLOCK.sub('"mtime_ns": "<clock>"', text)
            out.append(f"{rel} content={hashlib.sha256(text.encode()).hexdigest()}")
            continue
        out.append(f"{rel} bytes={hashlib.sha256(path.read_bytes()).hexdigest()}")
    return out


def main(argv: list[str]) -> int:
    data = Path(argv[1] if len(argv) > 1 else "data")
    lines = ["# files", *_hash_files(data), "# warehouse", *_dump_warehouse(data / "warehouse.db")]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
