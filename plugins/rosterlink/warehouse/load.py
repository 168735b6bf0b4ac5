"""The load stage: each validated file's valid staged rows into ``source_record``, its ledger closed.

One transaction per file: a file is either fully loaded and marked ``loaded``, or untouched and
still ``pending`` for the next attempt. Rows read must equal rows loaded plus rows rejected
(:class:`ReconciliationError` otherwise: a bug, never a silent loss).

A child's ID number is never stored: only what the programme needs, its birth year-month, and
with a pseudonymisation key a keyed token (:func:`rosterlink.core.pseudonym.token`) to recognise
the same child again.
"""

from __future__ import annotations

import datetime as dt
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
            staged = staging.valid_rows(conn, file_id)
            conn.execute(r.delete().where(r.c.file_id == file_id))
            rosters = catalogue().rosters
            count = insert_many(
                conn,
                r,
                (to_record(file_id, ledger.department, row, pseudonym_key, rosters) for row in staged),
            )
            if midway is not None:
                midway()
            if ledger.rows_read != count + ledger.rows_rejected:
                raise ReconciliationError(
                    f"file_id={file_id}: read {ledger.rows_read} != loaded {count} "
                    f"+ rejected {ledger.rows_rejected}"
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
        yield LoadedFile(file_id, count)
