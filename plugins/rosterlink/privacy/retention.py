"""Retention: what the warehouse keeps and for how long, and ``rosterlink purge``.

Kept at least three years (:data:`HISTORY_MIN_DAYS`), never touched by the raw-value purge:

- the intake ledger ``intake_file`` (every file once, with its counts and status). ``purge`` never
  deletes a ledger entry at all: the ledger is also what recognises a file dropped again;
- the pairing history ``pairing``. Ended pairs may be deleted only when explicitly asked and only
  when older than three years (``--ended-pairs-older-than-days``, refused below 1096 days); current
  pairs never.

Where the raw values of rejected rows are kept, and what ``purge`` does with them:

- ``rejected_row`` (and ``row_warning``, the same shape for rows loaded with a warning): one line
  per failing cell with the clerk's header, the cell value as shown to the clerk (masked for IDs and
  phones, in clear for names and other text) and a message that quotes that value. The rows
  themselves must stay: ``file_reconciliation`` counts the distinct rejected rows listed per file
  against the ledger's ``rows_rejected``, and the dashboard counts reasons. So ``purge`` *blanks*
  them instead of deleting: ``value`` becomes null, ``message`` is rewritten from the reason code
  without the quoted value, ``purged_at`` records when; file, sheet, row number, field, header and
  reason code stay, so every count and the reconciliation are unchanged;
- ``staged_row``: every cell of every row of a file between the read and the load tasks (the
  rejected rows' other cells included). The load task deletes a file's staged rows when it loads
  the file; ``purge`` deletes any left behind: all staged rows of files that are no longer pending
  (whatever their age) and those of pending files received before the cutoff (a pending file is
  read again from the intake folder by the next night, so nothing is lost);
- the rejected rows' full contents are otherwise not in the warehouse (``source_record`` holds
  loaded rows only). The clerks' own files stay in the intake folders, outside the warehouse.

The age for raw values is ``--older-than-days`` or ``$ROSTERLINK_PURGE_REJECTED_DAYS`` (default
365), measured from when the row was validated (``created_at``). A purge takes the night's lock:
it does not run while a night runs, and a night does not start while it runs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import string
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from rosterlink.ops import nightlock
from rosterlink.warehouse import now, schema

log = logging.getLogger(__name__)

PURGE_DAYS_ENV = "ROSTERLINK_PURGE_REJECTED_DAYS"
DEFAULT_PURGE_DAYS = 365
HISTORY_MIN_DAYS = 3 * 365 + 1  # three years, a leap day included
PROTECTED = ("intake_file", "pairing")
PURGED = "已清除"


class RetentionRefused(Exception):
    """A purge that would cut into what must be kept, or a meaningless age."""


def configured_days(value: object = None) -> int:
    """The age in days for raw values: ``value`` if given, else ``$ROSTERLINK_PURGE_REJECTED_DAYS``,
    else 365."""
    raw = value if value is not None else os.environ.get(PURGE_DAYS_ENV) or DEFAULT_PURGE_DAYS
    try:
        days = int(str(raw).strip())
    except ValueError:
        raise RetentionRefused(f"the purge age must be a whole number of days, not {raw!r}") from None
    if days < 0:
        raise RetentionRefused(f"the purge age must not be negative ({days})")
    return days


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return PURGED if key == "value" else "＊"


def blank_message(code: str | None, header: str | None) -> str:
    """A finding's message as a clerk would read it, without any value it quoted.

    ``“户主身份证号”最后一位校验码不正确（已清除），…``: the reason code's template with the header and
    every other placeholder filled with a stand-in."""
    from rosterlink.core.findings import _messages

    messages = _messages()
    template = messages.get(code or "", {}).get("zh") or messages["unknown"]["zh"]
    try:
        return string.Formatter().vformat(template, (), _Blank(header=header or "该列"))
    except (IndexError, ValueError):
        return messages["unknown"]["zh"]


@dataclass
class PurgeReport:
    dry_run: bool
    older_than_days: int
    cutoff: str  # UTC timestamp: raw values created before it are purged
    rejected_values: int  # rejected_row lines blanked (or to blank)
    warning_values: int  # row_warning lines blanked (or to blank)
    staged_rows: int  # staged_row rows deleted (or to delete)
    ended_pairs: int | None  # ended pairs deleted; None when not asked
    ended_pairs_before: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def _finding_candidates(table: sa.Table, cutoff: dt.datetime):
    return sa.and_(table.c.created_at < cutoff, table.c.purged_at.is_(None))


def _staged_candidates(cutoff: dt.datetime):
    f, st = schema.intake_file, schema.staged_row
    files = sa.select(f.c.file_id).where(sa.or_(f.c.status != "pending", f.c.received_at < cutoff))
    return st.c.file_id.in_(files)


def check_history_request(days: int | None) -> None:
    """Refuse any request to delete ledger or pairing history younger than three years."""
    if days is None:
        return
    if days < HISTORY_MIN_DAYS:
        raise RetentionRefused(
            f"pairing history and the intake ledger are kept at least three years ({HISTORY_MIN_DAYS} days); "
            f"refusing to delete ended pairs after only {days} days. Nothing was changed."
        )


def purge(
    eng: sa.Engine,
    older_than_days: int | None = None,
    *,
    ended_pairs_older_than_days: int | None = None,
    dry_run: bool = False,
    moment: dt.datetime | None = None,
) -> PurgeReport:
    """Blank rejected rows' raw values older than the age, delete staged leftovers; see the module doc.

    ``ended_pairs_older_than_days`` (at least 1096) also deletes pairs that ended before that many
    days ago. ``intake_file`` is never written. Raises :class:`RetentionRefused` before changing
    anything when asked to cut into the three years, :class:`nightlock.NightLocked` while a night runs.
    """
    days = configured_days(older_than_days)
    check_history_request(ended_pairs_older_than_days)
    moment = moment or now()
    cutoff = moment - dt.timedelta(days=days)
    pairs_before = None
    if ended_pairs_older_than_days is not None:
        pairs_before = (moment - dt.timedelta(days=ended_pairs_older_than_days)).date()
    if dry_run:
        with eng.connect() as conn:
            return _run(conn, days, cutoff, pairs_before, moment, dry_run=True)
    run_id = f"purge-{moment:%Y%m%dT%H%M%S}-{os.getpid()}"
    with nightlock.held(eng, run_id):
        try:
            with eng.begin() as conn:
                report = _run(conn, days, cutoff, pairs_before, moment, dry_run=False)
        finally:
            nightlock.release(eng, run_id)
    log.info(
        "purge: %d rejected and %d warning values blanked, %d staged rows deleted, ended pairs %s",
        report.rejected_values,
        report.warning_values,
        report.staged_rows,
        report.ended_pairs,
    )
    return report


def _count(conn: sa.Connection, table: sa.Table, where) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())


def _run(
    conn: sa.Connection,
    days: int,
    cutoff: dt.datetime,
    pairs_before: dt.date | None,
    moment: dt.datetime,
    *,
    dry_run: bool,
) -> PurgeReport:
    counts: dict[str, int] = {}
    for table in (schema.rejected_row, schema.row_warning):
        where = _finding_candidates(table, cutoff)
        counts[table.name] = _count(conn, table, where)
        if dry_run or not counts[table.name]:
            continue
        groups = conn.execute(sa.select(table.c.reason_code, table.c.header).where(where).distinct()).all()
        for code, header in groups:
            same_header = table.c.header.is_(None) if header is None else table.c.header == header
            conn.execute(
                table.update()
                .where(where, table.c.reason_code == code, same_header)
                .values(value=None, message=blank_message(code, header), purged_at=moment)
            )
    st = schema.staged_row
    staged = _count(conn, st, _staged_candidates(cutoff))
    if staged and not dry_run:
        conn.execute(st.delete().where(_staged_candidates(cutoff)))
    ended = None
    if pairs_before is not None:
        p = schema.pairing
        old = sa.and_(p.c.valid_to.is_not(None), p.c.valid_to < pairs_before)
        ended = _count(conn, p, old)
        if ended and not dry_run:
            conn.execute(p.delete().where(old))
            # the follow-through figures were built from these pairs (a household's first pair
            # gives its deadline): the next night rebuilds them in full (the build's row stays:
            # it gives the figures their date, in the view followup_household)
            conn.execute(schema.followup_build.update().values(code_version=0))
    return PurgeReport(
        dry_run=dry_run,
        older_than_days=days,
        cutoff=f"{cutoff:%Y-%m-%d %H:%M:%S}",
        rejected_values=counts["rejected_row"],
        warning_values=counts["row_warning"],
        staged_rows=staged,
        ended_pairs=ended,
        ended_pairs_before=pairs_before.isoformat() if pairs_before else None,
    )


__all__ = [
    "DEFAULT_PURGE_DAYS",
    "HISTORY_MIN_DAYS",
    "PROTECTED",
    "PURGE_DAYS_ENV",
    "PurgeReport",
    "RetentionRefused",
    "blank_message",
    "check_history_request",
    "configured_days",
    "purge",
]
