"""Exports: feedback workbooks for the departments, the pairing workbook and the change log.

The last task of the night. Everything a person reads goes through one writer (:class:`_Book`):
every string is masked for ID-/phone-shaped numbers (``masking.mask_text``), stripped of characters
XML cannot hold, passed through ``masking.defuse`` and written as text (``write_string``), so
nothing coming from a spreadsheet can become a live formula. ID numbers and phones are masked
explicitly with ``mask_id``/``mask_phone`` as well. Workbooks are streamed by XlsxWriter in its
constant-memory mode (a province's million pairs in flat memory; a table longer than a sheet goes
on in continuation sheets), to a temporary file in the target folder that replaces the target only
when complete (``os.replace``), with fixed document properties and zip timestamps so the same
warehouse gives the same bytes.

Outputs:

- ``<intake_dir>/<department>/feedback/<file stem>.结果.xlsx`` for every file of the night (sheets
  汇总, 错误明细, 提示); ``intake_file.feedback_path`` is set, relative to the intake root.
- ``<export_dir>/结对名单_<YYYYMMDD>.xlsx``: 汇总, one sheet per town, 重点信访案件, 本次变化.
- ``<export_dir>/变动日志_<YYYYMMDD>.xlsx``: pairs ended and made on ``as_of``.
- ``<export_dir>/意见建议_<YYYYMMDD>/<department>.xlsx``: opinions heard on visits, per responsible
  department (written by :mod:`rosterlink.followup.visits`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import sqlalchemy as sa
import xlsxwriter
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill

from rosterlink.core.masking import defuse, mask_id, mask_phone, mask_text
from rosterlink.core.spec import CATEGORY_LABELS, DEPARTMENTS, FIVE_ONES, RANK_LABELS, catalogue, district
from rosterlink.intake.scan import FEEDBACK_DIR
from rosterlink.ops import faults
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

# --- Chinese labels ------------------------------------------------------------------------------
STATUS_LABELS = {
    "loaded": "已导入",
    "rejected": "整份退回",
    "duplicate": "重复文件",
    "pending": "处理中（未完成）",
}
CATEGORY_ORDER = ("hardship", "orphan", "old_member")
TARGET_LABELS = {"household": "家庭", "case": "信访案件"}

# Why a pair was made (pairing.made_reason) or ended (pairing.end_reason). Unknown codes are shown
# as they are, so a new code in the pairing stage never breaks the export.
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


INSTRUCTION_ERRORS = "请按“错误明细”表逐行修改后，将整份文件重新放入本文件夹。"
INSTRUCTION_OK = "全部数据已导入，无需处理。"
INSTRUCTION_WARN = "数据已导入。请查看“提示”表，核对有提示的行；如需更正，修改后将整份文件重新放入本文件夹。"
INSTRUCTION_REJECTED = "整份文件未导入。请按上面的原因修改后，将整份文件重新放入本文件夹。"
INSTRUCTION_DUPLICATE = "此文件与已导入的文件内容相同，无需处理。如需更正数据，请修改后重新放入本文件夹。"
INSTRUCTION_PENDING = "本文件尚未处理完毕，结果将在下次处理后更新。"

UNKNOWN_TOWN_SHEET = "镇街未明确"
BEIJING = dt.timedelta(hours=8)  # intake_file times are UTC (warehouse.now())

# --- styles --------------------------------------------------------------------------------------
RED = PatternFill("solid", fgColor="FFC7CE")
YELLOW = PatternFill("solid", fgColor="FFEB9C")
GREEN = PatternFill("solid", fgColor="C6EFCE")
GREY = PatternFill("solid", fgColor="D9D9D9")
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
BOLD = Font(bold=True)
TITLE = Font(bold=True, size=14)
WRAP = Alignment(wrap_text=True, vertical="top")
DATE_FORMAT = "yyyy-mm-dd"
PERCENT_FORMAT = "0.0%"


def reason_label(code: str | None) -> str:
    if not code:
        return ""
    return REASON_LABELS.get(code, code)


# --- the one writer ------------------------------------------------------------------------------
def _text(value: str) -> str:
    """A string as it may appear in a written workbook: masked, XML-safe, never a formula."""
    s = ILLEGAL_CHARACTERS_RE.sub("", mask_text(value))
    return str(defuse(s))


MAX_SHEET_ROWS = 1_048_576
"""Rows an .xlsx sheet can hold (Excel's limit); a longer table continues on a sheet named
``<title>(2)`` with the same header (a province's night-1 change sheet lists a million pairs)."""

_WORKBOOK_OPTIONS = {
    "constant_memory": True,  # rows stream to disk as they are written: memory stays flat
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}


@dataclass
class _Sheet:
    book: _Book
    ws: object
    width: int
    rows: int = 0
    autofilter: bool = False
    title: str = ""
    widths: Sequence[float] = ()
    columns: Sequence[str] = ()
    freeze: bool = True
    max_rows: int = MAX_SHEET_ROWS
    parts: int = 1  # the sheet and its continuation sheets

    def cell(
        self,
        value: object,
        *,
        fill: PatternFill | None = None,
        font: Font | None = None,
        wrap: bool = False,
        number_format: str | None = None,
    ) -> tuple | None:
        """One cell, as ``(value, format)``: strings masked, defused and written as text; dates
        formatted; None stays empty (a blank cell when it has a fill)."""
        if value is None or value == "":
            if fill is None:
                return None
            value = None
        fmt = number_format
        if isinstance(value, bool):
            value = "是" if value else "否"
        elif isinstance(value, dt.datetime):
            fmt = fmt or "yyyy-mm-dd hh:mm"
        elif isinstance(value, dt.date):
            fmt = fmt or DATE_FORMAT
        elif isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif not isinstance(value, (int, float, str)) and value is not None:
            value = str(value)  # anything else is shown as text
        if isinstance(value, str):
            value = _text(value)
        style = (
            self.book.style(fmt, fill, font, wrap)
            if (fmt or fill is not None or font is not None or wrap)
            else None
        )
        return (value, style)

    def append(self, cells: Sequence[tuple | None]) -> None:
        """Write one row of :meth:`cell` results (strings always as text, never as a formula)."""
        if self.rows >= self.max_rows:
            self._continue()
        ws, r = self.ws, self.rows
        for c, cell in enumerate(cells):
            if cell is None:
                continue
            value, style = cell
            if value is None:
                ws.write_blank(r, c, None, style)
            elif isinstance(value, str):
                ws.write_string(r, c, value, style)
            elif isinstance(value, dt.date):
                ws.write_datetime(r, c, value, style)
            else:
                ws.write_number(r, c, value, style)
        self.rows += 1

    def row(
        self,
        values: Sequence[object],
        *,
        fill: PatternFill | None = None,
        font: Font | None = None,
        wrap: Iterable[int] = (),
        formats: dict[int, str] | None = None,
    ) -> None:
        wrap = set(wrap)
        formats = formats or {}
        self.append(
            [
                self.cell(v, fill=fill, font=font, wrap=i in wrap, number_format=formats.get(i))
                for i, v in enumerate(values)
            ]
        )

    def header(self, names: Sequence[str]) -> None:
        self.append([self.cell(n, fill=HEADER_FILL, font=BOLD) for n in names])

    def _close_filter(self) -> None:
        if self.autofilter and self.width:
            self.ws.autofilter(0, 0, max(self.rows, 1) - 1, self.width - 1)

    def _continue(self) -> None:
        """The sheet is full: close its filter range and go on writing on a continuation sheet."""
        self._close_filter()
        self.parts += 1
        suffix = f"({self.parts})"
        self.ws, self.rows = self.book.new_ws(f"{self.title[: 31 - len(suffix)]}{suffix}", self.widths), 0
        if self.columns:
            if self.freeze:
                self.ws.freeze_panes(1, 0)
            self.header(self.columns)


def _rgb(fill: PatternFill) -> str:
    return "#" + str(fill.fgColor.rgb)[-6:]


@dataclass
class _Book:
    """A streaming workbook (XlsxWriter, constant memory) with the house rules built in."""

    stamp: dt.datetime
    sheets: list[_Sheet] = field(default_factory=list)
    _styles: dict[tuple, object] = field(default_factory=dict)
    _titles: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wb = xlsxwriter.Workbook(None, _WORKBOOK_OPTIONS)
        # fixed document properties: the same warehouse gives the same bytes (XlsxWriter already
        # gives every zip member a fixed timestamp)
        self.wb.set_properties({"author": "rosterlink", "created": self.stamp})

    def style(
        self, number_format: str | None, fill: PatternFill | None, font: Font | None, wrap: bool
    ) -> object:
        """The cell format for a combination, built once."""
        key = (number_format, id(fill), id(font), wrap)
        found = self._styles.get(key)
        if found is None:
            props: dict[str, object] = {}
            if number_format:
                props["num_format"] = number_format
            if fill is not None:
                props.update(pattern=1, bg_color=_rgb(fill))
            if font is not None:
                props["bold"] = bool(font.b)
                if font.sz:
                    props["font_size"] = float(font.sz)
            if wrap:
                props.update(text_wrap=True, valign="top")
            found = self._styles[key] = self.wb.add_format(props)
        return found

    def new_ws(self, title: str, widths: Sequence[float] = ()) -> object:
        ws = self.wb.add_worksheet(_sheet_title(title, self._titles))
        self._titles.append(ws.name)
        for i, width in enumerate(widths):
            ws.set_column(i, i, width)
        return ws

    def sheet(
        self,
        title: str,
        widths: Sequence[float] = (),
        *,
        columns: Sequence[str] = (),
        freeze: bool = True,
        autofilter: bool = True,
    ) -> _Sheet:
        """A new sheet; with ``columns`` it starts with a bold header row (frozen, with a filter)."""
        ws = self.new_ws(title, widths)
        sheet = _Sheet(
            self,
            ws,
            max(len(widths), len(columns)),
            autofilter=bool(columns) and autofilter,
            title=ws.name,
            widths=widths,
            columns=columns,
            freeze=freeze,
        )
        if columns:
            if freeze:
                ws.freeze_panes(1, 0)
            sheet.header(columns)
        self.sheets.append(sheet)
        return sheet

    def save(self, target: Path) -> Path:
        """Write atomically: a temporary file in the same folder, then ``os.replace``."""
        if not self.sheets:
            self.sheet("Sheet1")
        for sheet in self.sheets:
            sheet._close_filter()  # noqa: SLF001
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".~", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            self.wb.filename = tmp
            self.wb.close()
            faults.point("export.write")
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


def _sheet_title(title: str, taken: list[str]) -> str:
    base = _BAD_SHEET_CHARS.sub("_", ILLEGAL_CHARACTERS_RE.sub("", title)).strip("'") or "Sheet"
    base = base[:31]
    name, n = base, 2
    while name.lower() in (t.lower() for t in taken):
        suffix = f"({n})"
        name = base[: 31 - len(suffix)] + suffix
        n += 1
    return name


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


def _date_tag(day: dt.date) -> str:
    return f"{day:%Y%m%d}"


# --- 1. feedback to the departments --------------------------------------------------------------
_BAD_NAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def _feedback_name(department: str, file_name: str, *, keep_suffix: bool = False) -> str:
    """``civil_affairs/2024/特困.xlsx`` -> ``2024_特困.结果.xlsx`` (subfolders flattened with ``_``)."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    parts = list(path.parts)
    if parts and parts[0] == department:
        parts = parts[1:]
    parts = [p for p in parts if p not in ("", ".", "..")] or ["file"]
    last = parts[-1] if keep_suffix else (PurePosixPath(parts[-1]).stem or parts[-1])
    stem = "_".join([*parts[:-1], last])
    stem = _BAD_NAME_CHARS.sub("_", stem).lstrip(".~$_ ") or "file"
    while len(stem.encode("utf-8")) > 200:
        stem = stem[1:]
    return f"{stem}.结果.xlsx"


def _feedback_dir(intake_dir: Path, department: str) -> Path | None:
    """The department's own feedback folder, or None if it is not safe to write there."""
    if department not in DEPARTMENTS:
        return None
    root = intake_dir.resolve()
    base = root / department
    folder = base / FEEDBACK_DIR
    for p in (base, folder):
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            return None
    folder.mkdir(parents=True, exist_ok=True)
    if not folder.resolve().is_relative_to(base.resolve()) or not base.resolve().is_relative_to(root):
        return None
    return folder


def _finding_rows(conn: sa.Connection, table: sa.Table, file_id: int) -> list:
    rows = conn.execute(
        sa.select(
            table.c.id,
            table.c.sheet,
            table.c.row_number,
            table.c.field,
            table.c.header,
            table.c.value,
            table.c.message,
        )
        .where(table.c.file_id == file_id)
        .order_by(table.c.id)
    ).all()
    first_seen: dict[str, int] = {}
    for r in rows:
        first_seen.setdefault(r.sheet, len(first_seen))
    return sorted(rows, key=lambda r: (first_seen[r.sheet], r.row_number, r.id))


def _merged_rows(conn: sa.Connection, file_id: int) -> int:
    s = schema.source_row
    groups = (
        sa.select(sa.func.count().label("n"))
        .where(s.c.file_id == file_id)
        .group_by(s.c.entity_kind, s.c.entity_key)
        .having(sa.func.count() > 1)
        .subquery()
    )
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(groups.c.n), 0))).scalar_one())


