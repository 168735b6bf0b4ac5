"""Clustering that resists chaining: scored links in, entities (clusters of rows) out. Pure.

No database, no model: the link stage hands :func:`cluster` the groups of rows it already knows to be
one entity (rows under one key, rows with one ID number, or a single row) and tonight's scored
links between rows; it gets back the clusters and the links it refused, for a person to review.

The rules, in order, for each link, strongest first (probability, then weight, then row ids):

- two rows already in one cluster, or in clusters a reviewer said are different: nothing to do;
- below the ``link`` threshold: refused as ``model_uncertain``;
- two clusters that hold different valid ID numbers: refused as ``cluster_bridge`` (two people with
  different ID numbers are never the model's call);
- two clusters that each already hold ``guard_min_rows`` distinct rows: merged only on a link at or
  above ``strong``, otherwise refused as ``cluster_bridge`` (one ID-less row that looks like two
  households must not chain them into one: A-B and B-C do not make A-C);
- otherwise the clusters merge (union-find); a cluster keeps every key it held, and the link that
  joined two keyed clusters is remembered as the evidence of the merge.

Refused links are offered for review in order, at most one per pair of clusters, at most
``max_reviews_per_row`` per ID-less row and reason, never a pair already queued, and an uncertain
link is dropped when its ID-less rows found a confident link to a household with an ID or a key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import TypeVar

from rosterlink.link.config import LinkageConfig
from rosterlink.link.keys import key_number, older

CLUSTER_BRIDGE = "cluster_bridge"
MODEL_UNCERTAIN = "model_uncertain"
EMPTY: frozenset = frozenset()  # what a cluster holds none of (one object for all of them)

_T = TypeVar("_T", bound=Hashable)


@dataclass(frozen=True)
class Link:
    """A scored pair of rows (``left`` < ``right``, record ids)."""

    left: int
    right: int
    probability: float
    weight: float
    evidence: Mapping[str, object] = field(default_factory=dict, compare=False)  # per field, for review


@dataclass(frozen=True)
class Group:
    """Rows known to be one entity before tonight's links.

    ``rows``: record id -> its valid ID number (None when it has none); ``shapes``: the distinct rows
    (their identity fields), which "several rows" counts; ``keys``: the entity keys it holds;
    ``cannot``: rows a reviewer said are someone else.
    """

    rows: Mapping[int, str | None]
    shapes: frozenset[Hashable]
    keys: frozenset[str] = frozenset()
    cannot: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Rules:
    link: float  # a link at or above it joins two clusters
    strong: float  # ... two clusters that each hold guard_min_rows distinct rows, only at or above this
    guard_min_rows: int
    max_reviews_per_row: int

    @classmethod
    def from_config(cls, cfg: LinkageConfig) -> Rules:
        return cls(
            link=float(cfg.thresholds.link),
            strong=float(cfg.thresholds.strong),
            guard_min_rows=int(cfg.guard_min_rows),
            max_reviews_per_row=int(cfg.max_reviews_per_row),
        )


class Units:
    """Union-find over clusters of rows, with what the merge rules need to know of each.

    A night's first run makes a cluster for every new household and merges few, so a cluster that
    was never merged holds its rows, ID numbers and shapes as tuples (a third of a set of one) and
    its group's own keys and the rows it cannot be; it gets sets of its own when it grows. The
    groups are never changed, nor kept."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.keys: list[Set[str]] = []
        self.ids: list[Collection[str]] = []  # the distinct valid ID numbers of its rows
        self.recs: list[Collection[int]] = []
        self.shapes: list[Collection[Hashable]] = []  # distinct rows (identity fields): "several rows"
        self.cannot: list[Set[int]] = []

    def add(self, group: Group) -> int:
        self.parent.append(len(self.parent))
        self.keys.append(_frozen(group.keys))
        self.ids.append(tuple(dict.fromkeys(i for i in group.rows.values() if i)))
        self.recs.append(tuple(group.rows))
        self.shapes.append(tuple(group.shapes))
        self.cannot.append(_frozen(group.cannot))
        return len(self.parent) - 1

    def find(self, u: int) -> int:
        root = u
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[u] != root:
            self.parent[u], u = root, self.parent[u]
        return root

    def forbidden(self, a: int, b: int) -> bool:
        return not (self.cannot[a].isdisjoint(self.recs[b]) and self.cannot[b].isdisjoint(self.recs[a]))

    def share_id(self, a: int, b: int) -> bool:
        return not set(self.ids[a]).isdisjoint(self.ids[b])

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if len(self.recs[a]) < len(self.recs[b]):
            a, b = b, a
        self.parent[b] = a
        self.keys[a] = _joined(self.keys[a], self.keys[b])
        self.ids[a] = _joined(self.ids[a], self.ids[b])
        self.recs[a] = _joined(self.recs[a], self.recs[b])
        self.shapes[a] = _joined(self.shapes[a], self.shapes[b])
        self.cannot[a] = _joined(self.cannot[a], self.cannot[b])
        self.keys[b] = self.ids[b] = self.recs[b] = self.shapes[b] = self.cannot[b] = EMPTY
        return a


