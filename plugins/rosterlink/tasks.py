"""The nightly DAG's task callables: each is a plain function of settings and small dicts.

DAG files only wire these together. Rows travel through the warehouse (``staged_row``) between
the mapped read and validate tasks, never through XCom; each callable returns a small JSON-able
summary. Every callable is idempotent: a retried task redoes its own work from the start.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import resource
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from rosterlink import figures, warehouse
from rosterlink.core.findings import FileRejected, Finding, message
from rosterlink.core.masking import mask_text
from rosterlink.core.settings import Settings
from rosterlink.core.spec import catalogue
from rosterlink.intake import scan as intake
from rosterlink.ops import faults, nightlock
from rosterlink.privacy import pseudonymise
from rosterlink.warehouse import dumps, insert_many, now, schema

if TYPE_CHECKING:
    from rosterlink.export import NightExports
    from rosterlink.followup.match import MatchSummary

log = logging.getLogger(__name__)


def _engine(settings: Settings) -> sa.Engine:
    return warehouse.connect(settings.warehouse_url)


# --- night bookkeeping ---------------------------------------------------------------------------
@contextlib.contextmanager
def night(settings: Settings, run_id: str, last: bool = False) -> Iterator[None]:
    """Every task of a night runs inside this: it holds the night's lease on the warehouse.

    The night's last task (``last=True``) releases the lease when it succeeds. On the way out it
    logs the task process's peak memory and CPU time (``task resources: ...``), the figures an
    operator sizes workers by (``benchmarks/bench_province.py`` collects them from the task logs).
    """
    started = time.perf_counter()
    try:
        with nightlock.held(_engine(settings), run_id, release_after=last):
            yield
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        log.info(
            "task resources: peak_rss_mb=%.0f cpu_s=%.1f wall_s=%.1f",
            usage.ru_maxrss / 1024,
            usage.ru_utime + usage.ru_stime,
            time.perf_counter() - started,
        )


def begin_night(settings: Settings, run_id: str, as_of: dt.date) -> dict:
    """Check the warehouse is reachable and migrated, and record the night as running."""
    eng = _engine(settings)
    n = schema.night_run
    with eng.begin() as conn:
        conn.execute(n.delete().where(n.c.run_id == run_id))
        conn.execute(n.insert().values(run_id=run_id, as_of=as_of, started_at=now(), status="running"))
    return {"run_id": run_id, "as_of": as_of.isoformat()}


def finish_night(
    settings: Settings, run_id: str, summary: dict, status: str = "success"
) -> figures.NightFigures:
    eng = _engine(settings)
    counts = night_figures(eng)
    summary = {**summary, "figures": counts}
    n = schema.night_run
    with eng.begin() as conn:
        conn.execute(
            n.update()
            .where(n.c.run_id == run_id)
            .values(finished_at=now(), status=status, summary=dumps(summary))
        )
    return counts


def where(settings: Settings) -> dict:
    """Where tonight's outputs are, as a person may read it (the warehouse URL without password)."""
    return {
        "warehouse": warehouse.display_url(settings.warehouse_url),
        "exports": str(settings.export_dir),
        "intake": str(settings.intake_dir),
        "review": str(settings.review_dir),
    }


def night_figures(eng: sa.Engine) -> figures.NightFigures:
    """The headline numbers of the warehouse as it stands (what the CLI prints): :mod:`rosterlink.figures`."""
    return figures.night_figures(eng)


# --- intake ----------------------------------------------------------------------------------------
def scan(settings: Settings, run_id: str) -> list[dict]:
    return intake.scan(_engine(settings), settings, run_id)


def _reject_file(conn: sa.Connection, file_id: int, code: str, text: str) -> None:
    f = schema.intake_file
    _clear_file(conn, file_id)
    conn.execute(
        f.update()
        .where(f.c.file_id == file_id)
        .values(
            status="rejected",
            reason_code=code,
            message=text,
            rows_read=0,
            rows_loaded=0,
            rows_rejected=0,
            rows_warned=0,
            processed_at=now(),
        )
    )


def _clear_file(conn: sa.Connection, file_id: int) -> None:
    """Remove what an earlier, interrupted attempt at this file left behind."""
    for table in (schema.staged_row, schema.rejected_row, schema.row_warning, schema.intake_sheet):
        conn.execute(table.delete().where(table.c.file_id == file_id))