def _finding_sheet(book: _Book, title: str, rows: list, fill: PatternFill) -> None:
    fields = catalogue().fields
    sheet = book.sheet(
        title, (18, 8, 20, 26, 80), columns=("工作表", "行号", "列名", "填写内容", "问题及修改方法")
    )
    for r in rows:
        spec = fields.get(r.field)
        header = r.header or (spec.label if spec else (r.field or "（整行）"))
        value = r.value
        if spec is not None and spec.minor and value:
            value = "（未成年人信息，不显示）"
        sheet.row(
            (
                r.sheet,
                r.row_number,
                header,
                mask_text(value) if value is not None else None,
                mask_text(r.message),
            ),
            fill=fill,
            wrap=(4,),
        )


def _write_one_feedback(conn: sa.Connection, f: sa.Row, target: Path) -> None:
    cat = catalogue()
    rejected = _finding_rows(conn, schema.rejected_row, f.file_id)
    warnings = _finding_rows(conn, schema.row_warning, f.file_id)
    sheets = conn.execute(
        sa.select(schema.intake_sheet).where(schema.intake_sheet.c.file_id == f.file_id)
    ).all()
    merged = _merged_rows(conn, f.file_id)

    if f.status == "rejected":
        instruction = INSTRUCTION_REJECTED
    elif f.status == "duplicate":
        instruction = INSTRUCTION_DUPLICATE
    elif f.status == "pending":
        instruction = INSTRUCTION_PENDING
    elif rejected or (f.rows_rejected or 0):
        instruction = INSTRUCTION_ERRORS
    elif warnings:
        instruction = INSTRUCTION_WARN
    else:
        instruction = INSTRUCTION_OK

    stamp = f.processed_at or f.received_at or dt.datetime(2000, 1, 1)
    book = _Book(stamp=stamp.replace(microsecond=0))
    summary = book.sheet("汇总", (22, 60, 12, 12, 40), freeze=False)
    summary.row(("报送文件处理结果",), font=TITLE)
    dept_label = cat.departments.get(f.department, {}).get("label", f.department)
    received = (f.received_at + BEIJING).strftime("%Y-%m-%d %H:%M") if f.received_at else ""
    lines: list[tuple[str, object]] = [
        ("文件名", f.file_name),
        ("报送部门", dept_label),
        ("接收时间（北京时间）", received),
        ("处理结果", STATUS_LABELS.get(f.status, f.status)),
    ]
    if f.status in ("rejected", "duplicate") or f.message:
        lines.append(("原因", mask_text(f.message) if f.message else ""))
    lines += [
        ("读取行数", f.rows_read or 0),
        ("导入行数", f.rows_loaded or 0),
        ("退回行数（见“错误明细”）", f.rows_rejected or 0),
        ("有提示的行数（见“提示”）", f.rows_warned or 0),
        ("与本文件其他行为同一家庭或人员、已合并的行数", merged),
        ("处理说明", instruction),
    ]
    for label, value in lines:
        fill = RED if label in ("原因",) or (label == "处理结果" and f.status == "rejected") else None
        summary.append([summary.cell(label, font=BOLD), summary.cell(value, fill=fill, wrap=True)])
    if sheets:
        summary.row(())
        summary.row(("工作表", "名单类型", "表头所在行", "读取行数", "说明"), font=BOLD, fill=HEADER_FILL)
        for s in sheets:
            roster = cat.rosters.get(s.roster) if s.roster else None
            summary.row(
                (
                    s.sheet,
                    roster.label if roster else (s.roster or "未识别"),
                    s.header_row,
                    s.rows_read or 0,
                    s.note,
                ),
                wrap=(4,),
            )

    _finding_sheet(book, "错误明细", rejected, RED)
    if warnings:
        _finding_sheet(book, "提示", warnings, YELLOW)
    book.save(target)


