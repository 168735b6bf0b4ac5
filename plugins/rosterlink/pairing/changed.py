"""The night's pairing plan asked of the database: only what changes is read into memory.

:func:`rosterlink.pairing.plan.plan_night` decides from the whole state (every current pair, every
household, case and cadre). Its rules are per pair and per target, so the database can apply them:
:func:`plan` finds, with the plan's rules in the plan's order, the current pairs that end tonight
(and why), the targets that wait for a cadre (with the unit a departed cadre leaves them to), and
the active cadres with the loads of the pairs they keep, and counts the rest (the pairs kept, and
how many of the kept household pairs are in the household's own town). The pairs kept and the
households that keep them are never read. A quiet night reads the cadres and a few counts.

Two things only the whole plan can tell; :func:`plan` returns None for them and the rebuild reads
the whole state as before: pins (a pin may replace a pair, and is resolved by ID number against
every household), and a current pair of a household merged into another (its cadre may carry on
with the survivor, depending on the other pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from rosterlink.pairing.plan import (
    CADRE_DEPARTED,
    CADRE_LEFT,
    CASE_CLOSED,
    HOUSEHOLD_EXITED,
    LEADER_NOT_COUNTY,
    NEW_TARGET,
    SUPERSEDED,
    TARGET_MISSING,
    NightPlan,
)
from rosterlink.pairing.solve import CASE, HOUSEHOLD
from rosterlink.warehouse import IN_LIST, batched, schema

_CONTINUITY_ENDS = (CADRE_DEPARTED, LEADER_NOT_COUNTY)  # as plan_night: the next cadre from the same unit
_ENDS = ["pairing_id", "cadre_key", "target_kind", "target_key", "end_reason", "target_town", "cadre_town"]


@dataclass
class ChangedPlan:
    """What :func:`plan_night` would decide, as far as the rebuild writes and reports it.

    ``plan.kept`` is left empty (the pairs kept are not read): ``kept`` counts them, and
    ``kept_same_town`` says how many of the kept household pairs (of ``kept_households``) have
    the cadre's town equal to the household's."""

    plan: NightPlan
    kept: int
    kept_households: int
    kept_same_town: int

    @property
    def settled(self) -> bool:
        """Nothing ends and nothing waits: every pair is kept and nothing is solved."""
        return not len(self.plan.ends) and not len(self.plan.targets)


def has_pins(conn: sa.Connection) -> bool:
    r = schema.source_record
    pin_roster = sa.exists().where(r.c.roster == "pin")
    pin_kind = sa.exists().where(r.c.entity_kind == "pin")
    return bool(conn.execute(sa.select(sa.or_(pin_roster, pin_kind))).scalar())


def _joined() -> sa.Join:
    """The pairs with their cadre and their target (household or case), left-joined."""
    p, h, k, c = schema.pairing, schema.household, schema.petition_case, schema.cadre
    return (
        p.outerjoin(c, c.c.cadre_key == p.c.cadre_key)
        .outerjoin(h, sa.and_(p.c.target_kind == HOUSEHOLD, h.c.household_key == p.c.target_key))
        .outerjoin(k, sa.and_(p.c.target_kind == CASE, k.c.case_key == p.c.target_key))
    )


def merged_away(conn: sa.Connection) -> bool:
    """Whether a current pair's household was merged into another (its row gone)."""
    p, h, m = schema.pairing, schema.household, schema.household_merge
    found = (
        sa.select(sa.literal(1))
        .select_from(_joined())
        .where(
            p.c.valid_to.is_(None),
            p.c.target_kind == HOUSEHOLD,
            h.c.status.is_(None),
            p.c.target_key.in_(sa.select(m.c.retired_key)),
        )
        .exists()
    )
    return bool(conn.execute(sa.select(found)).scalar())


