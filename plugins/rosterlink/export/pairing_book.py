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

from rosterlink.core import jsonfile
from rosterlink.core.spec import RANK_LABELS, town_key, town_order
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
from rosterlink.export.common import UNKNOWN_TOWN_SHEET, night_book, reason_label
from rosterlink.export.followup_sheets import followup_sheets
from rosterlink.export.pairs import (
    ENDED,
    changed_on,
    in_force,
    listed_changes,
    read_pairs,
    target_cells,
)
from rosterlink.export.town_books import LINE_COLUMNS
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

SUMMARY_WIDTHS = (14, 12, 12, 12, 14, 12, 12, 12, 14, 28, 14)


def pair_figures(conn: sa.Connection, as_of: dt.date) -> tuple[dict[str | None, list[int]], int]:
    """The pairs in force per town, counted in the warehouse: (town -> [active households paired,
    pairs, pairs with a same-town cadre, cadres], the cadres of the whole district). The one count of
    the summary that reads every pair (a province's million)."""
    p, h, c = schema.pairing, schema.household, schema.cadre
    house = p.c.target_kind == "household"
    joined = p.outerjoin(h, h.c.household_key == p.c.target_key).outerjoin(c, c.c.cadre_key == p.c.cadre_key)
    same = sa.case((sa.and_(c.c.town.is_not(None), c.c.town == h.c.town), 1), else_=0)
    figures = {
        town: [int(paired), int(pairs), int(same_town or 0), int(cadres)]
        for town, paired, pairs, same_town, cadres in conn.execute(
            sa.select(
                h.c.town,
                sa.func.count(sa.distinct(sa.case((h.c.status == "active", p.c.target_key)))),
                sa.func.count(),
                sa.func.sum(same),
                sa.func.count(sa.distinct(p.c.cadre_key)),
            )
            .select_from(joined)
            .where(house, in_force(as_of))
            .group_by(h.c.town)
        )
    }
    cadres = conn.execute(
        sa.select(sa.func.count(sa.distinct(p.c.cadre_key))).where(house, in_force(as_of))
    ).scalar_one()
    return figures, int(cadres)


KEPT_FIGURES = "summary_pairs.json"
"""The summary's pair figures per town (:func:`pair_figures`: counts only, no name), in the town
workbooks' records folder, with the inputs' token (``town_books.inputs_token``) and the night they
were counted on. A later night with the same token, on which no pair started or ended since, has
the same figures: they are read from here instead of from the million pairs."""


def kept_pair_figures(
    conn: sa.Connection, as_of: dt.date, where: Path, token: str | None
) -> tuple[dict[str | None, list[int]], int]:
    """:func:`pair_figures`, read from :data:`KEPT_FIGURES` when they were counted on an earlier (or
    the same) night against the same ``token`` and no pair has started or ended after that night
    (a night run for an earlier date, or pairs dated later, count again); counted and kept
    otherwise. ``token`` None: counted, nothing kept."""
    if token is None:
        return pair_figures(conn, as_of)
    target = where / town_books.RECORDS / KEPT_FIGURES
    kept = jsonfile.read_dict(target)
    latest = town_books.latest_pair_date(conn)
    if (
        kept.get("token") == token
        and kept.get("as_of", "9999") <= as_of.isoformat()
        and (latest is None or latest <= kept["as_of"])
    ):
        log.info(
            "export: the summary's pair figures are those counted on %s (nothing changed since)",
            kept["as_of"],
        )
        return {town: list(line) for town, line in kept["towns"]}, int(kept["cadres"])
    figures, cadres = pair_figures(conn, as_of)
    if latest is None or latest <= as_of.isoformat():
        jsonfile.write_atomic(
            target,
            {"token": token, "as_of": as_of.isoformat(), "towns": list(figures.items()), "cadres": cadres},
        )
    return figures, cadres


def town_lines(
    conn: sa.Connection, as_of: dt.date, figures: tuple[dict[str | None, list[int]], int] | None = None
) -> tuple[dict[str | None, tuple], int, list]:
    """Each town's line of 汇总, counted in the warehouse (a province's million pairs are never read
    into memory here): (town -> (active households, paired ones, pairs in force, pairs with a
    same-town cadre, cadres, pairs made and ended on the night, households left unpaired), the
    cadres of the whole district, the active households left unpaired). The same figures as each
    town workbook's own line (``town_books.figures``). ``figures``: the pairs' figures
    (:func:`pair_figures`) when already known."""
    p, h, c = schema.pairing, schema.household, schema.cadre
    house = p.c.target_kind == "household"
    joined = p.outerjoin(h, h.c.household_key == p.c.target_key).outerjoin(c, c.c.cadre_key == p.c.cadre_key)
    lines: dict[str | None, list[int]] = {}

    def line(town: str | None) -> list[int]:
        return lines.setdefault(town, [0] * 8)

    for town, n in conn.execute(
        sa.select(h.c.town, sa.func.count()).where(h.c.status == "active").group_by(h.c.town)
    ):
        line(town)[0] = int(n)
    per_town, cadres = figures if figures is not None else pair_figures(conn, as_of)
    for town, counted in per_town.items():
        line(town)[1:5] = counted
    ended = p.c.valid_to == as_of
    made = sa.and_(p.c.valid_from == as_of, sa.or_(p.c.valid_to.is_(None), p.c.valid_to > as_of))
    for town, new, gone in conn.execute(
        sa.select(
            h.c.town,
            sa.func.sum(sa.case((made, 1), else_=0)),
            sa.func.sum(sa.case((ended, 1), else_=0)),
        )
        .select_from(joined)
        .where(house, changed_on(as_of))
        .group_by(h.c.town)
    ):
        line(town)[5:7] = [int(new or 0), int(gone or 0)]
    paired_now = sa.exists().where(house, in_force(as_of), p.c.target_key == h.c.household_key)
    found = conn.execute(
        sa.select(h.c.household_key, h.c.head_name, h.c.head_id_number, h.c.town, h.c.village).where(
            h.c.status == "active", ~paired_now
        )
    ).all()
    for r in found:
        line(r.town)[7] += 1
    towns = {town: town_key(town) for town in lines}
    unpaired = sorted(
        found, key=lambda r: (towns[r.town], r.village or "", r.head_name or "", r.household_key)
    )
    return {town: tuple(lines[town]) for town in town_order(lines)}, cadres, unpaired