def write_feedback(eng: sa.Engine, settings: Settings, file_ids: list[int]) -> list[Path]:
    """One feedback workbook per file of the night, in the file's own department folder.

    Sets ``intake_file.feedback_path`` (relative to the intake root). A file whose department
    folder is missing from the known departments or unsafe (a symlink) gets no feedback.
    """
    if not file_ids:
        return []
    t = schema.intake_file
    root = settings.intake_dir.resolve()
    written: list[Path] = []
    with eng.connect() as conn:
        files = conn.execute(
            sa.select(t).where(t.c.file_id.in_(sorted(set(file_ids)))).order_by(t.c.file_id)
        ).all()
    # a stem shared by two files of one department tonight keeps the original extension in the name
    names: dict[int, str] = {}
    seen: dict[tuple[str, str], int] = defaultdict(int)
    for f in files:
        seen[(f.department, _feedback_name(f.department, f.file_name))] += 1
    for f in files:
        name = _feedback_name(f.department, f.file_name)
        if seen[(f.department, name)] > 1:
            name = _feedback_name(f.department, f.file_name, keep_suffix=True)
        names[f.file_id] = name
    for f in files:
        folder = _feedback_dir(root, f.department)
        if folder is None:
            log.warning(
                "feedback: no safe feedback folder for file_id=%s (department %s)", f.file_id, f.department
            )
            continue
        target = folder / names[f.file_id]
        with eng.connect() as conn:
            _write_one_feedback(conn, f, target)
        rel = target.relative_to(root).as_posix()
        with eng.begin() as conn:
            conn.execute(t.update().where(t.c.file_id == f.file_id).values(feedback_path=rel))
        written.append(target)
        log.info("feedback: file_id=%s written (%s)", f.file_id, f.status)
    return written


