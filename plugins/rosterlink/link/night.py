"""Link: resolve every loaded row to the household, cadre or case it describes, with stable keys.

Order of the rules, every night, for the rows loaded since the last night (no lineage row yet):

1. **Reviewers first.** Decisions taken since the last night (the ``rosterlink review decide``
   command, or a 核实结论 column filled in a workbook dropped into ``<intake>/review/``) are applied
   before anything else and are never overridden: "same" merges the two households (the older key
   survives, the retired one is recorded in ``household_merge``), "different" keeps them apart for
   good (and splits a row out of its household if they were together: a split is only ever made by
   a reviewer).
2. **Exact keys.** Equal valid ID number => same person (the household head, guardian, old party
   member; the cadre); equal case number => same case. A row whose ID is known keeps the key the
   person already has. The same ID under two different names goes to review (``id_name_conflict``),
   as does one name and village under two IDs (``name_village_id_conflict``): surfaced, not hidden.
3. **Probabilistic linkage** (:mod:`rosterlink.link.model`, Splink, run by
   :mod:`rosterlink.link.scoring`) for households rows without a usable ID, and for new rows with an
   ID against existing ID-less households: new rows against existing ones (``predict_between``) and
   new rows among themselves (``predict_within``). Pairs at or above the ``link`` probability are
   linked, pairs between ``review`` and ``link`` go to the review queue (``model_uncertain``) with
   both records (masked) and the evidence per field, pairs below stay apart.
4. **Clustering that resists chaining** (:mod:`rosterlink.link.clustering`, a pure function).
   Links are taken strongest first; two clusters that already hold several distinct rows merge only
   on a ``strong`` link, and two holders of different valid IDs never merge; such a link goes to
   review (``cluster_bridge``) instead.
5. **Stable keys.** A household or cadre keeps the key it got on the night it first appeared
   (``H000001``, ``C000001``, ``K000001``); new entities get the next keys in row order; a merge keeps
   the older key. ``source_row`` says which entity every row became and how (``link_method``).

Rows that only make sense for a known entity (an exit for a household never listed, a departure
of an unknown cadre, the closure of an unknown case) are moved to ``rejected_row`` with a reason,
and their file's counts are corrected, so nothing is lost silently.

A quiet night (no row without its key, no reviewer's decision waiting: :func:`nothing_to_link`,
two EXISTS queries) does none of this and reads none of the rows: a full pass would change nothing,
and its summary is the same (nothing linked; the households' sizes, counted in the database).

The pending review queue is also written to ``<intake>/review/待核实.xlsx`` (masked) when the
caller passes ``review_dir``.

Where each part lives: the night's state (:mod:`~rosterlink.link.state`, loaded up front), keys
(:mod:`~rosterlink.link.keys`), reviewers' rules (:mod:`~rosterlink.link.review`) and their workbook
(:mod:`~rosterlink.link.review_book`), exact rules, cadres and cases (:mod:`~rosterlink.link.exact`),
households (:mod:`~rosterlink.link.households`), the writes (:mod:`~rosterlink.link.store`), the
settings (:mod:`~rosterlink.link.config`). This module runs them in order: :func:`link`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import sqlalchemy as sa

from rosterlink.core import plain
from rosterlink.link import store
from rosterlink.link.config import LinkageConfig, load_config
from rosterlink.link.exact import link_cadres, link_cases
from rosterlink.link.households import link_households
from rosterlink.link.keys import KeyIssuer
from rosterlink.link.records import Kind
from rosterlink.link.review import ReviewQueue, apply_decisions
from rosterlink.link.review_book import export_review_workbook, read_review_workbooks
from rosterlink.link.state import KINDS, Night, load_night
from rosterlink.ops import faults
from rosterlink.warehouse import schema
from rosterlink.warehouse.db import dumps, loads, now, stage_changes

log = logging.getLogger(__name__)

LINKED_KINDS = (*KINDS, "case")  # the kinds whose rows this stage gives a key (not pins, not visits)


class LinkSummary(TypedDict):
    """What a night's link stage did: the ``link_entities`` task's result."""

    rows_linked: int
    rows_rejected_unknown_entity: int
    created: dict[str, int]  # new households, cadres and cases
    household: dict[str, int]  # rows by how they were linked (rows_id, rows_model, ...), keys issued
    cadre: dict[str, int]
    reviews_queued: int
    decisions_applied: list[dict[str, Any]]
    merges: list[dict[str, Any]]
    model: dict[str, Any]
    timings: dict[str, float]
    clusters: dict[str, Any]
    review_workbook: NotRequired[str]
    review_decisions_read: NotRequired[dict[str, Any]]
    seconds: NotRequired[float]


def link(
    eng: sa.Engine, *, review_dir: Path | None = None, config: LinkageConfig | None = None
) -> LinkSummary:
    """Link every unlinked ``source_record``; upsert entities; write ``source_row``. One transaction.

    ``review_dir``: the review folder (``<intake>/review``): decisions in workbooks found there are
    applied tonight, and the pending queue is written back to ``待核实.xlsx``.
    """
    cfg = config or load_config()
    started = time.perf_counter()
    with _without_cycle_collection(), eng.begin() as conn:
        read = read_review_workbooks(conn, review_dir) if review_dir is not None else {}
        if not read.get("decisions") and nothing_to_link(conn):
            # a quiet night: what a full pass would do is nothing, and what it would report is the
            # households' sizes, counted in the database; the night's rows are not read
            log.info("link: nothing new tonight (no unlinked row, no reviewer decision waiting)")
            faults.point("link.mid")
            result = summary(quiet_night(cfg), kept_household_sizes(conn))
        else:
            result = _link(conn, cfg, started)
    if review_dir is not None:
        result["review_workbook"] = str(export_review_workbook(eng, review_dir, cfg.review_workbook_max))
    result["review_decisions_read"] = read
    result["seconds"] = round(time.perf_counter() - started, 2)
    log.info(
        "link: %s rows linked in %.1f s; new: %s; %d review items queued, %d decisions applied, "
        "%d merges; model: %s",
        f"{result['rows_linked']:,}",
        result["seconds"],
        plain.counts(result["created"]),
        result["reviews_queued"],
        len(result["decisions_applied"]),
        len(result["merges"]),
        result["model"].get("source", "not needed"),
    )
    return result


def _link(conn: sa.Connection, cfg: LinkageConfig, started: float) -> LinkSummary:
    """The full pass: the night's state loaded, decisions applied, rows linked, all of it written."""
    night = load_night(conn, cfg)
    log.info(
        "link: rows loaded: %s in %.1f s",
        ", ".join(
            f"{kind} {len(k.recs)} ({sum(1 for rec in k.recs.values() if rec.pending)} new)"
            for kind, k in night.kinds.items()
        ),
        time.perf_counter() - started,
    )
    night.applied = apply_decisions(night.kinds, night.reviews)
    if night.applied:
        log.info("link: %d reviewer decisions applied", len(night.applied))
    link_households(conn, night)
    link_cadres(night)
    link_cases(conn, night)
    night.reviews.settle(conn, night.kinds)
    writing = time.perf_counter()
    store.write(conn, night)
    log.info("link: written: entities and lineage in %.1f s", time.perf_counter() - writing)
    faults.point("link.mid")  # kill tests: the process dies with tonight's links written, uncommitted
    return summary(night)


