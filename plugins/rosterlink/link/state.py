"""The night's state, built up front: every row of every kind, the review queue, and what tonight
found. :func:`load_night` reads it; the steps of :mod:`rosterlink.link.night` change it and
:mod:`rosterlink.link.store` writes it, in any order without an attribute missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from rosterlink.link import keys
from rosterlink.link.config import LinkageConfig
from rosterlink.link.model import norm_name, usable_id, village_key
from rosterlink.link.records import Kind, Record, add_once
from rosterlink.link.review import ReviewQueue
from rosterlink.warehouse import schema

KINDS = ("household", "cadre")  # the kinds held as records; cases are linked by their number alone
LOAD_BATCH = 10_000  # rows fetched at a time while the records are built
_MISSING: Any = object()  # not looked up yet (None is a value the look-ups hold)


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
    r, s = schema.source_record, schema.source_row
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
            s.c.entity_key,  # none yet: a row loaded since the last night
        )
        .select_from(r.outerjoin(s, schema.lineage_of(r, s)))
        .where(r.c.entity_kind == kind)
        .order_by(r.c.record_id)
        .execution_options(yield_per=LOAD_BATCH)
    )
    share = shared.setdefault
    for (
        record_id,
        file_id,
        sheet,
        row_number,
        department,
        roster,
        category,
        event,
        person_name,
        raw_id,
        town,
        village,
        phone,
        attrs,
        key,
    ) in conn.execute(query):
        # a row at a time, by position: the million-row loop's every step counts (a Row's
        # attributes and a call per shared value cost a fifth of it)
        if raw_id is not None:
            raw_id = share(raw_id, raw_id)
        id_number = ids.get(raw_id, _MISSING)
        if id_number is _MISSING:
            usable = usable_id(raw_id)
            id_number = ids[raw_id] = raw_id if usable == raw_id else usable
        norm = names.get(person_name, _MISSING)
        if norm is _MISSING:
            norm = norm_name(person_name)
            norm = names[person_name] = person_name if norm == person_name else norm
        vkey = villages.get(village, _MISSING)
        if vkey is _MISSING:
            vkey = villages[village] = village_key(village, cfg)
        if key is not None:
            key = share(key, key)
        rec = Record(
            record_id,
            file_id,
            share(sheet, sheet),
            row_number,
            share(department, department),
            share(roster, roster),
            kind,
            None if category is None else share(category, category),
            None if event is None else share(event, event),
            norm if norm == person_name else person_name,
            id_number,
            raw_id,
            None if town is None else share(town, town),
            None if village is None else share(village, village),
            phone,
            share(attrs or "{}", attrs or "{}") if keep_attrs or id_number is None else None,
            key,
            key is None,
            norm,
            vkey,
        )
        recs[record_id] = rec
        if key:
            held = members.get(key)
            if held is None:
                members[key] = [record_id]
            else:
                held.append(record_id)  # (each row once: the rows come once each)
            if id_number:
                add_once(by_id, id_number, key)
    return Kind(kind, recs, members, by_id, keys.issuer(conn, kind))