def _frozen(values: Set[_T]) -> Set[_T]:
    """A group's set as a cluster may hold it without copying: never a set it could change."""
    if not values:
        return EMPTY
    return values if isinstance(values, frozenset) else frozenset(values)


def _joined(held: Collection[_T], more: Collection[_T]) -> set[_T]:
    """``held`` and ``more`` as one set: ``held`` itself when it is a set of the cluster's own."""
    joined = held if type(held) is set else set(held)
    joined.update(more)
    return joined


@dataclass
class Clustering:
    """What :func:`cluster` found.

    ``accepted``: row -> the strongest link that placed it; ``retired_by``: key -> the link that
    merged its cluster into one with an older key; ``to_review``: (reason, link) to queue, in order.
    """

    units: Units
    unit_of: dict[int, int]
    accepted: dict[int, Link]
    retired_by: dict[str, Link]
    to_review: list[tuple[str, Link]]

    def root(self, record_id: int) -> int:
        """The cluster a row ended in (an index into ``units``)."""
        return self.units.find(self.unit_of[record_id])

    def roots(self) -> list[int]:
        """Every cluster that holds a row, in index order."""
        return sorted({self.units.find(u) for u in self.unit_of.values()})

    def rows(self, root: int) -> Collection[int]:
        return self.units.recs[root]

    def keys(self, root: int) -> Set[str]:
        return self.units.keys[root]

    def clusters(self) -> list[frozenset[int]]:
        """The clusters as sets of rows, ordered by their smallest row."""
        return sorted((frozenset(self.units.recs[r]) for r in self.roots()), key=min)


def strongest_first(links: Iterable[Link]) -> list[Link]:
    """Probability, then weight, descending; ties broken by the rows (never by the input's order)."""
    return sorted(links, key=lambda e: (-e.probability, -e.weight, e.left, e.right))


def cluster(
    groups: Iterable[Group],
    links: Iterable[Link],
    rules: Rules,
    *,
    queued: Collection[tuple[str, int, int]] = (),
) -> Clustering:
    """Merge ``groups`` along ``links`` (strongest first) under the chaining guards.

    ``queued``: (reason, left, right) of pairs already in the review queue (never offered again).
    Every row belongs to exactly one group; the inputs are not changed. ``groups`` is read once, in
    order (a generator may hand them over one at a time).
    """
    units = Units()
    unit_of: dict[int, int] = {}
    id_of: dict[int, str | None] = {}
    for group in groups:
        u = units.add(group)
        for rid, id_number in group.rows.items():
            unit_of[rid] = u
            id_of[rid] = id_number
    accepted: dict[int, Link] = {}  # row -> the strongest link that placed it
    retired_by: dict[str, Link] = {}
    anchored: set[int] = set()  # ID-less rows tonight's links tied to a cluster with an ID or a key
    bridges: list[Link] = []
    uncertain: list[Link] = []
    for e in strongest_first(links):
        a, b = units.find(unit_of[e.left]), units.find(unit_of[e.right])
        if a == b or units.forbidden(a, b):
            continue
        if e.probability < rules.link:
            uncertain.append(e)
            continue
        if units.ids[a] and units.ids[b] and not units.share_id(a, b):
            bridges.append(e)  # two people with different ID numbers: never the model's call
            continue
        if (
            len(units.shapes[a]) >= rules.guard_min_rows
            and len(units.shapes[b]) >= rules.guard_min_rows
            and e.probability < rules.strong
        ):
            bridges.append(e)
            continue
        if units.keys[a] and units.keys[b]:
            ka, kb = older(units.keys[a]), older(units.keys[b])
            for k in units.keys[b] if key_number(ka) < key_number(kb) else units.keys[a]:
                retired_by[k] = e
        for x, y in ((a, b), (b, a)):
            if (units.ids[y] or units.keys[y]) and not (units.ids[x] or units.keys[x]):
                anchored.update(units.recs[x])
        units.union(a, b)
        for rid in (e.left, e.right):
            accepted.setdefault(rid, e)

    already = set(queued)
    to_review: list[tuple[str, Link]] = []
    pairs_queued: set[tuple[int, int]] = set()
    for reason, refused in ((CLUSTER_BRIDGE, bridges), (MODEL_UNCERTAIN, uncertain)):
        per_row: Counter[int] = Counter()
        for e in refused:
            a, b = units.find(unit_of[e.left]), units.find(unit_of[e.right])
            if a == b or units.forbidden(a, b) or (min(a, b), max(a, b)) in pairs_queued:
                continue
            free = [rid for rid in (e.left, e.right) if not id_of[rid]]
            if reason == MODEL_UNCERTAIN and free and all(rid in anchored for rid in free):
                continue  # the ID-less row found a confident link to an established household
            if any(per_row[rid] >= rules.max_reviews_per_row for rid in free):
                continue
            if (reason, e.left, e.right) in already:
                continue
            already.add((reason, e.left, e.right))
            to_review.append((reason, e))
            pairs_queued.add((min(a, b), max(a, b)))
            for rid in free:
                per_row[rid] += 1
    return Clustering(units, unit_of, accepted, retired_by, to_review)
