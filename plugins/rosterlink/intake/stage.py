"""The read stage as the night runs it, one mapped task per file: read and normalise a file into
the staging table, or reject the file whole.

A file that cannot be read (unsafe, unreadable, no roster) is rejected whole with its reason code;
any other failure still rejects only this file. What an earlier, interrupted attempt left behind
is cleared first, so a retried task redoes its work from the start.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from rosterlink.core.findings import FileRejected, message
from rosterlink.core.payloads import FileItem, ScannedFile
from rosterlink.core.settings import Settings
from rosterlink.intake import normalise, read
from rosterlink.warehouse import now, schema, staging

log = logging.getLogger(__name__)


def read_file(eng: sa.Engine, settings: Settings, item: ScannedFile) -> FileItem:
    """Read and normalise one file into ``staged_row``; a file that cannot be read is rejected whole."""
    file_id = item["file_id"]
    path = settings.intake_dir / item["file_name"]
    try:
        result = read.read_file(path, item["department"], settings.limits)
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
            frame, findings = normalise.normalise_table(table)
            rows_read += staging.write_sheet(conn, file_id, table, frame, findings)
        f = schema.intake_file
        conn.execute(f.update().where(f.c.file_id == file_id).values(rows_read=rows_read))
    log.info("file_id=%s read: %d rows in %d sheets", file_id, rows_read, len(result.tables))
    return FileItem(**item, status="read", rows_read=rows_read)


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