# --- 2. pairing workbook ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pair:
    pairing_id: int
    target_kind: str
    target_key: str
    valid_from: dt.date
    valid_to: dt.date | None
    made_reason: str
    end_reason: str | None
    cadre_key: str
    cadre_name: str | None
    cadre_id: str | None
    cadre_unit: str | None
    cadre_rank: str | None
    cadre_town: str | None
    cadre_phone: str | None
    # household or case
    name: str | None
    id_number: str | None
    town: str | None
    village: str | None
    status: str | None

    def change(self, as_of: dt.date) -> str:
        if self.valid_to is not None and self.valid_to <= as_of:
            return "结对结束"
        return "新结对" if self.valid_from == as_of else ""


def _pairs(conn: sa.Connection, as_of: dt.date, *, current: bool, changed: bool) -> list[_Pair]:
    """Pairs current on ``as_of`` and/or made or ended on ``as_of``, with cadre and target joined."""
    p, c, h, k = schema.pairing, schema.cadre, schema.household, schema.petition_case
    is_current = sa.and_(p.c.valid_from <= as_of, sa.or_(p.c.valid_to.is_(None), p.c.valid_to > as_of))
    is_changed = sa.or_(p.c.valid_from == as_of, p.c.valid_to == as_of)
    cond = sa.or_(*([is_current] if current else []), *([is_changed] if changed else []))
    is_house = p.c.target_kind == "household"
    query = (
        sa.select(
            p.c.pairing_id,
            p.c.target_kind,
            p.c.target_key,
            p.c.valid_from,
            p.c.valid_to,
            p.c.made_reason,
            p.c.end_reason,
            p.c.cadre_key,
            c.c.name.label("cadre_name"),
            c.c.id_number.label("cadre_id"),
            c.c.unit.label("cadre_unit"),
            c.c.rank.label("cadre_rank"),
            c.c.town.label("cadre_town"),
            c.c.phone.label("cadre_phone"),
            sa.case((is_house, h.c.head_name), else_=k.c.petitioner_name).label("name"),
            sa.case((is_house, h.c.head_id_number), else_=k.c.case_number).label("id_number"),
            sa.case((is_house, h.c.town), else_=k.c.town).label("town"),
            sa.case((is_house, h.c.village), else_=None).label("village"),
            sa.case((is_house, h.c.status), else_=k.c.status).label("status"),
        )
        .select_from(
            p.outerjoin(c, c.c.cadre_key == p.c.cadre_key)
            .outerjoin(h, sa.and_(is_house, h.c.household_key == p.c.target_key))
            .outerjoin(k, sa.and_(p.c.target_kind == "case", k.c.case_key == p.c.target_key))
        )
        .where(cond)
        .order_by(p.c.pairing_id)
    )
    return [_Pair(**r._mapping) for r in conn.execute(query)]


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


