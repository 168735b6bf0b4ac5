"""The town workbooks: ``<export_dir>/分镇结对名单/<town>_结对名单.xlsx``, one per town.

What a town's party committee needs and no more (minimal disclosure): only that town's households,
pairs and key cases. Sheets: 汇总 (the date the data is as of, the town's figures, its follow-through
figures and every household of the town left unpaired), 结对名单 (each household's pair, the change
on the as-of date and its follow-through), 重点信访案件 (the town's open key cases and their five
ones) and 走访预警 (the town's households and entries to act on). The district's view of all towns is
the summary workbook (:mod:`rosterlink.export.pairing_book`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import jsonfile
from rosterlink.core.masking import mask_id, mask_phone, mask_text
from rosterlink.core.spec import CATEGORY_LABELS, FIVE_ONES, RANK_LABELS, town_key, town_order
from rosterlink.core.workbook import BOLD, GREEN, GREY, HEADER, PERCENT, PLAIN, RED, TITLE, Book
from rosterlink.export.common import UNKNOWN_TOWN_SHEET, night_book, reason_label
from rosterlink.export.followup_sheets import (
    FOLLOWUP_COLUMNS,
    figures_line,
    followup_cells,
    view_town,
    warnings_sheet,
)
from rosterlink.export.pairs import ENDED, NEW, Pair, pairs_per_town, read_pairs
from rosterlink.followup.config import FollowupConfig
from rosterlink.followup.figures import by_view, in_towns, warnings
from rosterlink.warehouse import builds, schema

if TYPE_CHECKING:
    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

FOLDER = "分镇结对名单"
"""The folder of the town workbooks, inside the export folder."""
SUFFIX = "_结对名单.xlsx"

CATEGORY_ORDER = ("hardship", "orphan", "old_member")

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

LINE_COLUMNS = (
    "镇街",
    "在册家庭",
    "已结对家庭",
    "结对数",
    "本镇街干部占比",
    "结对干部数",
    "新结对",
    "结束结对",
    "未结对家庭",
)
"""A town's figures (the summary workbook's 汇总 has one line per town; a town workbook its own)."""


# --- what a town workbook shows ------------------------------------------------------------------------
@dataclass
class Town:
    """One town's rows as of a night: what its workbook shows."""

    town: str | None
    pairs: list[Pair] = field(default_factory=list)  # household pairs current or changed on the night
    case_pairs: list[Pair] = field(default_factory=list)
    households: list[Any] = field(default_factory=list)  # active: key, head name, ID, village
    cases: list[Any] = field(default_factory=list)  # open key cases
    categories: dict[str, str] = field(default_factory=dict)
    followup: dict[str, Any] = field(default_factory=dict)  # household key -> followup_household row
    warnings: list[tuple] = field(default_factory=list)
    followup_figures: dict | None = None  # its followup_by_town row

    @property
    def name(self) -> str:
        return self.town or UNKNOWN_TOWN_SHEET


def categories_of(
    conn: sa.Connection, towns: Collection[str | None] | None, keys: Collection[str] | None = None
) -> dict[str, str]:
    """household key -> its active categories in words (特困家庭、建国前老党员), for the households of
    ``towns`` (None: all; ``keys``: only these households)."""
    hc, h = schema.household_category, schema.household
    found: dict[str, set[str]] = defaultdict(set)
    query = (
        sa.select(hc.c.household_key, hc.c.category)
        .select_from(hc.join(h, h.c.household_key == hc.c.household_key))
        .where(hc.c.status == "active", in_towns(h.c.town, towns))
    )
    if keys is not None:
        query = query.where(hc.c.household_key.in_(sorted(keys)))
    for key, category in conn.execute(query).all():  # fetched at once, not row by row
        found[key].add(category)
    order = {c: i for i, c in enumerate(CATEGORY_ORDER)}
    return {
        key: "、".join(CATEGORY_LABELS.get(c, c) for c in sorted(cats, key=lambda c: (order.get(c, 99), c)))
        for key, cats in found.items()
    }


