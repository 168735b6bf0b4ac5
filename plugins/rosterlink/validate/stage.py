"""The validate stage as the night runs it, the second half of its one mapped task per file
(``tasks.read_and_validate_file``): run each staged sheet's GX suite, quarantine the failures
(``rejected_row``, ``row_warning``), mark the staged rows valid or rejected for the load stage, and
keep the GX results for the night's Data Docs (:func:`rosterlink.validate.datadocs.keep`: the pages
are built from them, no suite runs twice).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rosterlink.core.findings import Finding
from rosterlink.core.masking import mask_text
from rosterlink.core.payloads import FileItem
from rosterlink.core.spec import catalogue
from rosterlink.intake.normalise import printable
from rosterlink.validate import run as validate
from rosterlink.warehouse import insert_many, now, schema, staging

log = logging.getLogger(__name__)


def validate_file(
    eng: sa.Engine, item: FileItem, as_of: dt.date | None = None, keep_dir: Path | None = None
) -> FileItem:
    """Run the roster's GX suite over one file's staged rows; quarantine the failures.

    ``as_of``: the night's date (default: the machine's): the suites' ``today``. A file the read
    stage did not read (rejected whole) is passed on as it is. With ``keep_dir``
    (``datadocs.results_dir(export_dir)``), the sheets' GX results are kept there for the night's
    Data Docs; results that cannot be kept are logged and never fail the file."""
    if item.get("status") != "read":
        return item
    file_id = item["file_id"]
    rejected_rows = warned_rows = 0
    kept: list[dict[str, Any]] = []
    with eng.begin() as conn:
        for table in (schema.rejected_row, schema.row_warning):
            conn.execute(table.delete().where(table.c.file_id == file_id))
        for staged in staging.read_sheets(conn, [file_id]):
            sheet = staged.table
            outcome = validate.validate_table(sheet, sheet.frame, staged.findings, today=as_of)
            for target, found in (
                (schema.rejected_row, outcome.rejected),
                (schema.row_warning, outcome.warnings),
            ):
                insert_many(
                    conn, target, (_finding_row(file_id, sheet.sheet, sheet.headers, fd) for fd in found)
                )
            bad = {fd.row_number for fd in outcome.rejected}
            rejected_rows += len(bad)
            warned_rows += len({fd.row_number for fd in outcome.warnings} - bad)
            staging.mark_sheet(conn, file_id, sheet.sheet, bad)
            if outcome.gx_result is not None:
                kept.append(
                    {
                        "sheet": sheet.sheet,
                        "roster": sheet.roster,
                        "headers": dict(sheet.headers),
                        "rows": len(sheet.frame),
                        "result": outcome.gx_result,
                    }
                )
        f = schema.intake_file
        conn.execute(
            f.update()
            .where(f.c.file_id == file_id)
            .values(rows_rejected=rejected_rows, rows_warned=warned_rows)
        )
    log.info("file_id=%s validated: %d rows rejected, %d flagged", file_id, rejected_rows, warned_rows)
    if keep_dir is not None:
        from rosterlink.validate import datadocs

        try:
            datadocs.keep(keep_dir, dict(item), kept)
        except OSError as exc:  # the Data Docs of this file are lost; the night goes on
            log.warning(
                "file_id=%s: validation results not kept for Data Docs: %s", file_id, type(exc).__name__
            )
    return FileItem(**{**item, "status": "validated", "rows_rejected": rejected_rows})


def _finding_row(file_id: int, sheet: str, headers: dict[str, str], fd: Finding) -> dict[str, object]:
    """A ``rejected_row`` / ``row_warning`` row: the header as the clerk wrote it, the value masked."""
    labels = catalogue().fields
    header = headers.get(fd.field) or (labels[fd.field].label if fd.field in labels else "")
    return {
        "file_id": file_id,
        "sheet": fd.sheet or sheet,
        "row_number": fd.row_number,
        "field": fd.field,
        "reason_code": fd.reason_code,
        "message": fd.message,
        "header": printable(header) or None,  # as the clerk wrote it, without control characters
        "value": mask_text(fd.value) if fd.value is not None else None,
        "created_at": now(),
    }
