"""The pairs as the pairing workbooks and the change log show them: current and changed pairs, with
their cadre and their target (household or key case) joined."""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa

from rosterlink.core.masking import mask_id
from rosterlink.core.spec import district, town_key
from rosterlink.export.common import TARGET_LABELS
from rosterlink.followup.figures import in_towns
from rosterlink.warehouse import schema

ENDED, NEW = "结对结束", "新结对"


class Pair(NamedTuple):
    """A pair with its cadre and its target, as the pair queries select it (a named tuple: a
    province's million are made a row each, and a tuple is made in a third of a frozen dataclass's
    time)."""

    pairing_id: int
    target_kind: str
    target_key: str
    valid_from: dt.date
    valid_to: dt.date | None
    made_reason: str
    end_reason: str | None
    cadre_key: str
    cadre_name: str | None
    cadre_id: str | None
    cadre_unit: str | None
    cadre_rank: str | None
    cadre_town: str | None
    cadre_phone: str | None
    # household or case
    name: str | None
    id_number: str | None
    town: str | None
    village: str | None
    status: str | None

    def change(self, as_of: dt.date) -> str:
        """结对结束 (ended on or before ``as_of``), 新结对 (made on ``as_of``) or ""."""
        if self.valid_to is not None and self.valid_to <= as_of:
            return ENDED
        return NEW if self.valid_from == as_of else ""


_FIELDS = Pair._fields


def in_force(as_of: dt.date) -> sa.ColumnElement[bool]:
    """A pair is in force on ``as_of``: begun on or before it, not ended by it."""
    p = schema.pairing
    return sa.and_(p.c.valid_from <= as_of, sa.or_(p.c.valid_to.is_(None), p.c.valid_to > as_of))


def changed_on(as_of: dt.date) -> sa.ColumnElement[bool]:
    """A pair changed on ``as_of``: made on it or ended on it."""
    p = schema.pairing
    return sa.or_(p.c.valid_from == as_of, p.c.valid_to == as_of)


def read_pairs(
    conn: sa.Connection,
    as_of: dt.date,
    *,
    current: bool,
    changed: bool,
    towns: Collection[str | None] | None = None,
    kind: str | None = None,
) -> list[Pair]:
    """Pairs current on ``as_of`` and/or made or ended on ``as_of``, with cadre and target joined
    (``towns``: only those whose household or case is in one of them; ``kind``: only households or
    only cases)."""
    result = conn.execute(_pairs_query(as_of, current, changed, towns, kind))
    _check_columns(result)
    return [Pair(*row) for row in result.all()]


STREAM_BATCH = 10_000
"""Pairs fetched at a time by :func:`stream_changes`."""


def _check_columns(result: sa.CursorResult) -> None:
    # the columns are selected in the order of Pair's fields: rows go in by position (a province's
    # million pairs; keyword by keyword they cost a dict each)
    if tuple(result.keys()) != _FIELDS:
        raise RuntimeError(f"read_pairs: columns {tuple(result.keys())} are not Pair's fields {_FIELDS}")


def _pairs_query(
    as_of: dt.date,
    current: bool,
    changed: bool,
    towns: Collection[str | None] | None,
    kind: str | None,
) -> sa.Select:
    p, c = schema.pairing, schema.cadre
    t = _target()
    is_current = in_force(as_of)
    is_changed = changed_on(as_of)
    cond = sa.or_(*([is_current] if current else []), *([is_changed] if changed else []))
    query = (
        sa.select(
            p.c.pairing_id,
            p.c.target_kind,
            p.c.target_key,
            p.c.valid_from,
            p.c.valid_to,
            p.c.made_reason,
            p.c.end_reason,
            p.c.cadre_key,
            c.c.name.label("cadre_name"),
            c.c.id_number.label("cadre_id"),
            c.c.unit.label("cadre_unit"),
            c.c.rank.label("cadre_rank"),
            c.c.town.label("cadre_town"),
            c.c.phone.label("cadre_phone"),
            t.name.label("name"),
            t.id_number.label("id_number"),
            t.town.label("town"),
            t.village.label("village"),
            t.status.label("status"),
        )
        .select_from(
            p.outerjoin(c, c.c.cadre_key == p.c.cadre_key)
            .outerjoin(schema.household, t.is_house_of)
            .outerjoin(schema.petition_case, t.is_case_of)
        )
        .where(cond, in_towns(t.town, towns), sa.true() if kind is None else p.c.target_kind == kind)
        .order_by(p.c.pairing_id)
    )
    return query