def open_cases(conn: sa.Connection, towns: Collection[str | None] | None = None) -> list[Any]:
    """The open key cases (of ``towns``), by case number."""
    k = schema.petition_case
    return list(
        conn.execute(
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
            )
            .where(k.c.status == "open", in_towns(k.c.town, towns))
            .order_by(k.c.case_number)
        )
    )


def read_towns(
    conn: sa.Connection,
    as_of: dt.date,
    towns: Collection[str | None] | None = None,
    cfg: FollowupConfig | None = None,
) -> dict[str | None, Town]:
    """Each town's rows as of ``as_of`` (``towns``: only these; None: every town that has an active
    household, a pair current or changed on the night, or an open key case), in the district's order."""
    h, fh = schema.household, schema.followup_household
    found: dict[str | None, Town] = {}

    def town(name: str | None) -> Town:
        if name not in found:
            found[name] = Town(name)
        return found[name]

    for q in read_pairs(conn, as_of, current=True, changed=True, towns=towns):
        if q.target_kind == "household":
            town(q.town).pairs.append(q)
        else:
            town(q.town).case_pairs.append(q)
    for r in conn.execute(
        sa.select(h.c.household_key, h.c.head_name, h.c.head_id_number, h.c.town, h.c.village)
        .where(h.c.status == "active", in_towns(h.c.town, towns))
        .order_by(h.c.household_key)
    ).all():
        town(r.town).households.append(r)
    for case in open_cases(conn, towns):
        town(case.town).cases.append(case)
    categories = categories_of(conn, towns)
    shown = (  # what followup_cells shows
        fh.c.household_key,
        fh.c.overdue,
        fh.c.phone_contacts,
        fh.c.visited_in_person,
        fh.c.in_person_visits,
        fh.c.first_in_person_on,
        fh.c.last_contact_on,
        fh.c.deadline,
    )
    followup = {
        r.household_key: r for r in conn.execute(sa.select(*shown).where(in_towns(fh.c.town, towns))).all()
    }
    for t in found.values():
        keys = {q.target_key for q in t.pairs} | {r.household_key for r in t.households}
        t.categories = {key: categories[key] for key in keys if key in categories}
        t.followup = {key: followup[key] for key in keys if key in followup}
    for w in warnings(conn, as_of, cfg or FollowupConfig.load(), towns):
        if w[1] in found:
            found[w[1]].warnings.append(w)
    by_town = {r["town"]: r for r in by_view(conn, "followup_by_town")}
    for t in found.values():
        t.followup_figures = by_town.get(view_town(t.town))
    return {name: found[name] for name in town_order(found)}


def _reason_of(pair: Pair, as_of: dt.date) -> str:
    if pair.valid_to is not None and pair.valid_to <= as_of:
        return reason_label(pair.end_reason)
    return reason_label(pair.made_reason)


def pair_rows(t: Town, as_of: dt.date) -> list[tuple[str, tuple]]:
    """The town's pair list as it is written: (change, the row's values), in village and name order
    (a pair ended on the night beside the one that replaced it)."""
    rows = sorted(
        t.pairs,
        key=lambda q: (q.village or "", q.name or "", q.target_key, q.change(as_of) != ENDED, q.pairing_id),
    )
    out = []
    for q in rows:
        change = q.change(as_of)
        out.append(
            (
                change,
                (
                    q.cadre_name,
                    q.cadre_unit,
                    RANK_LABELS.get(q.cadre_rank or "", q.cadre_rank),
                    mask_phone(q.cadre_phone) if q.cadre_phone else None,
                    q.name,
                    mask_id(q.id_number) if q.id_number else None,
                    q.village,
                    t.categories.get(q.target_key, ""),
                    q.valid_from,
                    change,
                    _reason_of(q, as_of),
                    *followup_cells(t.followup.get(q.target_key), q, as_of),
                ),
            )
        )
    return out


def case_leaders(case_pairs: Iterable[Pair], as_of: dt.date) -> dict[str, set[str]]:
    """case key -> the names of its leaders (包案领导): the cadres of its pairs in force."""
    leaders: dict[str, set[str]] = defaultdict(set)
    for q in case_pairs:
        if q.change(as_of) != ENDED and q.cadre_name:
            leaders[q.target_key].add(q.cadre_name)
    return leaders


