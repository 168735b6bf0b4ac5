"""The rows the link stage works on, and what it knows and changes about one entity kind."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TypeVar

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
    # key -> its rows, and ID number -> the keys holding it: lists without repeats (most hold one
    # item, and a list of one is a third of the size of a set of one: there is one per household)
    members: dict[str, list[int]]
    by_id: dict[str, list[str]]
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
            discard(self.members.get(old), record_id)
            self.touched.add(old)
        add_once(self.members, key, record_id)
        self.moved[record_id] = key
        self.touched.add(key)
        rec = self.recs[record_id]
        if rec.id_number:
            add_once(self.by_id, rec.id_number, key)
            if old and not any(self.recs[m].id_number == rec.id_number for m in self.members.get(old, ())):
                discard(self.by_id[rec.id_number], old)

    def merge_keys(self, survivor: str, retired: str) -> None:
        for record_id in sorted(self.members.get(retired, ())):
            self.move(record_id, survivor)
        self.members.pop(retired, None)
        self.retired.add(retired)
        self.touched.discard(retired)
        for keys in self.by_id.values():
            if retired in keys:
                keys.remove(retired)
                if survivor not in keys:
                    keys.append(survivor)

    def assign(self, rec: Record, key: str, method: str, probability: float | None) -> None:
        """A new row placed under ``key`` by ``method`` (id, model, name, new)."""
        self.assigned[rec.record_id] = (key, method, probability)
        add_once(self.members, key, rec.record_id)
        if rec.id_number:
            add_once(self.by_id, rec.id_number, key)
        self.touched.add(key)
        self.stats[f"rows_{method}"] += 1


_K = TypeVar("_K")
_V = TypeVar("_V")


def add_once(lists: dict[_K, list[_V]], key: _K, value: _V) -> None:
    """``value`` in the list of ``key`` (made when missing), once."""
    held = lists.get(key)
    if held is None:
        lists[key] = [value]
    elif value not in held:
        held.append(value)


def discard(held: list[_V] | None, value: _V) -> None:
    if held is not None and value in held:
        held.remove(value)
