"""The follow-through programme's settings (``config/followup.json``) and vocabulary: the
first-visit deadline, the help band, the words that say where help money came from and which
department an opinion is for, and how many problems a cell names."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rosterlink.core.spec import header_key, load_json

if TYPE_CHECKING:
    from collections.abc import Mapping

IN_PERSON, PHONE = "in_person", "phone"
KIND_LABELS = {IN_PERSON: "入户走访", PHONE: "电话联系"}
HELP_KIND_LABELS = {"in_kind": "实物", "money": "资金"}
SOURCE_LABELS = {"own": "个人", "public": "公款/财政/集体", "unstated": "未填写", "other": "其他"}
FLAG_LABELS = {"above": "高于标准", "below": "低于标准"}


@dataclass(frozen=True)
class FollowupConfig:
    festival_deadlines: tuple[dt.date, ...]
    min_days_after_pairing: int
    fallback_days: int
    help_min: float
    help_max: float
    public_words: tuple[str, ...]
    own_words: tuple[str, ...]
    no_problem_words: tuple[str, ...]
    default_department: str
    topics: tuple[tuple[str, tuple[str, ...]], ...]  # (department, words), first match wins

    @classmethod
    def from_mapping(cls, d: Mapping) -> FollowupConfig:
        first, band, sources, depts = d["first_visit"], d["help_band"], d["help_sources"], d["departments"]
        return cls(
            festival_deadlines=tuple(
                sorted(dt.date.fromisoformat(v) for v in first["festival_deadlines"].values())
            ),
            min_days_after_pairing=int(first.get("min_days_after_pairing", 14)),
            fallback_days=int(first.get("fallback_days", 60)),
            help_min=float(band["min"]),
            help_max=float(band["max"]),
            public_words=tuple(sources["public"]),
            own_words=tuple(sources["own"]),
            no_problem_words=tuple(header_key(w) for w in d.get("no_problem_words", [])),
            default_department=str(depts["default"]),
            topics=tuple((t["department"], tuple(t["words"])) for t in depts["topics"]),
        )

    @classmethod
    def load(cls) -> FollowupConfig:
        return cls.from_mapping(load_json("followup.json"))

    def deadline(self, paired_on: dt.date) -> dt.date:
        """The first visit in person is due by the first configured Mid-Autumn deadline at least
        ``min_days_after_pairing`` days after the household was first paired; a household paired
        after the last configured festival has ``fallback_days``."""
        earliest = paired_on + dt.timedelta(days=self.min_days_after_pairing)
        for day in self.festival_deadlines:
            if day >= earliest:
                return day
        return paired_on + dt.timedelta(days=self.fallback_days)

    def source_kind(self, text: str | None) -> str:
        """own | public | unstated | other, from the words of 资金来源; public wins over own."""
        if not text or not str(text).strip():
            return "unstated"
        value = str(text)
        if any(w in value for w in self.public_words):
            return "public"
        if any(w in value for w in self.own_words):
            return "own"
        return "other"

    def department(self, topic: str | None, text: str | None) -> str:
        """The department that can act on an opinion: by its topic, else by words of the opinion."""
        for value in (topic, text):
            if not value:
                continue
            for dept, words in self.topics:
                if dept in value or any(w in value for w in words):
                    return dept
        return self.default_department

    def is_nothing(self, text: str | None) -> bool:
        return not text or header_key(text) in self.no_problem_words


_NUMBERING = re.compile(r"（\d+）|\(\d+\)|\d+[、．]|\d+\.(?!\d)|[①②③④⑤⑥⑦⑧⑨⑩]")
_SEPARATORS = re.compile(r"[；;。\n\r]+")


def count_items(text: str | None, cfg: FollowupConfig) -> int:
    """How many problems a cell names: a plain number is the count; else items separated by
    ``；`` ``。`` line breaks or numbering (``1、`` ``（2）`` ``③``); 无/暂无 is none."""
    if cfg.is_nothing(text):
        return 0
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    items = [p.strip(" ,，、") for p in _SEPARATORS.split(_NUMBERING.sub(";", value))]
    return sum(1 for p in items if p and not cfg.is_nothing(p))