def case_rows(cases: Iterable[Any], leaders: dict[str, set[str]]) -> list[tuple]:
    """Open key cases as 重点信访案件 lists them: the values shown, then the five ones present."""
    out = []
    for case in sorted(cases, key=lambda r: (town_key(r.town), r.case_number)):
        leader = "、".join(sorted(leaders.get(case.case_key, ())))
        present = (
            bool(leader),
            bool((case.work_team or "").strip()),
            bool((case.resolution_plan or "").strip()),
            bool((case.responsible_unit or "").strip()),
            bool((case.stabilisation_measures or "").strip()),
        )
        shown = (case.case_number, case.petitioner_name, case.town, case.topic, leader, case.responsible_unit)
        out.append((shown, present))
    return out


def case_sheet(book: Book, rows: list[tuple], empty: str | None = None) -> None:
    """重点信访案件: each open key case and which of its five ones (五个一) are missing."""
    sheet = book.sheet("重点信访案件", CASE_WIDTHS, columns=CASE_COLUMNS, printed=True)
    for shown, present in rows:
        missing = [label for (_, label), ok in zip(FIVE_ONES, present, strict=True) if not ok]
        cells = [sheet.cell(v) for v in shown]
        cells += [sheet.cell("✓") if ok else sheet.cell("缺", RED) for ok in present]
        cells.append(sheet.cell("缺" + "、".join(missing), RED) if missing else sheet.cell("齐全"))
        sheet.append(cells)
    if not rows and empty:
        sheet.row((empty,))


@dataclass
class Figures:
    """A town's (or the district's) figures as the 汇总 sheets show them."""

    active: int = 0
    paired: int = 0
    pairs: int = 0
    same: int = 0
    cadres: set[str] = field(default_factory=set)
    new: int = 0
    ended: int = 0
    unpaired: list[Any] = field(default_factory=list)  # active households without a current pair

    def line(self, name: str) -> tuple:
        share = self.same / self.pairs if self.pairs else None
        return (
            name,
            self.active,
            self.paired,
            self.pairs,
            share,
            len(self.cadres),
            self.new,
            self.ended,
            len(self.unpaired),
        )


def figures(t: Town, as_of: dt.date) -> Figures:
    """The town's figures: active households, paired ones, pairs in force, same-town cadres, cadres,
    pairs made and ended on the night, the households left unpaired."""
    current = [q for q in t.pairs if q.change(as_of) != ENDED]
    active = {r.household_key for r in t.households}
    paired = {q.target_key for q in current}
    return Figures(
        active=len(t.households),
        paired=len(paired & active),
        pairs=len(current),
        same=sum(1 for q in current if q.cadre_town is not None and q.cadre_town == q.town),
        cadres={q.cadre_key for q in current},
        new=sum(1 for q in t.pairs if q.change(as_of) == NEW),
        ended=sum(1 for q in t.pairs if q.change(as_of) == ENDED),
        unpaired=sorted(
            (r for r in t.households if r.household_key not in paired),
            key=lambda r: (r.village or "", r.head_name or "", r.household_key),
        ),
    )


def unpaired_list(sheet: Any, households: list[Any], categories: dict[str, str]) -> None:
    """The households left unpaired, in red, under a line that says how many (or that there are none)."""
    if not households:
        sheet.row(("所有在册家庭均已结对。",))
        return
    sheet.row((f"未结对的在册家庭：{len(households)}户（应为0，请核对）",), BOLD | RED)
    sheet.row(("镇街", "村(居)", "户主姓名", "户主身份证号", "类别"), HEADER)
    for r in households:
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


# the follow-through figures a town workbook shows: 走访帮扶's, without 最长未联系(天), which grows
# every night (the district's 走访帮扶 has it)
_TOWN_FOLLOWUP = tuple(i for i, c in enumerate(FOLLOWUP_COLUMNS[1:]) if c != "最长未联系(天)")