def _town_order(towns: Iterable[str | None]) -> list[str | None]:
    known = list(district().towns)
    rest = sorted({t for t in towns if t not in known and t is not None})
    order = [t for t in known if t in set(towns)] + rest
    if None in set(towns):
        order.append(None)
    return order


def _town_key(town: str | None) -> tuple[int, str]:
    known = district().towns
    if town in known:
        return (known.index(town), "")
    return (len(known) + (1 if town is None else 0), town or "")


def _reason_of(pair: _Pair, as_of: dt.date) -> str:
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


def _followup_cells(row: object | None, pair: _Pair, as_of: dt.date) -> tuple:
    """首次入户走访, 最近联系, 首次走访期限, 走访情况 of a current pair's household (rosterlink.followup.visits)."""
    if row is None or pair.change(as_of) == "结对结束":
        return (None, None, None, None)
    if row.overdue:
        state = "超期未入户走访" + ("（仅电话联系）" if row.phone_contacts else "")
    elif row.visited_in_person:
        state = f"已入户走访{row.in_person_visits}次"
    else:
        state = "尚未入户走访" + ("（已电话联系）" if row.phone_contacts else "")
    return (row.first_in_person_on, row.last_contact_on, row.deadline, state)


def _town_sheets(
    book: _Book, pairs: list[_Pair], categories: dict[str, str], as_of: dt.date, followup: dict | None = None
) -> None:
    by_town: dict[str | None, list[_Pair]] = defaultdict(list)
    for pair in pairs:
        by_town[pair.town or None].append(pair)
    for town in _town_order(by_town):
        rows = sorted(
            by_town[town],
            key=lambda q: (
                q.village or "",
                q.name or "",
                q.target_key,
                q.change(as_of) != "结对结束",
                q.pairing_id,
            ),
        )
        sheet = book.sheet(town or UNKNOWN_TOWN_SHEET, TOWN_WIDTHS, columns=TOWN_COLUMNS)
        for q in rows:
            change = q.change(as_of)
            fill = GREEN if change == "新结对" else GREY if change == "结对结束" else None
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
                    *_followup_cells((followup or {}).get(q.target_key), q, as_of),
                ),
                fill=fill,
            )


