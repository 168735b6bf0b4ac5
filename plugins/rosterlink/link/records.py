"""The rows the link stage works on, and what it knows and changes about one entity kind."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field

from rosterlink.link.keys import KeyIssuer

# records that establish an entity, and records that only change a known one
ESTABLISHING_EVENTS = frozenset({None, "add", "join", "open", "closed"})


@dataclass(slots=True)
class Record:
    """One loaded row (``source_record``) of a household or cadre roster."""

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
    attrs: str | None  # JSON; held only where the stage reads it (cadres, households without a usable ID)
    key: str | None  # the key the row had when the night started
    pending: bool
    norm: str | None = None
    vkey: str | None = None

    @property
    def establishing(self) -> bool:
        return self.event in ESTABLISHING_EVENTS


def shape(rec: Record) -> tuple[Hashable, ...]:
    """The row's identity fields: two rows of one shape are the same row written twice."""
    return (rec.norm, rec.id_number, rec.town, rec.vkey, rec.phone)


@dataclass
class Kind:
    """Everything the night knows and changes about one entity kind (households, or cadres)."""

    kind: str
    recs: dict[int, Record]
    members: dict[str, set[int]]
    by_id: dict[str, set[str]]
    keys: KeyIssuer
    moved: dict[int, str] = field(default_factory=dict)  # already-linked row -> its new key
    assigned: dict[int, tuple[str, str, float | None]] = field(default_factory=dict)  # new row -> key
    merges: list[dict] = field(default_factory=list)
    retired: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)
    orphaned: list[Record] = field(default_factory=list)
    split_rows: set[int] = field(default_factory=set)
    stats: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def pending(self) -> list[Record]:
        """The rows loaded since the last night (no key yet), in record order."""
        return [rec for rec in self.recs.values() if rec.pending]

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

    def assign(self, rec: Record, key: str, method: str, probability: float | None) -> None:
        """A new row placed under ``key`` by ``method`` (id, model, name, new)."""
        self.assigned[rec.record_id] = (key, method, probability)
        self.members.setdefault(key, set()).add(rec.record_id)
        if rec.id_number:
            self.by_id.setdefault(rec.id_number, set()).add(key)
        self.touched.add(key)
        self.stats[f"rows_{method}"] += 1
