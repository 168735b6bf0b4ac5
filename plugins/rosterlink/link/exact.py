"""Exact keys: an equal valid ID number is the same person, an equal case number the same case.

Also the conflicts the exact rules surface rather than hide (one ID number under two names, one
name and village under two ID numbers: queued for review), and the stage's rules for cadres (an
ID-less row links to the one cadre of its name) and cases (by number alone).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Collection

import sqlalchemy as sa

from rosterlink.link import keys
from rosterlink.link.keys import key_number, older
from rosterlink.link.model import name_pinyin
from rosterlink.link.records import ESTABLISHING_EVENTS, Kind, Record
from rosterlink.link.state import Night
from rosterlink.warehouse import schema

log = logging.getLogger(__name__)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def choose_key(kind: Kind, candidates: Collection[str], rec: Record) -> str:
    """The entity an ID belongs to; after a reviewer split one ID may have two: take the one
    where it is written with this row's name."""
    if len(candidates) == 1:
        return next(iter(candidates))
    for key in sorted(candidates, key=key_number):
        if any(
            kind.recs[m].norm == rec.norm and kind.recs[m].id_number == rec.id_number
            for m in kind.members.get(key, ())
        ):
            return key
    return older(candidates)


def check_id_name(night: Night, kind: Kind, rec: Record, same_id: list[int]) -> None:
    """One ID number, two names: linked by the ID, and queued for a person to check."""
    names = {kind.recs[m].norm for m in same_id} - {None}
    if rec.norm is None or not names or rec.norm in names:
        return
    first = min(m for m in same_id if kind.recs[m].norm != rec.norm and kind.recs[m].norm)
    other = kind.recs[first]
    assert other.norm is not None
    py = {name_pinyin(n, night.cfg)[1] for n in (other.norm, rec.norm)}
    night.reviews.add(
        kind,
        "id_name_conflict",
        first,
        rec.record_id,
        evidence={
            "rule": "same_id_two_names",
            "names": [other.norm, rec.norm],
            "pinyin_equal": len(py) == 1,
        },
        signature=[_digest(rec.id_number), *sorted((other.norm, rec.norm))],
    )


def check_name_village(night: Night, kind: Kind) -> None:
    """One name, town and village under two ID numbers: kept apart by the rules, queued. Only the
    names and villages of tonight's rows are gathered: a conflict is queued only when one of its
    rows is new."""
    tonight = {
        (rec.norm, rec.town, rec.vkey) for rec in kind.pending() if rec.id_number and rec.norm and rec.town
    }
    if not tonight:
        return
    same = [
        rec
        for rec in kind.recs.values()
        if rec.id_number and rec.norm and rec.town and (rec.norm, rec.town, rec.vkey) in tonight
    ]
    groups: dict[tuple, dict[str | None, int]] = defaultdict(dict)  # (every ID here is a valid one)
    for rec in sorted(same, key=lambda x: x.record_id):
        groups[(rec.norm, rec.town, rec.vkey)].setdefault(rec.id_number, rec.record_id)
    for (name, town, vk), ids in groups.items():
        if len(ids) < 2:
            continue
        firsts = sorted(ids.values())
        for r_id in firsts[1:]:
            l_id = firsts[0]
            if not (kind.recs[r_id].pending or kind.recs[l_id].pending):
                continue
            a, b = kind.recs[l_id].id_number, kind.recs[r_id].id_number
            assert a is not None
            assert b is not None
            night.reviews.add(
                kind,
                "name_village_id_conflict",
                l_id,
                r_id,
                evidence={"rule": "same_name_village_two_ids", "name": name, "town": town, "village": vk},
                signature=[_digest(*sorted((a, b)))],
            )


# --- cadres ----------------------------------------------------------------------------------------
def link_cadres(night: Night) -> None:
    """Cadre rows carry an ID (the roster requires it): exact rules only. An ID-less row (a
    roster configured without the requirement) links to the one cadre of the same name and
    unit or phone, if there is exactly one."""
    kind = night.kinds["cadre"]
    pending = kind.pending()
    # name -> the one cadre of that name, or None when several have it
    by_name: dict[str, str | None] = {}
    for rec in kind.recs.values():
        if rec.key and rec.norm:
            _note(by_name, rec.norm, rec.key)
    # establishing rows first, so a roster and its change list dropped the same night link up
    for rec in sorted(pending, key=lambda x: (not x.establishing, x.record_id)):
        key = None
        if rec.id_number:
            known = kind.by_id.get(rec.id_number)
            if known:
                key = choose_key(kind, known, rec)
                check_id_name(
                    night,
                    kind,
                    rec,
                    [m for m in kind.members.get(key, ()) if kind.recs[m].id_number == rec.id_number],
                )
            method = "id"
        else:
            key = by_name.get(rec.norm) if rec.norm else None
            method = "name"
        if key is None:
            if not rec.establishing:
                kind.orphaned.append(rec)
                continue
            key = kind.keys.new()
            kind.stats["created"] += 1
            method = "id" if rec.id_number else "new"
        kind.assign(rec, key, method, None)
        if rec.norm:
            _note(by_name, rec.norm, key)
    if pending:
        log.info(
            "link: cadres: %d new rows, %d assigned, %d new cadres, %d without a cadre",
            len(pending),
            len(kind.assigned),
            kind.stats.get("created", 0),
            len(kind.orphaned),
        )


def _note(by_name: dict[str, str | None], name: str, key: str) -> None:
    """``key`` holds ``name``: the name's one cadre, or None once two cadres hold it."""
    by_name[name] = key if by_name.get(name, key) == key else None


# --- cases -----------------------------------------------------------------------------------------
def link_cases(conn: sa.Connection, night: Night) -> None:
    """A case row links to the case of its number; a new number opens a case (only with a row that
    establishes one: a closure of an unknown case has no case to belong to)."""
    r, k = schema.source_record, schema.petition_case
    by_number = dict(conn.execute(sa.select(k.c.case_number, k.c.case_key)).all())
    issuer = keys.issuer(conn, "case")
    pending = list(  # the case rows without lineage: loaded since the last night
        conn.execute(
            sa.select(r).where(r.c.entity_kind == "case", schema.not_linked(r)).order_by(r.c.record_id)
        ).all()
    )
    cases = night.cases
    cases.rows = pending
    for rec in sorted(pending, key=lambda x: (x.event not in ESTABLISHING_EVENTS, x.record_id)):
        key = by_number.get(rec.case_number)
        if key is None:
            if rec.event not in ESTABLISHING_EVENTS:
                cases.orphaned.append(rec)
                continue
            key = by_number[rec.case_number] = issuer.new()
            cases.created += 1
        cases.assigned[rec.record_id] = key
    if pending:
        log.info(
            "link: cases: %d new rows, %d assigned, %d new cases, %d without a case",
            len(pending),
            len(cases.assigned),
            cases.created,
            len(cases.orphaned),
        )