def _summary_sheet(
    book: _Book, conn: sa.Connection, pairs: list[_Pair], categories: dict[str, str], as_of: dt.date
) -> None:
    h = schema.household
    households = conn.execute(
        sa.select(h.c.household_key, h.c.head_name, h.c.head_id_number, h.c.town, h.c.village).where(
            h.c.status == "active"
        )
    ).all()
    current = [q for q in pairs if q.target_kind == "household" and q.change(as_of) != "结对结束"]
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
        if change == "新结对":
            stats[q.town]["new"] += 1
        elif change == "结对结束":
            stats[q.town]["ended"] += 1
    unpaired = sorted(
        (r for r in households if r.household_key not in paired_keys),
        key=lambda r: (_town_key(r.town), r.village or "", r.head_name or "", r.household_key),
    )
    unpaired_by_town: dict[str | None, int] = defaultdict(int)
    for r in unpaired:
        unpaired_by_town[r.town] += 1

    sheet = book.sheet("汇总", (14, 12, 12, 12, 14, 12, 12, 12, 14), freeze=False)
    sheet.row((f"结对名单（截至{as_of:%Y年%m月%d日}）",), font=TITLE)
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
        font=BOLD,
        fill=HEADER_FILL,
    )
    totals = {
        "active": 0,
        "paired": 0,
        "pairs": 0,
        "same": 0,
        "cadres": set(),
        "new": 0,
        "ended": 0,
        "unpaired": 0,
    }
    for town in _town_order(set(active_by_town) | set(stats)):
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
        sheet.row(line, fill=RED if unpaired_by_town[town] else None, formats={4: PERCENT_FORMAT})
        totals["active"] += active_by_town[town]
        totals["paired"] += len(s["paired"])
        totals["pairs"] += s["pairs"]
        totals["same"] += s["same"]
        totals["cadres"] |= s["cadres"]
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
            len(totals["cadres"]),
            totals["new"],
            totals["ended"],
            totals["unpaired"],
        ),
        font=BOLD,
        formats={4: PERCENT_FORMAT},
    )
    sheet.row(())
    if unpaired:
        sheet.row((f"未结对的在册家庭：{len(unpaired)}户（应为0，请核对）",), font=BOLD, fill=RED)
        sheet.row(("镇街", "村(居)", "户主姓名", "户主身份证号", "类别"), font=BOLD, fill=HEADER_FILL)
        for r in unpaired:
            sheet.row(
                (
                    r.town or UNKNOWN_TOWN_SHEET,
                    r.village,
                    r.head_name,
                    mask_id(r.head_id_number) if r.head_id_number else None,
                    categories.get(r.household_key, ""),
                ),
                fill=RED,
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
    *(label for _, label in FIVE_ONES),
    "缺项",
)
CASE_WIDTHS = (16, 10, 12, 16, 16, 20, 9, 9, 9, 9, 9, 30)