def _reason(case_rank: str) -> sa.ColumnElement:
    """Why :func:`plan_night` ends a current pair (None: it holds), its conditions in its order (a
    missing cadre, target or status is as the plan's missing value: the condition holds)."""
    p, h, k, c = schema.pairing, schema.household, schema.petition_case, schema.cadre
    return sa.case(
        (sa.or_(c.c.status.is_(None), c.c.status != "active"), CADRE_DEPARTED),
        (sa.and_(p.c.target_kind == HOUSEHOLD, h.c.status.is_(None)), TARGET_MISSING),
        (sa.and_(p.c.target_kind == CASE, k.c.status.is_(None)), TARGET_MISSING),
        (p.c.target_kind.not_in((HOUSEHOLD, CASE)), TARGET_MISSING),
        (sa.and_(p.c.target_kind == HOUSEHOLD, h.c.status != "active"), HOUSEHOLD_EXITED),
        (sa.and_(p.c.target_kind == CASE, k.c.status != "open"), CASE_CLOSED),
        (
            sa.and_(p.c.target_kind == CASE, sa.or_(c.c.rank.is_(None), c.c.rank != case_rank)),
            LEADER_NOT_COUNTY,
        ),
        else_=None,
    )


def _current(case_rank: str) -> sa.Subquery:
    """Every current pair with its end reason (None: it holds) and both sides' towns."""
    p, h, c = schema.pairing, schema.household, schema.cadre
    return (
        sa.select(
            p.c.pairing_id,
            p.c.cadre_key,
            p.c.target_kind,
            p.c.target_key,
            _reason(case_rank).label("reason"),
            h.c.town.label("target_town"),
            c.c.town.label("cadre_town"),
        )
        .select_from(_joined())
        .where(p.c.valid_to.is_(None))
        .subquery()
    )


def ends_counted(conn: sa.Connection, case_rank: str) -> tuple[dict[str, int], int] | None:
    """The current pairs :func:`plan_night` would end, by reason (sorted, as its counts are), and
    all current pairs, counted in the database; None when only the plan can tell (see the module)."""
    if has_pins(conn) or merged_away(conn):
        return None
    cur = _current(case_rank)
    counts: dict[str, int] = {}
    total = 0
    for why, n in conn.execute(sa.select(cur.c.reason, sa.func.count()).group_by(cur.c.reason)):
        total += int(n)
        if why is not None:
            counts[str(why)] = int(n)
    # of the pairs that hold, a target's second and later pairs (by pairing id) are superseded
    if not _several(conn):
        return dict(sorted(counts.items())), total
    per_target = (
        sa.select(sa.func.count().label("n"))
        .where(cur.c.reason.is_(None))
        .group_by(cur.c.target_kind, cur.c.target_key)
        .having(sa.func.count() > 1)
        .subquery()
    )
    total_superseded = sa.select(sa.func.coalesce(sa.func.sum(per_target.c.n - 1), 0))
    superseded = int(conn.execute(total_superseded).scalar_one())
    if superseded:
        counts[SUPERSEDED] = superseded
    return dict(sorted(counts.items())), total


def plan(conn: sa.Connection, case_rank: str) -> ChangedPlan | None:
    """The night's plan from the database (see the module); None when only the whole plan can tell."""
    if has_pins(conn) or merged_away(conn):
        return None
    ends = _ends(conn, case_rank)
    p = schema.pairing
    by_kind: dict[str, int] = dict(
        conn.execute(
            sa.select(p.c.target_kind, sa.func.count())
            .where(p.c.valid_to.is_(None))
            .group_by(p.c.target_kind)
        ).all()
    )
    total = int(sum(by_kind.values()))
    h_ends = ends[ends["target_kind"] == HOUSEHOLD]
    same_now, n_households = _same_town_households(conn)
    ended_same = sum(
        1
        for t, c in zip(h_ends["target_town"], h_ends["cadre_town"], strict=True)
        if t is not None and t == c
    )
    targets = _targets(conn, case_rank, ends)
    night = NightPlan(
        ends=ends[["pairing_id", "cadre_key", "target_kind", "target_key", "end_reason"]].reset_index(
            drop=True
        ),
        kept=_frame(["pairing_id", "cadre_key", "target_kind", "target_key"]),
        pinned=_frame(["cadre_key", "target_kind", "target_key", "pin_ref"]),
        carried=_frame(["cadre_key", "target_kind", "target_key", "merged_from"]),
        pins_holding=0,
        pin_problems=pd.DataFrame([], columns=["pin_ref", "reason"]),
        targets=targets,
        cadres=_cadres(conn, ends),
        total_current=total,
    )
    return ChangedPlan(
        plan=night,
        kept=total - len(ends),
        kept_households=n_households - len(h_ends),
        kept_same_town=same_now - ended_same,
    )


def _frame(columns: list[str], rows: list[tuple] | None = None) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return pd.DataFrame([tuple(r) for r in rows], columns=columns, dtype=object)


