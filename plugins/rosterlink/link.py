"""Link: resolve every loaded row to the household, cadre or case it describes.

Exact keys (this version): a valid ID number identifies a person (the household head, guardian or
old party member; the cadre), a case number identifies a case. A household row without an ID is
matched to an earlier ID-less household of the same head name, town and village; cross-department
probabilistic linkage builds on this stage. Keys are stable: an entity keeps the key it got on the
night it first appeared (``H000001``, ``C000001``, ``K000001``), assigned in row order.

Rows that only make sense for a known entity (an exit for a household never listed, a departure
of an unknown cadre, the closure of an unknown case) are moved to ``rejected_row`` with a reason,
and their file's counts are corrected, so nothing is lost silently.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from rosterlink import schema
from rosterlink.findings import message
from rosterlink.spec import catalogue
from rosterlink.warehouse import insert_many, now

log = logging.getLogger(__name__)

# records that establish an entity, and records that only change a known one
_ESTABLISHING_EVENTS = {None, "add", "join", "open", "closed"}
_KEY_PREFIX = {"household": "H", "cadre": "C", "case": "K"}


@dataclass
class _Index:
    kind: str
    by_id: dict[str, str] = field(default_factory=dict)
    by_name_place: dict[tuple, str] = field(default_factory=dict)
    next_number: int = 1

    def new_key(self) -> str:
        key = f"{_KEY_PREFIX[self.kind]}{self.next_number:06d}"
        self.next_number += 1
        return key


def _next_number(conn: sa.Connection, column: sa.Column) -> int:
    top = conn.execute(sa.select(sa.func.max(column))).scalar()
    return int(top[1:]) + 1 if top else 1


def _load_indexes(conn: sa.Connection) -> dict[str, _Index]:
    h, c, k = schema.household, schema.cadre, schema.petition_case
    households = _Index("household", next_number=_next_number(conn, h.c.household_key))
    for key, id_number, name, town, village in conn.execute(
        sa.select(h.c.household_key, h.c.head_id_number, h.c.head_name, h.c.town, h.c.village)
    ):
        if id_number:
            households.by_id[id_number] = key
        else:
            households.by_name_place[(name, town, village)] = key
    cadres = _Index("cadre", next_number=_next_number(conn, c.c.cadre_key))
    cadres.by_id.update({i: key for key, i in conn.execute(sa.select(c.c.cadre_key, c.c.id_number)) if i})
    cases = _Index("case", next_number=_next_number(conn, k.c.case_key))
    cases.by_id.update(dict(conn.execute(sa.select(k.c.case_number, k.c.case_key)).all()))
    return {"household": households, "cadre": cadres, "case": cases}


def _lookup(index: _Index, rec: sa.Row) -> str | None:
    if index.kind == "case":
        return index.by_id.get(rec.case_number)
    if rec.id_number:
        return index.by_id.get(rec.id_number)
    return index.by_name_place.get((rec.person_name, rec.town, rec.village))


def _remember(index: _Index, rec: sa.Row, key: str) -> None:
    if index.kind == "case":
        index.by_id[rec.case_number] = key
    elif rec.id_number:
        index.by_id[rec.id_number] = key
    else:
        index.by_name_place[(rec.person_name, rec.town, rec.village)] = key


_UNKNOWN_REASON = {"household": "household_unknown", "cadre": "cadre_unknown", "case": "case_unknown"}


def link(eng: sa.Engine) -> dict:
    """Link every unlinked ``source_record``; upsert entities; write ``source_row``. One transaction."""
    r = schema.source_record
    with eng.begin() as conn:
        indexes = _load_indexes(conn)
        pending = conn.execute(
            sa.select(r).where(r.c.entity_key.is_(None), r.c.entity_kind.in_(("household", "cadre", "case")))
            .order_by(r.c.record_id)
        ).all()
        # establishing rows first, so a roster and its adjustment dropped the same night link up
        ordered = sorted(pending, key=lambda rec: (rec.event not in _ESTABLISHING_EVENTS, rec.record_id))
        assigned: dict[int, str] = {}
        created = defaultdict(int)
        orphaned: list[sa.Row] = []
        for rec in ordered:
            index = indexes[rec.entity_kind]
            key = _lookup(index, rec)
            if key is None:
                if rec.event not in _ESTABLISHING_EVENTS:
                    orphaned.append(rec)
                    continue
                key = index.new_key()
                created[rec.entity_kind] += 1
            _remember(index, rec, key)
            assigned[rec.record_id] = key
        for record_id, key in assigned.items():
            conn.execute(r.update().where(r.c.record_id == record_id).values(entity_key=key))
        insert_many(
            conn,
            schema.source_row,
            (
                {"file_id": rec.file_id, "sheet": rec.sheet, "row_number": rec.row_number,
                 "entity_kind": rec.entity_kind, "entity_key": assigned[rec.record_id]}
                for rec in pending if rec.record_id in assigned
            ),
        )
        _reject_orphans(conn, orphaned)
        touched = {rec.entity_key or assigned.get(rec.record_id) for rec in pending} - {None}
        _upsert_entities(conn, touched)
    summary = {
        "rows_linked": len(assigned),
        "rows_rejected_unknown_entity": len(orphaned),
        "created": dict(created),
    }
    log.info("link: %s", summary)
    return summary


def _reject_orphans(conn: sa.Connection, orphaned: list[sa.Row]) -> None:
    """An event for an entity nobody listed cannot be applied: reject it, fix the file's counts."""
    if not orphaned:
        return
    fields = catalogue().fields
    f, r = schema.intake_file, schema.source_record
    for rec in orphaned:
        kind_field = "case_number" if rec.entity_kind == "case" else catalogue().rosters[rec.roster].person["id_number"]
        header = _header_of(conn, rec.file_id, rec.sheet, kind_field) or fields[kind_field].label
        code = _UNKNOWN_REASON[rec.entity_kind]
        conn.execute(schema.rejected_row.insert().values(
            file_id=rec.file_id, sheet=rec.sheet, row_number=rec.row_number, field=kind_field, header=header,
            value=None, reason_code=code, message=message(code, header=header), created_at=now(),
        ))
        conn.execute(r.delete().where(r.c.record_id == rec.record_id))
        conn.execute(f.update().where(f.c.file_id == rec.file_id).values(
            rows_loaded=f.c.rows_loaded - 1, rows_rejected=f.c.rows_rejected + 1))


