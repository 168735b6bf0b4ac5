"""Roster definitions and district configuration, loaded from data files.

``config/rosters.json`` holds the departments, canonical fields with their header aliases,
enumerations (rank, adjustment type, ...) and which fields make up each roster kind.
``config/district.json`` holds the district (towns, ID region codes). Both can be replaced by
pointing ``ROSTERLINK_CONFIG_DIR`` at a folder holding files of the same names, so a new header
variant is one line of JSON, never code.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from rosterlink.core.paths import PACKAGE_CONFIG

if TYPE_CHECKING:
    from collections.abc import Iterable


def config_dir() -> Path:
    return Path(os.environ.get("ROSTERLINK_CONFIG_DIR") or PACKAGE_CONFIG)


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str  # person_name | id_number | town | text | int | money | phone | date | code | enum:<name>
    label: str  # the header a clerk would expect to see (Chinese)
    aliases: tuple[str, ...]
    minor: bool = False  # data about a child: never shown in any output
    adult: bool = False  # an ID number of a grown-up (a head, guardian, cadre): under 18 refused
    max_length: int | None = None  # the most characters the warehouse keeps (a longer value: row rejected)

    @property
    def enum(self) -> str | None:
        return self.type.split(":", 1)[1] if self.type.startswith("enum:") else None


@dataclass(frozen=True)
class RosterSpec:
    kind: str
    label: str
    department: str
    entity_kind: str  # household | cadre | case | pin
    fields: tuple[str, ...]
    required: tuple[str, ...]
    signature: tuple[str, ...]
    category: str | None = None
    person: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class District:
    name: str
    region_code: str
    known_region_codes: tuple[str, ...]
    towns: tuple[str, ...]
    reference_counts: dict[str, int]


@dataclass(frozen=True)
class Catalogue:
    departments: dict[str, dict]
    fields: dict[str, FieldSpec]
    rosters: dict[str, RosterSpec]
    enums: dict[str, dict[str, tuple[str, ...]]]
    # codes files are recorded under that are no department of their own (``unsorted``: a file
    # found outside the department folders), with their labels
    other_departments: dict[str, dict] = field(default_factory=dict)

    def department_label(self, code: str) -> str:
        """The Chinese label people see for a department code (``unsorted`` included); the code
        itself only for a code the catalogue does not know."""
        known = self.departments.get(code) or self.other_departments.get(code) or {}
        return str(known.get("label", code))

    def rosters_of(self, department: str) -> list[RosterSpec]:
        return [self.rosters[k] for k in self.departments[department]["rosters"]]

    def enum_lookup(self, enum: str) -> dict[str, str]:
        """Map every accepted spelling (header-normalised) to its canonical code."""
        return {header_key(word): code for code, words in self.enums[enum].items() for word in words}


_DECORATION = re.compile(r"[\s*＊]|（必填）|\(必填\)|必填|：|:")


def header_key(text: object) -> str:
    """Normalise a header cell for alias matching.

    NFKC folds full-width brackets and letters; inner ASCII and full-width spaces, ``*`` marks,
    "(必填)" marks and trailing colons are removed. ``姓 名`` and ``*姓名(必填)`` both give ``姓名``.
    """
    if text is None:
        return ""
    value = unicodedata.normalize("NFKC", str(text))
    return _DECORATION.sub("", value).strip()


@lru_cache(maxsize=4)
def _load_catalogue(directory: str) -> Catalogue:
    data = json.loads((Path(directory) / "rosters.json").read_text(encoding="utf-8"))
    fields = {
        name: FieldSpec(
            name=name,
            type=f["type"],
            label=f["label"],
            aliases=tuple(f["aliases"]),
            minor=bool(f.get("minor", False)),
            adult=bool(f.get("adult", False)),
            max_length=int(f["max_length"]) if f.get("max_length") else None,
        )
        for name, f in data["fields"].items()
    }
    rosters = {
        kind: RosterSpec(
            kind=kind,
            label=r["label"],
            department=r["department"],
            entity_kind=r["entity_kind"],
            fields=tuple(r["fields"]),
            required=tuple(r["required"]),
            signature=tuple(r["signature"]),
            category=r.get("category"),
            person=dict(r.get("person", {})),
        )
        for kind, r in data["rosters"].items()
    }
    enums = {name: {code: tuple(words) for code, words in m.items()} for name, m in data["enums"].items()}
    return Catalogue(
        departments=data["departments"],
        fields=fields,
        rosters=rosters,
        enums=enums,
        other_departments=data.get("other_departments", {}),
    )


@lru_cache(maxsize=4)
def _load_district(directory: str) -> District:
    d = json.loads((Path(directory) / "district.json").read_text(encoding="utf-8"))
    return District(
        name=d["name"],
        region_code=d["region_code"],
        known_region_codes=tuple(d["known_region_codes"]),
        towns=tuple(d["towns"]),
        reference_counts=dict(d.get("reference_counts", {})),
    )


def catalogue() -> Catalogue:
    return _load_catalogue(str(config_dir()))


def district() -> District:
    return _load_district(str(config_dir()))


def town_order(towns: Iterable[str | None]) -> list[str | None]:
    """The towns given, in the district's order; towns it does not know after them (sorted), then
    None (town not known)."""
    present = set(towns)
    known = district().towns
    rest = sorted(t for t in present if t not in known and t is not None)
    return [t for t in known if t in present] + rest + ([None] if None in present else [])


def town_key(town: str | None) -> tuple[int, str]:
    """A sort key putting towns in the district's order, unknown towns after them, None last."""
    known = district().towns
    if town in known:
        return (known.index(town), "")
    return (len(known) + (1 if town is None else 0), town or "")


def load_json(name: str) -> dict:
    """Another configuration file of the config folder (``pairing.json``, ``linkage.json`` ...)."""
    return json.loads((config_dir() / name).read_text(encoding="utf-8"))


DEPARTMENTS = ("civil_affairs", "womens_federation", "organization", "petition", "visits")


# --- labels people read (dashboard, workbooks) --------------------------------------------------------
CATEGORY_LABELS = {"hardship": "特困家庭", "orphan": "失亲儿童家庭", "old_member": "建国前老党员"}
RANK_LABELS = {"county": "县级", "section": "科级", "ordinary": "一般干部"}
# the five ones (五个一) every key petition case must have: field of petition_case -> label
FIVE_ONES = (
    ("leader", "包案领导"),
    ("work_team", "工作专班"),
    ("resolution_plan", "化解方案"),
    ("responsible_unit", "责任单位"),
    ("stabilisation_measures", "稳控措施"),
)
