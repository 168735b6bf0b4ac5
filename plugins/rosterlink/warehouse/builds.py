"""What the status and pairing stages last settled on, so a night that brings them nothing new keeps
their result instead of computing it again (``stage_build``, migration 0011).

Both stages are functions of the warehouse: the status stage of the loaded events in force on the
night and of the entities, the pairing stage of the statuses, the entities and the pairs. When a
stage runs and changes nothing (no status moves, no pair would end; no pair ends, none is made), it
keeps :func:`inputs_token`, a digest of everything it reads, with the summary it reported. A later
night whose token is the same would compute the same statuses and the same pairs again and change
nothing again: :func:`kept` returns that summary and the stage is not run.

The token is made of counts, not of rows (no row is read): the warehouse's generation as the link,
status and pairing stages moved it (``content_change``: every change they make is recorded, even
by a run that died), the loaded rows, the change events dated on or before the night (an exit
loaded early and dated for tonight is in force tonight: the count moves), the entities' and pairs'
counts and active counts, and a digest of the stages' code and settings. A night run for an
earlier date than the build's computes again. What the token does not see is a hand edit in the
warehouse that moves none of those counts (a cadre's rank changed in place): it is kept until the
next change of the stage's inputs, or until the row is deleted (``DELETE FROM stage_build``), as the
town workbooks' state file does for them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rosterlink.warehouse import schema
from rosterlink.warehouse.db import dumps, loads, now

log = logging.getLogger(__name__)

READ_BY = ("link", "status", "pairing")
"""The stages whose recorded changes move what the status and pairing stages read."""

EVENT_ROSTERS = ("hardship_adjustment", "cadre_change", "case_closure", "case")
"""The rosters whose rows carry the events the statuses follow (``sql/status/01_compute.sql``)."""


def code_digest(files: Iterable[Path]) -> str:
    """A digest of the files a stage's result depends on (its code, its SQL)."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode("utf-8"))
        h.update(path.read_bytes())
    return h.hexdigest()


def entity_counts(conn: sa.Connection) -> tuple[tuple[int, ...], ...]:
    """The pairs' and entities' counts, as ints: the pairs (rows, last id, ended ones), then the
    households, their categories, the cadres (each rows and active ones) and the key cases (rows and
    open ones). What the stages' digest here and the town workbooks' token
    (:func:`rosterlink.export.town_books.inputs_token`) both count."""
    p, h, hc, cadre, k = (
        schema.pairing,
        schema.household,
        schema.household_category,
        schema.cadre,
        schema.petition_case,
    )

    def tally(column: sa.ColumnElement, value: str) -> sa.ColumnElement:
        return sa.func.coalesce(sa.func.sum(sa.case((column == value, 1), else_=0)), 0)

    queries = (
        sa.select(sa.func.count(), sa.func.max(p.c.pairing_id), sa.func.count(p.c.valid_to)),
        sa.select(sa.func.count(), tally(h.c.status, "active")),
        sa.select(sa.func.count(), tally(hc.c.status, "active")),
        sa.select(sa.func.count(), tally(cadre.c.status, "active")),
        sa.select(sa.func.count(), tally(k.c.status, "open")),
    )
    return tuple(tuple(int(v or 0) for v in conn.execute(q).one()) for q in queries)


def inputs_token(conn: sa.Connection, as_of: dt.date, code: str) -> str:
    """A digest of everything the status and pairing stages read on the night ``as_of``, counted in
    the warehouse (see the module), and ``code`` (the stages' code and settings)."""
    c, r = schema.content_change, schema.source_record
    # the events in force, linked or not: the status stage runs after the link stage, which links
    # every row it finds unlinked (and records that change: ``content_change`` moves with it)
    in_force = sa.and_(
        r.c.roster.in_(EVENT_ROSTERS),
        r.c.event.is_not(None),
        sa.or_(r.c.event_date.is_(None), r.c.event_date <= as_of),
    )
    changes = conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(c.c.change_id), 0)).where(c.c.stage.in_(READ_BY))
    ).scalar_one()
    records = conn.execute(
        sa.select(
            sa.func.count(),
            sa.func.max(r.c.record_id),
            sa.func.coalesce(sa.func.sum(sa.case((in_force, 1), else_=0)), 0),
        )
    ).one()
    figures = (int(changes), tuple(int(v or 0) for v in records), entity_counts(conn))
    return hashlib.sha256(repr((code, figures)).encode("utf-8")).hexdigest()


def kept(eng: sa.Engine, stage: str, as_of: dt.date, code: str) -> dict[str, Any] | None:
    """The summary ``stage`` reported when it last settled, if nothing it reads has changed since and
    ``as_of`` is not before that night; else None (the stage computes)."""
    b = schema.stage_build
    with eng.connect() as conn:
        row = conn.execute(sa.select(b).where(b.c.stage == stage)).first()
        if row is None or row.as_of > as_of:
            return None
        if row.token != inputs_token(conn, as_of, code):
            return None
    summary = loads(row.summary)
    summary["settled_since"] = row.as_of.isoformat()
    log.info(
        "%s: nothing it reads has changed since the night of %s, when it changed nothing: "
        "its result is kept without computing it again",
        stage,
        row.as_of.isoformat(),
    )
    return summary


def settle(
    eng: sa.Engine,
    stage: str,
    as_of: dt.date,
    run_id: str | None,
    code: str,
    summary: dict[str, Any] | None,
) -> None:
    """After ``stage`` ran: keep what it settled on (``summary``: it changed nothing), or forget the
    last build (``summary`` None: it changed something, so a later night computes again)."""
    b = schema.stage_build
    with eng.begin() as conn:
        conn.execute(b.delete().where(b.c.stage == stage))
        if summary is None:
            return
        conn.execute(
            b.insert().values(
                stage=stage,
                as_of=as_of,
                run_id=run_id,
                token=inputs_token(conn, as_of, code),
                summary=dumps({k: v for k, v in summary.items() if k != "settled_since"}),
                built_at=now(),
            )
        )
