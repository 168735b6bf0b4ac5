"""Status refresh (dynamic management): statuses come only from explicit change rows.

A household that is missing from a later roster is NOT exited. The hardship category of a household
follows its adjustment rows (新增 -> active, 退出/脱困 -> exited, the latest by date wins); orphan and
old-member categories stay active; a household is active while any of its categories is. A cadre
follows the change list (调离/退休 -> departed, 新增 -> active). A case is closed by a closure row or
by a ledger row whose status says closed.

Statuses are recomputed from all loaded records every night, so the result does not depend on how
many nights it took to get here. Before anything is written, the night is checked against the
pairings: if the new statuses would end more than ``max_end_share`` of the current pairs, the night
stops with :class:`NightRefused` and nothing is changed (a mistaken file cannot wipe the programme).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

import sqlalchemy as sa

from rosterlink import schema

log = logging.getLogger(__name__)


class NightRefused(Exception):
    """The night's inputs would end too many pairs; nothing was written."""


def _events(conn: sa.Connection, roster: str) -> dict[str, list[tuple]]:
    """entity_key -> [(event_date, record_id, event)] for one roster, oldest first."""
    r = schema.source_record
    out: dict[str, list[tuple]] = defaultdict(list)
    for key, date, record_id, event in conn.execute(
        sa.select(r.c.entity_key, r.c.event_date, r.c.record_id, r.c.event)
        .where(r.c.roster == roster, r.c.entity_key.is_not(None), r.c.event.is_not(None))
    ):
        out[key].append((date or dt.date.min, record_id, event))
    for events in out.values():
        events.sort()
    return out


def _last(events: list[tuple], default: str, mapping: dict[str, str]) -> tuple[str, dt.date | None]:
    if not events:
        return default, None
    date, _, event = events[-1]
    return mapping.get(event, default), (None if date == dt.date.min else date)


def compute(conn: sa.Connection) -> dict[str, dict[str, tuple[str, dt.date | None]]]:
    """The statuses the loaded records imply, without writing anything."""
    hc = schema.household_category
    adjustments = _events(conn, "hardship_adjustment")
    categories: dict[tuple[str, str], tuple[str, dt.date | None]] = {}
    for key, category in conn.execute(sa.select(hc.c.household_key, hc.c.category)):
        if category == "hardship":
            categories[(key, category)] = _last(adjustments.get(key, []), "active",
                                                {"add": "active", "exit": "exited"})
        else:
            categories[(key, category)] = ("active", None)
    households: dict[str, tuple[str, dt.date | None]] = {}
    by_household: dict[str, list[tuple[str, dt.date | None]]] = defaultdict(list)
    for (key, _), value in categories.items():
        by_household[key].append(value)
    for key, values in by_household.items():
        if any(status == "active" for status, _ in values):
            households[key] = ("active", None)
        else:
            households[key] = ("exited", max((d for _, d in values if d), default=None))

    changes = _events(conn, "cadre_change")
    cadres = {
        key: _last(changes.get(key, []), "active", {"join": "active", "leave": "departed"})
        for (key,) in conn.execute(sa.select(schema.cadre.c.cadre_key))
    }
    closures = _events(conn, "case_closure")
    ledger = _events(conn, "case")
    cases = {}
    for (key,) in conn.execute(sa.select(schema.petition_case.c.case_key)):
        if closures.get(key):
            cases[key] = ("closed", closures[key][-1][0] if closures[key][-1][0] != dt.date.min else None)
        else:
            cases[key] = _last(ledger.get(key, []), "open", {"open": "open", "closed": "closed"})
    return {"household_category": categories, "household": households, "cadre": cadres, "case": cases}


def refresh(eng: sa.Engine, max_end_share: float = 0.10, allow_mass_end: bool = False,
            as_of: dt.date | None = None) -> dict:
    """Recompute and write statuses in one transaction, unless the night would end too many pairs.

    The statuses are written first and the pairing engine's own plan (:func:`pairing.plan_ends`)
    is asked, inside the same transaction, how many current pairs they end; if too many, the
    exception rolls the transaction back and nothing is changed.
    """
    from rosterlink import pairing

    as_of = as_of or dt.date.today()
    with eng.begin() as conn:
        changed = _write(conn, compute(conn))
        plan = pairing.plan_ends(conn, as_of)
        total, ending, by_reason = plan["total_current"], plan["ending"], plan["by_reason"]
        if total and ending / total > max_end_share and not allow_mass_end:
            raise NightRefused(
                f"tonight's inputs would end {ending} of {total} current pairs ({ending / total:.0%}, "
                f"by reason {by_reason}), more than the allowed {max_end_share:.0%}. Nothing was changed. "
                "Check the adjustment and change files; if they are right, rerun with allow_mass_end."
            )
    summary = {"pairs_current": total, "pairs_to_end": ending, "to_end_by_reason": by_reason, "changed": changed}
    log.info("status: %s", summary)
    return summary


def _write(conn: sa.Connection, statuses: dict) -> dict[str, int]:
    changed: dict[str, int] = defaultdict(int)
    hc, h, c, k = schema.household_category, schema.household, schema.cadre, schema.petition_case
    old = {(key, cat): st for key, cat, st in conn.execute(sa.select(hc.c.household_key, hc.c.category, hc.c.status))}
    for (key, category), (status, since) in sorted(statuses["household_category"].items()):
        if old.get((key, category)) != status:
            conn.execute(hc.update().where(hc.c.household_key == key, hc.c.category == category)
                         .values(status=status, status_since=since))
    for table, key_col, name in ((h, h.c.household_key, "household"), (c, c.c.cadre_key, "cadre"),
                                 (k, k.c.case_key, "case")):
        old = dict(conn.execute(sa.select(key_col, table.c.status)).all())
        for key, (status, since) in sorted(statuses[name].items()):
            if old.get(key) != status:
                conn.execute(table.update().where(key_col == key).values(status=status, status_since=since))
                changed[f"{name}_{status}"] += 1
    return dict(changed)