def _ends(conn: sa.Connection, case_rank: str) -> pd.DataFrame:
    """The current pairs that end tonight, in pairing-id order: ``pairing_id, cadre_key,
    target_kind, target_key, end_reason, target_town, cadre_town``."""
    cur = _current(case_rank)
    cols = [cur.c.pairing_id, cur.c.cadre_key, cur.c.target_kind, cur.c.target_key]
    ending: list[tuple] = [
        tuple(r)
        for r in conn.execute(
            sa.select(*cols, cur.c.reason, cur.c.target_town, cur.c.cadre_town).where(
                cur.c.reason.is_not(None)
            )
        )
    ]
    # of the pairs that hold, a target's second and later pairs (by pairing id) are superseded
    if not _several(conn):
        ending.sort(key=lambda r: r[0])
        return _frame(_ENDS, ending)
    holding = sa.select(
        *cols,
        cur.c.target_town,
        cur.c.cadre_town,
        sa.func.row_number()
        .over(partition_by=(cur.c.target_kind, cur.c.target_key), order_by=cur.c.pairing_id)
        .label("nth"),
    ).where(cur.c.reason.is_(None))
    held = holding.subquery()
    ending += [
        (r.pairing_id, r.cadre_key, r.target_kind, r.target_key, SUPERSEDED, r.target_town, r.cadre_town)
        for r in conn.execute(sa.select(held).where(held.c.nth > 1))
    ]
    ending.sort(key=lambda r: r[0])
    return _frame(_ENDS, ending)


def _several(conn: sa.Connection) -> bool:
    """Whether a target has more than one current pair (the current pairs' index answers it)."""
    p = schema.pairing
    twice = (
        sa.select(sa.literal(1))
        .where(p.c.valid_to.is_(None))
        .group_by(p.c.target_kind, p.c.target_key)
        .having(sa.func.count() > 1)
        .exists()
    )
    return bool(conn.execute(sa.select(twice)).scalar())


def _same_town_households(conn: sa.Connection) -> tuple[int, int]:
    """(current household pairs whose cadre's town is the household's, current household pairs)."""
    p, h, c = schema.pairing, schema.household, schema.cadre
    n, same = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((h.c.town == c.c.town, 1), else_=0)), 0),
        )
        .select_from(
            p.outerjoin(h, h.c.household_key == p.c.target_key).outerjoin(c, c.c.cadre_key == p.c.cadre_key)
        )
        .where(p.c.valid_to.is_(None), p.c.target_kind == HOUSEHOLD)
    ).one()
    return int(same), int(n)


