"""The change log: ``<export_dir>/变动日志_<YYYYMMDD>.xlsx``, every pair ended or made on the night,
with the reason in words (the pairing summary's 本次变化 may list only the first). The people who read
it are organization-department staff: Chinese only, no reason codes (they stay in the warehouse)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rosterlink.core.masking import mask_id
from rosterlink.core.workbook import BOLD, GREEN, GREY, TITLE, date_tag
from rosterlink.export.common import night_book, reason_label
from rosterlink.export.pairs import ENDED, stream_changes, target_cells

if TYPE_CHECKING:
    import sqlalchemy as sa

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

LOG_COLUMNS = (
    "日期",
    "变化",
    "对象类型",
    "镇街",
    "村(居)",
    "对象",
    "身份证号/案件编号",
    "干部姓名",
    "干部身份证号",
    "工作单位",
    "结对起始日期",
    "结束日期",
    "原因",
)
LOG_WIDTHS = (12, 10, 10, 12, 16, 10, 22, 10, 22, 26, 13, 13, 30)


def write_change_log(eng: sa.Engine, settings: Settings, as_of: dt.date) -> Path:
    """``<export_dir>/变动日志_<YYYYMMDD>.xlsx``: every pair ended or made on ``as_of``, with reasons.

    The changes are written as the database hands them over, in their order (:func:`stream_changes`):
    none is held, so a province's first night, a million new pairs, costs no more memory than a
    district's."""
    book = night_book(as_of)
    sheet = book.sheet("结对变动", LOG_WIDTHS, columns=LOG_COLUMNS)
    ended_total = made_total = 0
    with eng.connect() as conn:
        for q in stream_changes(conn, as_of):
            change = q.change(as_of)
            ended = change == ENDED
            if ended:
                ended_total += 1
            else:
                made_total += 1
            code = q.end_reason if ended else q.made_reason
            sheet.row(
                (
                    as_of,
                    change,
                    *target_cells(q),
                    q.cadre_name,
                    mask_id(q.cadre_id) if q.cadre_id else None,
                    q.cadre_unit,
                    q.valid_from,
                    q.valid_to,
                    reason_label(code),
                ),
                GREY if ended else GREEN,
            )
    info = book.sheet("说明", (20, 60), freeze=False)
    info.row(("结对变动日志",), TITLE)
    for label, value in (
        ("日期", as_of),
        ("结束的结对", ended_total),
        ("新结对", made_total),
        ("说明", "灰色为结束的结对，绿色为新结对；身份证号已脱敏。"),
    ):
        info.append([info.cell(label, BOLD), info.cell(value)])
    target = book.save(Path(settings.export_dir) / f"变动日志_{date_tag(as_of)}.xlsx")
    log.info("export: change log written (%d ended, %d made)", ended_total, made_total)
    return target
