"""The nightly follow-through figures: ``followup_household`` rebuilt for the night (one row per
household with a pair in force, over its whole visit history, against the first-visit deadline and
the help band), the district's headline, the ``followup_by_*`` views and the lines to act on."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection

import sqlalchemy as sa

from rosterlink.followup.config import FLAG_LABELS, IN_PERSON, PHONE, FollowupConfig
from rosterlink.warehouse import insert_many, schema


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


def rebuild_followup(conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig) -> int:
    """Rewrite ``followup_household`` for ``as_of``; returns the number of households."""
    p, v, h, fh = schema.pairing, schema.visit, schema.household, schema.followup_household
    surviving = surviving_keys(conn)
    first_paired: dict[str, dt.date] = {}
    current: dict[str, str] = {}
    for row in conn.execute(
        sa.select(p.c.cadre_key, p.c.target_key, p.c.valid_from, p.c.valid_to)
        .where(p.c.target_kind == "household", p.c.valid_from <= as_of)
        .order_by(p.c.pairing_id)
    ):
        key = surviving.get(row.target_key, row.target_key)
        first_paired[key] = min(first_paired.get(key, row.valid_from), row.valid_from)
        if row.valid_to is None or row.valid_to > as_of:
            current[key] = row.cadre_key
    towns = dict(conn.execute(sa.select(h.c.household_key, h.c.town)).all())
    visits: dict[str, list] = defaultdict(list)
    for x in conn.execute(
        sa.select(
            v.c.household_key,
            v.c.cadre_key,
            v.c.visit_date,
            v.c.visit_kind,
            v.c.problems_found,
            v.c.problems_solved,
            v.c.help_value,
            v.c.help_source_kind,
        )
        .where(v.c.visit_date <= as_of)
        .order_by(v.c.visit_date, v.c.visit_id)
    ):
        visits[x.household_key].append(x)
    conn.execute(fh.delete())
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
                "as_of": as_of,
                "town": towns.get(key),
                "cadre_key": current[key],
                "paired_on": first_paired[key],
                "deadline": deadline,
                "first_in_person_on": in_person[0].visit_date if in_person else None,
                "last_contact_on": last,
                "days_since_contact": (as_of - last).days if last else None,
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
    insert_many(conn, fh, rows)  # every row, every night: each carries the night's date
    return len(rows)


def headline(eng: sa.Engine) -> dict:
    """The district's follow-through figures as they stand (CLI summary, dashboard)."""
    with eng.connect() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("followup_household"):
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


def warnings(
    conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig, towns: Collection[str | None] | None = None
) -> list[tuple]:
    """Lines to act on: overdue households, help outside the band, help recorded from public funds
    (``towns``: only the households of these towns)."""
    fh, h, c, v = schema.followup_household, schema.household, schema.cadre, schema.visit
    out = []
    for r in conn.execute(
        sa.select(fh, h.c.village, h.c.head_name, c.c.name.label("cadre_name"), c.c.unit)
        .select_from(
            fh.outerjoin(h, h.c.household_key == fh.c.household_key).outerjoin(
                c, c.c.cadre_key == fh.c.cadre_key
            )
        )
        .where(sa.or_(fh.c.overdue == 1, fh.c.help_flag.is_not(None)), in_towns(fh.c.town, towns))
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
        if r.overdue:
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
