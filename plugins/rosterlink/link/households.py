"""Households: exact ID numbers first, then the model for the rows without one, then clustering.

The groups the exact rules make (a household's rows by its key, for the households tonight's rows
or links reach; new rows by their ID number; each ID-less row alone) go with tonight's scored links
to :func:`rosterlink.link.clustering.cluster`; its clusters become keys here: a cluster of several
keyed households keeps the older key (the others are retired, recorded in ``household_merge``), a
cluster without a key gets a new one if a row establishes it, and rows that only change a household
nobody listed are orphaned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import sqlalchemy as sa

from rosterlink.link import clustering
from rosterlink.link.clustering import EMPTY, Clustering, Group, Link
from rosterlink.link.exact import check_id_name, check_name_village, choose_key
from rosterlink.link.keys import key_number, older
from rosterlink.link.records import Kind, Record, shape
from rosterlink.link.scoring import score
from rosterlink.link.state import Night
from rosterlink.warehouse import dumps, now

log = logging.getLogger(__name__)


class _Building:
    """A group being put together from the exact rules (rows, their IDs and shapes, who they cannot be).

    One is made for every new row on a night that brings many: the rows a reviewer said it cannot
    be, mostly none, get a set only when there are some."""

    __slots__ = ("cannot", "keys", "rows", "shapes")

    def __init__(self, keys: frozenset[str] = EMPTY) -> None:
        self.keys = keys
        self.rows: dict[int, str | None] = {}
        self.shapes: set[tuple] = set()
        self.cannot: frozenset[int] = EMPTY

    def take(self, rec: Record, cannot: set[int]) -> None:
        self.rows[rec.record_id] = rec.id_number
        self.shapes.add(shape(rec))
        if cannot:
            self.cannot = self.cannot | cannot

    def group(self) -> Group:
        """The group, made of the building's own rows (a building is made into a group once, and
        not used after)."""
        return Group(self.rows, frozenset(self.shapes), self.keys, self.cannot)


def link_households(conn: sa.Connection, night: Night) -> None:
    kind = night.kinds["household"]
    pending = kind.pending()
    if not pending:
        return
    cannot = night.reviews.cannot["household"]
    # an existing household's group is made when tonight's rows or links reach it (see below)
    of_key: dict[str, _Building] = {}

    def keyed(key: str) -> _Building:
        b = of_key.get(key)
        if b is None:
            b = of_key[key] = _Building(frozenset({key}))
            for m in sorted(kind.members[key]):
                b.take(kind.recs[m], cannot.get(m, set()))
        return b

    building: list[_Building] = []  # tonight's rows that no household holds yet
    new_ids: dict[str, _Building] = {}
    for rec in pending:
        if rec.id_number:
            known = kind.by_id.get(rec.id_number)
            if known:
                b = keyed(choose_key(kind, known, rec))
                check_id_name(night, kind, rec, [m for m, i in b.rows.items() if i == rec.id_number])
            else:
                found = new_ids.get(rec.id_number)
                if found is None:
                    b = new_ids[rec.id_number] = _Building()
                    building.append(b)
                else:
                    b = found
                    check_id_name(night, kind, rec, [m for m, i in b.rows.items() if i == rec.id_number])
        else:
            b = _Building()
            building.append(b)
        b.take(rec, cannot.get(rec.record_id, set()))
    check_name_village(night, kind)
    with_id = sum(1 for rec in pending if rec.id_number)
    log.info(
        "link: households: %d new rows, %d with an ID number, %d without",
        len(pending),
        with_id,
        len(pending) - with_id,
    )

    started = time.perf_counter()
    links = score(conn, night, kind, pending)
    night.timings["household_model"] = round(time.perf_counter() - started, 2)
    if links or night.model_info.get("source") != "not_needed":
        log.info(
            "link: households: %d candidate pairs scored in %.1f s (model: %s)",
            len(links),
            night.timings["household_model"],
            night.model_info.get("source"),
        )
    # The households neither tonight's rows nor its links reach are left out of the clustering:
    # their groups would stay as they are, alone, and nothing is read of them afterwards. Those
    # clustered keep their order (by key, then tonight's new groups), so the clusters, the merges
    # and the reviews are those of clustering every household.
    for key in sorted(reached(kind, links)):
        keyed(key)
    new_ids.clear()

    def groups() -> Iterator[Group]:
        """The groups in order, each building let go once its group is made (a night's first run
        makes one for every household: the buildings and the clusters are not all held at once)."""
        for key in sorted(of_key):
            yield of_key.pop(key).group()
        building.reverse()
        while building:
            yield building.pop().group()

    result = clustering.cluster(
        groups(),
        links,
        clustering.Rules.from_config(night.cfg),
        queued=night.reviews.queued(kind.kind),
    )
    for reason, e in result.to_review:
        night.reviews.add(
            kind, reason, e.left, e.right, probability=e.probability, weight=e.weight, evidence=e.evidence
        )
    log.info(
        "link: households: clustering: %d rows placed by a link, %d pairs queued for review",
        len(result.accepted),
        len(result.to_review),
    )
    _assign(kind, result, pending)
    log.info(
        "link: households: %d rows assigned, %d new households, %d merges",
        len(kind.assigned),
        kind.stats.get("created", 0),
        kind.stats.get("model_merges", 0),
    )
    night.density.extend(_density(kind, result, links, float(night.cfg.thresholds.link)))


def reached(kind: Kind, links: list[Link]) -> set[str]:
    """The existing households that hold a row of one of tonight's links."""
    keys = set()
    for e in links:
        for rid in (e.left, e.right):
            if not kind.recs[rid].pending:
                key = kind.key_of(rid)
                assert key is not None  # a row linked on an earlier night has its household's key
                keys.add(key)
    return keys


