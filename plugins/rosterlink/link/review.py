"""The review queue's rules: what goes to a person, what a decision means, how it is applied.

Reasons a pair of rows is queued (:data:`REVIEW_REASONS`); tonight's queue (:class:`ReviewQueue`:
a pair, or a conflict with the same signature, is never queued twice); recording a reviewer's
decision (:func:`decide`, the ``rosterlink review decide`` command); reading one written in a
workbook (:func:`parse_decision`); applying the decisions taken since the last night
(:func:`apply_decisions`: "same" merges two households, the older key surviving; "different" keeps
them apart for good and splits a row out of its household if they were together); and a pair as a
clerk may see it (:func:`display`, masked; :func:`evidence_text`). The review workbook itself is
:mod:`rosterlink.link.review_book`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import sqlalchemy as sa

from rosterlink.core.masking import mask_id, mask_phone
from rosterlink.core.spec import catalogue
from rosterlink.link.config import COMPARISONS
from rosterlink.link.keys import key_number, older
from rosterlink.link.model import norm_name
from rosterlink.link.records import Kind, Record, shape
from rosterlink.warehouse import IN_LIST, batched, dumps, now, schema

REVIEW_REASONS = {
    "model_uncertain": "模型无法确定是否同一户",
    "cluster_bridge": "一条记录同时像两户，未自动合并",
    "id_name_conflict": "同一身份证号，姓名不同",
    "name_village_id_conflict": "同名同村，身份证号不同",
}
DECISIONS = ("same", "different")


class ReviewError(Exception):
    """A decision that cannot be recorded (unknown review, unknown decision, already applied)."""


# --- tonight's queue -------------------------------------------------------------------------------
def signature_digest(signature: Sequence[object]) -> str:
    """The ``signature`` column of a conflict: a digest of its signature (the JSON list the rule
    made, also kept in the evidence). Migration 0008 fills it the same way for older reviews."""
    text = json.dumps(list(signature), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class _Item(NamedTuple):
    """A review queued tonight, as compact as the night can hold it (the rows to insert, with the
    two records as shown to people, are made only as they are written)."""

    kind: str
    reason: str
    left: int
    right: int
    weight: float | None
    probability: float | None
    evidence: str  # JSON
    signature: str | None  # signature_digest, for a rule's conflict


class Decided(NamedTuple):
    """A reviewer's decision as the link stage reads it (``link_review`` columns)."""

    review_id: int
    entity_kind: str
    record_id_l: int
    record_id_r: int
    decision: str
    decided_by: str | None
    decided_at: dt.datetime | None
    match_probability: float | None
    applied_at: dt.datetime | None


