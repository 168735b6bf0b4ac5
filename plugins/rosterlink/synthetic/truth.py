"""What a correct pipeline must make of the synthetic files: :class:`Truth` and its parts.

:data:`BAD_KINDS` (rows that must be rejected) and :data:`WARNING_KINDS` (rows that load with a
flagged value) name each deliberate defect and the reason codes a pipeline may give it; the writers
(:mod:`rosterlink.synthetic.writers`) record every file they write as a :class:`FileTruth`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

# What each bad-row kind is, and the reason codes (config/messages.json) a pipeline may give it.
BAD_KINDS: dict[str, tuple[str, ...]] = {
    "numeric_id": ("id_numeric_cell",),  # 18 digits in a number cell: last digits lost
    "numeric_id_text": ("id_numeric_cell", "id_bad_chars"),  # "3.70406E+17" from a CSV export
    "bad_checksum": ("id_bad_checksum",),
    "bad_length": ("id_bad_length",),
    "bad_birthdate": ("id_bad_birthdate",),
    "town_outside": ("town_unknown",),
    "empty_name": ("required_missing", "name_invalid"),
    "formula_name": ("name_invalid",),
    "missing_required": ("required_missing",),
    "bad_date": ("date_invalid",),
}

# Defects on rows that still load (a true entity; the value is dropped or kept, and flagged): an
# optional field that cannot be normalised, an unusual ID region code.
WARNING_KINDS: dict[str, tuple[str, ...]] = {
    "phone_invalid": ("phone_invalid",),
    "region_unknown": ("id_region_unknown",),
    "town_outside": ("town_unknown",),  # an optional town field (cadre 联系镇街)
    "bad_date": ("date_invalid",),  # an optional date (case 登记时间)
}


class HouseholdCounts(TypedDict):
    hardship: int
    orphan: int
    old_member: int
    total: int


class CaseCounts(TypedDict):
    open: int
    closed: int
    total: int


class Counts(TypedDict):
    """Entity counts after a night."""

    households: HouseholdCounts
    orphan_children: int
    cadres: dict[str, int]  # county, section, ordinary, total
    cases: CaseCounts


class ActiveHouseholds(TypedDict):
    hardship: list[str]
    orphan: list[str]
    old_member: list[str]


class Active(TypedDict):
    """Sorted ID lists after a night: households by category (head or guardian ID), cadres by rank."""

    households: ActiveHouseholds
    cadres: dict[str, list[str]]
    open_cases: list[str]
    closed_cases: list[str]


class Changes(TypedDict):
    """What a night's files change (empty on night 1)."""

    exited_household_ids: list[str]
    exit_types: dict[str, str]  # head ID -> 退出 | 脱困
    new_household_ids: list[str]
    departed_cadre_ids: list[str]
    new_cadre_ids: list[str]
    new_cadre_ranks: dict[str, str]  # cadre ID -> rank code
    closed_case_numbers: list[str]


class Duplicate(TypedDict):
    """A good row repeating an entity listed earlier in the same sheet."""

    sheet: str
    row: int
    first_row: int


@dataclass
class BadRow:
    """A row a correct pipeline must reject (or, in ``warning_rows``, load with a flagged value)."""

    sheet: str  # sheet name (the file's stem for CSV)
    row: int  # Excel row number as the clerk sees it (CSV: line number, header = line 1)
    field: str  # canonical field name
    header: str  # the header as written in the file
    kind: str  # one of BAD_KINDS
    codes: list[str]  # reason codes a correct pipeline may give the row (any one of them)


@dataclass
class SheetInfo:
    """Where a sheet's header, data, blank and footer rows are."""

    name: str
    header_row: int  # Excel row (CSV line) of the header; rows above it are title/filler rows
    rows: int  # data rows written in this sheet (good + bad, blank rows and footers excluded)
    blank_rows: list[int] = field(default_factory=list)  # empty rows below the header
    footer_rows: list[int] = field(default_factory=list)  # 合计/制表人 rows below the data


@dataclass
class FileTruth:
    """One written file and what a correct pipeline makes of it."""

    path: str  # relative to out_dir, POSIX separators
    department: str
    roster: str  # roster kind (config/rosters.json)
    format: str  # xlsx | xls | csv
    encoding: str | None  # csv only: "gbk" or "utf-8-sig"
    sheets: list[SheetInfo]
    rows: int  # data rows written (title, header, blank and footer rows excluded)
    good_rows: int  # rows that must pass validation (rows - len(bad_rows))
    duplicate_rows: int  # good rows repeating an entity already listed earlier in the same file
    entities: int  # distinct entities among the good rows (households, families, cadres, cases, changes)
    bad_rows: list[BadRow]
    duplicates: list[Duplicate] = field(default_factory=list)  # {sheet, row, first_row}: same entity twice
    warning_rows: list[BadRow] = field(default_factory=list)  # good rows with a flagged value (WARNING_KINDS)


@dataclass
class Truth:
    """What a correct pipeline must make of the files (JSON: :meth:`to_json`).

    ``counts`` and ``active`` are the state *after* the night (cumulative); ``changes`` is what
    this night's files change (empty lists on night 1). Household IDs are the head's (hardship,
    old member) or the guardian's (orphan) canonical 18-digit ID; 15-digit IDs appear upgraded.
    """

    seed: int
    scale: float
    night: int
    fill_date: str
    district: str
    files: dict[str, FileTruth]
    counts: Counts
    active: Active
    changes: Changes
    namesakes: list[list[str]] = field(default_factory=list)  # distinct people sharing a name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Truth:
        files = {
            path: FileTruth(
                **{
                    **f,
                    "sheets": [SheetInfo(**s) for s in f["sheets"]],
                    "bad_rows": [BadRow(**b) for b in f["bad_rows"]],
                    "warning_rows": [BadRow(**b) for b in f.get("warning_rows", [])],
                }
            )
            for path, f in data["files"].items()
        }
        return cls(**{**data, "files": files})

    @classmethod
    def load(cls, path: Path) -> Truth:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
