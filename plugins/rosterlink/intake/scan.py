"""Intake: find new files in the department folders and record each exactly once in the ledger.

The ledger (``intake_file``) identifies a file by its path relative to the intake root and the
SHA-256 of its bytes. The same bytes dropped again under another name are recorded as
``duplicate`` and not loaded again; a corrected file dropped under the same name is new. Files are
never deleted. A file still being written (modified in the last few seconds, or with an Excel lock
file beside it) is left for the next scan. Symlinks and anything resolving outside the intake root
are rejected without being read.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from rosterlink.core.findings import message
from rosterlink.core.payloads import ScannedFile
from rosterlink.core.settings import Settings
from rosterlink.core.spec import DEPARTMENTS
from rosterlink.warehouse import now, schema

log = logging.getLogger(__name__)

FEEDBACK_DIR = "feedback"
_IGNORED_PREFIXES = (".", "~$", "_")


@dataclass(frozen=True)
class Found:
    department: str
    path: Path  # absolute
    file_name: str  # relative to the intake root, posix separators
    unsafe: bool


def ensure_folders(intake_dir: Path) -> None:
    for department in DEPARTMENTS:
        (intake_dir / department).mkdir(parents=True, exist_ok=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _still_written(candidates: list[Found], settle_seconds: float) -> set[Path]:
    """Files whose size or modification time changes within ``settle_seconds``, or that Excel
    holds open (a ``~$name`` lock file beside them): a clerk's copy still in progress."""
    busy = {f.path for f in candidates if (f.path.parent / ("~$" + f.path.name)).exists()}
    if settle_seconds <= 0:
        return busy
    before = {f.path: _signature(f.path) for f in candidates if f.path not in busy}
    time.sleep(settle_seconds)
    for path, signature in before.items():
        try:
            if _signature(path) != signature:
                busy.add(path)
        except FileNotFoundError:
            busy.add(path)
    return busy


def walk(intake_dir: Path, settle_seconds: float = 0.0) -> list[Found]:
    """Every candidate file under the department folders, in a stable order."""
    root = intake_dir.resolve()
    found: list[Found] = []
    for department in DEPARTMENTS:
        base = root / department
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if d != FEEDBACK_DIR and not d.startswith(_IGNORED_PREFIXES)
            )
            for name in sorted(filenames):
                if name.startswith(_IGNORED_PREFIXES):
                    continue
                path = here / name
                rel = path.relative_to(root).as_posix()
                unsafe = (
                    path.is_symlink() or not path.resolve().is_relative_to(root) or ".." in Path(rel).parts
                )
                if not unsafe and not path.is_file():
                    continue
                found.append(Found(department, path, rel, unsafe))
    # directories that are symlinks are not followed by os.walk; report them as unsafe too
    for department in DEPARTMENTS:
        base = root / department
        if base.is_dir():
            for entry in sorted(base.rglob("*")):
                if entry.is_symlink() and entry.is_dir():
                    found.append(Found(department, entry, entry.relative_to(root).as_posix(), True))
    busy = _still_written([f for f in found if not f.unsafe], settle_seconds)
    for item in found:
        if item.path in busy:
            log.info("file %s is still being written; left for the next scan", item.file_name)
    return [f for f in found if f.path not in busy]


def scan(eng: sa.Engine, settings: Settings, run_id: str) -> list[ScannedFile]:
    """Record new files in the ledger; return the files to read tonight (pending ones).

    A file left ``pending`` by a night that died is returned again (same ``file_id``).
    """
    ensure_folders(settings.intake_dir)
    t = schema.intake_file
    todo: list[ScannedFile] = []
    found = walk(settings.intake_dir, settings.limits.settle_seconds)
    _retire_vanished(eng, settings, {f.file_name for f in found})
    for item in found:
        if item.unsafe:
            digest = hashlib.sha256(("unsafe:" + item.file_name).encode()).hexdigest()
            size = 0
        else:
            digest = sha256_of(item.path)
            size = item.path.stat().st_size
        with eng.begin() as conn:
            seen = conn.execute(
                sa.select(t.c.file_id, t.c.status).where(
                    t.c.file_name == item.file_name, t.c.sha256 == digest
                )
            ).first()
            if seen is not None:
                if seen.status == "pending":
                    todo.append(
                        ScannedFile(
                            file_id=seen.file_id, department=item.department, file_name=item.file_name
                        )
                    )
                continue
            row = {
                "department": item.department,
                "file_name": item.file_name,
                "sha256": digest,
                "size_bytes": size,
                "received_at": now(),
                "run_id": run_id,
            }
            original = None
            if not item.unsafe:
                original = conn.execute(
                    sa.select(t.c.file_id, t.c.file_name)
                    .where(t.c.sha256 == digest, t.c.status != "duplicate")
                    .order_by(t.c.file_id)
                    .limit(1)
                ).first()
            if item.unsafe:
                row.update(
                    status="rejected",
                    reason_code="file_outside_intake",
                    message=message("file_outside_intake"),
                    processed_at=now(),
                )
            elif original is not None:
                row.update(
                    status="duplicate",
                    reason_code="file_duplicate",
                    duplicate_of=original.file_id,
                    message=message("file_duplicate", original=original.file_name),
                    processed_at=now(),
                )
            else:
                row.update(status="pending")
            inserted = conn.execute(t.insert().values(**row)).inserted_primary_key
            assert inserted is not None  # a single-row INSERT
            file_id = inserted[0]
            log.info("ledger: file %s recorded as %s (file_id=%s)", item.file_name, row["status"], file_id)
            if row["status"] == "pending":
                todo.append(
                    ScannedFile(file_id=file_id, department=item.department, file_name=item.file_name)
                )
    todo.sort(key=lambda f: f["file_id"])
    return todo


def _retire_vanished(eng: sa.Engine, settings: Settings, present: set[str]) -> None:
    """A pending file (from a night that died) that was replaced or removed before it was read."""
    t = schema.intake_file
    with eng.begin() as conn:
        pending = conn.execute(
            sa.select(t.c.file_id, t.c.file_name, t.c.sha256).where(t.c.status == "pending")
        ).all()
        for file_id, file_name, digest in pending:
            path = settings.intake_dir / file_name
            if file_name in present and path.is_file() and sha256_of(path) == digest:
                continue
            if settings.archive and (settings.archive_dir).exists():
                continue  # archived mid-night: the load already happened or will be retried from the archive
            conn.execute(
                t.update()
                .where(t.c.file_id == file_id)
                .values(
                    status="rejected",
                    reason_code="file_replaced",
                    message=message("file_replaced"),
                    processed_at=now(),
                )
            )
            log.info("ledger: pending file_id=%s was replaced or removed before it was read", file_id)


def archive(settings: Settings, file_name: str, day: str) -> Path | None:
    """Move a processed file into ``<intake>_archive/<day>/<file_name>`` (never deletes)."""
    source = settings.intake_dir / file_name
    if not source.is_file() or source.is_symlink():
        return None
    target = settings.archive_dir / day / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.stem}.{int(time.time())}{target.suffix}")
    shutil.move(str(source), target)
    return target
