"""Link: resolve every loaded row to the household, cadre or case it describes, with stable keys.

Order of the rules, every night, for the rows loaded since the last night (``entity_key`` null):

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
3. **Probabilistic linkage** (:mod:`rosterlink.link.model`, Splink) for households rows without a
   usable ID, and for new rows with an ID against existing ID-less households: new rows against
   existing ones (``predict_between``) and new rows among themselves (``predict_within``). Pairs at
   or above the ``link`` probability are linked, pairs between ``review`` and ``link`` go to the
   review queue (``model_uncertain``) with both records (masked) and the evidence per field, pairs
   below stay apart.
4. **Clustering that resists chaining.** Links are taken strongest first; two clusters that already
   hold several distinct rows merge only on a ``strong`` link, and two holders of different valid IDs
   never merge; such a link goes to review (``cluster_bridge``) instead.
5. **Stable keys.** A household or cadre keeps the key it got on the night it first appeared
   (``H000001``, ``C000001``, ``K000001``); new entities get the next keys in row order; a merge keeps
   the older key. ``source_row`` says which entity every row became and how (``link_method``).

Rows that only make sense for a known entity (an exit for a household never listed, a departure
of an unknown cadre, the closure of an unknown case) are moved to ``rejected_row`` with a reason,
and their file's counts are corrected, so nothing is lost silently.

The pending review queue is also written to ``<intake>/review/待核实.xlsx`` (masked) when the
caller passes ``review_dir``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from rosterlink.core.findings import message
from rosterlink.core.masking import defuse, mask_id, mask_phone, mask_text
from rosterlink.core.spec import catalogue
from rosterlink.link import model as linkage
from rosterlink.ops import faults
from rosterlink.warehouse import dumps, insert_many, now, schema, update_many

log = logging.getLogger(__name__)

# records that establish an entity, and records that only change a known one
_ESTABLISHING_EVENTS = {None, "add", "join", "open", "closed"}
_KEY_PREFIX = {"household": "H", "cadre": "C", "case": "K"}
_UNKNOWN_REASON = {"household": "household_unknown", "cadre": "cadre_unknown", "case": "case_unknown"}

REVIEW_WORKBOOK = "待核实.xlsx"
REVIEW_REASONS = {
    "model_uncertain": "模型无法确定是否同一户",
    "cluster_bridge": "一条记录同时像两户，未自动合并",
    "id_name_conflict": "同一身份证号，姓名不同",
    "name_village_id_conflict": "同名同村，身份证号不同",
}
DECISIONS = ("same", "different")


# --- records in memory -----------------------------------------------------------------------------
@dataclass(slots=True)
class _Rec:
    record_id: int
    file_id: int
    sheet: str
    row_number: int
    department: str
    roster: str
    kind: str
    category: str | None
    event: str | None
    name: str | None
    id_number: str | None  # usable (valid) ID or None
    raw_id: str | None
    town: str | None
    village: str | None
    phone: str | None
    attrs: str
    key: str | None  # the key the row had when the night started
    pending: bool
    norm: str | None = None
    vkey: str | None = None

    @property
    def establishing(self) -> bool:
        return self.event in _ESTABLISHING_EVENTS


@dataclass
class _Edge:
    l: int  # noqa: E741 - record ids of the pair
    r: int
    p: float
    w: float
    evidence: dict


class _KeyIssuer:
    def __init__(self, kind: str, next_number: int) -> None:
        self.kind, self.next_number = kind, next_number

    def new(self) -> str:
        key = f"{_KEY_PREFIX[self.kind]}{self.next_number:06d}"
        self.next_number += 1
        return key


def _key_number(key: str) -> int:
    return int(key[1:])


def _older(keys) -> str:
    return min(keys, key=_key_number)


class _Units:
    """Union-find over clusters of records, with what the merge rules need to know of each."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.keys: list[set[str]] = []
        self.ids: list[set[str]] = []
        self.recs: list[set[int]] = []
        self.shapes: list[set[tuple]] = []  # distinct rows (identity fields), for "several rows"
        self.cannot: list[set[int]] = []

    def add(self, keys: set[str], recs: set[int], ids: set[str], shapes: set[tuple], cannot: set[int]) -> int:
        self.parent.append(len(self.parent))
        self.keys.append(keys)
        self.ids.append(ids)
        self.recs.append(recs)
        self.shapes.append(shapes)
        self.cannot.append(cannot)
        return len(self.parent) - 1

    def find(self, u: int) -> int:
        root = u
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[u] != root:
            self.parent[u], u = root, self.parent[u]
        return root

    def attach(self, u: int, rec: int, id_number: str | None, shape: tuple, cannot: set[int]) -> None:
        u = self.find(u)
        self.recs[u].add(rec)
        if id_number:
            self.ids[u].add(id_number)
        self.shapes[u].add(shape)
        self.cannot[u] |= cannot

    def forbidden(self, a: int, b: int) -> bool:
        return bool(self.cannot[a] & self.recs[b]) or bool(self.cannot[b] & self.recs[a])

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if len(self.recs[a]) < len(self.recs[b]):
            a, b = b, a
        self.parent[b] = a
        for attr in (self.keys, self.ids, self.recs, self.shapes, self.cannot):
            attr[a] |= attr[b]
            attr[b] = set()
        return a


@dataclass
class _Kind:
    """Everything the night knows and changes about one entity kind."""

    kind: str
    recs: dict[int, _Rec]
    members: dict[str, set[int]]
    by_id: dict[str, set[str]]
    keys: _KeyIssuer
    moved: dict[int, str] = field(default_factory=dict)  # already-linked row -> its new key
    assigned: dict[int, tuple[str, str, float | None]] = field(default_factory=dict)  # new row -> key
    merges: list[dict] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    orphaned: list[_Rec] = field(default_factory=list)
    split_rows: set[int] = field(default_factory=set)
    stats: dict = field(default_factory=lambda: defaultdict(int))

    def key_of(self, record_id: int) -> str | None:
        if record_id in self.moved:
            return self.moved[record_id]
        if record_id in self.assigned:
            return self.assigned[record_id][0]
        rec = self.recs.get(record_id)
        return rec.key if rec else None

    def move(self, record_id: int, key: str) -> None:
        old = self.key_of(record_id)
        if old == key:
            return
        if old is not None:
            self.members.get(old, set()).discard(record_id)
            self.touched.add(old)
        self.members.setdefault(key, set()).add(record_id)
        self.moved[record_id] = key
        self.touched.add(key)
        rec = self.recs[record_id]
        if rec.id_number:
            self.by_id.setdefault(rec.id_number, set()).add(key)
            if old and not any(self.recs[m].id_number == rec.id_number for m in self.members.get(old, ())):
                self.by_id[rec.id_number].discard(old)

    def merge_keys(self, survivor: str, retired: str) -> None:
        for record_id in sorted(self.members.get(retired, set())):
            self.move(record_id, survivor)
        self.members.pop(retired, None)
        self.retired.add(retired)
        self.touched.discard(retired)
        for keys in self.by_id.values():
            if retired in keys:
                keys.discard(retired)
                keys.add(survivor)


