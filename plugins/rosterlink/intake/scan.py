"""Intake: find new files in the intake folder and record each exactly once in the ledger.

The ledger (``intake_file``) identifies a file by its path relative to the intake root and the
SHA-256 of its bytes. The same bytes as a file loaded (or queued tonight in the same department
folder) dropped again under another name are recorded as ``duplicate`` and not loaded again; a
rejected file's bytes are not "already imported", so a copy of a rejected file is read (and a
duplicate whose original was rejected after all is queued on the next scan). A copy of a file
queued tonight in another department's folder is read too: a roster belongs to one department, so
at most one of the two loads (the one in its own folder, the same night), the other is rejected
as filed in the wrong folder. A corrected file dropped under the same name is
new. Files are never deleted. A file still being written (modified in the last few seconds, or
with an Excel lock file beside it) is left for the next scan. Symlinks and anything resolving
outside the intake root are rejected without being read.

Every file a person dropped is recorded, wherever it is: a file at the intake root or in a folder
other than the department folders is recorded under the department :data:`UNSORTED` (the read
stage tells which department folder it belongs in, and rejects it); a file whose name is not
valid UTF-8 (GBK bytes from an unzipped Windows archive or a Samba share) is rejected at once with
its name decoded best-effort for display. Only what the product itself writes in the intake tree
is passed over: ``<department>/feedback/`` and the root's ``feedback/`` (the feedback workbooks),
``review/`` (the link review queue), Excel's ``~$`` lock files, hidden ``.`` files and the
desktop files the operating system leaves (``Thumbs.db``, ``desktop.ini``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from rosterlink.core.findings import message
from rosterlink.core.masking import mask_text
from rosterlink.core.payloads import ScannedFile
from rosterlink.core.settings import Settings
from rosterlink.core.spec import DEPARTMENTS
from rosterlink.warehouse import now, schema

log = logging.getLogger(__name__)

FEEDBACK_DIR = "feedback"
"""The feedback workbooks' folder: in each department folder, and at the intake root for files
found outside the department folders."""
REVIEW_DIR = "review"
"""The link review queue's folder at the intake root (``Settings.review_dir``)."""
UNSORTED = "unsorted"
"""The ledger's department for a file found outside the department folders."""
_IGNORED_PREFIXES = (".", "~$")
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})


@dataclass(frozen=True)
class Found:
    department: str
    path: Path  # absolute
    file_name: str  # relative to the intake root, posix separators (undecodable bytes as \\xNN)
    unsafe: bool
    bad_name: str | None = None  # a name that is not UTF-8: best-effort GBK reading, for display


_ESCAPED_RUN = re.compile(r"(?:\\x[0-9a-f]{2})+")


def readable_name(file_name: str) -> str:
    """A ledger ``file_name`` as a clerk would recognise it: the ``\\xNN`` bytes of a name that was
    not UTF-8 decoded best-effort as GBK (``\\xcc\\xd8\\xc0\\xa7.xlsx`` -> ``特困.xlsx``)."""

    def gbk(run: re.Match[str]) -> str:
        raw = bytes.fromhex(run.group(0).replace("\\x", ""))
        return raw.decode("gb18030", errors="replace")

    return _ESCAPED_RUN.sub(gbk, file_name)


def _ignored(name: str) -> bool:
    return name.startswith(_IGNORED_PREFIXES) or name.lower() in _IGNORED_NAMES


def _found(department: str, path: Path, root: Path) -> Found | None:
    """One file as the ledger will see it (None: not a regular file and not unsafe)."""
    rel = path.relative_to(root).as_posix()
    unsafe = path.is_symlink() or not path.resolve().is_relative_to(root) or ".." in Path(rel).parts
    if not unsafe and not path.is_file():
        return None
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode left surrogates for bytes that are not UTF-8
        raw = os.fsencode(rel)
        shown = raw.decode("utf-8", errors="backslashreplace")
        guess = os.fsencode(path.name).decode("gb18030", errors="replace")
        return Found(department, path, shown, unsafe, bad_name=guess)
    return Found(department, path, rel, unsafe)


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


def _changed_lately(path: Path, since_ns: int) -> bool:
    """The file's data or its inode changed after ``since_ns`` (or its times are in the future):
    the later of its modification time and its status-change time, which no copy that keeps the
    original's modification time (``cp -p``, Explorer) can set back."""
    st = path.stat()
    return max(st.st_mtime_ns, st.st_ctime_ns) > since_ns


