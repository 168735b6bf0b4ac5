"""What the night's workbooks share: labels, the listing cap, and the book they are written in."""

from __future__ import annotations

import datetime as dt
from functools import partial

from rosterlink.core.workbook import Book, midnight
from rosterlink.ops import faults

TARGET_LABELS = {"household": "家庭", "case": "信访案件"}
UNKNOWN_TOWN_SHEET = "镇街未明确"

# Why a pair was made (pairing.made_reason) or ended (pairing.end_reason). People read Chinese only:
# an unknown code (a new one in the pairing stage) is shown as 其他原因, never as the code.
REASON_LABELS = {
    # made (pairing.py: new_target, cadre_left, pinned)
    "new_target": "新纳入结对对象",
    "cadre_left": "原结对干部调离或不再符合条件，重新结对",
    "pinned": "组织部固定结对",
    "merged": "与另一户核实为同一户，原结对干部继续结对",
    # ended (pairing.py: cadre_departed, household_exited, case_closed, target_missing,
    # leader_not_county, pin_changed, superseded)
    "household_exited": "家庭已退出/脱困",
    "cadre_departed": "干部调离或退休",
    "case_closed": "案件已销号",
    "target_missing": "结对对象已不在名册中",
    "leader_not_county": "包案领导已不是县级干部",
    "pin_changed": "固定结对变更",
    "superseded": "同一对象重复结对，只保留一条",
    "household_merged": "与另一户核实为同一户，合并后结对转入保留的户",
}


def reason_label(code: str | None) -> str:
    if not code:
        return ""
    return REASON_LABELS.get(code, "其他原因")


SHEET_LIST_MAX = 20_000
"""Rows of a listing sheet that may grow with the whole register: the new pairs of the pairing
summary's 本次变化 and the overdue households of 走访预警 (the summary's and each town workbook's). A
night with more (the first night of a province: a million new pairs, and nobody visited yet) lists
this many, then says where the rest are: the change log lists every change, and the town workbooks
mark every household's pair and visit state. Ended pairs, help outside the band and public funds are
always listed in full. Read when a sheet is written (tests lower it)."""


def new_book(stamp: dt.datetime) -> Book:
    """A workbook of the night's exports: the ``export.write`` failpoint fires when it is complete
    on disk, before it replaces the last one (the full-disk and kill tests)."""
    return Book(stamp=stamp, before_replace=partial(faults.point, "export.write"))


def night_book(as_of: dt.date) -> Book:
    """A workbook written for the night of ``as_of`` (created at its midnight)."""
    return new_book(midnight(as_of))
