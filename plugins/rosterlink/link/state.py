"""The night's state, built up front: every row of every kind, the review queue, and what tonight
found. :func:`load_night` reads it; the steps of :mod:`rosterlink.link.night` change it and
:mod:`rosterlink.link.store` writes it, in any order without an attribute missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import overload

import sqlalchemy as sa

from rosterlink.link import keys
from rosterlink.link.config import LinkageConfig
from rosterlink.link.model import norm_name, usable_id, village_key
from rosterlink.link.records import Kind, Record, add_once
from rosterlink.link.review import ReviewQueue
from rosterlink.warehouse import schema

KINDS = ("household", "cadre")  # the kinds held as records; cases are linked by their number alone
LOAD_BATCH = 10_000  # rows fetched at a time while the records are built


@dataclass
class CaseLinks:
    """Tonight's case rows: the new rows, the key each got, those with no case to belong to."""

    rows: list[sa.Row] = field(default_factory=list)
    assigned: dict[int, str] = field(default_factory=dict)
    orphaned: list[sa.Row] = field(default_factory=list)
    created: int = 0


@dataclass
class Night:
    """Everything one night's link stage knows and decides."""

    cfg: LinkageConfig
    kinds: dict[str, Kind]
    reviews: ReviewQueue
    cases: CaseLinks = field(default_factory=CaseLinks)
    applied: list[dict] = field(default_factory=list)  # reviewers' decisions applied, with outcomes
    model_info: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    density: list[float] = field(default_factory=list)  # of the clusters the model shaped tonight


def load_night(conn: sa.Connection, cfg: LinkageConfig) -> Night:
    return Night(cfg, {kind: load_kind(conn, kind, cfg) for kind in KINDS}, ReviewQueue.load(conn))


def load_kind(conn: sa.Connection, kind: str, cfg: LinkageConfig) -> Kind:
    """Every row of ``kind``, with the keys the linked ones have and which IDs each key holds.

    The rows are read a batch at a time (``yield_per`` on this one query), so the fetched rows and
    the records are not held together. Held compactly, as a million rows need: a value many rows
    share (a department, roster, sheet, town, village, category, event, key, an ID number written on
    several rosters) is one string for all of them; a normalised name or ID number equal to what was
    written is the written string itself; ``attrs`` (the roster's other fields, JSON) is kept only
    where the stage reads it: cadre rows (their entity's columns) and household rows without a
    usable ID number (the model's features)."""
    r = schema.source_record
    recs: dict[int, Record] = {}
    members: dict[str, list[int]] = {}
    by_id: dict[str, list[str]] = {}
    # the same ID number, name and village come back on many rows (every roster a household is on,
    # every night it is listed): each distinct value is checked and normalised once
    ids: dict[object, str | None] = {}
    names: dict[object, str | None] = {}
    villages: dict[object, str | None] = {}
    shared: dict[str, str] = {}  # one string for each repeated value
    keep_attrs = kind != "household"
    query = (
        sa.select(
            r.c.record_id,
            r.c.file_id,
            r.c.sheet,
            r.c.row_number,
            r.c.department,
            r.c.roster,
            r.c.category,
            r.c.event,
            r.c.person_name,
            r.c.id_number,
            r.c.town,
            r.c.village,
            r.c.phone,
            r.c.attrs,
            r.c.entity_key,
        )
        .where(r.c.entity_kind == kind)
        .order_by(r.c.record_id)
        .execution_options(yield_per=LOAD_BATCH)
    )
    for row in conn.execute(query):
        raw_id = row.id_number
        if raw_id is not None:
            raw_id = shared.setdefault(raw_id, raw_id)
        if raw_id not in ids:
            usable = usable_id(raw_id)
            ids[raw_id] = raw_id if usable == raw_id else usable
        if row.person_name not in names:
            norm = norm_name(row.person_name)
            names[row.person_name] = row.person_name if norm == row.person_name else norm
        if row.village not in villages:
            villages[row.village] = village_key(row.village, cfg)
        id_number = ids[raw_id]
        norm = names[row.person_name]
        name = norm if norm == row.person_name else row.person_name
        rec = Record(
            row.record_id,
            row.file_id,
            _shared(shared, row.sheet),
            row.row_number,
            _shared(shared, row.department),
            _shared(shared, row.roster),
            kind,
            _shared(shared, row.category),
            _shared(shared, row.event),
            name,
            id_number,
            raw_id,
            _shared(shared, row.town),
            _shared(shared, row.village),
            row.phone,
            _shared(shared, row.attrs or "{}") if keep_attrs or id_number is None else None,
            _shared(shared, row.entity_key),
            row.entity_key is None,
            norm,
            villages[row.village],
        )
        recs[rec.record_id] = rec
        if rec.key:
            held = members.get(rec.key)
            if held is None:
                members[rec.key] = [rec.record_id]
            else:
                held.append(rec.record_id)  # (each row once: the rows come once each)
            if rec.id_number:
                add_once(by_id, rec.id_number, rec.key)
    return Kind(kind, recs, members, by_id, keys.issuer(conn, kind))


@overload
def _shared(strings: dict[str, str], value: str) -> str: ...
@overload
def _shared(strings: dict[str, str], value: str | None) -> str | None: ...
def _shared(strings: dict[str, str], value: str | None) -> str | None:
    """``value``, as the one string held for it (None stays None)."""
    return None if value is None else strings.setdefault(value, value)
