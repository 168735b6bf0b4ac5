"""Status refresh (dynamic management): statuses come only from explicit change rows.

A household that is missing from a later roster is NOT exited. The hardship category of a household
follows its adjustment rows (新增 -> active, 退出/脱困 -> exited, the latest by date wins); orphan and
old-member categories stay active; a household is active while any of its categories is. A cadre
follows the change list (调离/退休 -> departed, 新增 -> active). A case is closed by a closure row or
by a ledger row whose status says closed.

Statuses are recomputed from all loaded records dated on or before the night's ``as_of`` every
night (a re-run of an earlier night does not apply events dated after it), so the result does not
depend on how many nights it took to get here. The computation and the writes are set-based SQL in the
database (``sql/status/*.sql``: latest event per entity by ``ROW_NUMBER``, then ``UPDATE ... FROM``),
the same on SQLite and PostgreSQL. Before anything is written, the night is checked against the
pairings: if the new statuses would end more than ``max_end_share`` of the current pairs, the night
stops with :class:`NightRefused` and nothing is changed (a mistaken file cannot wipe the programme).
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import NotRequired, TypedDict

import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import paths, plain
from rosterlink.ops.errors import PermanentError
from rosterlink.warehouse import builds

log = logging.getLogger(__name__)


class NightRefused(PermanentError):
    """The night's inputs would end too many pairs; nothing was written (never retried)."""


_TEMP = {
    "household_category": ("tmp_status_category", ("household_key", "category")),
    "household": ("tmp_status_household", ("household_key",)),
    "cadre": ("tmp_status_cadre", ("cadre_key",)),
    "case": ("tmp_status_case", ("case_key",)),
}


def _compute_sql(conn: sa.Connection, as_of: dt.date | None) -> None:
    """The implied statuses into temporary tables (``sql/status/01_compute.sql``), set-based; only
    events dated on or before ``as_of`` count (``None``: every loaded event)."""
    warehouse.run_sql(conn, "status/01_compute.sql", {"as_of": as_of or dt.date.max})


def compute(
    conn: sa.Connection, as_of: dt.date | None = None
) -> dict[str, dict[object, tuple[str, dt.date | None]]]:
    """The statuses the loaded records imply, without writing anything: ``{"household_category":
    {(household_key, category): (status, since)}, "household" | "cadre" | "case": {key: (status,
    since)}}`` (what the night's SQL computes as of ``as_of``; for checks and tests)."""
    _compute_sql(conn, as_of)
    out: dict[str, dict] = {}
    for name, (table, keys) in _TEMP.items():
        rows = conn.exec_driver_sql(f"SELECT {', '.join(keys)}, status, since FROM {table}").all()
        out[name] = {(tuple(r[:-2]) if len(keys) > 1 else r[0]): (r[-2], _as_date(r[-1])) for r in rows}
    warehouse.run_sql(conn, "status/04_cleanup.sql")
    return out


def _as_date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


class StatusSummary(TypedDict):
    """What the status refresh did: the ``refresh_statuses`` task's result."""

    pairs_current: int
    pairs_to_end: int  # current pairs tonight's statuses end (the pairing stage ends them)
    to_end_by_reason: dict[str, int]
    changed: dict[str, int]  # households, cadres and cases whose status changed, by new status
    categories_changed: int  # households' categories whose status changed
    settled_since: NotRequired[str]  # kept, not computed: nothing it reads changed since this night


def code_token() -> str:
    """The code the statuses and the ends they count come from (this module, ``sql/status``, the
    pairing engine's plan): a new version computes again (:mod:`rosterlink.warehouse.builds`)."""
    from rosterlink.pairing import rebuild as pairing

    pairing_dir = Path(pairing.__file__).parent
    return builds.code_digest(
        [Path(__file__), *(paths.SQL_DIR / "status").glob("*.sql"), *pairing_dir.glob("*.py")]
    )


def kept(eng: sa.Engine, as_of: dt.date) -> StatusSummary | None:
    """Tonight's summary without computing it, when the statuses last settled on a night with the
    same inputs (:func:`rosterlink.warehouse.builds.kept`); else None."""
    summary = builds.kept(eng, "status", as_of, code_token())
    return StatusSummary(**summary) if summary is not None else None  # type: ignore[typeddict-item]


def settle(eng: sa.Engine, as_of: dt.date, run_id: str | None, summary: StatusSummary) -> None:
    """After the refresh: when it changed no status and counts no pair to end, keep what it settled
    on, so the next night with the same inputs keeps it; else forget the last build."""
    settled = not summary["changed"] and not summary["categories_changed"] and not summary["pairs_to_end"]
    builds.settle(eng, "status", as_of, run_id, code_token(), dict(summary) if settled else None)


def refresh(
    eng: sa.Engine, max_end_share: float = 0.10, allow_mass_end: bool = False, as_of: dt.date | None = None
) -> StatusSummary:
    """Recompute and write statuses in one transaction, unless the night would end too many pairs.

    The statuses are written first and the pairing engine's own plan (:func:`pairing.plan_ends`)
    is asked, inside the same transaction, how many current pairs they end; if too many, the
    exception rolls the transaction back and nothing is changed.
    """
    from rosterlink.pairing import rebuild as pairing

    as_of = as_of or dt.date.today()
    with eng.begin() as conn:
        changed, categories = _write(conn, as_of)
        plan = pairing.plan_ends(conn, as_of)
        total, ending, by_reason = plan["total_current"], plan["ending"], plan["by_reason"]
        if total and ending / total > max_end_share and not allow_mass_end:
            raise NightRefused(
                f"tonight's inputs would end {ending} of {total} current pairs ({ending / total:.0%}, "
                f"by reason {by_reason}), more than the allowed {max_end_share:.0%}. Nothing was changed. "
                "Check the adjustment and change files; if they are right, rerun with allow_mass_end."
            )
    summary = StatusSummary(
        pairs_current=total,
        pairs_to_end=ending,
        to_end_by_reason=by_reason,
        changed=changed,
        categories_changed=categories,
    )
    log.info(
        "status: %s current pairs, %s to end (%s); statuses changed: %s",
        f"{total:,}",
        f"{ending:,}",
        plain.counts(by_reason),
        plain.counts(changed),
    )
    return summary


def write(conn: sa.Connection, as_of: dt.date) -> dict[str, int]:
    """Compute and write the statuses as of the night's ``as_of`` in SQL (``sql/status/*.sql``) on
    ``conn``'s transaction (an event dated after ``as_of`` is not applied yet); returns how many
    households, cadres and cases changed, by new status."""
    return _write(conn, as_of)[0]


def _write(conn: sa.Connection, as_of: dt.date) -> tuple[dict[str, int], int]:
    """:func:`write`, and how many of the households' categories changed status (a household that
    leaves hardship but stays a family of orphaned children changes no household status, yet its
    town's workbook lists its categories)."""
    _compute_sql(conn, as_of)
    changed = {
        f"{kind}_{status}": int(n)
        for kind, status, n in warehouse.run_sql(conn, "status/02_changes.sql")[0].all()
        if n
    }
    categories = int(
        conn.execute(
            sa.text(
                "select count(*) from tmp_status_category as t inner join household_category as hc "
                "on hc.household_key = t.household_key and hc.category = t.category "
                "where hc.status <> t.status"
            )
        ).scalar_one()
    )
    warehouse.run_sql(conn, "status/03_write.sql")
    warehouse.run_sql(conn, "status/04_cleanup.sql")
    return dict(sorted(changed.items())), categories
