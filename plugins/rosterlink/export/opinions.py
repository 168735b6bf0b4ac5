"""The opinions workbooks: ``<export_dir>/意见建议_<YYYYMMDD>/<department>.xlsx``, every opinion heard
on a visit, for the department that can act on it (topic -> department in ``config/followup.json``),
newest first, each line traceable to its log file, sheet and row, without ID numbers."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink.core.workbook import BOLD, GREEN, WRAP, date_tag
from rosterlink.export.common import night_book
from rosterlink.followup.config import KIND_LABELS, FollowupConfig
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Sequence

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

OPINION_COLUMNS = (
    "走访日期",
    "镇街",
    "村(居)",
    "户主姓名",
    "家庭编号",
    "走访干部",
    "工作单位",
    "走访方式",
    "意见类别",
    "意见建议",
    "来源文件",
    "工作表",
    "行号",
    "本次新增",
)
OPINION_WIDTHS = (12, 12, 16, 10, 11, 10, 26, 10, 12, 60, 40, 12, 8, 10)
NEW_MARK = "新增"


def _last_night_end(conn: sa.Connection, as_of: dt.date) -> dt.datetime | None:
    """When the last successful night before ``as_of`` finished (None: this is the first)."""
    n = schema.night_run
    return conn.execute(
        sa.select(sa.func.max(n.c.finished_at)).where(n.c.status == "success", n.c.as_of < as_of)
    ).scalar()


def _opinions(conn: sa.Connection) -> Sequence[sa.Row]:
    v, h, c, f = schema.visit, schema.household, schema.cadre, schema.intake_file
    return conn.execute(
        sa.select(
            v.c.visit_date,
            h.c.town,
            h.c.village,
            h.c.head_name,
            v.c.household_key,
            c.c.name.label("cadre_name"),
            c.c.unit,
            v.c.visit_kind,
            v.c.opinion_topic,
            v.c.opinions,
            v.c.opinion_department,
            f.c.file_name,
            v.c.sheet,
            v.c.row_number,
            v.c.matched_at,
        )
        .select_from(
            v.join(f, f.c.file_id == v.c.file_id)
            .outerjoin(h, h.c.household_key == v.c.household_key)
            .outerjoin(c, c.c.cadre_key == v.c.cadre_key)
        )
        .where(v.c.opinions.is_not(None))
        .order_by(v.c.opinion_department, v.c.visit_date.desc(), h.c.town, v.c.household_key, v.c.visit_id)
    ).all()


def write_opinion_workbooks(eng: sa.Engine, settings: Settings, as_of: dt.date) -> list[Path]:
    """``<export_dir>/意见建议_<YYYYMMDD>/<department>.xlsx``: every opinion heard on a visit, for the
    department that can act on it, newest first; each line names its log file, sheet and row. No ID
    numbers; everything goes through the workbook writer (masked, defused, text cells)."""
    with eng.connect() as conn:
        rows = _opinions(conn)
        since = _last_night_end(conn, as_of)
    by_dept: dict[str, list[sa.Row]] = defaultdict(list)
    for row in rows:
        by_dept[row.opinion_department or FollowupConfig.load().default_department].append(row)
    folder = Path(settings.export_dir) / f"意见建议_{date_tag(as_of)}"
    written = []
    for dept in sorted(by_dept):
        book = night_book(as_of)
        sheet = book.sheet("意见建议", OPINION_WIDTHS, columns=OPINION_COLUMNS)
        new = 0
        for q in by_dept[dept]:
            fresh = since is None or q.matched_at > since
            new += fresh
            sheet.row(
                (
                    q.visit_date,
                    q.town,
                    q.village,
                    q.head_name,
                    q.household_key,
                    q.cadre_name,
                    q.unit,
                    KIND_LABELS.get(q.visit_kind, q.visit_kind),
                    q.opinion_topic,
                    q.opinions,
                    q.file_name,
                    q.sheet,
                    q.row_number,
                    NEW_MARK if fresh else None,
                ),
                styles={9: WRAP, 13: GREEN} if fresh else {9: WRAP},
            )
        info = book.sheet("说明", (16, 70), freeze=False)
        for label, value in (
            ("责任部门", dept),
            ("截至", as_of),
            ("条数", len(by_dept[dept])),
            ("其中上次处理后新增", new),
            (
                "说明",
                "结对干部走访时收集的群众意见建议，请研究办理。“本次新增”列标为“新增”（绿色）的是"
                "上次处理以后新收到的意见。每条可按来源文件、工作表、行号追溯到走访记录；不含身份证号。",
            ),
        ):
            info.append([info.cell(label, BOLD), info.cell(value)])
        safe = re.sub(r'[\\/:*?"<>|]', "_", dept)
        written.append(book.save(folder / f"{safe}.xlsx"))
    log.info("follow-through: %d opinions written to %d department workbooks", len(rows), len(written))
    return written
