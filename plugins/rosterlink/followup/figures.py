"""The nightly follow-through figures: ``followup_household`` brought up to date for the night
(one row per household with a pair in force, over its whole visit history, against the first-visit
deadline and the help band), the district's headline, the ``followup_by_*`` views and the lines to
act on."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import operator
from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import NamedTuple

import sqlalchemy as sa

from rosterlink.followup.config import FLAG_LABELS, IN_PERSON, PHONE, FollowupConfig
from rosterlink.warehouse import IN_LIST, batched, insert_many, now, schema

log = logging.getLogger(__name__)


def surviving_keys(conn: sa.Connection) -> dict[str, str]:
    """retired household key -> the key that survives it now (merge chains followed): visits and
    pairs of a merged household count under the household that survives it."""
    m = schema.household_merge
    direct = dict(conn.execute(sa.select(m.c.retired_key, m.c.surviving_key).order_by(m.c.merge_id)).all())

    def resolve(key: str) -> str:
        seen = set()
        while key in direct and key not in seen:
            seen.add(key)
            key = direct[key]
        return key

    return {k: resolve(k) for k in direct}


class Refreshed(NamedTuple):
    """What a night did to ``followup_household``: the households it holds, how many households'
    rows were added, removed or changed in anything but ``as_of`` and ``days_since_contact``
    (``changed``), and whether it was rebuilt in full (``full``) or only where it could change."""

    households: int
    changed: int
    full: bool


# Bump when a row's meaning or the way it is computed changes: a table built by another version of
# the code is rebuilt in full on the next night.
CODE_VERSION = 1
BUILD_NAME = "followup_household"
# columns the view followup_household adds to every row (the night's date); every other column is
# what a row shows, kept in followup_figures
DATED = ("as_of", "days_since_contact")
SHOWN = tuple(c.name for c in schema.followup_figures.columns if c.name != "household_key")
# past this share of the households, computing them one IN list at a time costs more than the whole
FULL_SHARE = 0.25


def config_digest(cfg: FollowupConfig) -> str:
    """The settings a row is computed with (the first-visit deadline rule and the help band)."""
    used = (
        [d.isoformat() for d in cfg.festival_deadlines],
        cfg.min_days_after_pairing,
        cfg.fallback_days,
        cfg.help_min,
        cfg.help_max,
    )
    return hashlib.sha256(json.dumps(used).encode()).hexdigest()


def rebuild_followup(conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig) -> Refreshed:
    """Rewrite ``followup_household`` for ``as_of`` from every pair, visit and household: the
    reference the nightly :func:`refresh_followup` must always agree with (and its fallback)."""
    fh = schema.followup_figures
    marks = _marks(conn)
    surviving = surviving_keys(conn)
    pairs = _pairs(conn, as_of, None, surviving)
    towns = dict(conn.execute(sa.select(schema.household.c.household_key, schema.household.c.town)).all())
    visits = _visits(conn, as_of, None)
    before = _shown_rows(conn, None)
    conn.execute(fh.delete())
    rows = _rows(pairs, visits, towns, as_of, cfg)
    insert_many(conn, fh, rows)
    changed = _count_changed(before, rows)
    _record(conn, as_of, cfg, marks, len(rows), full=True)
    return Refreshed(len(rows), changed, True)


def refresh_followup(
    conn: sa.Connection,
    as_of: dt.date,
    cfg: FollowupConfig,
    touched: Collection[str] = (),
    visits_added: int = 0,
) -> Refreshed:
    """Bring ``followup_household`` to ``as_of``, computing again only the households whose row can
    have changed since it was last built; what :func:`rebuild_followup` would write, to the value.

    ``touched``: households whose visits the caller added, removed or moved in this transaction,
    ``visits_added`` how many visits it added less those it removed (visits are written by
    :func:`rosterlink.followup.match.match` only). A household's row is computed again when one of
    its pairs began, ended or was written since (``valid_from``, ``valid_to``, ``pairing_id``), a
    visit of it was logged or falls due since (``visit_id``, ``visit_date``), a merge joined it to
    another, its town changed, or its first-visit deadline passed without a visit in person. Every
    other row is left as it is: the view ``followup_household`` gives it the night's date
    (``as_of`` and ``days_since_contact``, from the build's date recorded here).

    It rebuilds in full (:func:`rebuild_followup`) when it cannot tell what changed: no record of
    the last build (a first night, a table built by another code version, a purge of old pairs),
    a night not after the last one, a new calendar year (the year's help starts again), changed
    settings, pairs or visits removed or ended outside a night, or too many households to do
    one by one."""
    marks = _marks(conn)
    last = conn.execute(
        sa.select(schema.followup_build).where(schema.followup_build.c.name == BUILD_NAME)
    ).one_or_none()
    why = _why_full(conn, last, as_of, cfg, marks, visits_added)
    if why or last is None:
        log.info("follow-through figures rebuilt in full: %s", why)
        return rebuild_followup(conn, as_of, cfg)
    surviving = surviving_keys(conn)
    dirty = _dirty(conn, last, as_of, surviving, touched)
    if len(dirty) > max(1000, FULL_SHARE * last.households):
        log.info("follow-through figures rebuilt in full: %d households to compute again", len(dirty))
        return rebuild_followup(conn, as_of, cfg)
    fh, h = schema.followup_figures, schema.household
    keys = sorted(dirty)
    retired = sorted(r for r, s in surviving.items() if s in dirty)
    pairs = _pairs(conn, as_of, [*keys, *retired], surviving)
    towns: dict[str, str | None] = {}
    before: dict[str, tuple] = {}
    for chunk in batched(keys, IN_LIST):
        towns.update(
            conn.execute(sa.select(h.c.household_key, h.c.town).where(h.c.household_key.in_(chunk))).all()
        )
        before.update(_shown_rows(conn, chunk))
        conn.execute(fh.delete().where(fh.c.household_key.in_(chunk)))
    visits = _visits(conn, as_of, keys)
    rows = _rows(pairs, visits, towns, as_of, cfg)
    insert_many(conn, fh, rows)
    households = last.households - len(before) + len(rows)
    _record(conn, as_of, cfg, marks, households, full=False)
    return Refreshed(households, _count_changed(before, rows), False)


class _Marks(NamedTuple):
    pairings: int
    open_pairings: int
    last_pairing_id: int
    visits: int
    last_visit_id: int
    last_merge_id: int


def _marks(conn: sa.Connection) -> _Marks:
    """How many household pairs (and open ones) and visits there are, and the last ids written."""
    p, v, m = schema.pairing, schema.visit, schema.household_merge
    pairs = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(sa.case((p.c.valid_to.is_(None), 1))),
            sa.func.coalesce(sa.func.max(p.c.pairing_id), 0),
        ).where(p.c.target_kind == "household")
    ).one()
    visits = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.max(v.c.visit_id), 0))).one()
    merge = conn.execute(sa.select(sa.func.coalesce(sa.func.max(m.c.merge_id), 0))).scalar_one()
    return _Marks(int(pairs[0]), int(pairs[1]), int(pairs[2]), int(visits[0]), int(visits[1]), int(merge))


def _why_full(
    conn: sa.Connection,
    last: sa.Row | None,
    as_of: dt.date,
    cfg: FollowupConfig,
    marks: _Marks,
    visits_added: int,
) -> str | None:
    """Why tonight cannot be brought up to date household by household (None: it can)."""
    if last is None:
        return "no record of the last build"
    if last.code_version != CODE_VERSION:
        return f"built by code version {last.code_version}"
    if last.config_digest != config_digest(cfg):
        return "the deadline rule or the help band changed"
    if as_of <= last.as_of:
        return f"the night {as_of} is not after the last one ({last.as_of})"
    if as_of.year != last.as_of.year:
        return "a new calendar year"
    if marks.visits != last.visits + visits_added:
        return "visits were written outside the follow-through stage"
    p = schema.pairing
    new = _count_new(conn, p.c.pairing_id, last.last_pairing_id, p.c.target_kind == "household")
    if marks.pairings != last.pairings + new:
        return "pairs were removed"
    # every pair ended since the last build ended on a night after it (valid_to is that night)
    opened = _count_new(
        conn, p.c.pairing_id, last.last_pairing_id, p.c.target_kind == "household", p.c.valid_to.is_(None)
    )
    ended = int(
        conn.execute(
            sa.select(sa.func.count()).where(
                p.c.target_kind == "household",
                p.c.pairing_id <= last.last_pairing_id,
                p.c.valid_to > last.as_of,
                p.c.valid_to <= as_of,
            )
        ).scalar_one()
    )
    if marks.open_pairings != last.open_pairings + opened - ended:
        return "pairs were ended with a date not after the last build"
    return None


def _count_new(conn: sa.Connection, id_column: sa.Column, after: int, *where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).where(id_column > after, *where)).scalar_one())


def _dirty(
    conn: sa.Connection, last: sa.Row, as_of: dt.date, surviving: dict[str, str], touched: Collection[str]
) -> set[str]:
    """The households whose row can differ from the last build's (keys as they survive merges)."""
    p, v, m, h, fh = (
        schema.pairing,
        schema.visit,
        schema.household_merge,
        schema.household,
        schema.followup_figures,
    )
    since = last.as_of
    raw: set[str] = set(touched)
    # pairs that began or ended between the two nights, or were written since
    raw.update(
        conn.execute(
            sa.select(p.c.target_key).where(
                p.c.target_kind == "household",
                sa.or_(
                    sa.and_(p.c.valid_from > since, p.c.valid_from <= as_of),
                    sa.and_(p.c.valid_to > since, p.c.valid_to <= as_of),
                    p.c.pairing_id > last.last_pairing_id,
                ),
            )
        ).scalars()
    )
    # visits logged since, or dated between the two nights (a visit counts from its date on)
    raw.update(
        conn.execute(
            sa.select(v.c.household_key).where(
                sa.or_(
                    v.c.visit_id > last.last_visit_id,
                    sa.and_(v.c.visit_date > since, v.c.visit_date <= as_of),
                )
            )
        ).scalars()
    )
    # merges since: both households (and the households each now survives in)
    for retired, kept in conn.execute(
        sa.select(m.c.retired_key, m.c.surviving_key).where(m.c.merge_id > last.last_merge_id)
    ):
        raw.update((retired, kept))
    # a household's town changed (or its household row went)
    raw.update(
        conn.execute(
            sa.select(fh.c.household_key)
            .select_from(fh.outerjoin(h, h.c.household_key == fh.c.household_key))
            .where(fh.c.town.is_distinct_from(h.c.town))
        ).scalars()
    )
    # the first-visit deadline passed between the two nights without a visit in person
    raw.update(
        conn.execute(
            sa.select(fh.c.household_key).where(
                fh.c.visited_in_person == 0, fh.c.deadline >= since, fh.c.deadline < as_of
            )
        ).scalars()
    )
    return raw | {surviving.get(k, k) for k in raw}


def _pairs(
    conn: sa.Connection, as_of: dt.date, keys: list[str] | None, surviving: dict[str, str]
) -> tuple[dict[str, dt.date], dict[str, str]]:
    """(household -> the day its first pair began, household -> its current cadre) on ``as_of``,
    from the household pairs of ``keys`` (target keys; None: every pair), merged households under
    the key that survives them."""
    p = schema.pairing
    query = sa.select(p.c.pairing_id, p.c.cadre_key, p.c.target_key, p.c.valid_from, p.c.valid_to).where(
        p.c.target_kind == "household", p.c.valid_from <= as_of
    )
    if keys is None:
        found: Iterable[sa.Row] = conn.execute(query.order_by(p.c.pairing_id))
    else:
        chosen = [
            r
            for chunk in batched(keys, IN_LIST)
            for r in conn.execute(query.where(p.c.target_key.in_(chunk)))
        ]
        found = sorted(chosen, key=lambda r: r.pairing_id)
    first_paired: dict[str, dt.date] = {}
    current: dict[str, str] = {}
    for row in found:
        key = surviving.get(row.target_key, row.target_key)
        first_paired[key] = min(first_paired.get(key, row.valid_from), row.valid_from)
        if row.valid_to is None or row.valid_to > as_of:
            current[key] = row.cadre_key
    return first_paired, current


def _visits(conn: sa.Connection, as_of: dt.date, keys: list[str] | None) -> dict[str, list]:
    """household -> its visits up to ``as_of`` in date order (``keys``: these households only)."""
    v = schema.visit
    query = sa.select(
        v.c.visit_id,
        v.c.household_key,
        v.c.cadre_key,
        v.c.visit_date,
        v.c.visit_kind,
        v.c.problems_found,
        v.c.problems_solved,
        v.c.help_value,
        v.c.help_source_kind,
    ).where(v.c.visit_date <= as_of)
    if keys is None:
        found = list(conn.execute(query.order_by(v.c.visit_date, v.c.visit_id)))
    else:
        found = [
            r
            for chunk in batched(keys, IN_LIST)
            for r in conn.execute(query.where(v.c.household_key.in_(chunk)))
        ]
        found.sort(key=lambda x: (x.visit_date, x.visit_id))
    visits: dict[str, list] = defaultdict(list)
    for x in found:
        visits[x.household_key].append(x)
    return visits


def _rows(
    pairs: tuple[dict[str, dt.date], dict[str, str]],
    visits: dict[str, list],
    towns: dict[str, str | None],
    as_of: dt.date,
    cfg: FollowupConfig,
) -> list[dict]:
    """The ``followup_household`` rows of the households with a pair current on ``as_of``."""
    first_paired, current = pairs
    rows = []
    for key in sorted(current):
        seen = visits.get(key, [])
        in_person = [x for x in seen if x.visit_kind == IN_PERSON]
        last = max((x.visit_date for x in seen), default=None)
        help_year = sum(x.help_value or 0.0 for x in seen if x.visit_date.year == as_of.year)
        flag = None
        if help_year > 0:
            flag = "below" if help_year < cfg.help_min else "above" if help_year > cfg.help_max else None
        deadline = cfg.deadline(first_paired[key])
        visited = bool(in_person)
        rows.append(
            {
                "household_key": key,
                "town": towns.get(key),
                "cadre_key": current[key],
                "paired_on": first_paired[key],
                "deadline": deadline,
                "first_in_person_on": in_person[0].visit_date if in_person else None,
                "last_contact_on": last,
                "in_person_visits": len(in_person),
                "phone_contacts": sum(1 for x in seen if x.visit_kind == PHONE),
                "problems_found": sum(x.problems_found for x in seen),
                "problems_solved": sum(x.problems_solved for x in seen),
                "help_value_year": round(help_year, 2),
                "help_flag": flag,
                "public_fund_entries": sum(1 for x in seen if x.help_source_kind == "public"),
                "visited_in_person": int(visited),
                "overdue": int(not visited and as_of > deadline),
                "carried_over": int(any(x.cadre_key != current[key] for x in seen)),
            }
        )
    return rows


def _shown_rows(conn: sa.Connection, keys: list[str] | None) -> dict[str, tuple]:
    """household -> what its row shows besides the night's date (the columns :data:`SHOWN`), for
    ``keys`` (None: every row)."""
    fh = schema.followup_figures
    query = sa.select(fh.c.household_key, *(fh.c[c] for c in SHOWN))
    if keys is not None:
        query = query.where(fh.c.household_key.in_(keys))
    return {r[0]: tuple(r[1:]) for r in conn.execute(query)}


_SHOWN_OF = operator.itemgetter(*SHOWN)


def _count_changed(before: dict[str, tuple], rows: list[dict]) -> int:
    """Households whose row was added, removed or shows something else than ``before``."""
    if not before:
        return len(rows)
    after = {r["household_key"]: _SHOWN_OF(r) for r in rows}
    return sum(1 for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _record(
    conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig, marks: _Marks, households: int, *, full: bool
) -> None:
    """Remember what the table now holds and what it was built from (the next night's starting point)."""
    b = schema.followup_build
    conn.execute(b.delete().where(b.c.name == BUILD_NAME))
    conn.execute(
        b.insert().values(
            name=BUILD_NAME,
            as_of=as_of,
            built_at=now(),
            code_version=CODE_VERSION,
            config_digest=config_digest(cfg),
            full=int(full),
            households=households,
            **marks._asdict(),
        )
    )


def headline(eng: sa.Engine) -> dict:
    """The district's follow-through figures as they stand (CLI summary, dashboard)."""
    with eng.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("followup_figures"):
            return {}
        fh = conn.exec_driver_sql(
            "SELECT COUNT(*), COALESCE(SUM(visited_in_person),0), COALESCE(SUM(overdue),0), "
            "COALESCE(SUM(CASE WHEN last_contact_on IS NULL THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN visited_in_person = 0 AND phone_contacts > 0 THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN help_flag = 'above' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN help_flag = 'below' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(carried_over),0), MAX(as_of) FROM followup_household"
        ).one()
        vs = conn.exec_driver_sql(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN visit_kind = 'in_person' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(problems_found),0), COALESCE(SUM(problems_solved),0), COALESCE(SUM(help_value),0), "
            "COALESCE(SUM(CASE WHEN help_source_kind = 'public' THEN 1 ELSE 0 END),0), "
            "COALESCE(SUM(CASE WHEN opinions IS NOT NULL THEN 1 ELSE 0 END),0) FROM visit"
        ).one()
    return {
        "as_of": str(fh[8]) if fh[8] else None,
        "households": int(fh[0]),
        "visited_in_person": int(fh[1]),
        "not_visited_in_person": int(fh[0]) - int(fh[1]),
        "overdue": int(fh[2]),
        "never_contacted": int(fh[3]),
        "phone_only": int(fh[4]),
        "help_above_band": int(fh[5]),
        "help_below_band": int(fh[6]),
        "carried_over": int(fh[7]),
        "visits": int(vs[0]),
        "in_person_visits": int(vs[1]),
        "phone_contacts": int(vs[0]) - int(vs[1]),
        "problems_found": int(vs[2]),
        "problems_solved": int(vs[3]),
        "help_value": round(float(vs[4]), 2),
        "public_fund_entries": int(vs[5]),
        "opinions": int(vs[6]),
    }


def by_view(conn: sa.Connection, view: str) -> list[dict]:
    """Rows of one of the ``followup_by_*`` views as dicts."""
    if view not in ("followup_by_cadre", "followup_by_unit", "followup_by_town"):
        raise ValueError(view)
    return [dict(m) for m in conn.execute(sa.text(f"SELECT * FROM {view}")).mappings()]


def in_towns(column: sa.ColumnElement, towns: Collection[str | None] | None) -> sa.ColumnElement[bool]:
    """``column`` is one of ``towns`` (None among them: a row without a town); every row for None."""
    if towns is None:
        return sa.true()
    named = sorted(t for t in towns if t is not None)
    either = ([column.in_(named)] if named else []) + ([column.is_(None)] if None in towns else [])
    return sa.or_(*either) if either else sa.false()


def overdue_households(conn: sa.Connection) -> int:
    """How many households are overdue for their first visit in person (every town)."""
    fh = schema.followup_figures  # the view's overdue is the table's: no date needed to count it
    return int(conn.execute(sa.select(sa.func.count()).where(fh.c.overdue == 1)).scalar_one())


def warnings(
    conn: sa.Connection,
    as_of: dt.date,
    cfg: FollowupConfig,
    towns: Collection[str | None] | None = None,
    overdue_cap: int | None = None,
) -> list[tuple]:
    """Lines to act on: overdue households, help outside the band, help recorded from public funds
    (``towns``: only the households of these towns). ``overdue_cap``: of the overdue households only
    the first so many (in the lines' order) are read, every household with help outside the band
    still is (a province where no visit log has arrived yet has a million overdue households; a
    sheet lists the first ones and counts them all: :func:`overdue_households`)."""
    fh, h, c, v = schema.followup_household, schema.household, schema.cadre, schema.visit
    overdue: sa.ColumnElement[bool] = fh.c.overdue == 1  # a line for it: within the cap
    if overdue_cap is not None:
        fo = schema.followup_figures
        first = (
            sa.select(fo.c.household_key)
            .where(fo.c.overdue == 1, in_towns(fo.c.town, towns))
            .order_by(fo.c.town, fo.c.household_key)
            .limit(overdue_cap)
        )
        overdue = sa.and_(overdue, fh.c.household_key.in_(first.scalar_subquery()))
    out = []
    for r in conn.execute(
        sa.select(
            fh,
            h.c.village,
            h.c.head_name,
            c.c.name.label("cadre_name"),
            c.c.unit,
            sa.case((overdue, 1), else_=0).label("listed_overdue"),
        )
        .select_from(
            fh.outerjoin(h, h.c.household_key == fh.c.household_key).outerjoin(
                c, c.c.cadre_key == fh.c.cadre_key
            )
        )
        .where(sa.or_(overdue, fh.c.help_flag.is_not(None)), in_towns(fh.c.town, towns))
        .order_by(fh.c.town, fh.c.household_key)
    ):
        base = (
            r.town,
            r.village,
            r.head_name,
            r.household_key,
            r.cadre_name,
            r.unit,
            r.deadline,
            r.last_contact_on,
            r.help_value_year,
        )
        if r.listed_overdue:
            note = (
                "尚未入户走访"
                + ("（仅电话联系）" if r.phone_contacts else "")
                + f"，已过{r.deadline:%Y年%m月%d日}期限"
            )
            out.append(("超期未走访", *base, note))
        if r.help_flag:
            band = f"标准为每户每年{cfg.help_min:g}至{cfg.help_max:g}元"
            out.append(
                (f"帮扶{FLAG_LABELS[r.help_flag]}", *base, f"本年帮扶合计{r.help_value_year:g}元，{band}")
            )
    for r in conn.execute(
        sa.select(
            v.c.visit_date,
            v.c.household_key,
            v.c.help_value,
            v.c.help_source,
            h.c.town,
            h.c.village,
            h.c.head_name,
            c.c.name.label("cadre_name"),
            c.c.unit,
        )
        .select_from(
            v.outerjoin(h, h.c.household_key == v.c.household_key).outerjoin(
                c, c.c.cadre_key == v.c.cadre_key
            )
        )
        .where(v.c.help_source_kind == "public", in_towns(h.c.town, towns))
        .order_by(h.c.town, v.c.household_key, v.c.visit_date)
    ):
        out.append(
            (
                "公款帮扶",
                r.town,
                r.village,
                r.head_name,
                r.household_key,
                r.cadre_name,
                r.unit,
                None,
                r.visit_date,
                r.help_value,
                f"{r.visit_date:%Y-%m-%d}的帮扶记录资金来源为“{r.help_source}”：帮扶应由干部个人出资，请核实",
            )
        )
    return out


def household_followup(conn: sa.Connection) -> dict[str, sa.Row]:
    """household_key -> its followup_household row (for the town workbooks)."""
    fh = schema.followup_household
    return {r.household_key: r for r in conn.execute(sa.select(fh))}