def _shape(rec: _Rec) -> tuple:
    return (rec.norm, rec.id_number, rec.town, rec.vkey, rec.phone)


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def _next_number(conn: sa.Connection, kind: str) -> int:
    table, column = {
        "household": (schema.household, "household_key"),
        "cadre": (schema.cadre, "cadre_key"),
        "case": (schema.petition_case, "case_key"),
    }[kind]
    tops = [
        conn.execute(sa.select(sa.func.max(table.c[column]))).scalar(),
        conn.execute(
            sa.select(sa.func.max(schema.source_record.c.entity_key)).where(
                schema.source_record.c.entity_kind == kind
            )
        ).scalar(),
    ]
    if kind == "household":
        tops.append(conn.execute(sa.select(sa.func.max(schema.household_merge.c.retired_key))).scalar())
    return max((_key_number(t) for t in tops if t), default=0) + 1


def _load_kind(conn: sa.Connection, kind: str, cfg: dict) -> _Kind:
    r = schema.source_record
    recs: dict[int, _Rec] = {}
    members: dict[str, set[int]] = defaultdict(set)
    by_id: dict[str, set[str]] = defaultdict(set)
    for row in conn.execute(
        sa.select(
            r.c.record_id,
            r.c.file_id,
            r.c.sheet,
            r.c.row_number,
            r.c.department,
            r.c.roster,
            r.c.category,
            r.c.event,
            r.c.person_name,
            r.c.id_number,
            r.c.town,
            r.c.village,
            r.c.phone,
            r.c.attrs,
            r.c.entity_key,
        )
        .where(r.c.entity_kind == kind)
        .order_by(r.c.record_id)
    ):
        rec = _Rec(
            row.record_id,
            row.file_id,
            row.sheet,
            row.row_number,
            row.department,
            row.roster,
            kind,
            row.category,
            row.event,
            row.person_name,
            linkage.usable_id(row.id_number),
            row.id_number,
            row.town,
            row.village,
            row.phone,
            row.attrs or "{}",
            row.entity_key,
            row.entity_key is None,
            linkage.norm_name(row.person_name),
            linkage.village_key(row.village, cfg),
        )
        recs[rec.record_id] = rec
        if rec.key:
            members[rec.key].add(rec.record_id)
            if rec.id_number:
                by_id[rec.id_number].add(rec.key)
    return _Kind(kind, recs, dict(members), dict(by_id), _KeyIssuer(kind, _next_number(conn, kind)))


# --- the review queue ------------------------------------------------------------------------------
class _Reviews:
    def __init__(self, conn: sa.Connection) -> None:
        lr = schema.link_review
        self.rows = conn.execute(sa.select(lr)).all()
        self.pairs = {(x.entity_kind, x.reason, x.record_id_l, x.record_id_r) for x in self.rows}
        self.signatures: set[tuple] = set()
        self.cannot: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
        for x in self.rows:
            sig = json.loads(x.evidence or "{}").get("signature")
            if sig:
                self.signatures.add((x.entity_kind, x.reason, *sig))
            if x.decision == "different":
                self.cannot[x.entity_kind][x.record_id_l].add(x.record_id_r)
                self.cannot[x.entity_kind][x.record_id_r].add(x.record_id_l)
        self.new: list[dict] = []

    def add(
        self,
        kind: _Kind,
        reason: str,
        l_id: int,
        r_id: int,
        *,
        probability: float | None = None,
        weight: float | None = None,
        evidence: dict | None = None,
        signature: list | None = None,
    ) -> bool:
        if (kind.kind, reason, l_id, r_id) in self.pairs:
            return False
        if signature is not None and (kind.kind, reason, *signature) in self.signatures:
            return False
        self.pairs.add((kind.kind, reason, l_id, r_id))
        if signature is not None:
            self.signatures.add((kind.kind, reason, *signature))
        ev = dict(evidence or {})
        if signature is not None:
            ev["signature"] = signature
        self.new.append(
            {
                "entity_kind": kind.kind,
                "reason": reason,
                "record_id_l": l_id,
                "record_id_r": r_id,
                "entity_key_l": kind.key_of(l_id),
                "entity_key_r": kind.key_of(r_id),
                "display_l": None,
                "display_r": None,  # filled when written
                "match_weight": None if weight is None else round(float(weight), 3),
                "match_probability": None if probability is None else round(float(probability), 6),
                "evidence": dumps(ev),
                "status": "pending",
                "created_at": now(),
            }
        )
        kind.stats[f"review_{reason}"] += 1
        return True


def _display(rec: _Rec, file_names: dict[int, str]) -> dict:
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


# --- the stage ------------------------------------------------------------------------------------
def link(eng: sa.Engine, *, review_dir: Path | None = None, config: dict | None = None) -> dict:
    """Link every unlinked ``source_record``; upsert entities; write ``source_row``. One transaction.

    ``review_dir``: the review folder (``<intake>/review``): decisions in workbooks found there are
    applied tonight, and the pending queue is written back to ``待核实.xlsx``.
    """
    cfg = config or linkage.load_config()
    started = time.perf_counter()
    with eng.begin() as conn:
        read = read_review_workbooks(conn, review_dir) if review_dir is not None else {}
        night = _Night(conn, cfg)
        log.info(
            "link: rows loaded: %s in %.1f s",
            ", ".join(
                f"{kind} {len(k.recs)} ({sum(1 for rec in k.recs.values() if rec.pending)} new)"
                for kind, k in night.kinds.items()
            ),
            time.perf_counter() - started,
        )
        night.apply_decisions()
        if night.applied:
            log.info("link: %d reviewer decisions applied", len(night.applied))
        night.link_households()
        night.link_cadres()
        night.link_cases()
        writing = time.perf_counter()
        night.write()
        log.info("link: written: entities and lineage in %.1f s", time.perf_counter() - writing)
        faults.point("link.mid")  # kill tests: the process dies with tonight's links written, uncommitted
        summary = night.summary()
    if review_dir is not None:
        summary["review_workbook"] = str(export_review_workbook(eng, review_dir))
    summary["review_decisions_read"] = read
    summary["seconds"] = round(time.perf_counter() - started, 2)
    log.info("link: %s", {k: v for k, v in summary.items() if k not in ("clusters",)})
    return summary