def nothing_to_link(conn: sa.Connection) -> bool:
    """True when a full pass would change nothing: no row of a linked kind without its lineage (the
    rows loaded since the last night) and no reviewer's decision waiting to be applied. Two EXISTS
    queries: the first stops at the first row without lineage, and on a night with none probes the
    lineage's primary key once per row."""
    r, lr = schema.source_record, schema.link_review
    unlinked = sa.exists().where(r.c.entity_kind.in_(LINKED_KINDS), schema.not_linked(r))
    waiting = sa.exists().where(lr.c.status == "decided", lr.c.applied_at.is_(None))
    return not conn.execute(sa.select(sa.or_(unlinked, waiting))).scalar()


def quiet_night(cfg: LinkageConfig) -> Night:
    """The state of a night with nothing to link, as far as its summary reads it: no new rows, no
    decisions, no reviews (nothing of the warehouse is read)."""
    return Night(cfg, {kind: Kind(kind, {}, {}, {}, KeyIssuer(kind, 0)) for kind in KINDS}, ReviewQueue([]))


def household_sizes(conn: sa.Connection) -> Counter[int]:
    """How many households have how many rows (the summary's cluster sizes), counted in the
    database: what :func:`summary` counts from the loaded state, when every row has its key."""
    s = schema.source_row  # a linked row's lineage holds its key
    per_key = (
        sa.select(sa.func.count().label("n"))
        .where(s.c.entity_kind == "household")
        .group_by(s.c.entity_key)
        .subquery()
    )
    by_size = conn.execute(sa.select(per_key.c.n, sa.func.count()).group_by(per_key.c.n))
    return Counter({int(n): int(k) for n, k in by_size})