def town_book(t: Town, as_of: dt.date, rows: list[tuple[str, tuple]] | None = None) -> Book:
    """The town's workbook (not yet saved); ``rows``: its :func:`pair_rows`, when made already."""
    book = night_book(as_of)
    summary = book.sheet("汇总", (14, 12, 12, 12, 14, 12, 12, 12, 14), freeze=False)
    summary.row((f"{t.name}结对名单（数据截至{as_of:%Y年%m月%d日}）",), TITLE)
    summary.row(
        (
            f"本分册只列{t.name}的家庭、结对和重点信访案件。数据截至上面的日期："
            "之后没有变化的夜间不重写本文件；“变化”列和新结对、结束结对的数目是截至当日的变化。",
        ),
    )
    summary.row(LINE_COLUMNS, HEADER)
    own = figures(t, as_of)
    summary.row(own.line(t.name), RED if own.unpaired else PLAIN, styles={4: PERCENT})
    summary.row(())
    if t.followup_figures is not None:
        line = figures_line(t.followup_figures)
        summary.row(("走访帮扶",), BOLD)
        summary.row(tuple(FOLLOWUP_COLUMNS[1:][i] for i in _TOWN_FOLLOWUP), HEADER)
        summary.row(tuple(line[i] for i in _TOWN_FOLLOWUP))
        summary.row(())
    unpaired_list(summary, own.unpaired, t.categories)
    summary.row(("说明：绿色为新结对，灰色为结束的结对（均为截至日当天）；身份证号、电话已脱敏。",))

    sheet = book.sheet("结对名单", TOWN_WIDTHS, columns=TOWN_COLUMNS, printed=True)
    for change, values in pair_rows(t, as_of) if rows is None else rows:
        sheet.row(values, GREEN if change == NEW else GREY if change == ENDED else PLAIN)
    if not t.pairs:
        sheet.row(("本镇街目前没有结对家庭。",))
    rows = case_rows(t.cases, case_leaders(t.case_pairs, as_of))
    case_sheet(book, rows, empty="本镇街没有在办的重点信访案件。")
    warnings_sheet(book, t.warnings, where="本分册")
    return book


# --- file names ----------------------------------------------------------------------------------------
_BAD_FILE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}


def _stem(town: str | None) -> str:
    """A town's name as a file name: masked (a town cell holding an ID number), no character a file
    name cannot hold, not too long; a name that had to change gets a short hash of the real one, so
    that two towns never share a file."""
    if town is None:
        return UNKNOWN_TOWN_SHEET
    clean = _BAD_FILE_CHARS.sub("_", mask_text(town)).strip(" .")[:40]
    if clean != town:
        clean = f"{clean or '镇街'}_{hashlib.sha256(town.encode('utf-8')).hexdigest()[:6]}"
    return clean


def file_names(towns: Iterable[str | None]) -> dict[str | None, str]:
    """Each town's workbook file name (``<town>_结对名单.xlsx``), unique without regard to case."""
    names: dict[str | None, str] = {}
    taken: set[str] = set()
    for town in towns:
        stem = _stem(town)
        if stem.lower() in taken:  # two towns that differ only in case, or a town named 镇街未明确
            stem = f"{stem}_{hashlib.sha256(repr(town).encode('utf-8')).hexdigest()[:6]}"
        taken.add(stem.lower())
        names[town] = stem + SUFFIX
    return names


def folder(settings: Settings) -> Path:
    """``<export_dir>/分镇结对名单``."""
    return Path(settings.export_dir) / FOLDER


# --- what changed: each workbook's digest, kept beside it ---------------------------------------------
LAYOUT = "town-book-1"
"""Part of every digest: changing what a town workbook shows (a column, a sheet) changes this, and
the next night rewrites every town."""
RECORDS = ".rosterlink"
"""The folder (inside the town folder) of the records of what each town workbook holds: one small
JSON file per workbook (``<file>.json``: town, file, digest, as-of date, size and time of the file
as written). Each is written by the task that wrote its workbook: no two tasks share a file."""