def _header_of(conn: sa.Connection, file_id: int, sheet: str, field_name: str) -> str | None:
    s = schema.intake_sheet
    headers = conn.execute(sa.select(s.c.headers).where(s.c.file_id == file_id, s.c.sheet == sheet)).scalar()
    return json.loads(headers).get(field_name) if headers else None


def _latest(values: list) -> object:
    """The most recent non-empty value (records are in load order)."""
    for value in reversed(values):
        if value not in (None, ""):
            return value
    return None


def _upsert_entities(conn: sa.Connection, keys: set[str]) -> None:
    """Rebuild the descriptive columns of touched entities from all their records (latest wins)."""
    if not keys:
        return
    r = schema.source_record
    rows = conn.execute(
        sa.select(r).where(r.c.entity_key.in_(sorted(keys))).order_by(r.c.record_id)
    ).all()
    by_key: dict[str, list[sa.Row]] = defaultdict(list)
    for rec in rows:
        by_key[rec.entity_key].append(rec)
    for key, recs in sorted(by_key.items()):
        kind = recs[0].entity_kind
        attrs = [json.loads(rec.attrs) for rec in recs]
        common = {
            "name": _latest([rec.person_name for rec in recs]),
            "id_number": _latest([rec.id_number for rec in recs]),
            "town": _latest([rec.town for rec in recs]),
            "village": _latest([rec.village for rec in recs]),
            "phone": _latest([rec.phone for rec in recs]),
        }
        if kind == "household":
            _upsert(conn, schema.household, "household_key", key, {
                "head_name": common["name"], "head_id_number": common["id_number"], "town": common["town"],
                "village": common["village"], "phone": common["phone"], "first_seen_file": recs[0].file_id,
            }, insert_only={"status": "active"})
            for category in sorted({rec.category for rec in recs if rec.category}):
                exists = conn.execute(sa.select(schema.household_category.c.category).where(
                    schema.household_category.c.household_key == key,
                    schema.household_category.c.category == category)).first()
                if not exists:
                    conn.execute(schema.household_category.insert().values(
                        household_key=key, category=category, status="active"))
        elif kind == "cadre":
            _upsert(conn, schema.cadre, "cadre_key", key, {
                "name": common["name"], "id_number": common["id_number"], "phone": common["phone"],
                "town": _latest([a.get("linked_town") for a in attrs]),
                "sex": _latest([a.get("sex") for a in attrs]),
                "rank": _latest([a.get("rank") for a in attrs]),
                "rank_title": _latest([a.get("rank_title") for a in attrs]),
                "unit": _latest([a.get("unit") for a in attrs]),
                "post": _latest([a.get("post") for a in attrs]),
            }, insert_only={"status": "active"})
        else:
            _upsert(conn, schema.petition_case, "case_key", key, {
                "case_number": recs[0].case_number,
                "petitioner_name": common["name"], "petitioner_id_number": common["id_number"],
                "town": common["town"],
                **{f: _latest([a.get(f) for a in attrs]) for f in (
                    "topic", "summary", "responsible_unit", "work_team", "resolution_plan", "stabilisation_measures")},
                "registered_on": _as_date(_latest([a.get("registered_date") for a in attrs])),
            }, insert_only={"status": "open"})


def _as_date(value: object):  # noqa: ANN202
    import datetime as dt

    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _upsert(conn: sa.Connection, table: sa.Table, key_col: str, key: str, values: dict, insert_only: dict) -> None:
    present = conn.execute(sa.select(table.c[key_col]).where(table.c[key_col] == key)).first()
    if present:
        conn.execute(table.update().where(table.c[key_col] == key).values(
            **{k: v for k, v in values.items() if v is not None}))
    else:
        if table is schema.household and values.get("head_name") is None:
            values["head_name"] = ""
        if table is schema.cadre and values.get("name") is None:
            values["name"] = ""
        conn.execute(table.insert().values(**{key_col: key, **values, **insert_only}))