def _still_written(candidates: list[Found], settle_seconds: float) -> set[Path]:
    """Files whose size or modification time changes within ``settle_seconds``, or that Excel
    holds open (a ``~$name`` lock file beside them): a clerk's copy still in progress.

    When no file has changed in the last ``settle_seconds`` (the files of earlier nights still in
    the folder, and nothing new), every one has already been still for that long: the scan does not
    wait to watch them."""
    busy = {f.path for f in candidates if (f.path.parent / ("~$" + f.path.name)).exists()}
    if settle_seconds <= 0:
        return busy
    before = {f.path: _signature(f.path) for f in candidates if f.path not in busy}
    since_ns = time.time_ns() - int(settle_seconds * 1e9)
    try:
        lately = any(_changed_lately(path, since_ns) for path in before)
    except OSError:
        lately = True  # one went while looking: watch them all
    if not lately:
        return busy
    time.sleep(settle_seconds)
    for path, signature in before.items():
        try:
            if _signature(path) != signature:
                busy.add(path)
        except FileNotFoundError:
            busy.add(path)
    return busy


def walk(intake_dir: Path, settle_seconds: float = 0.0) -> list[Found]:
    """Every candidate file under the intake folder, in a stable order: the department folders'
    files under their department, every other file a person dropped under :data:`UNSORTED`."""
    root = intake_dir.resolve()
    found: list[Found] = []
    bases: list[tuple[str, Path]] = [(d, root / d) for d in DEPARTMENTS]
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.name in DEPARTMENTS:
            continue  # walked below
        if entry.name in (FEEDBACK_DIR, REVIEW_DIR) and entry.is_dir() and not entry.is_symlink():
            continue  # the product's own folders
        if _ignored(entry.name):
            continue
        if entry.is_dir() and not entry.is_symlink():
            bases.append((UNSORTED, entry))
        else:
            item = _found(UNSORTED, entry, root)
            if item is not None:
                found.append(item)
    for department, base in bases:
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d
                for d in dirnames
                if not _ignored(d) and not (here == base and department != UNSORTED and d == FEEDBACK_DIR)
            )
            for name in sorted(filenames):
                if _ignored(name):
                    continue
                item = _found(department, here / name, root)
                if item is not None:
                    found.append(item)
    # directories that are symlinks are not followed by os.walk; report them as unsafe too
    for department, base in bases:
        if base.is_dir() and not base.is_symlink():
            for entry in sorted(base.rglob("*")):
                if entry.is_symlink() and entry.is_dir():
                    item = _found(department, entry, root)
                    if item is not None:
                        found.append(item)
    busy = _still_written([f for f in found if not f.unsafe], settle_seconds)
    for item in found:
        if item.path in busy:
            log.info("file %s is still being written; left for the next scan", item.file_name)
    return [f for f in found if f.path not in busy]


def scan(eng: sa.Engine, settings: Settings, run_id: str) -> list[ScannedFile]:
    """Record new files in the ledger; return the files to read tonight (pending ones).

    A file left ``pending`` by a night that died is returned again (same ``file_id``); so is a
    ``duplicate`` whose original has since been rejected (nothing with its bytes is loaded).
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
                status = seen.status
                if status == "duplicate" and _original(conn, digest, seen.file_id) is None:
                    status = "pending"
                    conn.execute(
                        t.update()
                        .where(t.c.file_id == seen.file_id)
                        .values(
                            status="pending",
                            reason_code=None,
                            message=None,
                            duplicate_of=None,
                            processed_at=None,
                            run_id=run_id,
                        )
                    )
                    log.info(
                        "ledger: file_id=%s is no longer a duplicate (its original was not loaded); queued",
                        seen.file_id,
                    )
                if status == "pending":
                    todo.append(
                        ScannedFile(
                            file_id=seen.file_id,
                            department=item.department,
                            file_name=mask_text(item.file_name),
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
            if not item.unsafe and item.bad_name is None and item.department != UNSORTED:
                original = _original(conn, digest, department=item.department)
            if item.unsafe:
                row.update(
                    status="rejected",
                    reason_code="file_outside_intake",
                    message=message("file_outside_intake"),
                    processed_at=now(),
                )
            elif item.bad_name is not None:
                row.update(
                    status="rejected",
                    reason_code="file_name_encoding",
                    message=message("file_name_encoding", guess=item.bad_name),
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
                    ScannedFile(
                        file_id=file_id, department=item.department, file_name=mask_text(item.file_name)
                    )
                )
    todo.sort(key=lambda f: f["file_id"])
    return todo


def _original(
    conn: sa.Connection, digest: str, other_than: int | None = None, department: str | None = None
) -> sa.Row | None:
    """The first file with these bytes that is loaded (in a department folder) or queued (in
    ``department``'s folder, when given; else in any department folder): what makes another copy a
    duplicate. A rejected file's bytes were never imported; a copy queued in another department's
    folder may be the misfiled one, rejected tonight, so it does not make this one wait a night."""
    t = schema.intake_file
    queued = t.c.status == "pending"
    if department is not None:
        queued = sa.and_(queued, t.c.department == department)
    query = (
        sa.select(t.c.file_id, t.c.file_name)
        .where(t.c.sha256 == digest, sa.or_(t.c.status == "loaded", queued), t.c.department != UNSORTED)
        .order_by(t.c.file_id)
        .limit(1)
    )
    if other_than is not None:
        query = query.where(t.c.file_id != other_than)
    return conn.execute(query).first()


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