def digest(t: Town, as_of: dt.date, rows: list[tuple[str, tuple]] | None = None) -> str:
    """What the town's workbook shows, as a SHA-256 digest, leaving out what only says when: the
    as-of date, the 变化 column and the pairs ended on the night (the current pairs change with
    them), the counts of pairs made and ended. Two nights with the same digest give the town the
    same workbook but for its date; a night that changes nothing of a town leaves its workbook as it
    is, and the date it states stays the night its data last changed."""
    h = hashlib.sha256()

    def put(value: object) -> None:
        h.update(repr(value).encode("utf-8"))
        h.update(b"\n")

    put((LAYOUT, t.town))
    for change, values in pair_rows(t, as_of) if rows is None else rows:
        if change != ENDED:
            put(values[:9] + values[10:])
    own = figures(t, as_of)
    put((own.active, own.paired, own.pairs, own.same, sorted(own.cadres)))
    put(
        [
            (r.town, r.village, r.head_name, r.head_id_number, t.categories.get(r.household_key, ""))
            for r in own.unpaired
        ]
    )
    put(case_rows(t.cases, case_leaders(t.case_pairs, as_of)))
    put(t.warnings)
    if t.followup_figures is not None:
        line = figures_line(t.followup_figures)
        put([line[i] for i in _TOWN_FOLLOWUP])
    return h.hexdigest()


@dataclass(frozen=True)
class Record:
    """What a town workbook holds, as its writer left it."""

    town: str | None
    file: str
    digest: str
    as_of: dt.date
    size: int
    mtime_ns: int

    def current(self, where: Path, file: str, digest: str) -> bool:
        """The workbook is there, as written, under ``file``, and shows what ``digest`` says."""
        if (self.file, self.digest) != (file, digest):
            return False
        try:
            stat = (where / file).stat()
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)


def _record_path(where: Path, file: str) -> Path:
    return where / RECORDS / f"{file}.json"