def read_file(settings: Settings, item: dict) -> dict:
    """Read and normalise one file into ``staged_row``; a file that cannot be read is rejected whole."""
    from rosterlink.intake import normalise, read

    eng = _engine(settings)
    file_id = item["file_id"]
    path = settings.intake_dir / item["file_name"]
    try:
        result = read.read_file(path, item["department"], settings.limits)
    except FileRejected as exc:
        with eng.begin() as conn:
            _reject_file(conn, file_id, exc.code, exc.message_zh)
        log.warning("file_id=%s rejected whole: %s", file_id, exc.code)
        return {**item, "status": "rejected", "reason_code": exc.code}
    except Exception as exc:  # noqa: BLE001 - any other failure still rejects only this file
        with eng.begin() as conn:
            _reject_file(conn, file_id, "file_unreadable", message("file_unreadable"))
        log.warning("file_id=%s rejected whole: unreadable (%s)", file_id, type(exc).__name__)
        return {**item, "status": "rejected", "reason_code": "file_unreadable"}

    rows_read = 0
    with eng.begin() as conn:
        _clear_file(conn, file_id)
        for number, note in enumerate(result.notes, start=1):
            conn.execute(
                schema.intake_sheet.insert().values(
                    file_id=file_id, sheet=f"(说明{number})", roster=None, note=note
                )
            )
        for table in result.tables:
            frame, findings = normalise.normalise_table(table)
            by_row: dict[int, list[dict]] = {}
            for finding in findings:
                by_row.setdefault(finding.row_number, []).append(finding.as_dict())
            conn.execute(
                schema.intake_sheet.insert().values(
                    file_id=file_id,
                    sheet=table.sheet,
                    roster=table.roster,
                    header_row=table.header_row,
                    headers=dumps(table.headers),
                    rows_read=len(frame),
                )
            )
            insert_many(
                conn,
                schema.staged_row,
                (
                    {
                        "file_id": file_id,
                        "sheet": table.sheet,
                        "row_number": int(rec["_row"]),
                        "roster": table.roster,
                        "payload": dumps({k: v for k, v in rec.items() if k != "_row"}),
                        "findings": dumps(by_row.get(int(rec["_row"]), [])),
                        "state": "normalised",
                    }
                    for rec in _records(frame)
                ),
            )
            rows_read += len(frame)
        f = schema.intake_file
        conn.execute(f.update().where(f.c.file_id == file_id).values(rows_read=rows_read))
    log.info("file_id=%s read: %d rows in %d sheets", file_id, rows_read, len(result.tables))
    return {**item, "status": "read", "rows_read": rows_read}


def _records(frame: pd.DataFrame) -> list[dict]:
    """DataFrame rows as plain Python dicts (NaN/NA -> None) for JSON."""
    clean = frame.astype(object).where(pd.notna(frame), None)
    return clean.to_dict(orient="records")


def validate_file(settings: Settings, item: dict) -> dict:
    """Run the roster's GX suite over one file's staged rows; quarantine the failures."""
    from rosterlink.validate import run as validate

    if item.get("status") != "read":
        return item
    eng = _engine(settings)
    file_id = item["file_id"]
    s, st = schema.intake_sheet, schema.staged_row
    rejected_rows = warned_rows = 0
    with eng.begin() as conn:
        for table in (schema.rejected_row, schema.row_warning):
            conn.execute(table.delete().where(table.c.file_id == file_id))
        sheets = conn.execute(sa.select(s).where(s.c.file_id == file_id, s.c.roster.is_not(None))).all()
        for sheet in sheets:
            staged = conn.execute(
                sa.select(st)
                .where(st.c.file_id == file_id, st.c.sheet == sheet.sheet)
                .order_by(st.c.row_number)
            ).all()
            fields = catalogue().rosters[sheet.roster].fields
            frame = pd.DataFrame(
                [{"_row": row.row_number, **json.loads(row.payload)} for row in staged],
                columns=["_row", *fields],
            ).astype(object)
            findings = [Finding(**f) for row in staged for f in json.loads(row.findings or "[]")]
            table = SimpleNamespace(
                sheet=sheet.sheet,
                roster=sheet.roster,
                header_row=sheet.header_row,
                headers=json.loads(sheet.headers or "{}"),
                frame=frame,
            )
            outcome = validate.validate_table(table, frame, findings)
            headers = table.headers
            labels = catalogue().fields
            for target, found in (
                (schema.rejected_row, outcome.rejected),
                (schema.row_warning, outcome.warnings),
            ):
                insert_many(
                    conn,
                    target,
                    (
                        {
                            "file_id": file_id,
                            "sheet": fd.sheet or sheet.sheet,
                            "row_number": fd.row_number,
                            "field": fd.field,
                            "reason_code": fd.reason_code,
                            "message": fd.message,
                            "header": headers.get(fd.field)
                            or (labels[fd.field].label if fd.field in labels else None),
                            "value": mask_text(fd.value) if fd.value is not None else None,
                            "created_at": now(),
                        }
                        for fd in found
                    ),
                )
            bad = {fd.row_number for fd in outcome.rejected}
            rejected_rows += len(bad)
            warned_rows += len({fd.row_number for fd in outcome.warnings} - bad)
            conn.execute(
                st.update().where(st.c.file_id == file_id, st.c.sheet == sheet.sheet).values(state="valid")
            )
            if bad:
                conn.execute(
                    st.update()
                    .where(
                        st.c.file_id == file_id, st.c.sheet == sheet.sheet, st.c.row_number.in_(sorted(bad))
                    )
                    .values(state="rejected")
                )
        f = schema.intake_file
        conn.execute(
            f.update()
            .where(f.c.file_id == file_id)
            .values(rows_rejected=rejected_rows, rows_warned=warned_rows)
        )
    log.info("file_id=%s validated: %d rows rejected, %d flagged", file_id, rejected_rows, warned_rows)
    return {**item, "status": "validated", "rows_rejected": rejected_rows}