def _assign(kind: Kind, result: Clustering, pending: list[Record]) -> None:
    by_root: dict[int, list[Record]] = {}
    for rec in pending:
        by_root.setdefault(result.root(rec.record_id), []).append(rec)
    # merges of existing keys the model found tonight (the older key survives)
    for root in result.roots():
        keys = result.keys(root)
        if len(keys) < 2:
            continue
        survivor = older(keys)
        for retired in sorted(keys - {survivor}, key=key_number):
            e = result.retired_by.get(retired)
            kind.merge_keys(survivor, retired)
            kind.merges.append(
                {
                    "retired_key": retired,
                    "surviving_key": survivor,
                    "merged_at": now(),
                    "reason": "model",
                    "review_id": None,
                    "match_probability": e.probability if e else None,
                    "evidence": dumps(
                        {
                            "records": [e.left, e.right],
                            "match_weight": round(e.weight, 3),
                            "fields": dict(e.evidence),
                        }
                        if e
                        else {}
                    ),
                }
            )
            kind.stats["model_merges"] += 1
    for root, recs in sorted(by_root.items(), key=lambda item: min(r.record_id for r in item[1])):
        keys = result.keys(root)
        if keys:
            key = older(keys)
        elif any(rec.establishing for rec in recs):
            key = kind.keys.new()
            kind.stats["created"] += 1
        else:
            kind.orphaned.extend(recs)
            continue
        for rec in sorted(recs, key=lambda x: x.record_id):
            probability: float | None
            if rec.id_number:
                method, probability = "id", None
            elif rec.record_id in result.accepted:
                method, probability = "model", result.accepted[rec.record_id].probability
            else:
                method, probability = "new", None
            kind.assign(rec, key, method, probability)


def _density(kind: Kind, result: Clustering, links: list[Link], link_t: float) -> list[float]:
    """Of clusters the model shaped tonight (3+ rows): the share of their row pairs tied directly
    (same ID, identical rows, or a scored link above the threshold). Low density = a chain."""
    out = []
    strong = {(e.left, e.right) for e in links if e.probability >= link_t}
    shaped = {result.root(e.left) for e in links if e.probability >= link_t}
    for root in shaped:
        recs = sorted(result.rows(root))
        if len(recs) < 3 or len(recs) > 200:
            continue
        tied = total = 0
        for i, a in enumerate(recs):
            ra = kind.recs[a]
            for b in recs[i + 1 :]:
                rb = kind.recs[b]
                total += 1
                if (
                    (ra.id_number and ra.id_number == rb.id_number)
                    or shape(ra) == shape(rb)
                    or (a, b) in strong
                ):
                    tied += 1
        out.append(tied / total)
    return out
