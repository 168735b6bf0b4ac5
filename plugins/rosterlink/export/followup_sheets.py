"""The follow-through in the pairing workbooks: the summary's 走访帮扶 sheet (the figures per town),
the 走访预警 sheets (households and entries to act on: the district's in the summary, each town's
own in its town workbook) and the follow-through columns of the town workbooks' pair lists, from
the figures :mod:`rosterlink.followup` rebuilds each night."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rosterlink.core.spec import town_order
from rosterlink.core.workbook import PLAIN, RED, YELLOW
from rosterlink.export import common
from rosterlink.export.common import UNKNOWN_TOWN_SHEET
from rosterlink.export.pairs import ENDED
from rosterlink.followup.config import FollowupConfig
from rosterlink.followup.figures import by_view, overdue_households, warnings

if TYPE_CHECKING:
    import datetime as dt

    import sqlalchemy as sa

    from rosterlink.core.workbook import Book
    from rosterlink.export.pairs import Pair

FOLLOWUP_COLUMNS = (
    "镇街",
    "结对家庭",
    "已入户走访",
    "未入户走访",
    "超期未走访",
    "从未联系",
    "最长未联系(天)",
    "入户走访次数",
    "电话联系次数",
    "发现问题",
    "解决问题",
    "帮扶金额(元)",
    "帮扶高于标准户",
    "帮扶低于标准户",
    "公款帮扶记录",
    "换人后延续",
)
WARN_COLUMNS = (
    "预警",
    "镇街",
    "村(居)",
    "户主姓名",
    "家庭编号",
    "结对干部",
    "工作单位",
    "首次走访期限",
    "最近联系",
    "本年帮扶金额(元)",
    "说明",
)


def followup_cells(row: Any, pair: Pair, as_of: dt.date) -> tuple:
    """The town workbooks' follow-through columns (首次入户走访, 最近联系, 首次走访期限, 走访情况) of a
    current pair's household, from its ``followup_household`` row (None: not followed)."""
    if row is None or pair.change(as_of) == ENDED:
        return (None, None, None, None)
    if row.overdue:
        state = "超期未入户走访" + ("（仅电话联系）" if row.phone_contacts else "")
    elif row.visited_in_person:
        state = f"已入户走访{row.in_person_visits}次"
    else:
        state = "尚未入户走访" + ("（已电话联系）" if row.phone_contacts else "")
    return (row.first_in_person_on, row.last_contact_on, row.deadline, state)


def followup_sheets(
    book: Book, conn: sa.Connection, as_of: dt.date, cfg: FollowupConfig | None = None
) -> None:
    """The summary workbook's 走访帮扶 sheet (per town) and 走访预警 sheet (households and entries to
    act on)."""
    cfg = cfg or FollowupConfig.load()
    figures_sheet(book, by_view(conn, "followup_by_town"))
    lines = warnings(conn, as_of, cfg, overdue_cap=common.SHEET_LIST_MAX)
    warnings_sheet(book, lines, overdue_total=overdue_households(conn))


FIGURE_KEYS = (
    "households",
    "households",
    "not_visited_in_person",
    "overdue",
    "never_contacted",
    "max_days_since_contact",
    "in_person_visits",
    "phone_contacts",
    "problems_found",
    "problems_solved",
    "help_value",
    "help_above_band",
    "help_below_band",
    "public_fund_entries",
    "carried_over",
)


def figures_line(r: dict) -> list:
    """One town's 走访帮扶 figures (after the town), from its ``followup_by_town`` row, in the
    order of :data:`FOLLOWUP_COLUMNS`."""
    line = [r[k] for k in FIGURE_KEYS]
    line[1] = r["households"] - r["not_visited_in_person"]
    line[10] = round(float(line[10] or 0), 2)
    return line


def view_town(town: str | None) -> str:
    """A town as the ``followup_by_*`` views name it (no town: ``(unknown)``)."""
    return "(unknown)" if town is None else town


def figures_sheet(book: Book, rows: list[dict]) -> None:
    """走访帮扶: the follow-through figures of each town (``followup_by_town`` rows)."""
    towns = {r["town"]: r for r in rows}
    sheet = book.sheet(
        "走访帮扶", (12,) + (11,) * (len(FOLLOWUP_COLUMNS) - 1), columns=FOLLOWUP_COLUMNS, printed=True
    )
    for town in town_order(list(towns)):
        r = towns[town]
        sheet.row(
            (town if town != "(unknown)" else UNKNOWN_TOWN_SHEET, *figures_line(r)),
            RED if r["overdue"] or r["public_fund_entries"] else PLAIN,
        )


def warnings_sheet(
    book: Book, lines: list[tuple], where: str = "各镇街分册", overdue_total: int | None = None
) -> None:
    """走访预警: the households and entries to act on (:func:`rosterlink.followup.figures.warnings`
    lines); help outside the band and public funds in full, overdue households up to the cap (a
    province where no visit log arrived yet has a million: the town workbooks mark each of them).
    ``overdue_total``: the overdue households in all, when ``lines`` hold only the first of them."""
    warn = book.sheet(
        "走访预警", (12, 12, 16, 10, 11, 10, 26, 13, 12, 14, 60), columns=WARN_COLUMNS, printed=True
    )
    if overdue_total is None:
        overdue_total = sum(1 for w in lines if w[0] == "超期未走访")
    overdue_shown = 0
    for w in lines:
        if w[0] == "超期未走访":
            if overdue_shown >= common.SHEET_LIST_MAX:
                continue
            overdue_shown += 1
        warn.row(w, RED if w[0] in ("超期未走访", "公款帮扶") else YELLOW)
    if overdue_shown < overdue_total:
        warn.row(
            (
                f"超期未入户走访共{overdue_total}户，此表只列出前{overdue_shown}户（帮扶金额和资金来源的提示全部列出）；"
                f"{where}“结对名单”表的“走访情况”列逐户标出。",
            ),
            YELLOW,
        )