def _case_sheet(book: _Book, conn: sa.Connection, pairs: list[_Pair], as_of: dt.date) -> None:
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
        if q.target_kind == "case" and q.change(as_of) != "结对结束" and q.cadre_name:
            leaders[q.target_key].append(q.cadre_name)
    sheet = book.sheet("重点信访案件", CASE_WIDTHS, columns=CASE_COLUMNS)
    for case in sorted(cases, key=lambda r: (_town_key(r.town), r.case_number)):
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
        cells += [sheet.cell("✓") if present[key] else sheet.cell("缺", fill=RED) for key, _ in FIVE_ONES]
        cells.append(sheet.cell("缺" + "、".join(missing), fill=RED) if missing else sheet.cell("齐全"))
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


def _masked_target(q: _Pair) -> str | None:
    if q.id_number is None:
        return None
    return mask_id(q.id_number) if q.target_kind == "household" else q.id_number


def _changes(pairs: list[_Pair], as_of: dt.date) -> list[_Pair]:
    changed = [q for q in pairs if q.change(as_of)]
    return sorted(
        changed,
        key=lambda q: (
            _town_key(q.town),
            q.change(as_of) != "结对结束",
            q.target_kind,
            q.village or "",
            q.name or "",
            q.target_key,
            q.pairing_id,
        ),
    )


SHEET_LIST_MAX = 20_000
"""Rows of a listing sheet of the pairing workbook that may grow with the whole register: the new
pairs of 本次变化 and the overdue households of 走访预警. A night with more (the first night of a
province: a million new pairs, and nobody visited yet) lists this many, then says where the rest
are: the change log lists every change, and the town sheets mark every household's pair and visit
state. Ended pairs, help outside the band and public funds are always listed in full."""


def _change_sheet(book: _Book, pairs: list[_Pair], as_of: dt.date) -> None:
    sheet = book.sheet("本次变化", CHANGE_WIDTHS, columns=CHANGE_COLUMNS)
    changes = _changes(pairs, as_of)
    new_total = sum(1 for q in changes if q.change(as_of) == "新结对")
    new_shown = 0
    for q in changes:
        change = q.change(as_of)
        ended = change == "结对结束"
        if not ended:
            if new_shown >= SHEET_LIST_MAX:
                continue
            new_shown += 1
        sheet.row(
            (
                change,
                TARGET_LABELS.get(q.target_kind, q.target_kind),
                q.town,
                q.village,
                q.name,
                _masked_target(q),
                q.cadre_name,
                q.cadre_unit,
                RANK_LABELS.get(q.cadre_rank or "", q.cadre_rank),
                q.valid_from,
                q.valid_to,
                reason_label(q.made_reason),
                reason_label(q.end_reason) if ended else None,
            ),
            fill=GREY if ended else GREEN,
        )
    if new_shown < new_total:
        sheet.row(
            (
                f"本次新结对共{new_total}条，此表只列出前{new_shown}条（结束的结对全部列出）。全部变化见"
                f"《变动日志_{_date_tag(as_of)}.xlsx》；各镇街工作表中新结对以绿色标出。",
            ),
            fill=YELLOW,
        )


