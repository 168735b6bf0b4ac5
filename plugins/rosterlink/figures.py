"""The night's headline counts, computed once for everyone who shows them.

:func:`headline_figures` counts the warehouse as it stands: files by status, rows read / loaded /
rejected, households by status, active households by category, cadres by rank and status, key
cases by status, current pairs by kind, the link-review queue (:func:`review_queue`) and the
follow-through headline (:mod:`rosterlink.followup`). The dashboard shows them,
:func:`night_figures` gives them the shape the night's summary (``night_run.summary``) and the
``rosterlink nightly`` / ``rosterlink figures`` output have always had.
"""

from __future__ import annotations

from typing import Any, TypedDict

import sqlalchemy as sa

from rosterlink.followup.figures import headline as followup_headline

# link_review (the link stage's queue): a row waits for a person while its status is one of these
LINK_REVIEW_OPEN = ("pending", "open")

# name -> SQL of the counts that are one GROUP BY each: {first column: count}
GROUPED_COUNTS = {
    "files": "SELECT status, COUNT(*) FROM intake_file GROUP BY status",
    "households": "SELECT status, COUNT(*) FROM household GROUP BY status",
    "categories_active": (
        "SELECT category, COUNT(*) FROM household_category WHERE status='active' GROUP BY category"
    ),
    "cadres": "SELECT rank || ':' || status, COUNT(*) FROM cadre GROUP BY rank, status",
    "cases": "SELECT status, COUNT(*) FROM petition_case GROUP BY status",
    "pairs_current": "SELECT target_kind, COUNT(*) FROM pairing WHERE valid_to IS NULL GROUP BY target_kind",
}


class RowTotals(TypedDict):
    """Rows of every file in the intake ledger."""

    read: int
    loaded: int
    already: int  # rows of re-sent files already recorded from an earlier file (counted once)
    rejected: int


class ReviewQueue(TypedDict):
    """The link-review queue (``link_review``, written by the link stage).

    ``available`` is False while the table does not exist (a warehouse migrated before it came);
    ``backlog``: items waiting for a person; ``by_reason``: those items by reason;
    ``awaiting_apply``: decided items no night has applied yet.
    """

    available: bool
    backlog: int | None
    total: int | None
    by_status: dict[str, int]
    by_reason: dict[str, int]
    awaiting_apply: int | None


class Headline(TypedDict):
    """The warehouse's headline counts (each ``dict`` maps a status, category or kind to a count)."""

    files: dict[str, int]
    rows: RowTotals
    households: dict[str, int]
    categories_active: dict[str, int]
    cadres: dict[str, int]  # "rank:status" -> cadres
    cases: dict[str, int]
    pairs_current: dict[str, int]
    review: ReviewQueue
    followup: dict[str, Any]  # rosterlink.followup's headline; {} before the first follow-through


class NightFigures(TypedDict):
    """The headline as the night's summary and the CLI have it (``link_review``: pending items by reason)."""

    files: dict[str, int]
    households: dict[str, int]
    categories_active: dict[str, int]
    cadres: dict[str, int]
    cases: dict[str, int]
    pairs_current: dict[str, int]
    link_review: dict[str, int]
    rows: RowTotals
    followup: dict[str, Any]


def _int(value: Any) -> int:
    return int(value or 0)


def review_queue(conn: sa.Connection) -> ReviewQueue:
    """The link-review queue: items waiting for a person (status pending), by status and by reason,
    and decisions not yet applied by a night."""
    inspector = sa.inspect(conn)
    if not inspector.has_table("link_review"):
        return {
            "available": False,
            "backlog": None,
            "total": None,
            "by_status": {},
            "by_reason": {},
            "awaiting_apply": None,
        }
    columns = {c["name"] for c in inspector.get_columns("link_review")}
    total = _int(conn.exec_driver_sql("SELECT COUNT(*) FROM link_review").scalar())
    by_status: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    awaiting = None
    if "status" in columns:
        for status, n in conn.exec_driver_sql("SELECT status, COUNT(*) FROM link_review GROUP BY status"):
            by_status[str(status) if status is not None else "(none)"] = _int(n)
        open_states = [s for s in by_status if s.lower() in (*LINK_REVIEW_OPEN, "(none)")]
        backlog = sum(by_status[s] for s in open_states)
        if "reason" in columns and open_states:
            marks = ", ".join(f"'{s}'" for s in open_states if s != "(none)") or "''"
            for reason, n in conn.exec_driver_sql(
                f"SELECT reason, COUNT(*) FROM link_review WHERE status IN ({marks}) GROUP BY reason"
            ):
                by_reason[str(reason)] = _int(n)
        if "applied_at" in columns:
            awaiting = _int(
                conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM link_review WHERE status = 'decided' AND applied_at IS NULL"
                ).scalar()
            )
    else:
        backlog = (
            _int(conn.exec_driver_sql("SELECT COUNT(*) FROM link_review WHERE decision IS NULL").scalar())
            if "decision" in columns
            else total
        )
    return {
        "available": True,
        "backlog": backlog,
        "total": total,
        "by_status": by_status,
        "by_reason": by_reason,
        "awaiting_apply": awaiting,
    }


def row_totals(conn: sa.Connection, run_id: str | None = None) -> RowTotals:
    """Rows read / loaded / already recorded / rejected over the intake ledger: every file, or the
    files one night (``run_id``) recorded."""
    where = "WHERE run_id = :run_id" if run_id is not None else ""
    read, loaded, already, rejected = conn.execute(
        sa.text(
            "SELECT COALESCE(SUM(rows_read),0), COALESCE(SUM(rows_loaded),0), COALESCE(SUM(rows_already),0),"
            f" COALESCE(SUM(rows_rejected),0) FROM intake_file {where}"
        ),
        {"run_id": run_id} if run_id is not None else {},
    ).one()
    return {"read": int(read), "loaded": int(loaded), "already": int(already), "rejected": int(rejected)}


def headline_figures(eng: sa.Engine) -> Headline:
    """The headline counts of the warehouse as it stands."""
    with eng.connect() as conn:
        counts = {
            name: {str(k): int(v) for k, v in conn.exec_driver_sql(sql).all()}
            for name, sql in GROUPED_COUNTS.items()
        }
        rows = row_totals(conn)
        review = review_queue(conn)
    return {
        "files": counts["files"],
        "rows": rows,
        "households": counts["households"],
        "categories_active": counts["categories_active"],
        "cadres": counts["cadres"],
        "cases": counts["cases"],
        "pairs_current": counts["pairs_current"],
        "review": review,
        "followup": followup_headline(eng),
    }


def night_figures(eng: sa.Engine) -> NightFigures:
    """The headline numbers of the warehouse as it stands, as the night records them (the CLI prints them)."""
    return as_night_figures(headline_figures(eng))


def as_night_figures(head: Headline) -> NightFigures:
    """The night summary's shape of a headline (its keys in the order the CLI prints them as JSON)."""
    return {
        "files": head["files"],
        "households": head["households"],
        "categories_active": head["categories_active"],
        "cadres": head["cadres"],
        "cases": head["cases"],
        "pairs_current": head["pairs_current"],
        "link_review": head["review"]["by_reason"],
        "rows": head["rows"],
        "followup": head["followup"],
    }