SIZES_BUILD = "link_sizes"
"""The ``stage_build`` row that keeps :func:`household_sizes` with :func:`sizes_token`."""


def sizes_token(conn: sa.Connection) -> str:
    """A digest of what the households' sizes are counted from, short of counting them: the loaded
    rows (how many, the last id), the link stage's recorded changes and the merges. A night that
    loads, removes or links a row, or merges households, moves it."""
    r, m = schema.source_record, schema.household_merge
    figures = (
        tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(r.c.record_id))).one()),
        stage_changes(conn, "link"),
        conn.execute(sa.select(sa.func.max(m.c.merge_id))).scalar_one(),
    )
    return hashlib.sha256(repr(figures).encode("utf-8")).hexdigest()


def kept_household_sizes(conn: sa.Connection) -> Counter[int]:
    """:func:`household_sizes`, kept in ``stage_build`` with :func:`sizes_token` and counted again
    only when the token moves: a province's quiet nights do not group its million rows by
    household again to report the same sizes."""
    b = schema.stage_build
    token = sizes_token(conn)
    row = conn.execute(sa.select(b.c.token, b.c.summary).where(b.c.stage == SIZES_BUILD)).first()
    if row is not None and row.token == token:
        return Counter({int(n): int(k) for n, k in loads(row.summary).items()})
    sizes = household_sizes(conn)
    conn.execute(b.delete().where(b.c.stage == SIZES_BUILD))
    conn.execute(
        b.insert().values(
            stage=SIZES_BUILD,
            as_of=dt.date.today(),  # the day they were counted: the link stage has no night's date
            token=token,
            summary=dumps({str(n): k for n, k in sorted(sizes.items())}),
            built_at=now(),
        )
    )
    return sizes


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused while the night's state is built and decided.

    The stage builds a few objects per row (records, groups, links, rows to write) and frees nothing
    until it ends; every few hundred allocations the collector walks the whole young heap and, ever
    more often as the state grows, the old one too: a fifth of the stage's CPU at 30,000 rows,
    growing with the warehouse. Nothing the stage builds relies on the collector; it runs once at
    the end instead, on the young generation only: everything the stage allocated is still there
    (no collection ran to age it), and the old generations, the rest of the process (Airflow's
    modules and objects: a full collection walked them for 0.7 s of a churn night's 3.7 s under
    cProfile at 30x), are left to the collector's own schedule."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)


def summary(night: Night, sizes: Counter[int] | None = None) -> LinkSummary:
    """What the night did, for the task's result and the logs. ``sizes``: how many households have
    how many rows, when the night did not load them (counted from ``night`` otherwise)."""
    h, c = night.kinds["household"], night.kinds["cadre"]
    if sizes is None:
        sizes = Counter(len(m) for m in h.members.values() if m)
    density = sorted(night.density)
    return {
        "rows_linked": len(h.assigned) + len(c.assigned) + len(night.cases.assigned),
        "rows_rejected_unknown_entity": len(h.orphaned) + len(c.orphaned) + len(night.cases.orphaned),
        "created": {
            k: v
            for k, v in (
                ("household", h.stats["created"]),
                ("cadre", c.stats["created"]),
                ("case", night.cases.created),
            )
            if v
        },
        "household": dict(sorted(h.stats.items())),
        "cadre": dict(sorted(c.stats.items())),
        "reviews_queued": len(night.reviews.new),
        "decisions_applied": night.applied,
        "merges": [{k: m[k] for k in ("retired_key", "surviving_key", "reason")} for m in h.merges],
        "model": night.model_info,
        "timings": night.timings,
        "clusters": {
            "households": sum(sizes.values()),
            "size_histogram": {str(k): v for k, v in sorted(sizes.items())},
            "largest": max(sizes, default=0),
            "model_shaped_3plus": len(density),
            "density_min": round(density[0], 3) if density else None,
            "density_median": round(density[len(density) // 2], 3) if density else None,
            "density_below_half": sum(1 for d in density if d < 0.5),
        },
    }
