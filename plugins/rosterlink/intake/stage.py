"""The read stage as the night runs it, the first half of its one mapped task per file
(``tasks.read_and_validate_file``): read and normalise a file into the staging table, or reject
the file whole.

A file that cannot be read (unsafe, unreadable, no roster) is rejected whole with its reason code;
any other failure still rejects only this file. What an earlier, interrupted attempt left behind
is cleared first, so a retried task redoes its work from the start.

The bytes read must be the bytes the scan recorded: the file's SHA-256 is checked against its
ledger row before and after reading. A file overwritten or still being copied is rejected as
``file_changed_during_read`` (its ledger row stands for bytes that are gone); the new bytes are a
new file for the next scan, so they are loaded once, under their own row. A file found outside
the department folders (department ``unsorted``) is read only to tell which department's folder
it belongs in, and rejected as ``file_misplaced``.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
from pathlib import Path

import sqlalchemy as sa

from rosterlink.core.findings import FileRejected, message
from rosterlink.core.payloads import FileItem, ScannedFile
from rosterlink.core.settings import Settings
from rosterlink.core.spec import DEPARTMENTS, catalogue
from rosterlink.intake import normalise, read
from rosterlink.intake.scan import UNSORTED, sha256_of
from rosterlink.warehouse import now, schema, staging

log = logging.getLogger(__name__)


def read_file(
    eng: sa.Engine, settings: Settings, item: ScannedFile, as_of: dt.date | None = None
) -> FileItem:
    """Read and normalise one file into ``staged_row``; a file that cannot be read is rejected whole.

    ``as_of``: the night's date (default: the machine's); a date after it is refused."""
    file_id = item["file_id"]
    with eng.connect() as conn:  # the path from the ledger: the item carries the name masked (XCom)
        f = schema.intake_file
        file_name, recorded = conn.execute(
            sa.select(f.c.file_name, f.c.sha256).where(f.c.file_id == file_id)
        ).one()
    path = settings.intake_dir / file_name
    if item["department"] == UNSORTED:
        return _reject_misplaced(eng, settings, item, file_name)
    try:
        if not _same_bytes(path, recorded):
            raise FileRejected("file_changed_during_read", detail="sha256 before reading")
        result = read.read_file(path, item["department"], settings.limits)
        if not _same_bytes(path, recorded):
            raise FileRejected("file_changed_during_read", detail="sha256 after reading")
    except FileRejected as exc:
        with eng.begin() as conn:
            reject_file(conn, file_id, exc.code, exc.message_zh)
        log.warning("file_id=%s rejected whole: %s", file_id, exc.code)
        return FileItem(**item, status="rejected", reason_code=exc.code)
    except Exception as exc:  # noqa: BLE001 - any other failure still rejects only this file
        with eng.begin() as conn:
            reject_file(conn, file_id, "file_unreadable", message("file_unreadable"))
        log.warning("file_id=%s rejected whole: unreadable (%s)", file_id, type(exc).__name__)
        return FileItem(**item, status="rejected", reason_code="file_unreadable")

    rows_read = 0
    with eng.begin() as conn:
        staging.clear_file(conn, file_id)
        staging.write_notes(conn, file_id, result.notes)
        for table in result.tables:
            frame, findings = normalise.normalise_table(table, as_of)
            rows_read += staging.write_sheet(conn, file_id, table, frame, findings)
        f = schema.intake_file
        conn.execute(f.update().where(f.c.file_id == file_id).values(rows_read=rows_read))
    log.info("file_id=%s read: %d rows in %d sheets", file_id, rows_read, len(result.tables))
    return FileItem(**item, status="read", rows_read=rows_read)


def _same_bytes(path: Path, recorded: str) -> bool:
    """The file still holds the bytes the scan recorded (False: changed, replaced or gone)."""
    try:
        return sha256_of(path) == recorded
    except OSError:
        return False


def _reject_misplaced(eng: sa.Engine, settings: Settings, item: ScannedFile, file_name: str) -> FileItem:
    """A file outside the department folders (``file_name``, from the ledger): say which folder it
    belongs in, by its headers."""
    cat = catalogue()
    folder = posixpath.dirname(file_name)
    place = f"{folder}/" if folder else "报送文件夹的最上层"
    text = None
    try:
        result = read.read_file(settings.intake_dir / file_name, None, settings.limits)
        roster = cat.rosters[result.tables[0].roster]
        text = message(
            "file_misplaced",
            place=place,
            roster=roster.label,
            folder=roster.department,
            owner=cat.departments[roster.department]["label"],
        )
    except Exception as exc:  # noqa: BLE001 - an unrecognised file still gets the list of folders
        log.info(
            "file_id=%s outside the department folders, not recognised (%s)",
            item["file_id"],
            type(exc).__name__,
        )
    if text is None:
        folders = "、".join(f"“{d}”（{cat.departments[d]['label']}）" for d in DEPARTMENTS)
        text = message("file_misplaced_unknown", place=place, folders=folders)
    with eng.begin() as conn:
        reject_file(conn, item["file_id"], "file_misplaced", text)
    log.warning("file_id=%s rejected whole: file_misplaced (outside the department folders)", item["file_id"])
    return FileItem(**item, status="rejected", reason_code="file_misplaced")


def reject_file(conn: sa.Connection, file_id: int, code: str, text: str) -> None:
    """Close a file's ledger entry as rejected whole (``code``, the clerk's message ``text``)."""
    f = schema.intake_file
    staging.clear_file(conn, file_id)
    conn.execute(
        f.update()
        .where(f.c.file_id == file_id)
        .values(
            status="rejected",
            reason_code=code,
            message=text,
            rows_read=0,
            rows_loaded=0,
            rows_already=0,
            rows_rejected=0,
            rows_warned=0,
            processed_at=now(),
        )
    )
