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
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from rosterlink.core import pseudonym
from rosterlink.core.findings import message
from rosterlink.core.spec import RosterSpec, catalogue
from rosterlink.warehouse import schema, staging
from rosterlink.warehouse.bulk import IN_LIST, batched, insert_many, insert_rows
from rosterlink.warehouse.db import analyze, dumps, loads, now

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


def row_hash(roster: str, payload: dict[str, Any]) -> str:
    """The fingerprint of a row's content: its roster and normalised fields (not its place)."""
    text = json.dumps([roster, payload], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def staged_row_hash(roster: str, payload: str) -> str:
    """:func:`row_hash` of a staged row from its payload's JSON text as staged, without parsing it.

    The staging writes a payload with :func:`rosterlink.warehouse.db.dumps`: the very text
    ``json.dumps([roster, payload], sort_keys=True, ensure_ascii=False, default=str)`` holds after
    the roster (what such a text parses to is written back as the same text)."""
    text = f"{_roster_json(roster)}{payload}]"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@lru_cache(maxsize=64)
def _roster_json(roster: str) -> str:
    return f"[{json.dumps(roster, ensure_ascii=False)}, "


def _recorded(
    conn: sa.Connection, department: str, file_id: int, hashes: Iterable[str]
) -> dict[str, tuple[int, str, int]]:
    """Which of ``hashes`` a row of another file of ``department`` already loaded, each with the
    first such row (file_id, sheet, row_number)."""
    r = schema.source_record
    query = (
        sa.select(r.c.row_hash, r.c.file_id, r.c.sheet, r.c.row_number)
        .where(
            r.c.department == department,
            r.c.row_hash.in_(sa.bindparam("hashes", expanding=True)),
            r.c.file_id != file_id,
        )
        .order_by(r.c.record_id)
    )
    wanted, found = sorted(set(hashes)), dict[str, tuple[int, str, int]]()
    others = sa.select(r.c.record_id).where(r.c.department == department, r.c.file_id != file_id).limit(1)
    if not wanted or conn.execute(others).first() is None:  # the department's first file
        return found
    for chunk in batched(wanted, IN_LIST):
        for row in conn.execute(query, {"hashes": chunk}):
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


_RECORD_COLUMNS = (
    "file_id",
    "sheet",
    "row_number",
    "department",
    "roster",
    "entity_kind",
    "category",
    "person_name",
    "id_number",
    "case_number",
    "town",
    "village",
    "phone",
    "event",
    "event_date",
    "attrs",
    "loaded_at",
)
_CHILD_ID = "child_id_number"


@dataclass(frozen=True)
class _Shape:
    """How a roster's rows become ``source_record`` rows: the fields taken out of the payload into
    columns, and the columns that are the roster's own."""

    roster: str
    entity_kind: str
    category: str | None
    name_field: str | None
    id_field: str | None
    event_field: str
    date_field: str
    taken: frozenset[str]  # fields not kept in ``attrs`` (their own columns, the child's ID number)
    minors: tuple[str, ...]  # fields holding a child's data (blanked in the staging once loaded)

    @classmethod
    def of(cls, name: str, roster: RosterSpec) -> _Shape:
        name_field, id_field = roster.person.get("name"), roster.person.get("id_number")
        return cls(
            roster=name,
            entity_kind=roster.entity_kind,
            category=roster.category,
            name_field=name_field,
            id_field=id_field,
            event_field=_EVENT_FIELD.get(name, ""),
            date_field=_DATE_FIELD.get(name, ""),
            taken=frozenset({_CHILD_ID, *(f for f in (name_field, id_field, *_COLUMNS) if f)}),
            minors=staging.minor_fields(name),
        )

    def values(
        self, payload: dict[str, Any], pseudonym_key: bytes | None, date: Callable[[str], dt.date]
    ) -> tuple:
        """The row's values of the columns ``person_name`` to ``attrs`` (of :data:`_RECORD_COLUMNS`):
        person, case, place and event columns taken out of the payload, the rest kept as ``attrs``
        (JSON), a child's ID number replaced."""
        get = payload.get
        taken = self.taken
        attrs = {k: v for k, v in payload.items() if v is not None and k not in taken}
        child_id = get(_CHILD_ID)
        if child_id:
            if "child_birth_ym" not in taken:
                attrs["child_birth_ym"] = f"{child_id[6:10]}-{child_id[10:12]}"
            if pseudonym_key and "child_id_token" not in taken:
                attrs["child_id_token"] = pseudonym.token(pseudonym_key, child_id)
        event = "closed" if self.roster == "case_closure" else get(self.event_field)
        when = get(self.date_field)
        return (
            get(self.name_field) if self.name_field else None,
            get(self.id_field) if self.id_field else None,
            get("case_number"),
            get("town") or get("linked_town"),
            get("village"),
            get("phone"),
            event,
            date(when) if when else None,
            dumps(attrs),
        )


_date = lru_cache(maxsize=4096)(dt.date.fromisoformat)  # a night's rows share a few hundred dates


def _records(
    ledger: sa.Row,
    shapes: Mapping[str, _Shape],
    staged: Iterable[tuple[str, int, str, str]],
    hashes: Iterable[str],
    new: Iterable[bool],
    places: set[tuple[str, int]],
    pseudonym_key: bytes | None,
    minors: list[tuple[str, int, dict[str, Any]]],
) -> Iterator[tuple]:
    """The ``source_record`` rows (values of :data:`_RECORD_COLUMNS`, ``row_hash``, ``resent``) of a
    file's valid ``staged`` rows that are ``new`` (not already recorded), each payload parsed once;
    the rows that held a child's data, new or not, go to ``minors`` blanked, as they are reached."""
    file_id, department = ledger.file_id, ledger.department
    loaded_at = now()  # one stamp for the file's rows, written in one go
    for (sheet, row_number, roster, text), h, is_new in zip(staged, hashes, new, strict=True):
        shape = shapes[roster]
        payload = loads(text)
        if shape.minors and (blanked := staging.without_minors(roster, payload, shape.minors)):
            minors.append((sheet, row_number, blanked))
        if is_new:
            yield (
                file_id,
                sheet,
                row_number,
                department,
                roster,
                shape.entity_kind,
                shape.category,
                *shape.values(payload, pseudonym_key, _date),
                loaded_at,
                h,
                (sheet, row_number) in places,
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
    shape = _Shape.of(row.roster, (rosters if rosters is not None else catalogue().rosters)[row.roster])
    values = (
        file_id,
        row.sheet,
        row.row_number,
        department,
        row.roster,
        shape.entity_kind,
        shape.category,
        *shape.values(row.payload, pseudonym_key, dt.date.fromisoformat),
        now(),
    )
    return dict(zip(_RECORD_COLUMNS, values, strict=True))


class _Growth:
    """PostgreSQL: the planner's statistics of the tables the load writes, refreshed each time they
    have doubled during the load (and first after :data:`GROWTH_MIN_ROWS` rows).

    Each file's re-sent-row lookup (:func:`_recorded`) asks for its hashes by index; planned on a
    ``source_record`` the planner still believed empty, it scanned the whole table once per 500
    hashes instead: quadratic, hours for a province's first night. Doubling keeps the refreshes
    few (about seven for a million rows), each one ANALYZE's fixed sample."""

    def __init__(self, eng: sa.Engine) -> None:
        self.eng = eng
        self.since = 0
        self.known = 0
        if eng.dialect.name == "postgresql":
            with eng.connect() as conn:
                self.known = int(
                    conn.execute(
                        sa.text("SELECT GREATEST(reltuples, 0) FROM pg_class WHERE relname = 'source_record'")
                    ).scalar()
                    or 0
                )

    def add(self, rows: int) -> None:
        if self.eng.dialect.name != "postgresql":
            return
        self.since += rows
        if self.since >= max(GROWTH_MIN_ROWS, self.known):
            analyze(self.eng, ("source_record", "recorded_row"))
            self.known += self.since
            self.since = 0


GROWTH_MIN_ROWS = 10_000


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
    shapes = {name: _Shape.of(name, spec) for name, spec in catalogue().rosters.items()}
    growth = _Growth(eng)
    for file_id in sorted(file_ids):
        with eng.begin() as conn:
            ledger = conn.execute(sa.select(f).where(f.c.file_id == file_id)).one()
            if ledger.status != "pending":
                continue
            conn.execute(r.delete().where(r.c.file_id == file_id))
            conn.execute(schema.recorded_row.delete().where(schema.recorded_row.c.file_id == file_id))
            # the file's valid rows read once, as the staged text: fingerprinted as it is, and
            # each payload parsed once, as its record is written
            staged = staging.valid_payloads(conn, file_id)
            hashes = [staged_row_hash(roster, payload) for _, _, roster, payload in staged]
            recorded = _recorded(conn, ledger.department, file_id, hashes)
            places = _earlier_places(conn, ledger) if staged else set()
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
                    for (sheet, row_number, _, _), h in zip(staged, hashes, strict=True)
                    if h in recorded
                ),
            )
            minors: list[tuple[str, int, dict[str, Any]]] = []  # valid rows that held a child's data
            new = (h not in recorded for h in hashes)
            rows = _records(ledger, shapes, staged, hashes, new, places, pseudonym_key, minors)
            count = insert_rows(conn, r, (*_RECORD_COLUMNS, "row_hash", "resent"), rows)
            # the staged copies of a child's data go in the same transaction: a night that fails
            # after this file is loaded leaves no child's ID number in the staging table
            staging.forget_minors(conn, file_id, valid=minors)
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
        growth.add(count + already)
        yield LoadedFile(file_id, count, already, ledger.file_name)