@dataclass(frozen=True)
class _Target:
    """A pair's target (household or key case) as the pair queries select it."""

    is_house_of: sa.ColumnElement[bool]  # the join to the pair's household
    is_case_of: sa.ColumnElement[bool]  # the join to the pair's key case
    name: sa.ColumnElement
    id_number: sa.ColumnElement
    town: sa.ColumnElement
    village: sa.ColumnElement
    status: sa.ColumnElement


def _target() -> _Target:
    p, h, k = schema.pairing, schema.household, schema.petition_case
    is_house = p.c.target_kind == "household"
    return _Target(
        is_house_of=sa.and_(is_house, h.c.household_key == p.c.target_key),
        is_case_of=sa.and_(p.c.target_kind == "case", k.c.case_key == p.c.target_key),
        name=sa.case((is_house, h.c.head_name), else_=k.c.petitioner_name),
        id_number=sa.case((is_house, h.c.head_id_number), else_=k.c.case_number),
        town=sa.case((is_house, h.c.town), else_=k.c.town),
        village=sa.case((is_house, h.c.village), else_=None),
        status=sa.case((is_house, h.c.status), else_=k.c.status),
    )


def stream_changes(
    conn: sa.Connection, as_of: dt.date, *, only: str | None = None, limit: int | None = None
) -> Iterator[Pair]:
    """:func:`changes` of the pairs made or ended on ``as_of``, sorted by the database and fetched
    :data:`STREAM_BATCH` at a time: the same pairs in the same order, none of them held (a province's
    first night makes a million, and the change log lists every one). ``only``: only the pairs
    ended (:data:`ENDED`) or only the new ones (:data:`NEW`); ``limit``: only the first so many."""
    query = _pairs_query(as_of, False, True, None, None).order_by(None)
    if only is not None:
        query = query.where(_change_is(as_of, only))
    query = query.order_by(*_change_order_sql(conn, as_of)).limit(limit)
    result = conn.execute(query.execution_options(yield_per=STREAM_BATCH))
    _check_columns(result)
    for row in result:
        q = Pair(*row)
        if q.change(as_of):  # (every pair made or ended on the night has a change)
            yield q


def _change_is(as_of: dt.date, change: str) -> sa.ColumnElement[bool]:
    """The pair's :meth:`Pair.change` on ``as_of`` is ``change`` (:data:`ENDED` or :data:`NEW`)."""
    p = schema.pairing
    ended = sa.and_(p.c.valid_to.is_not(None), p.c.valid_to <= as_of)
    if change == ENDED:
        return ended
    if change == NEW:
        return sa.and_(sa.not_(ended), p.c.valid_from == as_of)
    raise ValueError(f"a pair's change is {ENDED!r} or {NEW!r}, not {change!r}")


