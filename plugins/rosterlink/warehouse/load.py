"""The load stage: each validated file's valid staged rows into ``source_record``, its ledger closed.

One transaction per file: a file is either fully loaded and marked ``loaded``, or untouched and
still ``pending`` for the next attempt. Rows read must equal rows loaded plus rows already
recorded plus rows rejected (:class:`ReconciliationError` otherwise: a bug, never a silent loss).

A clerk corrects a row and drops the whole file again, as the feedback workbook asks. A valid row
identical (same roster, same normalised fields) to a row an earlier file of the same department
loaded is already recorded (已计入): counted in ``rows_already``, neither loaded again (no double
count, no duplicate visit) nor rejected. A loaded row at a place (sheet, row) an earlier version of
the same file (same department and file name) also had is a changed row (``resent``, 已更新); the
rest are new.

A child's ID number is never stored: only what the programme needs, its birth year-month, and
with a pseudonymisation key a keyed token (:func:`rosterlink.core.pseudonym.token`) to recognise
the same child again; and the file's staged rows lose it in the transaction that loads the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from rosterlink.core import pseudonym
from rosterlink.core.findings import message
from rosterlink.core.spec import RosterSpec, catalogue
from rosterlink.warehouse import schema, staging
from rosterlink.warehouse.bulk import insert_many
from rosterlink.warehouse.db import dumps, now

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


class ReconciliationError(Exception):
    """Rows read != rows loaded + rows rejected for a file: a bug, never a silent loss."""


@dataclass(frozen=True)
class LoadedFile:
    file_id: int
    rows_loaded: int
    rows_already: int = 0
    file_name: str = ""  # relative to the intake root, from the ledger (the archive moves it)


_HASH_BATCH = 500


def row_hash(roster: str, payload: dict[str, Any]) -> str:
    """The fingerprint of a row's content: its roster and normalised fields (not its place)."""
    text = json.dumps([roster, payload], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _recorded(
    conn: sa.Connection, department: str, file_id: int, hashes: Iterable[str]
) -> dict[str, tuple[int, str, int]]:
    """Which of ``hashes`` a row of another file of ``department`` already loaded, each with the
    first such row (file_id, sheet, row_number)."""
    r = schema.source_record
    wanted, found = sorted(set(hashes)), dict[str, tuple[int, str, int]]()
    for i in range(0, len(wanted), _HASH_BATCH):
        for row in conn.execute(
            sa.select(r.c.row_hash, r.c.file_id, r.c.sheet, r.c.row_number)
            .where(
                r.c.department == department,
                r.c.row_hash.in_(wanted[i : i + _HASH_BATCH]),
                r.c.file_id != file_id,
            )
            .order_by(r.c.record_id)
        ):
            found.setdefault(row.row_hash, (row.file_id, row.sheet, row.row_number))
    return found


def _earlier_places(conn: sa.Connection, ledger: sa.Row) -> set[tuple[str, int]]:
    """The places (sheet, row) that earlier versions of this file (same department and file name,
    loaded) had a row at, loaded or rejected."""
    f, r, x = schema.intake_file, schema.source_record, schema.rejected_row
    earlier = (
        sa.select(f.c.file_id)
        .where(
            f.c.department == ledger.department,
            f.c.file_name == ledger.file_name,
            f.c.file_id < ledger.file_id,
            f.c.status == "loaded",
        )
        .scalar_subquery()
    )
    places: set[tuple[str, int]] = set()
    for table in (r, x):
        places.update(
            (row.sheet, row.row_number)
            for row in conn.execute(
                sa.select(table.c.sheet, table.c.row_number).where(table.c.file_id.in_(earlier)).distinct()
            )
        )
    return places


def ledger_message(conn: sa.Connection, file_id: int) -> str:
    """The file's result in one line for the clerk: loaded and rejected rows, and for a re-sent
    file which rows were new, changed and already recorded."""
    f, r = schema.intake_file, schema.source_record
    ledger = conn.execute(
        sa.select(f.c.rows_loaded, f.c.rows_already, f.c.rows_rejected).where(f.c.file_id == file_id)
    ).one()
    changed = conn.execute(
        sa.select(sa.func.count()).where(r.c.file_id == file_id, r.c.resent.is_(True))
    ).scalar_one()
    if not ledger.rows_already and not changed:
        return message("file_loaded", loaded=ledger.rows_loaded, rejected=ledger.rows_rejected)
    return message(
        "file_loaded_resent",
        new=ledger.rows_loaded - changed,
        changed=changed,
        already=ledger.rows_already,
        rejected=ledger.rows_rejected,
    )


def to_record(
    file_id: int,
    department: str,
    row: staging.StagedRow,
    pseudonym_key: bytes | None = None,
    rosters: Mapping[str, RosterSpec] | None = None,
) -> dict[str, Any]:
    """One staged row as a ``source_record`` row: person, case, place and event columns taken out
    of the payload, the rest kept as ``attrs`` (JSON), a child's ID number replaced.

    ``rosters``: the catalogue's rosters, looked up once by a caller converting many rows."""
    roster = (rosters if rosters is not None else catalogue().rosters)[row.roster]
    payload = row.payload
    attrs = {k: v for k, v in payload.items() if v is not None}
    name_field, id_field = roster.person.get("name"), roster.person.get("id_number")
    event = payload.get(_EVENT_FIELD.get(row.roster, ""))
    if row.roster == "case_closure":
        event = "closed"
    date = payload.get(_DATE_FIELD.get(row.roster, ""))
    child_id = attrs.pop("child_id_number", None)
    if child_id:
        attrs["child_birth_ym"] = f"{child_id[6:10]}-{child_id[10:12]}"
        if pseudonym_key:
            attrs["child_id_token"] = pseudonym.token(pseudonym_key, child_id)
    for taken in (name_field, id_field, *_COLUMNS):
        if taken:
            attrs.pop(taken, None)
    return {
        "file_id": file_id,
        "sheet": row.sheet,
        "row_number": row.row_number,
        "department": department,
        "roster": row.roster,
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


def load_files(
    eng: sa.Engine,
    file_ids: Iterable[int],
    pseudonym_key: bytes | None = None,
    *,
    midway: Callable[[], None] | None = None,
) -> Iterator[LoadedFile]:
    """Load each of ``file_ids`` (in id order) that is still ``pending``; yields each file as its
    transaction commits, so a caller can act on it (archive it) before the next file starts.

    ``midway`` runs inside each file's transaction, its rows written and not yet committed (the
    kill tests' failpoint ``load.mid``).
    """
    f, r = schema.intake_file, schema.source_record
    for file_id in sorted(file_ids):
        with eng.begin() as conn:
            ledger = conn.execute(sa.select(f).where(f.c.file_id == file_id)).one()
            if ledger.status != "pending":
                continue
            conn.execute(r.delete().where(r.c.file_id == file_id))
            rosters = catalogue().rosters
            conn.execute(schema.recorded_row.delete().where(schema.recorded_row.c.file_id == file_id))
            # two passes over the staged rows (payloads parsed as reached, never all held at once):
            # their fingerprints first, then the records
            hashes = [
                (row.sheet, row.row_number, row_hash(row.roster, row.payload))
                for row in staging.valid_rows(conn, file_id)
            ]
            recorded = _recorded(conn, ledger.department, file_id, (h for _, _, h in hashes))
            places = _earlier_places(conn, ledger) if hashes else set()
            already = insert_many(
                conn,
                schema.recorded_row,
                (
                    {
                        "file_id": file_id,
                        "sheet": sheet,
                        "row_number": row_number,
                        "earlier_file_id": recorded[h][0],
                        "earlier_sheet": recorded[h][1],
                        "earlier_row_number": recorded[h][2],
                    }
                    for sheet, row_number, h in hashes
                    if h in recorded
                ),
            )
            count = insert_many(
                conn,
                r,
                (
                    {
                        **to_record(file_id, ledger.department, row, pseudonym_key, rosters),
                        "row_hash": h,
                        "resent": (row.sheet, row.row_number) in places,
                    }
                    for row, (_, _, h) in zip(staging.valid_rows(conn, file_id), hashes, strict=True)
                    if h not in recorded
                ),
            )
            # the staged copies of a child's data go in the same transaction: a night that fails
            # after this file is loaded leaves no child's ID number in the staging table
            staging.forget_minors(conn, file_id)
            if midway is not None:
                midway()
            if ledger.rows_read != count + already + ledger.rows_rejected:
                raise ReconciliationError(
                    f"file_id={file_id}: read {ledger.rows_read} != loaded {count} "
                    f"+ already recorded {already} + rejected {ledger.rows_rejected}"
                )
            conn.execute(
                f.update()
                .where(f.c.file_id == file_id)
                .values(status="loaded", rows_loaded=count, rows_already=already, processed_at=now())
            )
            conn.execute(
                f.update().where(f.c.file_id == file_id).values(message=ledger_message(conn, file_id))
            )
        yield LoadedFile(file_id, count, already, ledger.file_name)