class _Night:
    def __init__(self, conn: sa.Connection, cfg: dict) -> None:
        self.conn, self.cfg = conn, cfg
        self.kinds = {kind: _load_kind(conn, kind, cfg) for kind in ("household", "cadre")}
        self.reviews = _Reviews(conn)
        self.applied: list[dict] = []
        self.model_info: dict = {}
        self.timings: dict[str, float] = {}
        self.case_summary: dict = {}
        self.density: list[float] = []

    # --- 1. reviewers' decisions -----------------------------------------------------------------
    def apply_decisions(self) -> None:
        todo = sorted(
            (x for x in self.reviews.rows if x.status == "decided" and x.applied_at is None),
            key=lambda x: (x.decided_at or dt.datetime.min, x.review_id),
        )
        for x in todo:
            kind = self.kinds.get(x.entity_kind)
            outcome = self._apply(kind, x) if kind else "unknown_kind"
            self.applied.append({"review_id": x.review_id, "outcome": outcome})

    def _apply(self, kind: _Kind, x: sa.Row) -> str:
        kl, kr = kind.key_of(x.record_id_l), kind.key_of(x.record_id_r)
        if kl is None or kr is None:
            return "record_gone"
        if x.decision == "same":
            if kl == kr:
                return "already_one"
            survivor, retired = _older((kl, kr)), max((kl, kr), key=_key_number)
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
                and (odd.id_number or _shape(kind.recs[m]) == _shape(odd))
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

    # --- 2-5. households ----------------------------------------------------------------------------
    def link_households(self) -> None:
        kind = self.kinds["household"]
        pending = [rec for rec in kind.recs.values() if rec.pending]
        if not pending:
            return
        cannot = self.reviews.cannot["household"]
        units = _Units()
        unit_of: dict[int, int] = {}
        unit_of_key: dict[str, int] = {}
        for key, members in sorted(kind.members.items()):
            recs = set(members)
            u = units.add(
                {key},
                recs,
                {kind.recs[m].id_number for m in recs if kind.recs[m].id_number},
                {_shape(kind.recs[m]) for m in recs},
                set().union(*(cannot.get(m, set()) for m in recs)),
            )
            unit_of_key[key] = u
            for m in recs:
                unit_of[m] = u
        new_id_units: dict[str, int] = {}
        for rec in pending:
            if rec.id_number:
                keys = kind.by_id.get(rec.id_number)
                if keys:
                    key = self._choose_key(kind, keys, rec)
                    u = unit_of_key[key]
                    self._check_id_name(
                        kind,
                        rec,
                        [m for m in units.recs[units.find(u)] if kind.recs[m].id_number == rec.id_number],
                    )
                else:
                    u = new_id_units.get(rec.id_number)
                    if u is None:
                        u = new_id_units[rec.id_number] = units.add(set(), set(), set(), set(), set())
                    else:
                        self._check_id_name(
                            kind,
                            rec,
                            [m for m in units.recs[units.find(u)] if kind.recs[m].id_number == rec.id_number],
                        )
                units.attach(u, rec.record_id, rec.id_number, _shape(rec), cannot.get(rec.record_id, set()))
            else:
                u = units.add(
                    set(), {rec.record_id}, set(), {_shape(rec)}, set(cannot.get(rec.record_id, set()))
                )
            unit_of[rec.record_id] = u
        self._check_name_village(kind)
        with_id = sum(1 for rec in pending if rec.id_number)
        log.info(
            "link: households: %d new rows, %d with an ID number, %d without",
            len(pending),
            with_id,
            len(pending) - with_id,
        )

        started = time.perf_counter()
        edges = self._score(kind, pending)
        self.timings["household_model"] = round(time.perf_counter() - started, 2)
        if edges or self.model_info.get("source") != "not_needed":
            log.info(
                "link: households: %d candidate pairs scored in %.1f s (model: %s)",
                len(edges),
                self.timings["household_model"],
                self.model_info.get("source"),
            )
        queued = len(self.reviews.new)
        accepted = self._cluster(kind, units, unit_of, edges)
        log.info(
            "link: households: clustering: %d rows placed by a link, %d pairs queued for review",
            len(accepted),
            len(self.reviews.new) - queued,
        )
        self._assign(kind, units, unit_of, pending, accepted)
        log.info(
            "link: households: %d rows assigned, %d new households, %d merges",
            len(kind.assigned),
            kind.stats.get("created", 0),
            kind.stats.get("model_merges", 0),
        )
        self._measure_density(kind, units, unit_of, edges)

    def _choose_key(self, kind: _Kind, keys: set[str], rec: _Rec) -> str:
        """The entity an ID belongs to; after a reviewer split one ID may have two: take the one
        where it is written with this row's name."""
        if len(keys) == 1:
            return next(iter(keys))
        for key in sorted(keys, key=_key_number):
            if any(
                kind.recs[m].norm == rec.norm and kind.recs[m].id_number == rec.id_number
                for m in kind.members.get(key, ())
            ):
                return key
        return _older(keys)

    def _check_id_name(self, kind: _Kind, rec: _Rec, same_id: list[int]) -> None:
        """One ID number, two names: linked by the ID, and queued for a person to check."""
        names = {kind.recs[m].norm for m in same_id} - {None}
        if rec.norm is None or not names or rec.norm in names:
            return
        first = min(m for m in same_id if kind.recs[m].norm != rec.norm and kind.recs[m].norm)
        other = kind.recs[first]
        cfg = self.cfg
        py = {linkage.name_pinyin(n, cfg)[1] for n in (other.norm, rec.norm)}
        self.reviews.add(
            kind,
            "id_name_conflict",
            first,
            rec.record_id,
            evidence={
                "rule": "same_id_two_names",
                "names": [other.norm, rec.norm],
                "pinyin_equal": len(py) == 1,
            },
            signature=[_digest(rec.id_number), *sorted((other.norm, rec.norm))],
        )

    def _check_name_village(self, kind: _Kind) -> None:
        """One name, town and village under two ID numbers: kept apart by the rules, queued."""
        groups: dict[tuple, dict[str, int]] = defaultdict(dict)
        for rec in sorted(kind.recs.values(), key=lambda x: x.record_id):
            if rec.id_number and rec.norm and rec.town:
                groups[(rec.norm, rec.town, rec.vkey)].setdefault(rec.id_number, rec.record_id)
        for (name, town, vk), ids in groups.items():
            if len(ids) < 2:
                continue
            firsts = sorted(ids.values())
            for r_id in firsts[1:]:
                l_id = firsts[0]
                if not (kind.recs[r_id].pending or kind.recs[l_id].pending):
                    continue
                a, b = kind.recs[l_id].id_number, kind.recs[r_id].id_number
                self.reviews.add(
                    kind,
                    "name_village_id_conflict",
                    l_id,
                    r_id,
                    evidence={"rule": "same_name_village_two_ids", "name": name, "town": town, "village": vk},
                    signature=[_digest(*sorted((a, b)))],
                )

    def _score(self, kind: _Kind, pending: list[_Rec]) -> list[_Edge]:
        nil_new = [rec for rec in pending if not rec.id_number]
        id_new = [rec for rec in pending if rec.id_number]
        nil_old = [rec for rec in kind.recs.values() if not rec.pending and not rec.id_number]
        if not nil_new and not (id_new and nil_old):
            self.model_info = {"source": "not_needed"}
            return []
        cfg = self.cfg
        feats: dict[int, dict] = {}
        for rec in kind.recs.values():
            attrs = json.loads(rec.attrs) if not rec.id_number else {}
            feats[rec.record_id] = linkage.feature_row(
                rec.record_id, rec.name, rec.id_number, rec.town, rec.village, rec.phone, attrs, cfg
            )
        # one feature row per entity (the rows resolved by ID, and existing ID-less households):
        # term frequencies and u probabilities are counted on these, not on raw rows
        entity_rows: dict[object, int] = {}
        for rec in kind.recs.values():
            ident = ("id", rec.id_number) if rec.id_number else (("key", rec.key) if rec.key else None)
            if ident is not None:
                entity_rows[ident] = rec.record_id
        entities = linkage.frame([feats[i] for i in entity_rows.values()])
        params, tf = self._model(kind, feats, entities)
        # left side: every row but the new ID-less ones, one per distinct (entity, fields)
        seen: set[tuple] = set()
        left_rows = []
        for rec in kind.recs.values():
            if rec.pending and not rec.id_number:
                continue
            f = feats[rec.record_id]
            sig = (rec.key or ("id", rec.id_number), *(f[c] for c in linkage.FEATURES[1:-1]))
            if sig in seen:
                continue
            seen.add(sig)
            left_rows.append(f)
        left = linkage.frame(left_rows)
        right = linkage.frame([feats[rec.record_id] for rec in nil_new])
        log.info(
            "link: households: scoring %d rows without an ID number against %d rows", len(right), len(left)
        )
        with linkage.Scorer(params, cfg, entities, tf=tf) as scorer:
            parts = [scorer.between(left, right), scorer.within(right)]
            if id_new and nil_old:
                parts.append(
                    scorer.between(
                        linkage.frame([feats[r.record_id] for r in nil_old]),
                        linkage.frame([feats[r.record_id] for r in id_new]),
                    )
                )
        edges = []
        for part in parts:
            for row in part.to_dict("records"):
                l_id, r_id = int(row["unique_id_l"]), int(row["unique_id_r"])
                if l_id > r_id:
                    l_id, r_id = r_id, l_id
                edges.append(
                    _Edge(
                        l_id,
                        r_id,
                        float(row["match_probability"]),
                        float(row["match_weight"]),
                        linkage.evidence(row),
                    )
                )
        kind.stats["pairs_scored"] = len(edges)
        return edges

    def _model(self, kind: _Kind, feats: dict[int, dict], entities) -> tuple[dict, bool]:
        cfg, training = self.cfg, self.cfg["training"]
        lm = schema.link_model
        stored = self.conn.execute(
            sa.select(lm)
            .where(lm.c.entity_kind == kind.kind, lm.c.source == "em")
            .order_by(lm.c.model_id.desc())
            .limit(1)
        ).first()
        n_records = len(kind.recs)
        n_nil = sum(1 for rec in kind.recs.values() if not rec.id_number)
        tf = len(entities) >= int(cfg["tf_min_entities"])
        enough = n_records >= int(training["min_records"]) and n_nil >= int(training["min_id_less_records"])
        stale = stored is None or n_records >= stored.records * (1 + float(training["retrain_growth"]))
        if enough and stale:
            log.info(
                "link: households: training the model on %d rows (%d without an ID number)", n_records, n_nil
            )
            started = time.perf_counter()
            records = linkage.frame(list(feats.values()))
            try:
                params = linkage.train(records, entities, cfg, tf=tf)
            except Exception as exc:  # noqa: BLE001 - a model that cannot be trained must not stop the night
                log.warning("link: training failed (%s); using the stored or prior model", type(exc).__name__)
            else:
                seconds = round(time.perf_counter() - started, 2)
                self.conn.execute(
                    lm.insert().values(
                        entity_kind=kind.kind,
                        trained_at=now(),
                        source="em",
                        records=n_records,
                        id_less_records=n_nil,
                        entities=len(entities),
                        parameters=dumps(params),
                        seconds=seconds,
                    )
                )
                self.model_info = {"source": "em_trained_tonight", "records": n_records, "seconds": seconds}
                return params, tf
        if stored is not None:
            self.model_info = {
                "source": "em_stored",
                "model_records": stored.records,
                "trained_at": str(stored.trained_at),
            }
            return json.loads(stored.parameters), tf
        self.model_info = {"source": "prior"}
        return linkage.prior_parameters(cfg), tf

    def _cluster(self, kind: _Kind, units: _Units, unit_of: dict[int, int], edges: list[_Edge]) -> dict:
        """Take links strongest first; guard merges of clusters that already hold several rows."""
        th = self.cfg["thresholds"]
        link_t, strong_t = float(th["link"]), float(th["strong"])
        guard = int(self.cfg["guard_min_rows"])
        per_row = int(self.cfg["max_reviews_per_row"])
        edges.sort(key=lambda e: (-e.p, -e.w, e.l, e.r))
        accepted: dict[int, _Edge] = {}  # record -> the strongest link that placed it
        retire_evidence: dict[str, _Edge] = {}
        anchored: set[int] = set()  # ID-less rows tonight's links tied to a household with an ID or a key
        bridges: list[_Edge] = []
        uncertain: list[_Edge] = []
        for e in edges:
            a, b = units.find(unit_of[e.l]), units.find(unit_of[e.r])
            if a == b or units.forbidden(a, b):
                continue
            if e.p < link_t:
                uncertain.append(e)
                continue
            if units.ids[a] and units.ids[b] and not (units.ids[a] & units.ids[b]):
                bridges.append(e)  # two people with different ID numbers: never the model's call
                continue
            if len(units.shapes[a]) >= guard and len(units.shapes[b]) >= guard and e.p < strong_t:
                bridges.append(e)
                continue
            if units.keys[a] and units.keys[b]:
                ka, kb = _older(units.keys[a]), _older(units.keys[b])
                for k in units.keys[b] if _key_number(ka) < _key_number(kb) else units.keys[a]:
                    retire_evidence[k] = e
            for x, y in ((a, b), (b, a)):
                if (units.ids[y] or units.keys[y]) and not (units.ids[x] or units.keys[x]):
                    anchored.update(units.recs[x])
            units.union(a, b)
            for rid in (e.l, e.r):
                accepted.setdefault(rid, e)
        self._retire_evidence = retire_evidence
        pairs_queued: set[tuple[int, int]] = set()
        for reason, queue in (("cluster_bridge", bridges), ("model_uncertain", uncertain)):
            per_rec: Counter = Counter()
            for e in queue:
                a, b = units.find(unit_of[e.l]), units.find(unit_of[e.r])
                if a == b or units.forbidden(a, b) or (min(a, b), max(a, b)) in pairs_queued:
                    continue
                free = [rid for rid in (e.l, e.r) if not kind.recs[rid].id_number]
                if reason == "model_uncertain" and free and all(rid in anchored for rid in free):
                    continue  # the ID-less row found a confident link to an established household
                if any(per_rec[rid] >= per_row for rid in free):
                    continue
                if self.reviews.add(kind, reason, e.l, e.r, probability=e.p, weight=e.w, evidence=e.evidence):
                    pairs_queued.add((min(a, b), max(a, b)))
                    for rid in free:
                        per_rec[rid] += 1
        return accepted

    def _assign(
        self,
        kind: _Kind,
        units: _Units,
        unit_of: dict[int, int],
        pending: list[_Rec],
        accepted: dict[int, _Edge],
    ) -> None:
        by_root: dict[int, list[_Rec]] = defaultdict(list)
        for rec in pending:
            by_root[units.find(unit_of[rec.record_id])].append(rec)
        # merges of existing keys the model found tonight (the older key survives)
        for root in sorted({units.find(u) for u in unit_of.values()}):
            keys = units.keys[root]
            if len(keys) < 2:
                continue
            survivor = _older(keys)
            for retired in sorted(keys - {survivor}, key=_key_number):
                e = self._retire_evidence.get(retired)
                kind.merge_keys(survivor, retired)
                kind.merges.append(
                    {
                        "retired_key": retired,
                        "surviving_key": survivor,
                        "merged_at": now(),
                        "reason": "model",
                        "review_id": None,
                        "match_probability": e.p if e else None,
                        "evidence": dumps(
                            {"records": [e.l, e.r], "match_weight": round(e.w, 3), "fields": e.evidence}
                            if e
                            else {}
                        ),
                    }
                )
                kind.stats["model_merges"] += 1
        for root, recs in sorted(by_root.items(), key=lambda item: min(r.record_id for r in item[1])):
            keys = units.keys[root]
            if keys:
                key = _older(keys)
            elif any(rec.establishing for rec in recs):
                key = kind.keys.new()
                kind.stats["created"] += 1
            else:
                kind.orphaned.extend(recs)
                continue
            for rec in sorted(recs, key=lambda x: x.record_id):
                if rec.id_number:
                    method, p = "id", None
                elif rec.record_id in accepted:
                    method, p = "model", accepted[rec.record_id].p
                else:
                    method, p = "new", None
                kind.assigned[rec.record_id] = (key, method, p)
                kind.members.setdefault(key, set()).add(rec.record_id)
                if rec.id_number:
                    kind.by_id.setdefault(rec.id_number, set()).add(key)
                kind.touched.add(key)
                kind.stats[f"rows_{method}"] += 1

    def _measure_density(
        self, kind: _Kind, units: _Units, unit_of: dict[int, int], edges: list[_Edge]
    ) -> None:
        """Of clusters the model shaped tonight (3+ rows): the share of their row pairs tied directly
        (same ID, identical rows, or a scored link above the threshold). Low density = a chain."""
        link_t = float(self.cfg["thresholds"]["link"])
        strong = {(e.l, e.r) for e in edges if e.p >= link_t}
        shaped = {units.find(unit_of[e.l]) for e in edges if e.p >= link_t}
        for root in shaped:
            recs = sorted(units.recs[root])
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
                        or _shape(ra) == _shape(rb)
                        or (a, b) in strong
                    ):
                        tied += 1
            self.density.append(tied / total)

    # --- cadres ------------------------------------------------------------------------------------
    def link_cadres(self) -> None:
        """Cadre rows carry an ID (the roster requires it): exact rules only. An ID-less row (a
        roster configured without the requirement) links to the one cadre of the same name and
        unit or phone, if there is exactly one."""
        kind = self.kinds["cadre"]
        pending = [rec for rec in kind.recs.values() if rec.pending]
        by_name: dict[str, set[str]] = defaultdict(set)
        for rec in kind.recs.values():
            if rec.key and rec.norm:
                by_name[rec.norm].add(rec.key)
        # establishing rows first, so a roster and its change list dropped the same night link up
        for rec in sorted(pending, key=lambda x: (not x.establishing, x.record_id)):
            key = None
            if rec.id_number:
                keys = kind.by_id.get(rec.id_number)
                if keys:
                    key = self._choose_key(kind, keys, rec)
                    self._check_id_name(
                        kind,
                        rec,
                        [m for m in kind.members.get(key, ()) if kind.recs[m].id_number == rec.id_number],
                    )
                method = "id"
            else:
                candidates = by_name.get(rec.norm, set()) if rec.norm else set()
                if len(candidates) == 1:
                    key = next(iter(candidates))
                method = "name"
            if key is None:
                if not rec.establishing:
                    kind.orphaned.append(rec)
                    continue
                key = kind.keys.new()
                kind.stats["created"] += 1
                method = "id" if rec.id_number else "new"
            kind.assigned[rec.record_id] = (key, method, None)
            kind.members.setdefault(key, set()).add(rec.record_id)
            if rec.id_number:
                kind.by_id.setdefault(rec.id_number, set()).add(key)
            if rec.norm:
                by_name[rec.norm].add(key)
            kind.touched.add(key)
            kind.stats[f"rows_{method}"] += 1
        if pending:
            log.info(
                "link: cadres: %d new rows, %d assigned, %d new cadres, %d without a cadre",
                len(pending),
                len(kind.assigned),
                kind.stats.get("created", 0),
                len(kind.orphaned),
            )

    # --- cases -------------------------------------------------------------------------------------
    def link_cases(self) -> None:
        conn = self.conn
        r, k = schema.source_record, schema.petition_case
        by_number = dict(conn.execute(sa.select(k.c.case_number, k.c.case_key)).all())
        issuer = _KeyIssuer("case", _next_number(conn, "case"))
        pending = conn.execute(
            sa.select(r).where(r.c.entity_key.is_(None), r.c.entity_kind == "case").order_by(r.c.record_id)
        ).all()
        self.case_assigned: dict[int, str] = {}
        self.case_orphaned: list[sa.Row] = []
        self.case_rows = pending
        created = 0
        for rec in sorted(pending, key=lambda x: (x.event not in _ESTABLISHING_EVENTS, x.record_id)):
            key = by_number.get(rec.case_number)
            if key is None:
                if rec.event not in _ESTABLISHING_EVENTS:
                    self.case_orphaned.append(rec)
                    continue
                key = by_number[rec.case_number] = issuer.new()
                created += 1
            self.case_assigned[rec.record_id] = key
        self.case_summary = {"rows": len(self.case_assigned), "created": created}
        if pending:
            log.info(
                "link: cases: %d new rows, %d assigned, %d new cases, %d without a case",
                len(pending),
                len(self.case_assigned),
                created,
                len(self.case_orphaned),
            )

    # --- writing -----------------------------------------------------------------------------------
    def write(self) -> None:
        conn = self.conn
        r, s = schema.source_record, schema.source_row
        file_names = dict(
            conn.execute(sa.select(schema.intake_file.c.file_id, schema.intake_file.c.file_name)).all()
        )
        # reviewers' decisions applied
        lr = schema.link_review
        for item in self.applied:
            conn.execute(
                lr.update()
                .where(lr.c.review_id == item["review_id"])
                .values(applied_at=now(), outcome=item["outcome"])
            )
        for kind in self.kinds.values():
            upd = [{"_rid": rid, "_key": key} for rid, (key, _, _) in kind.assigned.items()]
            upd += [
                {"_rid": rid, "_key": key} for rid, key in kind.moved.items() if not kind.recs[rid].pending
            ]
            update_many(
                conn, r, ["record_id"], [{"record_id": u["_rid"], "entity_key": u["_key"]} for u in upd]
            )
            insert_many(
                conn,
                s,
                (
                    {
                        "file_id": kind.recs[rid].file_id,
                        "sheet": kind.recs[rid].sheet,
                        "row_number": kind.recs[rid].row_number,
                        "entity_kind": kind.kind,
                        "entity_key": kind.moved.get(rid, key),
                        "link_method": method,
                        "match_probability": p,
                    }
                    for rid, (key, method, p) in sorted(kind.assigned.items())
                ),
            )
            moved_old = [
                {
                    "_f": kind.recs[rid].file_id,
                    "_s": kind.recs[rid].sheet,
                    "_n": kind.recs[rid].row_number,
                    "_key": key,
                }
                for rid, key in kind.moved.items()
                if not kind.recs[rid].pending and rid not in kind.split_rows
            ]
            if moved_old:
                conn.execute(
                    s.update()
                    .where(
                        s.c.file_id == sa.bindparam("_f"),
                        s.c.sheet == sa.bindparam("_s"),
                        s.c.row_number == sa.bindparam("_n"),
                    )
                    .values(entity_key=sa.bindparam("_key")),
                    moved_old,
                )
            split = [
                {
                    "_f": kind.recs[rid].file_id,
                    "_s": kind.recs[rid].sheet,
                    "_n": kind.recs[rid].row_number,
                    "_key": kind.moved[rid],
                }
                for rid in sorted(kind.split_rows)
            ]
            if split:
                conn.execute(
                    s.update()
                    .where(
                        s.c.file_id == sa.bindparam("_f"),
                        s.c.sheet == sa.bindparam("_s"),
                        s.c.row_number == sa.bindparam("_n"),
                    )
                    .values(
                        entity_key=sa.bindparam("_key"), link_method="review_split", match_probability=None
                    ),
                    split,
                )
            _reject_orphans(conn, kind.orphaned)
            if kind.merges:
                insert_many(conn, schema.household_merge, kind.merges)
            for item in self.reviews.new:
                if item["entity_kind"] == kind.kind and item["display_l"] is None:
                    item["display_l"] = dumps(_display(kind.recs[item["record_id_l"]], file_names))
                    item["display_r"] = dumps(_display(kind.recs[item["record_id_r"]], file_names))
                    item["entity_key_l"] = kind.key_of(item["record_id_l"])
                    item["entity_key_r"] = kind.key_of(item["record_id_r"])
        if self.reviews.new:
            insert_many(conn, lr, self.reviews.new)
        _write_households(conn, self.kinds["household"])
        _write_cadres(conn, self.kinds["cadre"])
        # cases
        update_many(
            conn,
            r,
            ["record_id"],
            [{"record_id": rid, "entity_key": key} for rid, key in self.case_assigned.items()],
        )
        insert_many(
            conn,
            s,
            (
                {
                    "file_id": rec.file_id,
                    "sheet": rec.sheet,
                    "row_number": rec.row_number,
                    "entity_kind": "case",
                    "entity_key": self.case_assigned[rec.record_id],
                    "link_method": "id",
                    "match_probability": None,
                }
                for rec in self.case_rows
                if rec.record_id in self.case_assigned
            ),
        )
        _reject_orphans(conn, self.case_orphaned)
        _upsert_cases(conn, set(self.case_assigned.values()))

    def summary(self) -> dict:
        h, c = self.kinds["household"], self.kinds["cadre"]
        sizes = Counter(len(m) for k, m in h.members.items() if m)
        density = sorted(self.density)
        out = {
            "rows_linked": len(h.assigned) + len(c.assigned) + len(self.case_assigned),
            "rows_rejected_unknown_entity": len(h.orphaned) + len(c.orphaned) + len(self.case_orphaned),
            "created": {
                k: v
                for k, v in (
                    ("household", h.stats["created"]),
                    ("cadre", c.stats["created"]),
                    ("case", self.case_summary.get("created", 0)),
                )
                if v
            },
            "household": {k: v for k, v in sorted(h.stats.items())},
            "cadre": {k: v for k, v in sorted(c.stats.items())},
            "reviews_queued": len(self.reviews.new),
            "decisions_applied": self.applied,
            "merges": [{k: m[k] for k in ("retired_key", "surviving_key", "reason")} for m in h.merges],
            "model": self.model_info,
            "timings": self.timings,
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
        return out


# --- entity tables ------------------------------------------------------------------------------
def _latest(values: list) -> object:
    """The most recent non-empty value (records are in load order)."""
    for value in reversed(values):
        if value not in (None, ""):
            return value
    return None


def _write_households(conn: sa.Connection, kind: _Kind) -> None:
    h, hc = schema.household, schema.household_category
    if kind.retired:
        retired = sorted(kind.retired)
        for chunk in _chunks(retired, 500):
            conn.execute(hc.delete().where(hc.c.household_key.in_(chunk)))
            conn.execute(h.delete().where(h.c.household_key.in_(chunk)))
    touched = kind.touched - kind.retired
    if not touched:
        return
    existing = {
        row.household_key: row
        for row in conn.execute(
            sa.select(
                h.c.household_key,
                h.c.head_name,
                h.c.head_id_number,
                h.c.town,
                h.c.village,
                h.c.phone,
                h.c.first_seen_file,
            )
        )
    }
    categories: dict[str, set[str]] = defaultdict(set)
    for k2, category in conn.execute(sa.select(hc.c.household_key, hc.c.category)):
        categories[k2].add(category)
    inserts, updates, cat_insert, cat_delete = [], [], [], []
    for key in sorted(touched):
        recs = sorted((kind.recs[m] for m in kind.members.get(key, ())), key=lambda x: x.record_id)
        if not recs:
            continue
        with_id = [x for x in recs if x.id_number]
        values = {
            # the name as written next to an ID number is the authoritative one
            "head_name": _latest([x.name for x in with_id]) or _latest([x.name for x in recs]),
            "head_id_number": _latest([x.id_number or x.raw_id for x in recs]),
            "town": _latest([x.town for x in recs]),
            "village": _latest([x.village for x in recs]),
            "phone": _latest([x.phone for x in recs]),
            "first_seen_file": recs[0].file_id,
        }
        old = existing.get(key)
        if old is None:
            inserts.append(
                {"household_key": key, **values, "head_name": values["head_name"] or "", "status": "active"}
            )
        else:
            change = {k: v for k, v in values.items() if v is not None and getattr(old, k) != v}
            if change:
                updates.append((key, change))
        wanted = {x.category for x in recs if x.category}
        for category in sorted(wanted - categories.get(key, set())):
            cat_insert.append({"household_key": key, "category": category, "status": "active"})
        for category in sorted(categories.get(key, set()) - wanted):
            cat_delete.append((key, category))
    insert_many(conn, h, inserts)
    _bulk_update(conn, h, "household_key", updates)
    for key, category in cat_delete:
        conn.execute(hc.delete().where(hc.c.household_key == key, hc.c.category == category))
    insert_many(conn, hc, cat_insert)


def _write_cadres(conn: sa.Connection, kind: _Kind) -> None:
    c = schema.cadre
    touched = kind.touched - kind.retired
    if not touched:
        return
    existing = {row.cadre_key: row for row in conn.execute(sa.select(c))}
    inserts, updates = [], []
    for key in sorted(touched):
        recs = sorted((kind.recs[m] for m in kind.members.get(key, ())), key=lambda x: x.record_id)
        if not recs:
            continue
        attrs = [json.loads(x.attrs) for x in recs]
        values = {
            "name": _latest([x.name for x in recs]),
            "id_number": _latest([x.id_number or x.raw_id for x in recs]),
            "phone": _latest([x.phone for x in recs]),
            "town": _latest([a.get("linked_town") for a in attrs]),
            "sex": _latest([a.get("sex") for a in attrs]),
            "rank": _latest([a.get("rank") for a in attrs]),
            "rank_title": _latest([a.get("rank_title") for a in attrs]),
            "unit": _latest([a.get("unit") for a in attrs]),
            "post": _latest([a.get("post") for a in attrs]),
        }
        old = existing.get(key)
        if old is None:
            inserts.append({"cadre_key": key, **values, "name": values["name"] or "", "status": "active"})
        else:
            change = {k: v for k, v in values.items() if v is not None and getattr(old, k) != v}
            if change:
                updates.append((key, change))
    insert_many(conn, c, inserts)
    _bulk_update(conn, c, "cadre_key", updates)


def _bulk_update(conn: sa.Connection, table: sa.Table, key_col: str, updates: list[tuple[str, dict]]) -> None:
    """executemany per set of changed columns."""
    by_cols: dict[tuple, list[dict]] = defaultdict(list)
    for key, change in updates:
        cols = tuple(sorted(change))
        by_cols[cols].append({"_key": key, **{f"_v_{k}": v for k, v in change.items()}})
    for cols, rows in by_cols.items():
        conn.execute(
            table.update()
            .where(table.c[key_col] == sa.bindparam("_key"))
            .values(**{k: sa.bindparam(f"_v_{k}") for k in cols}),
            rows,
        )


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _reject_orphans(conn: sa.Connection, orphaned: list) -> None:
    """An event for an entity nobody listed cannot be applied: reject it, fix the file's counts."""
    if not orphaned:
        return
    fields = catalogue().fields
    f, r = schema.intake_file, schema.source_record
    for rec in orphaned:
        kind = rec.kind if isinstance(rec, _Rec) else rec.entity_kind
        kind_field = "case_number" if kind == "case" else catalogue().rosters[rec.roster].person["id_number"]
        header = _header_of(conn, rec.file_id, rec.sheet, kind_field) or fields[kind_field].label
        code = _UNKNOWN_REASON[kind]
        conn.execute(
            schema.rejected_row.insert().values(
                file_id=rec.file_id,
                sheet=rec.sheet,
                row_number=rec.row_number,
                field=kind_field,
                header=header,
                value=None,
                reason_code=code,
                message=message(code, header=header),
                created_at=now(),
            )
        )
        conn.execute(r.delete().where(r.c.record_id == rec.record_id))
        conn.execute(
            f.update()
            .where(f.c.file_id == rec.file_id)
            .values(rows_loaded=f.c.rows_loaded - 1, rows_rejected=f.c.rows_rejected + 1)
        )


def _header_of(conn: sa.Connection, file_id: int, sheet: str, field_name: str) -> str | None:
    s = schema.intake_sheet
    headers = conn.execute(sa.select(s.c.headers).where(s.c.file_id == file_id, s.c.sheet == sheet)).scalar()
    return json.loads(headers).get(field_name) if headers else None


def _upsert_cases(conn: sa.Connection, keys: set[str]) -> None:
    """Rebuild the descriptive columns of touched cases from all their records (latest wins)."""
    if not keys:
        return
    r = schema.source_record
    rows = conn.execute(
        sa.select(r)
        .where(r.c.entity_key.in_(sorted(keys)), r.c.entity_kind == "case")
        .order_by(r.c.record_id)
    ).all()
    by_key: dict[str, list[sa.Row]] = defaultdict(list)
    for rec in rows:
        by_key[rec.entity_key].append(rec)
    k = schema.petition_case
    present = set(conn.execute(sa.select(k.c.case_key).where(k.c.case_key.in_(sorted(by_key)))).scalars())
    inserts, updates = [], []
    for key, recs in sorted(by_key.items()):
        attrs = [json.loads(rec.attrs) for rec in recs]
        values = {
            "case_number": recs[0].case_number,
            "petitioner_name": _latest([rec.person_name for rec in recs]),
            "petitioner_id_number": _latest([rec.id_number for rec in recs]),
            "town": _latest([rec.town for rec in recs]),
            **{
                f: _latest([a.get(f) for a in attrs])
                for f in (
                    "topic",
                    "summary",
                    "responsible_unit",
                    "work_team",
                    "resolution_plan",
                    "stabilisation_measures",
                )
            },
            "registered_on": _as_date(_latest([a.get("registered_date") for a in attrs])),
        }
        if key in present:
            updates.append((key, {c: v for c, v in values.items() if v is not None}))
        else:
            inserts.append({"case_key": key, **values, "status": "open"})
    insert_many(conn, k, inserts)
    _bulk_update(conn, k, "case_key", updates)


def _as_date(value: object):
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


# --- reviewers: the CLI and the review workbook --------------------------------------------------------
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
    if text is None:
        return None
    s = linkage.norm_name(text)
    if not s:
        return None
    s = s.lower()
    if s in _SAME_WORDS:
        return "same"
    if s in _DIFFERENT_WORDS:
        return "different"
    return None


class ReviewError(Exception):
    pass


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


def pending_reviews(conn: sa.Connection, include_decided: bool = False) -> list[sa.Row]:
    lr = schema.link_review
    q = sa.select(lr).order_by(lr.c.review_id)
    if not include_decided:
        q = q.where(lr.c.status == "pending")
    return conn.execute(q).all()


_REVIEW_COLUMNS = (
    "编号",
    "类别",
    "原因",
    "匹配概率",
    "A 名单",
    "A 行号",
    "A 姓名",
    "A 身份证号",
    "A 镇街",
    "A 村(居)",
    "A 电话",
    "B 名单",
    "B 行号",
    "B 姓名",
    "B 身份证号",
    "B 镇街",
    "B 村(居)",
    "B 电话",
    "依据",
    "核实结论",
    "核实人",
    "备注",
)
_REVIEW_WIDTHS = (8, 8, 26, 10, 24, 8, 10, 22, 12, 14, 15, 24, 8, 10, 22, 12, 14, 15, 50, 14, 10, 20)
_KIND_LABEL = {"household": "家庭", "cadre": "干部"}
_MAX_REVIEW_FILE_BYTES = 20 * 1024 * 1024


def evidence_text(row: sa.Row) -> str:
    ev = json.loads(row.evidence or "{}")
    if row.reason == "id_name_conflict":
        names = "、".join(ev.get("names", []))
        return f"同一身份证号写作两个姓名：{names}" + ("（同音）" if ev.get("pinyin_equal") else "")
    if row.reason == "name_village_id_conflict":
        return f"{ev.get('name', '')} 在 {ev.get('town', '')}{ev.get('village') or ''} 有两个身份证号"
    parts = []
    for comp in linkage.COMPARISONS:
        item = ev.get(comp)
        if item and item.get("level") != "null":
            parts.append(f"{item['label']}({item['weight']:+.1f})")
    return "；".join(parts)


def _review_cells(row: sa.Row) -> list[object]:
    a, b = json.loads(row.display_l), json.loads(row.display_r)

    def side(d: dict) -> list[object]:
        where = f"{d.get('roster_label', '')} {d.get('file', '')}".strip()
        return [
            where,
            d.get("row"),
            d.get("name"),
            d.get("id_number"),
            d.get("town"),
            d.get("village"),
            d.get("phone"),
        ]

    prob = None if row.match_probability is None else round(float(row.match_probability), 4)
    return [
        row.review_id,
        _KIND_LABEL.get(row.entity_kind, row.entity_kind),
        REVIEW_REASONS.get(row.reason, row.reason),
        prob,
        *side(a),
        *side(b),
        evidence_text(row),
        None,
        None,
        None,
    ]


def export_review_workbook(eng: sa.Engine, review_dir: Path) -> Path | None:
    """``<review_dir>/待核实.xlsx``: the pending queue (masked), with a 核实结论 column to fill in.

    Written atomically; left alone while Excel holds it open (a ``~$`` lock file beside it)."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    review_dir = Path(review_dir)
    review_dir.mkdir(parents=True, exist_ok=True)
    target = review_dir / REVIEW_WORKBOOK
    if (review_dir / ("~$" + REVIEW_WORKBOOK)).exists():
        log.info("link: %s is open in Excel; not rewritten tonight", REVIEW_WORKBOOK)
        return None
    with eng.connect() as conn:
        rows = pending_reviews(conn)
    wb = Workbook()
    ws = wb.active
    ws.title = "待核实"

    def put(r: int, c: int, value: object, sheet=None, **style: object) -> None:
        cell = (sheet or ws).cell(r, c)
        if isinstance(value, str):
            cell.value = defuse(mask_text(value))
            cell.data_type = "s"
        else:
            cell.value = value
        for k, v in style.items():
            setattr(cell, k, v)

    for c, name in enumerate(_REVIEW_COLUMNS, 1):
        put(1, c, name, font=Font(bold=True), fill=PatternFill("solid", fgColor="DDEBF7"))
        ws.column_dimensions[get_column_letter(c)].width = _REVIEW_WIDTHS[c - 1]
    for i, row in enumerate(rows, 2):
        for c, value in enumerate(_review_cells(row), 1):
            put(i, c, value, alignment=Alignment(wrap_text=c == 19, vertical="top"))
    decision_col = get_column_letter(_REVIEW_COLUMNS.index("核实结论") + 1)
    dv = DataValidation(type="list", formula1='"同一,不同"', allow_blank=True)
    ws.add_data_validation(dv)
    dv.add(f"{decision_col}2:{decision_col}{max(len(rows) + 1, 2) + 200}")
    ws.freeze_panes = "B2"
    info = wb.create_sheet("说明")
    for r, text in enumerate(
        (
            "待核实记录：模型或规则无法确定两条记录是否为同一户（同一人），请核实。",
            "在“核实结论”一列填写：同一（是同一户/同一人）或 不同（不是同一户/同一人）；“核实人”填写您的姓名。",
            "填好后保存本文件（或另存为任意名称放在本文件夹），当晚处理时生效，模型不会推翻人工结论。",
            "身份证号、电话已脱敏；“依据”一列为各字段的比对结果和权重（正数支持同一，负数支持不同）。",
            f"共 {len(rows)} 条待核实。",
        ),
        1,
    ):
        put(r, 1, text, sheet=info)
    info.column_dimensions["A"].width = 100
    fd, tmp = tempfile.mkstemp(prefix=".待核实-", suffix=".xlsx", dir=review_dir)
    os.close(fd)
    try:
        wb.save(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def read_review_workbooks(conn: sa.Connection, review_dir: Path | None) -> dict:
    """Decisions filled into workbooks in ``review_dir``: recorded for pending reviews (a review
    already decided keeps its decision: change it with the CLI). Returns counts."""
    out = {"files": 0, "decisions": 0, "unreadable": 0, "not_understood": 0}
    if review_dir is None or not Path(review_dir).is_dir():
        return out
    from openpyxl import load_workbook

    lr = schema.link_review
    pending = {x.review_id for x in conn.execute(sa.select(lr.c.review_id).where(lr.c.status == "pending"))}
    for path in sorted(Path(review_dir).glob("*.xlsx")):
        if (
            path.name.startswith(("~$", "."))
            or path.is_symlink()
            or path.stat().st_size > _MAX_REVIEW_FILE_BYTES
        ):
            continue
        if (path.parent / ("~$" + path.name)).exists():
            continue  # still open in Excel
        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - a broken workbook must not stop the night
            out["unreadable"] += 1
            continue
        out["files"] += 1
        try:
            ws = wb["待核实"] if "待核实" in wb.sheetnames else wb.worksheets[0]
            rows = ws.iter_rows(values_only=True)
            header = next(rows, None) or ()
            names = [linkage.norm_name(h) for h in header]
            try:
                i_id, i_dec = names.index("编号"), names.index("核实结论")
            except ValueError:
                continue
            i_by = names.index("核实人") if "核实人" in names else None
            i_note = names.index("备注") if "备注" in names else None
            for values in rows:
                if values is None or len(values) <= max(i_id, i_dec):
                    continue
                try:
                    review_id = int(str(values[i_id]).strip())
                except (TypeError, ValueError):
                    continue
                if values[i_dec] in (None, ""):
                    continue
                decision = parse_decision(values[i_dec])
                if decision is None:
                    out["not_understood"] += 1
                    continue
                if review_id not in pending:
                    continue
                by = values[i_by] if i_by is not None and i_by < len(values) and values[i_by] else None
                note = values[i_note] if i_note is not None and i_note < len(values) else None
                conn.execute(
                    lr.update()
                    .where(lr.c.review_id == review_id, lr.c.status == "pending")
                    .values(
                        status="decided",
                        decision=decision,
                        decided_at=now(),
                        decided_by=(f"{by}（{path.name}）" if by else f"workbook:{path.name}")[:128],
                        note=str(note)[:500] if note else None,
                    )
                )
                pending.discard(review_id)
                out["decisions"] += 1
        finally:
            wb.close()
    return out
