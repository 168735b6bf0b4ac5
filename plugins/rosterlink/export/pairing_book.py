"""The pairing summary workbook: ``<export_dir>/结对汇总_<YYYYMMDD>.xlsx``, the district's view.

Sheets: 汇总 (per town: households, pairs, the share of cadres from the same town, the night's
changes, the town's workbook and the date its data is as of, then every household left unpaired),
重点信访案件 (the five ones of each open key case), 本次变化 (pairs made and ended tonight), then
走访帮扶 and 走访预警 (:mod:`rosterlink.export.followup_sheets`). Each town's pairs are in its own
workbook (:mod:`rosterlink.export.town_books`), not here: a province's thousand towns are a
thousand small workbooks, not a thousand sheets.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink.core.spec import RANK_LABELS
from rosterlink.core.workbook import (
    BOLD,
    GREEN,
    GREY,
    HEADER,
    PERCENT,
    PLAIN,
    RED,
    TITLE,
    YELLOW,
    Book,
    date_tag,
)
from rosterlink.export import common, town_books
from rosterlink.export.common import TARGET_LABELS, night_book, reason_label
from rosterlink.export.followup_sheets import followup_sheets
from rosterlink.export.pairs import ENDED, NEW, Pair, changes, masked_target, read_pairs
from rosterlink.export.town_books import LINE_COLUMNS, Figures, Town

if TYPE_CHECKING:
    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

SUMMARY_WIDTHS = (14, 12, 12, 12, 14, 12, 12, 12, 14, 28, 14)


def _summary_sheet(
    book: Book, towns: dict[str | None, Town], books: dict[str | None, tuple[str, dt.date]], as_of: dt.date
) -> None:
    """汇总: one line per town (its figures, its workbook and the date that workbook's data is as of),
    the district's total, then every active household left unpaired."""
    sheet = book.sheet("汇总", SUMMARY_WIDTHS, freeze=False)
    sheet.row((f"结对汇总（截至{as_of:%Y年%m月%d日}）",), TITLE)
    sheet.row((*LINE_COLUMNS, "镇街分册", "分册数据截至"), HEADER)
    total = Figures()
    for name, t in towns.items():
        if not (t.households or t.pairs):  # a town with key cases only: in 重点信访案件
            continue
        own = town_books.figures(t, as_of)
        file, since = books.get(name, (None, None))
        sheet.row((*own.line(t.name), file, since), RED if own.unpaired else PLAIN, styles={4: PERCENT})
        total.add(own)
    sheet.row(total.line("合计"), BOLD, styles={4: PERCENT})
    sheet.row(())
    categories = {k: v for t in towns.values() for k, v in t.categories.items()}
    town_books.unpaired_list(sheet, total.unpaired, categories)
    sheet.row(
        (
            f"说明：各镇街的结对名单在“{town_books.FOLDER}”文件夹中，一个镇街一个文件，只含本镇街的数据；"
            "某镇街数据没有变化的夜间不重写其分册，“分册数据截至”为其数据最近一次变化的日期。"
            "身份证号、电话已脱敏。",
        ),
    )


CHANGE_COLUMNS = (
    "变化",
    "对象类型",
    "镇街",
    "村(居)",
    "对象",
    "身份证号/案件编号",
    "干部姓名",
    "工作单位",
    "职级",
    "结对起始日期",
    "结束日期",
    "结对原因",
    "结束原因",
)
CHANGE_WIDTHS = (10, 10, 12, 16, 10, 22, 10, 26, 10, 13, 13, 28, 24)


def _change_sheet(book: Book, pairs: list[Pair], as_of: dt.date) -> None:
    sheet = book.sheet("本次变化", CHANGE_WIDTHS, columns=CHANGE_COLUMNS)
    changed = changes(pairs, as_of)
    new_total = sum(1 for q in changed if q.change(as_of) == NEW)
    new_shown = 0
    for q in changed:
        change = q.change(as_of)
        ended = change == ENDED
        if not ended:
            if new_shown >= common.SHEET_LIST_MAX:
                continue
            new_shown += 1
        sheet.row(
            (
                change,
                TARGET_LABELS.get(q.target_kind, q.target_kind),
                q.town,
                q.village,
                q.name,
                masked_target(q),
                q.cadre_name,
                q.cadre_unit,
                RANK_LABELS.get(q.cadre_rank or "", q.cadre_rank),
                q.valid_from,
                q.valid_to,
                reason_label(q.made_reason),
                reason_label(q.end_reason) if ended else None,
            ),
            GREY if ended else GREEN,
        )
    if not changed:
        sheet.row(("本次没有结对变化：没有新结对，也没有结束的结对。",))
    if new_shown < new_total:
        sheet.row(
            (
                f"本次新结对共{new_total}条，此表只列出前{new_shown}条（结束的结对全部列出）。全部变化见"
                f"《变动日志_{date_tag(as_of)}.xlsx》；各镇街分册（“分镇结对名单”文件夹）中新结对以绿色标出。",
            ),
            YELLOW,
        )


def write_pairing_workbook(
    eng: sa.Engine, settings: Settings, as_of: dt.date, books: dict[str | None, tuple[str, dt.date]]
) -> Path:
    """``<export_dir>/结对汇总_<YYYYMMDD>.xlsx``: 汇总, 重点信访案件, 本次变化, 走访帮扶 and 走访预警;
    ``books``: each town's workbook (file name) and the date its data is as of."""
    with eng.connect() as conn:
        towns = town_books.read_towns(conn, as_of)
        book = night_book(as_of)
        _summary_sheet(book, towns, books, as_of)
        rows = town_books.case_rows(
            [c for t in towns.values() for c in t.cases],
            [q for t in towns.values() for q in t.case_pairs],
            as_of,
        )
        town_books.case_sheet(book, rows)
        _change_sheet(book, read_pairs(conn, as_of, current=False, changed=True), as_of)
        followup_sheets(book, conn, as_of)
    target = book.save(Path(settings.export_dir) / f"结对汇总_{date_tag(as_of)}.xlsx")
    log.info("export: pairing summary written (%d towns)", len(towns))
    return target


def write_pairing_workbooks(
    eng: sa.Engine, settings: Settings, as_of: dt.date
) -> tuple[Path, town_books.TownBooks]:
    """The town workbooks (those whose content changed), then the summary workbook."""
    towns = town_books.write_town_workbooks(eng, settings, as_of)
    return write_pairing_workbook(eng, settings, as_of, towns.books), towns