def read_records(where: Path) -> dict[str | None, Record]:
    """town -> the record of its workbook (none for a folder never written, or a record that cannot
    be read: its town is rewritten)."""
    found: dict[str | None, Record] = {}
    for path in sorted((where / RECORDS).glob("*.xlsx.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            record = Record(
                town=raw["town"],
                file=str(raw["file"]),
                digest=str(raw["digest"]),
                as_of=dt.date.fromisoformat(raw["as_of"]),
                size=int(raw["size"]),
                mtime_ns=int(raw["mtime_ns"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("export: unreadable town workbook record %s: its town is written again", path.name)
            continue
        found[record.town] = record
    return found


def _save_record(where: Path, record: Record) -> None:
    fields = {**asdict(record), "as_of": record.as_of.isoformat()}
    jsonfile.write_atomic(_record_path(where, record.file), fields, sort_keys=True)


def write_town(
    where: Path, t: Town, as_of: dt.date, file: str, digest: str, rows: list[tuple[str, tuple]] | None = None
) -> Path:
    """Write the town's workbook, then its record."""
    path = town_book(t, as_of, rows).save(where / file)
    stat = path.stat()
    _save_record(where, Record(t.town, file, digest, as_of, stat.st_size, stat.st_mtime_ns))
    return path


def remove(where: Path, record: Record) -> None:
    """Remove a town's workbook and its record (a town with nothing left to show, or a workbook
    renamed)."""
    (where / record.file).unlink(missing_ok=True)
    _record_path(where, record.file).unlink(missing_ok=True)


@dataclass
class TownBooks:
    """The town workbooks after a night: those written tonight, and each town's file and as-of date."""

    written: dict[str | None, Path] = field(default_factory=dict)
    books: dict[str | None, tuple[str, dt.date]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    token: str | None = None  # what they were checked against tonight (:func:`checked_token`)


def gone(where: Path, records: dict[str | None, Record], towns: Collection[str | None]) -> list[str]:
    """Remove the workbooks of towns that have nothing left to show (no active household, no pair
    in force or changed tonight, no open key case): the town's last list is not left lying in a
    folder that is shared; its pairs stay in the change logs and the warehouse's history."""
    removed = []
    for town, record in records.items():
        if town not in towns:
            remove(where, record)
            removed.append(record.file)
    if removed:
        log.info("export: %d town workbooks removed (towns with nothing left to show)", len(removed))
    return removed


# --- writing -------------------------------------------------------------------------------------------
def _write(
    where: Path,
    t: Town,
    as_of: dt.date,
    file: str,
    d: str,
    record: Record | None,
    rows: list[tuple[str, tuple]] | None = None,
) -> Path:
    if record is not None and record.file != file:
        remove(where, record)  # the town's file name changed (two towns met on one name)
    return write_town(where, t, as_of, file, d, rows)


def books(settings: Settings) -> dict[str | None, tuple[str, dt.date]]:
    """town -> its workbook's file name and the date its data is as of (from the records)."""
    return {town: (r.file, r.as_of) for town, r in read_records(folder(settings)).items()}


def write_town_workbooks(eng: sa.Engine, settings: Settings, as_of: dt.date) -> TownBooks:
    """Every town's workbook, ``<export_dir>/分镇结对名单/<town>_结对名单.xlsx``, written only when what
    it shows changed (or the file is missing or not as written); towns gone are removed. In one
    process (the CLI's and the benchmarks' way): the DAG's plan (:func:`plan`) and its batches
    (:func:`write_batch`) one after the other."""
    run_id = f"in-process-{os.getpid()}-{dt.datetime.now().timestamp()}"
    batches, removed = _plan(eng, settings, as_of, run_id)
    done = TownBooks(removed=removed)
    for b in batches:
        done.written.update(_write_batch(eng, settings, as_of, run_id, b["batch"]))
    checked(settings, run_id)
    done.books = books(settings)
    done.token = checked_token(settings, run_id)
    log.info("export: %d of %d town workbooks written", len(done.written), len(done.books))
    return done


PLAN = "plan.json"
"""The night's plan (in the records folder): every town with its file name, batch by batch. The
batches travel through XCom as their numbers and sizes only: a province's thousand town names would
not fit in the few kilobytes a task passes on."""


STATE = "state.json"
"""What every town workbook was last checked against (in the records folder): the inputs' token
(:func:`inputs_token`) and the night. Written only once every town of a night is written or found
current: the DAG's summary task (which runs only when every batch succeeded) writes it, and so does
:func:`write_town_workbooks`. A night whose token is the same keeps the workbooks (:func:`plan`)."""

# the code that decides what a town workbook shows: a change to it is a change of the inputs
_SHOWING_CODE = (
    "export/town_books.py",
    "export/followup_sheets.py",
    "export/pairs.py",
    "export/common.py",
    "core/masking.py",
    "core/workbook.py",
    "followup/figures.py",
)


def inputs_token(conn: sa.Connection, cfg: FollowupConfig | None = None) -> str:
    """A digest of everything the town workbooks are made from, short of reading it: the
    warehouse's generation (every stage that changes entities, statuses, pairs or follow-through
    figures records the change: ``content_change``), the tables' row counts and the few figures
    that move when rows are added, ended or flagged without a stage (a fix by hand), the
    follow-through settings, the layout and the code that writes the workbooks. Equal tokens: every
    town workbook would show what it shows now, but for the date."""
    fh, v, m = schema.followup_household, schema.visit, schema.household_merge

    def count(table: sa.Table, *extra: sa.ColumnElement) -> tuple:
        return tuple(conn.execute(sa.select(sa.func.count(), *extra).select_from(table)).one())

    figures = (
        warehouse.generation(conn),
        *builds.entity_counts(conn),
        count(
            fh,
            sa.func.sum(fh.c.overdue),
            sa.func.sum(fh.c.in_person_visits),
            sa.func.sum(fh.c.phone_contacts),
        ),
        count(v, sa.func.max(v.c.visit_id)),
        count(m),
    )
    package = Path(__file__).resolve().parents[1]
    code = builds.code_digest([package / name for name in _SHOWING_CODE])
    h2 = hashlib.sha256(repr((LAYOUT, code, repr(cfg or FollowupConfig.load()), figures)).encode("utf-8"))
    return h2.hexdigest()


def _read_state(where: Path) -> dict:
    return jsonfile.read_dict(where / RECORDS / STATE)


def checked(settings: Settings, run_id: str) -> None:
    """Every town of tonight's plan is written or found current: keep the plan's token as what
    the workbooks were checked against (the next night with the same token keeps them)."""
    where = folder(settings)
    kept = jsonfile.read_dict(where / RECORDS / PLAN)
    if kept.get("run_id") == run_id and kept.get("token"):
        jsonfile.write_atomic(
            where / RECORDS / STATE, {"token": kept["token"], "run_id": run_id, "as_of": kept["as_of"]}
        )


def checked_token(settings: Settings, run_id: str) -> str | None:
    """The inputs' token (:func:`inputs_token`) tonight's town workbooks were all checked against
    (None: this run did not check them all)."""
    state = _read_state(folder(settings))
    token = state.get("token")
    return token if state.get("run_id") == run_id and isinstance(token, str) else None


class PlanMismatch(RuntimeError):
    """The plan in the town folder is another night's (a batch task of an old run started again)."""


def town_sizes(conn: sa.Connection, as_of: dt.date) -> dict[str | None, int]:
    """Every town that has a workbook tonight (an active household, a pair in force or made or
    ended tonight, an open key case: the towns :func:`read_towns` gives) -> the rows it lists,
    counted in the warehouse."""
    h, k = schema.household, schema.petition_case
    sizes: dict[str | None, int] = defaultdict(int)
    for town, n in pairs_per_town(conn, as_of).items():
        sizes[town] += n
    for column, where in ((h.c.town, h.c.status == "active"), (k.c.town, k.c.status == "open")):
        for town, n in conn.execute(sa.select(column, sa.func.count()).where(where).group_by(column)).all():
            sizes[town] += int(n)
    return dict(sizes)


def _split(weights: dict[str | None, int], batches: int) -> list[list[str | None]]:
    """Towns into at most ``batches`` groups of about equal weight (the heaviest first, each into
    the lightest group so far), each group in the district's order, the groups by their first town."""
    groups: list[list[str | None]] = [[] for _ in range(min(batches, len(weights)))]
    loads = [0] * len(groups)
    for town in sorted(weights, key=lambda t: (-weights[t], town_key(t))):
        i = loads.index(min(loads))
        groups[i].append(town)
        loads[i] += weights[town]
    ordered = [town_order(g) for g in groups if g]
    return sorted(ordered, key=lambda g: town_key(g[0]))


BATCH_ROWS = 100_000
"""A batch task is started for every this many rows the towns list (households, pairs, key cases),
up to ``settings.town_batches``: a district of 15,000 households is one batch (a task's start and its
scan of the pairs cost more than a second batch saves); a province of a million, four."""


def plan(eng: sa.Engine, settings: Settings, as_of: dt.date, run_id: str) -> list[dict]:
    """Split tonight's towns into batches of about equal size (one per :data:`BATCH_ROWS` rows, at
    most ``settings.town_batches``; counted in the warehouse: no row is read here), keep that plan in
    the town folder with each town's file name, and remove the workbooks of towns gone. Returns one
    small dict per batch (``batch``: its number from 1, ``towns``, ``rows``: the households, pairs and
    cases it lists).

    When nothing the workbooks are made from has changed since they were last all checked (the
    same :func:`inputs_token`), the plan is one batch that keeps them: it only looks at each file
    on disk and writes those missing or not as written (a quiet night reads no pair)."""
    return _plan(eng, settings, as_of, run_id)[0]


def _plan(eng: sa.Engine, settings: Settings, as_of: dt.date, run_id: str) -> tuple[list[dict], list[str]]:
    where = folder(settings)
    state = _read_state(where)
    with eng.connect() as conn:
        token = inputs_token(conn)
        keep = state.get("token") == token
        towns = _planned_towns(where, token, as_of, latest_pair_date(conn)) if keep else None
        sizes = town_sizes(conn, as_of) if towns is None else dict.fromkeys(towns, 0)
    removed = gone(where, read_records(where), sizes)
    names = file_names(town_order(sizes))
    if keep:
        groups = [town_order(sizes)] if sizes else []
    else:
        wanted = -(-sum(sizes.values()) // BATCH_ROWS)  # rounded up
        groups = _split(sizes, max(1, min(settings.town_batches, wanted)))
    batches = [[[t, names[t]] for t in g] for g in groups]
    kept = {"run_id": run_id, "as_of": as_of.isoformat(), "token": token, "keep": keep, "batches": batches}
    jsonfile.write_atomic(where / RECORDS / PLAN, kept)
    if keep:
        log.info(
            "export: nothing the %d town workbooks show has changed since the night of %s: they are kept "
            "(each file is only looked at)",
            len(sizes),
            state.get("as_of"),
        )
    else:
        log.info("export: %d towns in %d batches", len(sizes), len(groups))
    return [
        {"batch": i, "towns": len(g), "rows": 0 if keep else sum(sizes[t] for t in g)}
        for i, g in enumerate(groups, 1)
    ], removed


def latest_pair_date(conn: sa.Connection) -> str | None:
    """The latest date a pair started or ended, as YYYY-MM-DD (two index lookups)."""
    p = schema.pairing
    dates = [conn.execute(sa.select(sa.func.max(col))).scalar_one() for col in (p.c.valid_from, p.c.valid_to)]
    known = [d for d in dates if d is not None]
    return max(known).isoformat() if known else None


def _planned_towns(where: Path, token: str, as_of: dt.date, latest: str | None) -> list[str | None] | None:
    """The towns of the last plan, when they are tonight's without counting: that plan was made
    against ``token`` (the same inputs), for a night after the last pair started or ended (so it
    listed no town for its pairs changed that night alone) and not after tonight. None otherwise."""
    last = jsonfile.read_dict(where / RECORDS / PLAN)
    try:
        planned = str(last["as_of"])
        if last.get("token") != token or planned > as_of.isoformat():
            return None
        if latest is not None and latest >= planned:
            return None
        return [town for batch in last["batches"] for town, _ in batch]
    except (KeyError, TypeError, ValueError):
        return None


def write_batch(eng: sa.Engine, settings: Settings, as_of: dt.date, run_id: str, batch: int) -> list[Path]:
    """One batch of tonight's plan (``batch`` from 1): read its towns, and write the workbook of each
    whose content changed (or whose file is missing or not as written). Returns those written. A
    plan that keeps the workbooks reads only the towns whose file is missing or not as written."""
    return list(_write_batch(eng, settings, as_of, run_id, batch).values())


def _write_batch(
    eng: sa.Engine, settings: Settings, as_of: dt.date, run_id: str, batch: int
) -> dict[str | None, Path]:
    where = folder(settings)
    try:
        kept = json.loads((where / RECORDS / PLAN).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanMismatch(f"the town workbooks' plan cannot be read ({type(exc).__name__})") from exc
    if (kept.get("run_id"), kept.get("as_of")) != (run_id, as_of.isoformat()):
        raise PlanMismatch("the town workbooks' plan is another night's: run the night again")
    entries = [(town, file) for town, file in kept["batches"][batch - 1]]
    records = read_records(where)
    if kept.get("keep"):
        stale = []
        for town, file in entries:
            record = records.get(town)
            if record is None or not record.current(where, file, record.digest):
                stale.append((town, file))
        todo = stale
    else:
        todo = entries
    towns: dict[str | None, Town] = {}
    if todo:
        with eng.connect() as conn:
            towns = read_towns(conn, as_of, [town for town, _ in todo])
    written = {}
    for town, file in todo:
        t = towns.get(town) or Town(town)
        rows = pair_rows(t, as_of)
        d, record = digest(t, as_of, rows), records.get(town)
        if record is None or not record.current(where, file, d):
            written[town] = _write(where, t, as_of, file, d, record, rows)
    log.info(
        "export: batch %d, %d of %d town workbooks written%s",
        batch,
        len(written),
        len(entries),
        f" ({len(entries) - len(todo)} kept as they are without reading)" if kept.get("keep") else "",
    )
    return written
