"""The night's workbooks, the last stage: each module writes one kind, all through the one writer
(:mod:`rosterlink.core.workbook`).

- :mod:`.feedback`: ``<intake_dir>/<department>/feedback/<file stem>.结果.xlsx`` for every file of the
  night (汇总, 错误明细, 提示).
- :mod:`.town_books`: ``<export_dir>/分镇结对名单/<town>_结对名单.xlsx``, one per town, only that town's
  households, pairs, key cases and follow-through warnings.
- :mod:`.pairing_book`: ``<export_dir>/结对汇总_<YYYYMMDD>.xlsx``, the district's summary (汇总 per town,
  重点信访案件, 本次变化, and the follow-through sheets of :mod:`.followup_sheets`).
- :mod:`.change_log`: ``<export_dir>/变动日志_<YYYYMMDD>.xlsx``, pairs ended and made on the night.
- :mod:`.opinions`: ``<export_dir>/意见建议_<YYYYMMDD>/<department>.xlsx``, opinions heard on visits.

:func:`write_all` writes them all (the CLI's and the benchmarks' way; the DAG runs the three
writers as parallel tasks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from rosterlink.export.change_log import write_change_log
from rosterlink.export.feedback import write_feedback
from rosterlink.export.opinions import write_opinion_workbooks
from rosterlink.export.pairing_book import write_pairing_workbook, write_pairing_workbooks

if TYPE_CHECKING:
    import datetime as dt

    import sqlalchemy as sa

    from rosterlink.core.settings import Settings

__all__ = [
    "NightExports",
    "write_all",
    "write_change_log",
    "write_feedback",
    "write_opinion_workbooks",
    "write_pairing_workbook",
    "write_pairing_workbooks",
]


class NightExports(TypedDict):
    """The paths of the night's workbooks."""

    feedback: list[str]
    pairing: str  # the summary workbook
    towns: list[str]  # the town workbooks written tonight (those whose content changed)
    change_log: str
    opinions: list[str]


def write_all(eng: sa.Engine, settings: Settings, as_of: dt.date, file_ids: list[int]) -> NightExports:
    """The night's exports: the feedback, town, pairing summary, change log and opinions workbooks."""
    feedback = write_feedback(eng, settings, file_ids)
    pairing, towns = write_pairing_workbooks(eng, settings, as_of)
    change_log = write_change_log(eng, settings, as_of)
    opinions = write_opinion_workbooks(eng, settings, as_of)
    return {
        "feedback": [str(p) for p in feedback],
        "pairing": str(pairing),
        "towns": [str(p) for p in towns.written.values()],
        "change_log": str(change_log),
        "opinions": [str(p) for p in opinions],
    }