def listed_changes(conn: sa.Connection, as_of: dt.date, new_max: int) -> tuple[list[Pair], int]:
    """:func:`changes` with every ended pair but only the first ``new_max`` new ones (in that
    order), and how many new ones there are: the same list as taking them all and dropping the new
    pairs past the first ``new_max``, reading no more than that (a province's first night makes a
    million new pairs; the summary lists 20,000). The ended pairs and the first new ones come sorted
    from the database, and are merged in the same order (:func:`_change_order`)."""
    ended = list(stream_changes(conn, as_of, only=ENDED))
    first = list(stream_changes(conn, as_of, only=NEW, limit=new_max)) if new_max > 0 else []
    p = schema.pairing  # (the pair queries join one cadre, household or case to a pair: no more rows)
    new_total = conn.execute(
        sa.select(sa.func.count()).select_from(p).where(changed_on(as_of), _change_is(as_of, NEW))
    ).scalar_one()
    return list(heapq.merge(ended, first, key=_change_order(as_of))), int(new_total)


def _change_order_sql(conn: sa.Connection, as_of: dt.date) -> list[sa.ColumnElement]:
    """:func:`_change_order` in SQL: the district's towns by their place (a CASE over its few
    towns), towns it does not know after them by name, None last; ended first; then the target.
    Text is compared as Python compares it, by code point: SQLite's default BINARY collation does,
    PostgreSQL's "C" collation does (the database's own may not)."""
    p, t = schema.pairing, _target()
    known: dict[str, int] = {}
    for i, name in enumerate(district().towns):
        known.setdefault(name, i)  # town_key takes a town's first place
    others = sa.case((t.town.is_(None), len(known) + 1), else_=len(known))
    place = sa.case(known, value=t.town, else_=others) if known else others

    def text(expr: sa.ColumnElement) -> sa.ColumnElement:
        return expr.collate("C") if conn.dialect.name == "postgresql" else expr

    return [
        place,
        text(sa.func.coalesce(t.town, "")),
        sa.case((_change_is(as_of, ENDED), 0), else_=1),
        text(p.c.target_kind),
        text(sa.func.coalesce(t.village, "")),
        text(sa.func.coalesce(t.name, "")),
        text(p.c.target_key),
        p.c.pairing_id,
    ]


def changes(pairs: list[Pair], as_of: dt.date) -> list[Pair]:
    """The pairs made or ended on ``as_of``, by town, ended first, then by target."""
    return sorted((q for q in pairs if q.change(as_of)), key=_change_order(as_of))


def _change_order(as_of: dt.date) -> Callable[[Pair], tuple]:
    """The order of :func:`changes`: by town, ended first, then by target (the pair's id last, so
    no two pairs tie)."""
    towns: dict[str | None, tuple] = {}  # once a town, not once a pair

    def key(q: Pair) -> tuple:
        place = towns.get(q.town)
        if place is None:
            place = towns[q.town] = town_key(q.town)
        return (
            place,
            q.change(as_of) != ENDED,
            q.target_kind,
            q.village or "",
            q.name or "",
            q.target_key,
            q.pairing_id,
        )

    return key


def target_cells(q: Pair) -> tuple[str, str | None, str | None, str | None, str | None]:
    """The pair's target as the lists of changes show it: its kind in words, town, village, name,
    and the household head's ID number masked or the key case's number."""
    return (TARGET_LABELS.get(q.target_kind, q.target_kind), q.town, q.village, q.name, masked_target(q))


def masked_target(q: Pair) -> str | None:
    """The household head's ID number masked, or the key case's number as it is."""
    if q.id_number is None:
        return None
    return mask_id(q.id_number) if q.target_kind == "household" else q.id_number


def pairs_per_town(conn: sa.Connection, as_of: dt.date) -> dict[str | None, int]:
    """town -> the pairs current on ``as_of`` or made or ended on it (of its households and cases),
    counted in the warehouse: the towns :func:`read_pairs` would give, without reading a pair."""
    t = _target()
    query = (
        sa.select(t.town, sa.func.count())
        .select_from(
            schema.pairing.outerjoin(schema.household, t.is_house_of).outerjoin(
                schema.petition_case, t.is_case_of
            )
        )
        .where(sa.or_(in_force(as_of), changed_on(as_of)))
        .group_by(t.town)
    )
    return {t: int(n) for t, n in conn.execute(query).all()}