class ReviewQueue:
    """What one night needs of the review queue, never the whole of it (a queue of 260,000 items
    grows every night): the decisions not yet applied (:attr:`todo`), the pairs reviewers kept
    apart (:attr:`cannot`), the pairs already queued that hold one of tonight's rows (every new
    review holds one: a pair is never queued twice); and tonight's new reviews (:attr:`new`,
    inserted when the night is written). A conflict with the signature of one an earlier night
    queued is dropped by :meth:`settle`, which looks tonight's signatures up in the warehouse (an
    index) rather than holding every signature ever queued."""

    def __init__(
        self, decided: Iterable[Decided] = (), queued: Iterable[tuple[str, str, int, int]] = ()
    ) -> None:
        decided = list(decided)
        self.todo = sorted(
            (x for x in decided if x.applied_at is None),
            key=lambda x: (x.decided_at or dt.datetime.min, x.review_id),
        )
        self.cannot: defaultdict[str, defaultdict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
        for x in decided:
            if x.decision == "different":
                self.cannot[x.entity_kind][x.record_id_l].add(x.record_id_r)
                self.cannot[x.entity_kind][x.record_id_r].add(x.record_id_l)
        self.pairs: set[tuple[str, str, int, int]] = set(queued)  # and tonight's, but a rule's conflicts
        self.signatures: defaultdict[tuple[str, str], set[str]] = defaultdict(set)  # tonight's conflicts
        self.new: list[_Item] = []
        self.stamp = now()  # when tonight's reviews were queued

    @classmethod
    def load(cls, conn: sa.Connection) -> ReviewQueue:
        """The decided reviews (people's decisions: a few a night) and the queued pairs that hold a
        row not linked yet, with the columns they need (never the evidence, nor the two records as
        shown to people)."""
        lr, r = schema.link_review, schema.source_record
        decided = conn.execute(
            sa.select(*(lr.c[name] for name in Decided._fields)).where(lr.c.status == "decided")
        )
        pair = (lr.c.entity_kind, lr.c.reason, lr.c.record_id_l, lr.c.record_id_r)
        queued: set[tuple[str, str, int, int]] = set()
        for side in (lr.c.record_id_l, lr.c.record_id_r):
            rows = conn.execute(sa.select(*pair).join(r, r.c.record_id == side).where(schema.not_linked(r)))
            queued.update((k, reason, left, right) for k, reason, left, right in rows)
        return cls([Decided(*row) for row in decided], queued)

    def queued(self, kind: str) -> set[tuple[str, int, int]]:
        """(reason, left, right) of the pairs of ``kind`` already queued that hold a row of tonight
        (a rule's conflicts queued tonight are kept single by their signatures instead)."""
        return {(reason, l_id, r_id) for k, reason, l_id, r_id in self.pairs if k == kind}

    def add(
        self,
        kind: Kind,
        reason: str,
        l_id: int,
        r_id: int,
        *,
        probability: float | None = None,
        weight: float | None = None,
        evidence: Mapping[str, object] | None = None,
        signature: list | None = None,
    ) -> bool:
        """Queue a pair unless it was queued before, or a conflict with the same signature was
        queued tonight (one queued on an earlier night is dropped by :meth:`settle`)."""
        if (kind.kind, reason, l_id, r_id) in self.pairs:
            return False
        digest = None
        if signature is None:
            self.pairs.add((kind.kind, reason, l_id, r_id))
        else:  # a pair makes one signature: the signatures alone keep tonight's conflicts single
            digest = signature_digest(signature)
            if digest in self.signatures[kind.kind, reason]:
                return False
            self.signatures[kind.kind, reason].add(digest)
        ev = dict(evidence or {})
        if signature is not None:
            ev["signature"] = signature
        self.new.append(
            _Item(
                kind.kind,
                reason,
                l_id,
                r_id,
                None if weight is None else round(float(weight), 3),
                None if probability is None else round(float(probability), 6),
                dumps(ev),
                digest,
            )
        )
        return True

    def settle(self, conn: sa.Connection, kinds: Mapping[str, Kind]) -> None:
        """Drop tonight's conflicts whose signature an earlier night queued (looked up by tonight's
        signatures, 500 at a time), and count tonight's reviews by reason in each kind's figures."""
        lr = schema.link_review
        digests = sorted({x.signature for x in self.new if x.signature is not None})
        earlier: set[tuple[str, str, str]] = set()
        for chunk in batched(digests, IN_LIST):
            query = sa.select(lr.c.entity_kind, lr.c.reason, lr.c.signature).where(lr.c.signature.in_(chunk))
            earlier.update((k, reason, digest) for k, reason, digest in conn.execute(query))
        if earlier:
            self.new = [x for x in self.new if (x.kind, x.reason, x.signature) not in earlier]
        for x in self.new:
            kinds[x.kind].stats[f"review_{x.reason}"] += 1

    def rows(self, kinds: Mapping[str, Kind], file_names: Mapping[int, str]) -> Iterator[dict]:
        """Tonight's reviews as ``link_review`` rows, each made as it is written: both records as
        a clerk may see them (:func:`display`) and the keys they have at the end of the night."""
        for x in self.new:
            kind = kinds[x.kind]
            yield {
                "entity_kind": x.kind,
                "reason": x.reason,
                "record_id_l": x.left,
                "record_id_r": x.right,
                "entity_key_l": kind.key_of(x.left),
                "entity_key_r": kind.key_of(x.right),
                "display_l": dumps(display(kind.recs[x.left], file_names)),
                "display_r": dumps(display(kind.recs[x.right], file_names)),
                "match_weight": x.weight,
                "match_probability": x.probability,
                "evidence": x.evidence,
                "signature": x.signature,
                "status": "pending",
                "created_at": self.stamp,
            }


def display(rec: Record, file_names: Mapping[int, str]) -> dict:
    """A record as a clerk may see it: ID numbers and phones masked."""
    return {
        "department": rec.department,
        "roster": rec.roster,
        "roster_label": catalogue().rosters[rec.roster].label
        if rec.roster in catalogue().rosters
        else rec.roster,
        "file": file_names.get(rec.file_id, ""),
        "sheet": rec.sheet,
        "row": rec.row_number,
        "name": rec.name,
        "id_number": mask_id(rec.raw_id) if rec.raw_id else None,
        "town": rec.town,
        "village": rec.village,
        "phone": mask_phone(rec.phone) if rec.phone else None,
        "category": rec.category,
    }


def evidence_text(row: sa.Row) -> str:
    """Why a pair was queued, in a line a clerk can read."""
    ev = json.loads(row.evidence or "{}")
    if row.reason == "id_name_conflict":
        names = "、".join(ev.get("names", []))
        return f"同一身份证号写作两个姓名：{names}" + ("（同音）" if ev.get("pinyin_equal") else "")
    if row.reason == "name_village_id_conflict":
        return f"{ev.get('name', '')} 在 {ev.get('town', '')}{ev.get('village') or ''} 有两个身份证号"
    parts = []
    for comp in COMPARISONS:
        item = ev.get(comp)
        if item and item.get("level") != "null":
            parts.append(f"{item['label']}({item['weight']:+.1f})")
    return "；".join(parts)


# --- reviewers' decisions --------------------------------------------------------------------------
_SAME_WORDS = {"same", "y", "yes", "是", "相同", "同一", "同一户", "同一人", "是同一户", "是同一人", "合并"}
_DIFFERENT_WORDS = {
    "different",
    "n",
    "no",
    "否",
    "不同",
    "不是",
    "不同户",
    "不是同一户",
    "不是同一人",
    "不同人",
    "不是同一个",
    "分开",
}


def parse_decision(text: object) -> str | None:
    """ "same", "different" or None (not understood) for what a reviewer wrote."""
    if text is None:
        return None
    s = norm_name(text)
    if not s:
        return None
    s = s.lower()
    if s in _SAME_WORDS:
        return "same"
    if s in _DIFFERENT_WORDS:
        return "different"
    return None


def decide(
    conn: sa.Connection,
    review_id: int,
    decision: str,
    decided_by: str,
    note: str | None = None,
    *,
    force: bool = False,
) -> sa.Row:
    """Record a reviewer's decision; the next night's link stage applies it."""
    if decision not in DECISIONS:
        raise ReviewError(f"decision must be one of {DECISIONS}")
    lr = schema.link_review
    row = conn.execute(sa.select(lr).where(lr.c.review_id == review_id)).first()
    if row is None:
        raise ReviewError(f"no review {review_id}")
    if row.status == "decided" and row.applied_at is not None and not force:
        raise ReviewError(
            f"review {review_id} was decided ({row.decision}) and applied on {row.applied_at}; "
            "use --force to change it (the next night applies the new decision)"
        )
    conn.execute(
        lr.update()
        .where(lr.c.review_id == review_id)
        .values(
            status="decided",
            decision=decision,
            decided_by=decided_by[:128],
            decided_at=now(),
            note=note,
            applied_at=None,
            outcome=None,
        )
    )
    return conn.execute(sa.select(lr).where(lr.c.review_id == review_id)).one()


def doubt_order(lr: sa.Table = schema.link_review) -> tuple[sa.ColumnElement, ...]:
    """Most doubtful first: a rule's conflict (no probability: only a person can settle it), then
    the match probability nearest 0.5, then the oldest."""
    p = lr.c.match_probability
    return (sa.case((p.is_(None), 0.0), else_=sa.func.abs(p - 0.5)), lr.c.review_id)


def most_doubtful(conn: sa.Connection, limit: int) -> list[sa.Row]:
    """At most ``limit`` pending reviews, the most doubtful first (:func:`doubt_order`)."""
    lr = schema.link_review
    return list(
        conn.execute(sa.select(lr).where(lr.c.status == "pending").order_by(*doubt_order()).limit(limit))
    )


def pending_by_reason(conn: sa.Connection) -> dict[str, int]:
    """How many reviews are pending, by reason."""
    lr = schema.link_review
    q = sa.select(lr.c.reason, sa.func.count()).where(lr.c.status == "pending").group_by(lr.c.reason)
    return {reason: int(n) for reason, n in conn.execute(q).all()}


def listed_reviews(
    conn: sa.Connection, include_decided: bool = False, limit: int | None = None
) -> tuple[list[sa.Row], int]:
    """What ``rosterlink review list`` shows: at most ``limit`` reviews (None: all), pending ones
    the most doubtful first (:func:`doubt_order`, as in the review workbook), then decided ones
    (with ``include_decided``) in the same order; and how many there are in all."""
    lr = schema.link_review
    where = [] if include_decided else [lr.c.status == "pending"]
    total = int(conn.execute(sa.select(sa.func.count()).select_from(lr).where(*where)).scalar_one())
    pending_first = sa.case((lr.c.status == "pending", 0), else_=1)
    q = sa.select(lr).where(*where).order_by(pending_first, *doubt_order())
    if limit is not None:
        q = q.limit(limit)
    return list(conn.execute(q).all()), total


def apply_decisions(kinds: Mapping[str, Kind], queue: ReviewQueue) -> list[dict]:
    """Apply every decision taken since the last night, oldest first; returns their outcomes."""
    applied = []
    for x in queue.todo:
        kind = kinds.get(x.entity_kind)
        outcome = _apply(kind, x) if kind else "unknown_kind"
        applied.append({"review_id": x.review_id, "outcome": outcome})
    return applied


def _apply(kind: Kind, x: Decided) -> str:
    kl, kr = kind.key_of(x.record_id_l), kind.key_of(x.record_id_r)
    if kl is None or kr is None:
        return "record_gone"
    if x.decision == "same":
        if kl == kr:
            return "already_one"
        survivor, retired = older((kl, kr)), max((kl, kr), key=key_number)
        kind.merge_keys(survivor, retired)
        if kind.kind == "household":
            kind.merges.append(
                {
                    "retired_key": retired,
                    "surviving_key": survivor,
                    "merged_at": now(),
                    "reason": "reviewer",
                    "review_id": x.review_id,
                    "match_probability": x.match_probability,
                    "evidence": dumps(
                        {"records": [x.record_id_l, x.record_id_r], "decided_by": x.decided_by}
                    ),
                }
            )
        kind.stats["reviewer_merges"] += 1
        return f"merged {retired} into {survivor}"
    if kl != kr:
        return "kept_apart"
    # "different" about two rows of one entity: the reviewer splits the newer row out, with the
    # rows that are the same person as it (same ID and name, or an identical ID-less row)
    odd = kind.recs[x.record_id_r]
    group = [
        m
        for m in sorted(kind.members.get(kl, ()))
        if m == odd.record_id
        or (
            kind.recs[m].norm == odd.norm
            and kind.recs[m].id_number == odd.id_number
            and (odd.id_number or shape(kind.recs[m]) == shape(odd))
        )
    ]
    if len(group) == len(kind.members.get(kl, ())):
        return "nothing_to_split"
    new_key = kind.keys.new()
    for m in group:
        kind.move(m, new_key)
        kind.split_rows.add(m)
    kind.stats["reviewer_splits"] += 1
    return f"split {len(group)} row(s) from {kl} into {new_key}"


def record_applied(conn: sa.Connection, applied: Sequence[Mapping[str, object]]) -> None:
    """Mark the decisions applied tonight, with their outcome."""
    lr = schema.link_review
    for item in applied:
        conn.execute(
            lr.update()
            .where(lr.c.review_id == item["review_id"])
            .values(applied_at=now(), outcome=item["outcome"])
        )