# --- load ------------------------------------------------------------------------------------------
_EVENT_FIELD = {
    "hardship_adjustment": "adjustment_type",
    "cadre_change": "change_type",
    "case": "case_status",
}
_DATE_FIELD = {
    "hardship_adjustment": "adjustment_date",
    "cadre_change": "change_date",
    "case_closure": "closure_date",
    "case": "registered_date",
}
_COLUMNS = {"town", "village", "phone", "case_number"}


def _to_record(
    file_id: int,
    department: str,
    sheet: str,
    row_number: int,
    roster_kind: str,
    payload: dict,
    pseudonym_key: bytes | None = None,
) -> dict:
    roster = catalogue().rosters[roster_kind]
    attrs = {k: v for k, v in payload.items() if v is not None}
    name_field, id_field = roster.person.get("name"), roster.person.get("id_number")
    event = payload.get(_EVENT_FIELD.get(roster_kind, ""))
    if roster_kind == "case_closure":
        event = "closed"
    date = payload.get(_DATE_FIELD.get(roster_kind, ""))
    # a child's ID number is never stored: only what the programme needs, its birth year-month, and
    # with a pseudonymisation key configured a keyed HMAC, to recognise the same child again
    child_id = attrs.pop("child_id_number", None)
    if child_id:
        attrs["child_birth_ym"] = f"{child_id[6:10]}-{child_id[10:12]}"
        if pseudonym_key:
            attrs["child_id_token"] = pseudonymise.token(pseudonym_key, child_id)
    for taken in (name_field, id_field, *_COLUMNS):
        attrs.pop(taken, None)
    return {
        "file_id": file_id,
        "sheet": sheet,
        "row_number": row_number,
        "department": department,
        "roster": roster_kind,
        "entity_kind": roster.entity_kind,
        "category": roster.category,
        "person_name": payload.get(name_field) if name_field else None,
        "id_number": payload.get(id_field) if id_field else None,
        "case_number": payload.get("case_number"),
        "town": payload.get("town") or payload.get("linked_town"),
        "village": payload.get("village"),
        "phone": payload.get("phone"),
        "event": event,
        "event_date": dt.date.fromisoformat(date) if date else None,
        "attrs": dumps(attrs),
        "loaded_at": now(),
    }


class ReconciliationError(Exception):
    """Rows read != rows loaded + rows rejected for a file: a bug, never a silent loss."""


def load(settings: Settings, items: list[dict], day: str | None = None) -> dict:
    """Move each validated file's valid rows into ``source_record`` and close its ledger entry.

    One transaction per file: a file is either fully loaded and marked ``loaded``, or untouched and
    still ``pending`` for the next attempt.
    """
    eng = _engine(settings)
    f, st, r = schema.intake_file, schema.staged_row, schema.source_record
    loaded_files, rows_loaded = 0, 0
    key = pseudonymise.secret(required=False)
    for item in sorted(
        (i for i in items if i and i.get("status") == "validated"), key=lambda i: i["file_id"]
    ):
        file_id = item["file_id"]
        with eng.begin() as conn:
            ledger = conn.execute(sa.select(f).where(f.c.file_id == file_id)).one()
            if ledger.status != "pending":
                continue
            staged = conn.execute(
                sa.select(st)
                .where(st.c.file_id == file_id, st.c.state == "valid")
                .order_by(st.c.sheet, st.c.row_number)
            ).all()
            conn.execute(r.delete().where(r.c.file_id == file_id))
            count = insert_many(
                conn,
                r,
                (
                    _to_record(
                        file_id,
                        ledger.department,
                        row.sheet,
                        row.row_number,
                        row.roster,
                        json.loads(row.payload),
                        key,
                    )
                    for row in staged
                ),
            )
            faults.point("load.mid")
            if ledger.rows_read != count + ledger.rows_rejected:
                raise ReconciliationError(
                    f"file_id={file_id}: read {ledger.rows_read} != loaded {count} + rejected {ledger.rows_rejected}"
                )
            conn.execute(
                f.update()
                .where(f.c.file_id == file_id)
                .values(
                    status="loaded",
                    rows_loaded=count,
                    processed_at=now(),
                    message=message("file_loaded", loaded=count, rejected=ledger.rows_rejected),
                )
            )
        loaded_files += 1
        rows_loaded += count
        if settings.archive:
            intake.archive(settings, item["file_name"], day or dt.date.today().isoformat())
    log.info("load: %d files, %d rows", loaded_files, rows_loaded)
    return {"files_loaded": loaded_files, "rows_loaded": rows_loaded}


