"""The pairing workbook: ``<export_dir>/结对名单_<YYYYMMDD>.xlsx``.

Sheets: 汇总 (per town: households, pairs, the share of cadres from the same town, changes, and
every household left unpaired), one sheet per town (each household's pair, tonight's change and
its follow-through), 重点信访案件 (the five ones of each open key case), 本次变化 (pairs made and
ended tonight), then 走访帮扶 and 走访预警 (:mod:`rosterlink.export.followup_sheets`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink.core.masking import mask_id, mask_phone
from rosterlink.core.spec import CATEGORY_LABELS, FIVE_ONES, RANK_LABELS, town_key, town_order
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
from rosterlink.export import common
from rosterlink.export.common import TARGET_LABELS, UNKNOWN_TOWN_SHEET, night_book, reason_label
from rosterlink.export.followup_sheets import followup_cells, followup_sheets
from rosterlink.export.pairs import ENDED, NEW, Pair, changes, masked_target, read_pairs
from rosterlink.followup.figures import household_followup
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

CATEGORY_ORDER = ("hardship", "orphan", "old_member")


def _categories(conn: sa.Connection) -> dict[str, str]:
    hc = schema.household_category
    found: dict[str, set[str]] = defaultdict(set)
    query = sa.select(hc.c.household_key, hc.c.category).where(hc.c.status == "active")
    for key, category in conn.execute(query):
        found[key].add(category)
    order = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    return {
        key: "、".join(CATEGORY_LABELS.get(c, c) for c in sorted(cats, key=lambda c: (order.get(c, 99), c)))
        for key, cats in found.items()
    }


def _reason_of(pair: Pair, as_of: dt.date) -> str:
    if pair.valid_to is not None and pair.valid_to <= as_of:
        return reason_label(pair.end_reason)
    return reason_label(pair.made_reason)


TOWN_COLUMNS = (
    "干部姓名",
    "工作单位",
    "职级",
    "干部电话",
    "户主姓名",
    "户主身份证号",
    "村(居)",
    "类别",
    "结对起始日期",
    "变化",
    "原因",
    "首次入户走访",
    "最近联系",
    "首次走访期限",
    "走访情况",
)
TOWN_WIDTHS = (10, 28, 10, 15, 10, 22, 18, 26, 13, 10, 30, 13, 12, 13, 22)


def _town_sheets(
    book: Book, pairs: list[Pair], categories: dict[str, str], as_of: dt.date, followup: dict | None = None
) -> None:
    by_town: dict[str | None, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_town[pair.town or None].append(pair)
    for town in town_order(by_town):
        rows = sorted(
            by_town[town],
            key=lambda q: (
                q.village or "",
                q.name or "",
                q.target_key,
                q.change(as_of) != ENDED,
                q.pairing_id,
            ),
        )
        sheet = book.sheet(town or UNKNOWN_TOWN_SHEET, TOWN_WIDTHS, columns=TOWN_COLUMNS, printed=True)
        for q in rows:
            change = q.change(as_of)
            style = GREEN if change == NEW else GREY if change == ENDED else PLAIN
            sheet.row(
                (
                    q.cadre_name,
                    q.cadre_unit,
                    RANK_LABELS.get(q.cadre_rank or "", q.cadre_rank),
                    mask_phone(q.cadre_phone) if q.cadre_phone else None,
                    q.name,
                    mask_id(q.id_number) if q.id_number else None,
                    q.village,
                    categories.get(q.target_key, ""),
                    q.valid_from,
                    change,
                    _reason_of(q, as_of),
                    *followup_cells((followup or {}).get(q.target_key), q, as_of),
                ),
                style,
            )


def _summary_sheet(
    book: Book, conn: sa.Connection, pairs: list[Pair], categories: dict[str, str], as_of: dt.date
) -> None:
    h = schema.household
    households = conn.execute(
        sa.select(h.c.household_key, h.c.head_name, h.c.head_id_number, h.c.town, h.c.village).where(
            h.c.status == "active"
        )
    ).all()
    current = [q for q in pairs if q.target_kind == "household" and q.change(as_of) != ENDED]
    paired_keys = {q.target_key for q in current}
    active_by_town: dict[str | None, int] = defaultdict(int)
    for r in households:
        active_by_town[r.town] += 1
    stats: dict[str | None, dict] = defaultdict(
        lambda: {"paired": set(), "pairs": 0, "same": 0, "cadres": set(), "new": 0, "ended": 0}
    )
    active_keys = {r.household_key for r in households}
    for q in current:
        s = stats[q.town]
        if q.target_key in active_keys:
            s["paired"].add(q.target_key)
        s["pairs"] += 1
        s["same"] += int(q.cadre_town is not None and q.cadre_town == q.town)
        s["cadres"].add(q.cadre_key)
    for q in pairs:
        if q.target_kind != "household":
            continue
        change = q.change(as_of)
        if change == NEW:
            stats[q.town]["new"] += 1
        elif change == ENDED:
            stats[q.town]["ended"] += 1
    towns = {town: town_key(town) for town in active_by_town}  # once a town, not once a household
    unpaired = sorted(
        (r for r in households if r.household_key not in paired_keys),
        key=lambda r: (towns[r.town], r.village or "", r.head_name or "", r.household_key),
    )
    unpaired_by_town: dict[str | None, int] = defaultdict(int)
    for r in unpaired:
        unpaired_by_town[r.town] += 1

    sheet = book.sheet("汇总", (14, 12, 12, 12, 14, 12, 12, 12, 14), freeze=False)
    sheet.row((f"结对名单（截至{as_of:%Y年%m月%d日}）",), TITLE)
    sheet.row(
        (
            "镇街",
            "在册家庭",
            "已结对家庭",
            "结对数",
            "本镇街干部占比",
            "结对干部数",
            "新结对",
            "结束结对",
            "未结对家庭",
        ),
        HEADER,
    )
    all_cadres: set[str] = set()
    totals = {
        "active": 0,
        "paired": 0,
        "pairs": 0,
        "same": 0,
        "new": 0,
        "ended": 0,
        "unpaired": 0,
    }
    for town in town_order(set(active_by_town) | set(stats)):
        s = stats[town]
        share = s["same"] / s["pairs"] if s["pairs"] else None
        line = (
            town or UNKNOWN_TOWN_SHEET,
            active_by_town[town],
            len(s["paired"]),
            s["pairs"],
            share,
            len(s["cadres"]),
            s["new"],
            s["ended"],
            unpaired_by_town[town],
        )
        sheet.row(line, RED if unpaired_by_town[town] else PLAIN, styles={4: PERCENT})
        totals["active"] += active_by_town[town]
        totals["paired"] += len(s["paired"])
        totals["pairs"] += s["pairs"]
        totals["same"] += s["same"]
        all_cadres |= s["cadres"]
        totals["new"] += s["new"]
        totals["ended"] += s["ended"]
        totals["unpaired"] += unpaired_by_town[town]
    share = totals["same"] / totals["pairs"] if totals["pairs"] else None
    sheet.row(
        (
            "合计",
            totals["active"],
            totals["paired"],
            totals["pairs"],
            share,
            len(all_cadres),
            totals["new"],
            totals["ended"],
            totals["unpaired"],
        ),
        BOLD,
        styles={4: PERCENT},
    )
    sheet.row(())
    if unpaired:
        sheet.row((f"未结对的在册家庭：{len(unpaired)}户（应为0，请核对）",), BOLD | RED)
        sheet.row(("镇街", "村(居)", "户主姓名", "户主身份证号", "类别"), HEADER)
        for r in unpaired:
            sheet.row(
                (
                    r.town or UNKNOWN_TOWN_SHEET,
                    r.village,
                    r.head_name,
                    mask_id(r.head_id_number) if r.head_id_number else None,
                    categories.get(r.household_key, ""),
                ),
                RED,
            )
    else:
        sheet.row(("所有在册家庭均已结对。",))
    sheet.row(("说明：绿色为今日新结对，灰色为今日结束的结对；身份证号、电话已脱敏。",))


CASE_COLUMNS = (
    "案件编号",
    "信访人",
    "所属镇街",
    "诉求类别",
    "包案领导",
    "责任单位",
    # the five-ones checks; two of them (包案领导, 责任单位) are also columns of their own above
    *(f"五个一：{label}" for _, label in FIVE_ONES),
    "缺项",
)
CASE_WIDTHS = (16, 10, 12, 16, 16, 20, 9, 9, 9, 9, 9, 30)


def _case_sheet(book: Book, conn: sa.Connection, pairs: list[Pair], as_of: dt.date) -> None:
    k = schema.petition_case
    cases = conn.execute(
        sa.select(
            k.c.case_key,
            k.c.case_number,
            k.c.petitioner_name,
            k.c.town,
            k.c.topic,
            k.c.responsible_unit,
            k.c.work_team,
            k.c.resolution_plan,
            k.c.stabilisation_measures,
        ).where(k.c.status == "open")
    ).all()
    leaders: dict[str, list[str]] = defaultdict(list)
    for q in pairs:
        if q.target_kind == "case" and q.change(as_of) != ENDED and q.cadre_name:
            leaders[q.target_key].append(q.cadre_name)
    sheet = book.sheet("重点信访案件", CASE_WIDTHS, columns=CASE_COLUMNS, printed=True)
    for case in sorted(cases, key=lambda r: (town_key(r.town), r.case_number)):
        leader = "、".join(sorted(set(leaders.get(case.case_key, []))))
        present = {
            "leader": bool(leader),
            "work_team": bool((case.work_team or "").strip()),
            "resolution_plan": bool((case.resolution_plan or "").strip()),
            "responsible_unit": bool((case.responsible_unit or "").strip()),
            "stabilisation_measures": bool((case.stabilisation_measures or "").strip()),
        }
        missing = [label for key, label in FIVE_ONES if not present[key]]
        shown = (case.case_number, case.petitioner_name, case.town, case.topic, leader, case.responsible_unit)
        cells = [sheet.cell(v) for v in shown]
        cells += [sheet.cell("✓") if present[key] else sheet.cell("缺", RED) for key, _ in FIVE_ONES]
        cells.append(sheet.cell("缺" + "、".join(missing), RED) if missing else sheet.cell("齐全"))
        sheet.append(cells)


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
                f"《变动日志_{date_tag(as_of)}.xlsx》；各镇街工作表中新结对以绿色标出。",
            ),
            YELLOW,
        )


def write_pairing_workbook(eng: sa.Engine, settings: Settings, as_of: dt.date) -> Path:
    """``<export_dir>/结对名单_<YYYYMMDD>.xlsx``: 汇总, one sheet per town, 重点信访案件, 本次变化,
    走访帮扶 and 走访预警."""
    with eng.connect() as conn:
        pairs = read_pairs(conn, as_of, current=True, changed=True)
        categories = _categories(conn)
        book = night_book(as_of)
        _summary_sheet(book, conn, pairs, categories, as_of)
        _town_sheets(
            book,
            [q for q in pairs if q.target_kind == "household"],
            categories,
            as_of,
            household_followup(conn),
        )
        _case_sheet(book, conn, pairs, as_of)
        _change_sheet(book, pairs, as_of)
        followup_sheets(book, conn, as_of)
    target = book.save(Path(settings.export_dir) / f"结对名单_{date_tag(as_of)}.xlsx")
    log.info("export: pairing workbook written (%d pairs)", len(pairs))
    return target