def _targets(conn: sa.Connection, case_rank: str, ends: pd.DataFrame) -> pd.DataFrame:
    """The active households and open cases no holding pair keeps (cases first, each kind in key
    order), with the unit of the cadre who left them (the latest end, tonight's first, says)."""
    p, h, k, c = schema.pairing, schema.household, schema.petition_case, schema.cadre

    def held(kind: str, key: sa.ColumnElement, *leader: sa.ColumnElement) -> sa.Exists:
        # a current pair on an active target holds while its cadre is active (and, for a case,
        # of the case rank); of several, the first holds and the others are superseded
        return (
            sa.select(sa.literal(1))
            .select_from(p.join(c, c.c.cadre_key == p.c.cadre_key))
            .where(
                p.c.valid_to.is_(None),
                p.c.target_kind == kind,
                p.c.target_key == key,
                c.c.status == "active",
                *leader,
            )
            .exists()
        )

    waiting = {
        CASE: list(
            conn.execute(
                sa.select(k.c.case_key, k.c.town).where(
                    k.c.status == "open", ~held(CASE, k.c.case_key, c.c.rank == case_rank)
                )
            )
        ),
        HOUSEHOLD: list(
            conn.execute(
                sa.select(h.c.household_key, h.c.town).where(
                    h.c.status == "active", ~held(HOUSEHOLD, h.c.household_key)
                )
            )
        ),
    }
    # the latest end of each waiting target: tonight's (the last by pairing id), else the history's
    last: dict[tuple[str, str], tuple[str, str]] = {}
    for kind, rows in waiting.items():
        keys = [key for key, _ in rows]
        for chunk in batched(keys, IN_LIST):
            last.update(_latest_ends(conn, kind, chunk))
    for r in ends.itertuples(index=False):
        last[(r.target_kind, r.target_key)] = (r.cadre_key, r.end_reason)
    left = {t: cadre for t, (cadre, why) in last.items() if why in _CONTINUITY_ENDS}
    units = _units(conn, sorted(set(left.values())))
    parts = []
    for kind in (CASE, HOUSEHOLD):
        rows = sorted(waiting[kind], key=lambda r: str(r[0]))
        gone = [left.get((kind, key)) for key, _ in rows]
        parts.append(
            pd.DataFrame(
                {
                    "target_kind": np.full(len(rows), kind, dtype=object),
                    "target_key": np.array([key for key, _ in rows], dtype=object),
                    "town": np.array([town for _, town in rows], dtype=object),
                    "preferred_unit": np.array(
                        [units.get(cadre) if cadre is not None else None for cadre in gone], dtype=object
                    ),
                    "made_reason": np.array(
                        [CADRE_LEFT if cadre is not None else NEW_TARGET for cadre in gone], dtype=object
                    ),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _latest_ends(conn: sa.Connection, kind: str, keys: list[str]) -> dict[tuple[str, str], tuple[str, str]]:
    """(kind, key) -> (cadre, end reason) of each target's latest ended pair (end date, then id)."""
    p = schema.pairing
    ranked = (
        sa.select(
            p.c.target_key,
            p.c.cadre_key,
            p.c.end_reason,
            sa.func.row_number()
            .over(partition_by=p.c.target_key, order_by=(p.c.valid_to.desc(), p.c.pairing_id.desc()))
            .label("recency"),
        )
        .where(p.c.valid_to.is_not(None), p.c.target_kind == kind, p.c.target_key.in_(keys))
        .subquery()
    )
    return {
        (kind, r.target_key): (r.cadre_key, r.end_reason)
        for r in conn.execute(sa.select(ranked).where(ranked.c.recency == 1))
    }


def _units(conn: sa.Connection, cadres: list[str]) -> dict[str, object]:
    c = schema.cadre
    out: dict[str, object] = {}
    for chunk in batched(cadres, IN_LIST):
        out.update(conn.execute(sa.select(c.c.cadre_key, c.c.unit).where(c.c.cadre_key.in_(chunk))).all())
    return out


def _cadres(conn: sa.Connection, ends: pd.DataFrame) -> pd.DataFrame:
    """The active cadres with the loads of the pairs they keep (their current pairs, counted in the
    database, less tonight's ends), as ``NightPlan.cadres``."""
    c, p = schema.cadre, schema.pairing

    def load(kind: str) -> sa.Subquery:
        return (
            sa.select(p.c.cadre_key, sa.func.count().label("n"))
            .where(p.c.valid_to.is_(None), p.c.target_kind == kind)
            .group_by(p.c.cadre_key)
            .subquery()
        )

    hl, kl = load(HOUSEHOLD), load(CASE)
    rows = conn.execute(
        sa.select(
            c.c.cadre_key,
            c.c.rank,
            c.c.unit,
            c.c.town,
            sa.func.coalesce(hl.c.n, 0),
            sa.func.coalesce(kl.c.n, 0),
        )
        .select_from(
            c.outerjoin(hl, hl.c.cadre_key == c.c.cadre_key).outerjoin(kl, kl.c.cadre_key == c.c.cadre_key)
        )
        .where(c.c.status == "active")
        .order_by(c.c.cadre_key)
    ).all()
    keys, ranks, units, towns, households, cases = (
        (list(col) for col in zip(*rows, strict=True)) if rows else ([],) * 6
    )
    frame = pd.DataFrame(
        {
            "cadre_key": np.array(keys, dtype=object),
            "rank": np.array(ranks, dtype=object),
            "unit": np.array(units, dtype=object),
            "town": np.array(towns, dtype=object),
            "household_load": np.array(households, dtype=np.int64),
            "case_load": np.array(cases, dtype=np.int64),
        }
    )
    if len(ends):  # the pairs that end tonight are not kept
        position = {key: i for i, key in enumerate(keys)}
        for key, kind in zip(ends["cadre_key"], ends["target_kind"], strict=True):
            i = position.get(key)
            if i is not None and kind in (HOUSEHOLD, CASE):
                frame.iat[i, 4 if kind == HOUSEHOLD else 5] -= 1
    return frame.sort_values("cadre_key", kind="mergesort").reset_index(drop=True)
