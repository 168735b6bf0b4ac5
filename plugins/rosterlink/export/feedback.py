"""Feedback to the departments: one workbook per file of the night, beside the file.

``<intake_dir>/<department>/feedback/<file stem>.结果.xlsx`` (sheets 汇总, 错误明细, 提示), in the
department's own folder (a file found outside the department folders: ``<intake_dir>/feedback/``);
one name per file, never shared; ``intake_file.feedback_path`` is set, relative to the intake root. The
clerk sees what became of the file, and every row to correct with the Excel row number.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink.core.masking import mask_text
from rosterlink.core.spec import DEPARTMENTS, catalogue
from rosterlink.core.workbook import AS_TYPED, BOLD, HEADER, RED, TITLE, WRAP, YELLOW, Book, Style
from rosterlink.export.common import new_book
from rosterlink.intake.scan import FEEDBACK_DIR, UNSORTED, readable_name
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

STATUS_LABELS = {
    "loaded": "已导入",
    "rejected": "整份退回",
    "duplicate": "重复文件",
    "pending": "处理中（未完成）",
}
INSTRUCTION_ERRORS = "请按“错误明细”表逐行修改后，将整份文件重新放入本文件夹。"
INSTRUCTION_OK = "全部数据已导入，无需处理。"
INSTRUCTION_RESENT_OK = "数据已处理：与之前报送内容相同的行已计入，无需处理；新增和更新的行已导入。"
INSTRUCTION_WARN = "数据已导入。请查看“提示”表，核对有提示的行；如需更正，修改后将整份文件重新放入本文件夹。"
INSTRUCTION_REJECTED = "整份文件未导入。请按上面的原因修改后，将整份文件重新放入本文件夹。"
INSTRUCTION_MOVE = "整份文件未导入。请按上面的原因把文件移到所属部门的文件夹（无需修改内容）。"
INSTRUCTION_CHANGED = "本次未导入。改动后的文件将在下次处理时自动读取，无需处理。"
INSTRUCTION_DUPLICATE = "此文件与已导入的文件内容相同，无需处理。如需更正数据，请修改后重新放入本文件夹。"
INSTRUCTION_PENDING = "本文件尚未处理完毕，结果将在下次处理后更新。"

BEIJING = dt.timedelta(hours=8)  # intake_file times are UTC (warehouse.now())

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


def _feedback_rel(department: str) -> str:
    """The feedback folder relative to the intake root: the department's own, or the root's
    ``feedback/`` for files found outside the department folders."""
    return f"{department}/{FEEDBACK_DIR}" if department in DEPARTMENTS else FEEDBACK_DIR


def _feedback_dir(intake_dir: Path, department: str) -> Path | None:
    """The department's own feedback folder (the root's for a file found outside the department
    folders), or None if it is not safe to write there."""
    if department not in DEPARTMENTS and department != UNSORTED:
        return None
    root = intake_dir.resolve()
    base = root / department if department in DEPARTMENTS else root
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


def _changed_rows(conn: sa.Connection, file_id: int) -> list[tuple[str, int]]:
    """The rows of a re-sent file that replaced a different row at the same place (updated)."""
    r = schema.source_record
    return [
        (x.sheet, x.row_number)
        for x in conn.execute(
            sa.select(r.c.sheet, r.c.row_number)
            .where(r.c.file_id == file_id, r.c.resent.is_(True))
            .order_by(r.c.sheet, r.c.row_number)
        )
    ]


def _finding_sheet(book: Book, title: str, rows: list, style: Style) -> None:
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
            style,
            styles={3: AS_TYPED, 4: WRAP},  # the value as the clerk typed it, formula-like or not
        )


_NOTED_SHEET = re.compile(r"工作表“(.+?)”")


def _sheet_name(sheet: sa.Row) -> str:
    """The sheet as the clerk knows it: a read note (stored as ``(说明1)`` ...) names its sheet."""
    if sheet.roster is None and sheet.note:
        found = _NOTED_SHEET.match(sheet.note)
        if found:
            return found.group(1)
        return "（整个文件）"
    return str(sheet.sheet)


def _write_one_feedback(conn: sa.Connection, f: sa.Row, target: Path) -> None:
    cat = catalogue()
    rejected = _finding_rows(conn, schema.rejected_row, f.file_id)
    warnings = _finding_rows(conn, schema.row_warning, f.file_id)
    sheets = conn.execute(
        sa.select(schema.intake_sheet).where(schema.intake_sheet.c.file_id == f.file_id)
    ).all()
    merged = _merged_rows(conn, f.file_id)
    changed = _changed_rows(conn, f.file_id)
    already = f.rows_already or 0
    resent = bool(already or changed)

    if f.status == "rejected" and f.reason_code in ("file_misplaced", "file_wrong_department"):
        instruction = INSTRUCTION_MOVE
    elif f.status == "rejected" and f.reason_code == "file_changed_during_read":
        instruction = INSTRUCTION_CHANGED
    elif f.status == "rejected":
        instruction = INSTRUCTION_REJECTED
    elif f.status == "duplicate":
        instruction = INSTRUCTION_DUPLICATE
    elif f.status == "pending":
        instruction = INSTRUCTION_PENDING
    elif rejected or (f.rows_rejected or 0):
        instruction = INSTRUCTION_ERRORS
    elif warnings:
        instruction = INSTRUCTION_WARN
    elif resent:
        instruction = INSTRUCTION_RESENT_OK
    else:
        instruction = INSTRUCTION_OK

    stamp = f.processed_at or f.received_at or dt.datetime(2000, 1, 1)
    book = new_book(stamp.replace(microsecond=0))
    summary = book.sheet("汇总", (22, 60, 12, 12, 40), freeze=False)
    summary.row(("报送文件处理结果",), TITLE)
    dept_label = cat.department_label(f.department)
    received = (f.received_at + BEIJING).strftime("%Y-%m-%d %H:%M") if f.received_at else ""
    lines: list[tuple[str, object]] = [
        ("文件名", readable_name(f.file_name)),
        ("报送部门", dept_label),
        ("接收时间（北京时间）", received),
        ("处理结果", STATUS_LABELS.get(f.status, f.status)),
    ]
    if f.status in ("rejected", "duplicate") or f.message:
        lines.append(("原因", mask_text(f.message) if f.message else ""))
    lines += [
        ("读取行数", f.rows_read or 0),
        ("导入行数", f.rows_loaded or 0),
    ]
    if resent:  # a corrected file dropped again: which rows were new, changed, already recorded
        lines += [
            ("其中：新增行数", (f.rows_loaded or 0) - len(changed)),
            ("其中：更新行数（见“更新的行”）", len(changed)),
            ("已计入行数（与之前报送的内容相同，无需处理）", already),
        ]
    lines += [
        ("退回行数（见“错误明细”）", f.rows_rejected or 0),
        ("有提示的行数（见“提示”）", f.rows_warned or 0),
        ("与本文件其他行为同一家庭或人员、已合并的行数", merged),
        ("处理说明", instruction),
    ]
    for label, value in lines:
        red = label in ("原因",) or (label == "处理结果" and f.status == "rejected")
        summary.append([summary.cell(label, BOLD), summary.cell(value, RED | WRAP if red else WRAP)])
    if sheets:
        summary.row(())
        summary.row(("工作表", "名单类型", "表头所在行", "读取行数", "说明"), HEADER)
        for s in sheets:
            roster = cat.rosters.get(s.roster) if s.roster else None
            summary.row(
                (
                    _sheet_name(s),
                    roster.label if roster else (s.roster or "未导入"),
                    s.header_row,
                    s.rows_read or 0,
                    s.note,
                ),
                styles={4: WRAP},
            )

    _finding_sheet(book, "错误明细", rejected, RED)
    if changed:
        updated = book.sheet("更新的行", (18, 8, 60), columns=("工作表", "行号", "说明"))
        for sheet_name, row_number in changed:
            updated.row((sheet_name, row_number, "与之前报送的内容不同，已按本次报送更新"))
    if warnings:
        _finding_sheet(book, "提示", warnings, YELLOW)
    book.save(target)


def _unique_names(eng: sa.Engine, files: Sequence[sa.Row]) -> dict[int, str]:
    """Each file's feedback workbook name, never one another file's feedback has (tonight or on an
    earlier night): ``2024/特困.xlsx`` and ``2024_特困.xlsx`` both flatten to ``2024_特困``, so the
    later one gets ``2024_特困.xlsx.结果.xlsx`` or, failing that, its ledger number in the name.

    A stem shared by two files of one department tonight keeps the original extension in both
    names. A file sent again under the same name keeps its name (its new feedback replaces the
    old). Names are compared case-insensitively (a Windows share)."""
    t = schema.intake_file
    owners: dict[str, set[str]] = defaultdict(set)  # feedback path (casefolded) -> file names
    with eng.connect() as conn:
        for path, file_name in conn.execute(
            sa.select(t.c.feedback_path, t.c.file_name).where(t.c.feedback_path.is_not(None))
        ):
            owners[path.casefold()].add(file_name)
    seen: dict[tuple[str, str], int] = defaultdict(int)
    for f in files:
        seen[(f.department, _feedback_name(f.department, readable_name(f.file_name)))] += 1
    names: dict[int, str] = {}
    for f in files:
        base = _feedback_name(f.department, readable_name(f.file_name))
        full = _feedback_name(f.department, readable_name(f.file_name), keep_suffix=True)
        candidates = [full] if seen[(f.department, base)] > 1 else [base, full]
        candidates.append(full.removesuffix(".结果.xlsx") + f"({f.file_id}).结果.xlsx")
        for name in candidates:
            key = f"{_feedback_rel(f.department)}/{name}".casefold()
            if owners[key] <= {f.file_name} or name is candidates[-1]:
                owners[key].add(f.file_name)
                names[f.file_id] = name
                break
    return names


def write_feedback(eng: sa.Engine, settings: Settings, file_ids: list[int]) -> list[Path]:
    """One feedback workbook per file of the night, in the file's own department folder
    (``<intake>/feedback/`` for a file found outside the department folders), under a name no
    other file's feedback has (:func:`_unique_names`).

    Sets ``intake_file.feedback_path`` (relative to the intake root). A file whose department
    folder is unsafe (a symlink) gets no feedback.
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
    names = _unique_names(eng, files)
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
