"""The night's state, built up front: every row of every kind, the review queue, and what tonight
found. :func:`load_night` reads it; the steps of :mod:`rosterlink.link.night` change it and
:mod:`rosterlink.link.store` writes it, in any order without an attribute missing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa

from rosterlink.link import keys
from rosterlink.link.config import LinkageConfig
from rosterlink.link.model import norm_name, usable_id, village_key
from rosterlink.link.records import Kind, Record
from rosterlink.link.review import ReviewQueue
from rosterlink.warehouse import schema

KINDS = ("household", "cadre")  # the kinds held as records; cases are linked by their number alone


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
    """Every row of ``kind``, with the keys the linked ones have and which IDs each key holds."""
    r = schema.source_record
    recs: dict[int, Record] = {}
    members: dict[str, set[int]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    # the same ID number, name and village come back on many rows (every roster a household is on,
    # every night it is listed): each distinct value is checked and normalised once
    ids: dict[object, str | None] = {}
    names: dict[object, str | None] = {}
    villages: dict[object, str | None] = {}
    rows = conn.execute(
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
    ).all()
    for row in rows:
        if row.id_number not in ids:
            ids[row.id_number] = usable_id(row.id_number)
        if row.person_name not in names:
            names[row.person_name] = norm_name(row.person_name)
        if row.village not in villages:
            villages[row.village] = village_key(row.village, cfg)
        rec = Record(
            row.record_id,
            row.file_id,
            row.sheet,
            row.row_number,
            row.department,
            row.roster,
            kind,
            row.category,
            row.event,
            row.person_name,
            ids[row.id_number],
            row.id_number,
            row.town,
            row.village,
            row.phone,
            row.attrs or "{}",
            row.entity_key,
            row.entity_key is None,
            names[row.person_name],
            villages[row.village],
        )
        recs[rec.record_id] = rec
        if rec.key:
            members[rec.key].add(rec.record_id)
            if rec.id_number:
                by_id[rec.id_number].add(rec.key)
    return Kind(kind, recs, dict(members), dict(by_id), keys.issuer(conn, kind))