def _summary_sheet(
    book: Book,
    conn: sa.Connection,
    books: dict[str | None, tuple[str, dt.date]],
    as_of: dt.date,
    figures: tuple[dict[str | None, list[int]], int] | None = None,
) -> None:
    """汇总: one line per town (its figures, its workbook and the date that workbook's data is as of),
    the district's total, then every active household left unpaired."""
    lines, cadres, unpaired = town_lines(conn, as_of, figures)
    sheet = book.sheet("汇总", SUMMARY_WIDTHS, freeze=False)
    sheet.row((f"结对汇总（截至{as_of:%Y年%m月%d日}）",), TITLE)
    sheet.row((*LINE_COLUMNS, "镇街分册", "分册数据截至"), HEADER)
    total = [0] * 8
    for town, (active, paired, pairs, same, n_cadres, new, ended, n_unpaired) in lines.items():
        share = same / pairs if pairs else None
        file, since = books.get(town, (None, None))
        sheet.row(
            (
                town or UNKNOWN_TOWN_SHEET,
                active,
                paired,
                pairs,
                share,
                n_cadres,
                new,
                ended,
                n_unpaired,
                file,
                since,
            ),
            RED if n_unpaired else PLAIN,
            styles={4: PERCENT},
        )
        total = [a + b for a, b in zip(total, lines[town], strict=True)]
    active, paired, pairs, same, _, new, ended, n_unpaired = total
    share = same / pairs if pairs else None
    sheet.row(
        ("合计", active, paired, pairs, share, cadres, new, ended, n_unpaired), BOLD, styles={4: PERCENT}
    )
    sheet.row(())
    keys = {r.household_key for r in unpaired}
    categories = town_books.categories_of(conn, None, keys) if keys else {}
    town_books.unpaired_list(sheet, unpaired, categories)
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


def _change_sheet(book: Book, conn: sa.Connection, as_of: dt.date) -> None:
    """本次变化: every pair ended on the night and the first new ones (the changes' order); only
    those listed are read."""
    sheet = book.sheet("本次变化", CHANGE_WIDTHS, columns=CHANGE_COLUMNS)
    changed, new_total = listed_changes(conn, as_of, common.SHEET_LIST_MAX)
    new_shown = 0
    for q in changed:
        change = q.change(as_of)
        ended = change == ENDED
        if not ended:
            new_shown += 1
        sheet.row(
            (
                change,
                *target_cells(q),
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
    if not changed and not new_total:
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
    eng: sa.Engine,
    settings: Settings,
    as_of: dt.date,
    books: dict[str | None, tuple[str, dt.date]],
    token: str | None = None,
) -> Path:
    """``<export_dir>/结对汇总_<YYYYMMDD>.xlsx``: 汇总, 重点信访案件, 本次变化, 走访帮扶 and 走访预警;
    ``books``: each town's workbook (file name) and the date its data is as of; ``token``: the
    inputs' token the town workbooks were checked against tonight (``town_books.checked_token``;
    the pairs' figures per town are kept with it: :func:`kept_pair_figures`)."""
    with eng.connect() as conn:
        book = night_book(as_of)
        figures = kept_pair_figures(conn, as_of, town_books.folder(settings), token)
        _summary_sheet(book, conn, books, as_of, figures)
        cases = town_books.open_cases(conn)
        case_pairs = read_pairs(conn, as_of, current=True, changed=False, kind="case")
        leaders = town_books.case_leaders(case_pairs, as_of)
        town_books.case_sheet(book, town_books.case_rows(cases, leaders))
        _change_sheet(book, conn, as_of)
        followup_sheets(book, conn, as_of)
    target = book.save(Path(settings.export_dir) / f"结对汇总_{date_tag(as_of)}.xlsx")
    log.info("export: pairing summary written (%d towns)", len(books))
    return target


def write_pairing_workbooks(
    eng: sa.Engine, settings: Settings, as_of: dt.date
) -> tuple[Path, town_books.TownBooks]:
    """The town workbooks (those whose content changed), then the summary workbook."""
    towns = town_books.write_town_workbooks(eng, settings, as_of)
    return write_pairing_workbook(eng, settings, as_of, towns.books, towns.token), towns