def write_pairing_workbook(eng: sa.Engine, settings: Settings, as_of: dt.date) -> Path:
    """``<export_dir>/结对名单_<YYYYMMDD>.xlsx``: 汇总, one sheet per town, 重点信访案件, 本次变化,
    走访帮扶 and 走访预警 (follow-through, :mod:`rosterlink.followup.visits`)."""
    from rosterlink.followup import visits

    with eng.connect() as conn:
        pairs = _pairs(conn, as_of, current=True, changed=True)
        categories = _categories(conn)
        book = _Book(stamp=_midnight(as_of))
        _summary_sheet(book, conn, pairs, categories, as_of)
        _town_sheets(
            book,
            [q for q in pairs if q.target_kind == "household"],
            categories,
            as_of,
            visits.household_followup(conn),
        )
        _case_sheet(book, conn, pairs, as_of)
        _change_sheet(book, pairs, as_of)
        visits.followup_sheets(book, conn, as_of)
    target = book.save(Path(settings.export_dir) / f"结对名单_{_date_tag(as_of)}.xlsx")
    log.info("export: pairing workbook written (%d pairs)", len(pairs))
    return target


# --- 3. change log -------------------------------------------------------------------------------
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
    "原因代码",
)
LOG_WIDTHS = (12, 10, 10, 12, 16, 10, 22, 10, 22, 26, 13, 13, 30, 18)


def write_change_log(eng: sa.Engine, settings: Settings, as_of: dt.date) -> Path:
    """``<export_dir>/变动日志_<YYYYMMDD>.xlsx``: every pair ended or made on ``as_of``, with reasons."""
    with eng.connect() as conn:
        pairs = _changes(_pairs(conn, as_of, current=False, changed=True), as_of)
    book = _Book(stamp=_midnight(as_of))
    sheet = book.sheet("结对变动", LOG_WIDTHS, columns=LOG_COLUMNS)
    for q in pairs:
        change = q.change(as_of)
        ended = change == "结对结束"
        code = q.end_reason if ended else q.made_reason
        sheet.row(
            (
                as_of,
                change,
                TARGET_LABELS.get(q.target_kind, q.target_kind),
                q.town,
                q.village,
                q.name,
                _masked_target(q),
                q.cadre_name,
                mask_id(q.cadre_id) if q.cadre_id else None,
                q.cadre_unit,
                q.valid_from,
                q.valid_to,
                reason_label(code),
                code,
            ),
            fill=GREY if ended else GREEN,
        )
    ended = sum(1 for q in pairs if q.change(as_of) == "结对结束")
    info = book.sheet("说明", (20, 60), freeze=False)
    info.row(("结对变动日志",), font=TITLE)
    for label, value in (
        ("日期", as_of),
        ("结束的结对", ended),
        ("新结对", len(pairs) - ended),
        ("说明", "灰色为结束的结对，绿色为新结对；身份证号已脱敏。"),
    ):
        info.append([info.cell(label, font=BOLD), info.cell(value)])
    target = book.save(Path(settings.export_dir) / f"变动日志_{_date_tag(as_of)}.xlsx")
    log.info("export: change log written (%d ended, %d made)", ended, len(pairs) - ended)
    return target


# --- all of the night ----------------------------------------------------------------------------
def write_all(eng: sa.Engine, settings: Settings, as_of: dt.date, file_ids: list[int]) -> dict:
    """The night's exports; returns ``{"feedback": [paths], "pairing": path, "change_log": path,
    "opinions": [paths]}``."""
    from rosterlink.followup import visits

    feedback = write_feedback(eng, settings, file_ids)
    pairing = write_pairing_workbook(eng, settings, as_of)
    change_log = write_change_log(eng, settings, as_of)
    opinions = visits.write_opinion_workbooks(eng, settings, as_of)
    return {
        "feedback": [str(p) for p in feedback],
        "pairing": str(pairing),
        "change_log": str(change_log),
        "opinions": [str(p) for p in opinions],
    }