# --- later stages ----------------------------------------------------------------------------------
def link(settings: Settings) -> dict:
    from rosterlink.link import night as link_stage

    return link_stage.link(_engine(settings), review_dir=settings.review_dir)


def refresh_statuses(settings: Settings, as_of: dt.date, allow_mass_end: bool = False) -> dict:
    from rosterlink import status

    return status.refresh(_engine(settings), settings.max_end_share, allow_mass_end, as_of)


def rebuild_pairings(settings: Settings, as_of: dt.date, run_id: str) -> dict:
    from rosterlink.core.spec import load_json
    from rosterlink.pairing import rebuild as pairing

    config = pairing.PairingConfig.from_mapping(load_json("pairing.json"))
    return pairing.rebuild(_engine(settings), as_of, run_id, config)


def follow_through(settings: Settings, as_of: dt.date, run_id: str) -> MatchSummary:
    """Tie tonight's visit logs to the pairs (or reject them) and rebuild the follow-through figures."""
    from rosterlink.followup import match

    return match.match(_engine(settings), as_of, run_id)


def night_file_ids(settings: Settings, run_id: str, items: list[dict]) -> list[int]:
    """Files this night touched: the ones it processed plus the ones its scan marked on sight."""
    eng = _engine(settings)
    f = schema.intake_file
    with eng.connect() as conn:
        marked = conn.execute(sa.select(f.c.file_id).where(f.c.run_id == run_id)).scalars().all()
    return sorted({*(i["file_id"] for i in items if i), *marked})


def write_exports(settings: Settings, as_of: dt.date, file_ids: list[int]) -> NightExports:
    """All of the night's workbooks in one call (the CLI's and the benchmarks' way; the DAG writes
    them in three parallel tasks: :func:`write_feedback`, :func:`write_pairing_workbook`,
    :func:`write_change_log`)."""
    from rosterlink import export

    return export.write_all(_engine(settings), settings, as_of, file_ids)


def write_feedback(settings: Settings, as_of: dt.date, file_ids: list[int]) -> dict:
    """The clerks' feedback workbooks and the departments' opinions workbooks."""
    from rosterlink import export

    eng = _engine(settings)
    feedback = export.write_feedback(eng, settings, file_ids)
    opinions = export.write_opinion_workbooks(eng, settings, as_of)
    return {"feedback": [str(p) for p in feedback], "opinions": [str(p) for p in opinions]}


def write_pairing_workbook(settings: Settings, as_of: dt.date) -> dict:
    from rosterlink import export

    return {"pairing": str(export.write_pairing_workbook(_engine(settings), settings, as_of))}


def write_change_log(settings: Settings, as_of: dt.date) -> dict:
    from rosterlink import export

    return {"change_log": str(export.write_change_log(_engine(settings), settings, as_of))}


def clear_staging(settings: Settings) -> int:
    """Remove the staged rows of every file that is no longer pending (loaded, rejected, duplicate).

    Loading leaves a file's staged rows in place, so that the night's Data Docs can be built from
    them while the rest of the night runs; the night's last task clears them. A file still pending
    (a night killed before loading it) keeps its rows: the next night reads it again anyway."""
    eng = _engine(settings)
    st, f = schema.staged_row, schema.intake_file
    with eng.begin() as conn:
        done = sa.select(f.c.file_id).where(f.c.status != "pending")
        cleared = conn.execute(st.delete().where(st.c.file_id.in_(done))).rowcount or 0
    log.info("staging: %d rows of finished files cleared", cleared)
    return cleared
