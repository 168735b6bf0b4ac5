"""The ``read`` stage: one intake file -> one :class:`SheetTable` per recognised sheet.

Input: a path (``.xlsx``, legacy ``.xls`` or ``.csv``) and the department whose folder it came
from. Output: :class:`ReadResult` with ``tables`` and Chinese ``notes`` for the clerk; a file that
cannot or must not be read raises :class:`~rosterlink.core.findings.FileRejected` with a reason code.

Steps, in order:

1. :func:`inspect_file` (safety, before any parser sees the bytes): size, extension, container
   (zip for xlsx, OLE2 for xls, told by magic bytes, so a renamed file is read by its content),
   zip bomb, macros (``vbaProject.bin``, VBA storages, Excel 4.0 macro sheets), password
   protection (``EncryptedPackage``; calamine's ``PasswordError`` for .xls), and for xlsx the
   row/column extent of the cells holding data in every worksheet, read from the XML itself:
   calamine allocates a sheet's whole rectangle, so a 5 KB file with one cell at ``CV1000000``
   must never reach it (formatted empty cells do not count: calamine skips them too).
   CSV: NUL bytes and UTF-16 byte-order marks.
2. Cells are read with python-calamine (xlsx/xls) or the ``csv`` module (sniffed delimiter,
   strict UTF-8 then strict GB18030). Each sheet becomes a grid of raw values whose row index maps
   to the clerk's row number (Excel row, leading empty rows counted; or the CSV line where the
   record starts). Hidden sheets are skipped with a note; empty sheets silently. A CSV's "sheet"
   is the file name without its extension.
3. Header detection, roster by roster (the same header means different fields in different
   rosters: ``姓名`` is ``head_name`` in ``hardship`` but ``name`` in ``cadre``), over every roster
   of every department: a sheet is what its headers say, whatever folder it is in. The first of
   the first :data:`HEADER_SCAN_ROWS` non-blank rows on which all ``signature`` fields of a roster
   are found is the header. Several rosters matching: longest signature, then most fields found,
   then the folder's own department first. A header cell merged down over the next row makes a
   two-row header (per column the lower cell wins; ``header_row`` is the lower row); so does a
   group header merged across columns (``儿童信息`` / ``监护人信息`` over ``姓名`` / ``身份证号``:
   the cells below read as ``儿童姓名``, ``监护人身份证号``). The best match another department's
   roster: the whole file is ``file_wrong_department`` (naming the folder it belongs in). None:
   the sheet is skipped with a note (naming the missing column when only one is).
   Several columns naming the same field: a visible one before a hidden one, then one holding
   data before an empty one (filled columns that differ are noted). A sheet without a column the
   roster requires is skipped with a note; a file left with no sheet is rejected whole, naming
   the column (one message, not one per row).
4. Data rows: everything below the header except blank rows, footers (``合计:936户``,
   ``制表人:…``) and exact repeats of the header row. Vertically merged cells in the data area
   are filled with their top-left value (calamine reports merged ranges for xlsx and xls).
   Rows hidden in Excel (xlsx and BIFF8 .xls) are read like any other, with a note naming them.
   A CSV cell written ``="370406…"`` (the keep-as-text trick) is read as the text Excel shows.

Values are raw: str, int, float (numeric cells: an 18-digit ID in a numeric cell arrives as a
float, so the normaliser can refuse it), date/datetime (date cells; also time/timedelta or bool
where a cell holds one) or None (empty cells and empty strings; error cells such as ``#N/A``
arrive empty from calamine). Nothing is stripped. Exception texts never carry cell values: only
reason codes and exception type names.

Progress: a file of more than :data:`PROGRESS_BYTES` says so before its checks; a sheet (or CSV
file) of more than :data:`PROGRESS_ROWS` rows logs how far reading has got every
:data:`PROGRESS_ROWS` rows, at most one line per :data:`PROGRESS_SECONDS` (file name, sheet name,
counts and seconds; never a value), so ``rosterlink nightly`` shows that a large file is moving.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import html
import io
import logging
import posixpath
import re
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pandas as pd
import python_calamine as calamine

from rosterlink.core.findings import FileRejected, message
from rosterlink.core.settings import Limits
from rosterlink.core.spec import RosterSpec, catalogue, header_key
from rosterlink.core.tables import SheetTable

__all__ = ["ReadResult", "SheetTable", "inspect_file", "read_file"]

log = logging.getLogger(__name__)

PROGRESS_ROWS = 25_000
"""A sheet or CSV file with more rows than this logs its reading progress every so many rows."""
PROGRESS_SECONDS = 2.0
"""At most one progress line per sheet this often (the first one always)."""
PROGRESS_BYTES = 4 << 20
"""A file larger than this logs a line before its safety checks (they read the whole file)."""


class _Progress:
    """When to log: on every ``PROGRESS_ROWS``-th row, unless the last line is under
    ``PROGRESS_SECONDS`` old."""

    def __init__(self) -> None:
        self.last: float | None = None

    def due(self, count: int) -> bool:
        if count == 0 or count % PROGRESS_ROWS:
            return False
        moment = time.monotonic()
        if self.last is not None and moment - self.last < PROGRESS_SECONDS:
            return False
        self.last = moment
        return True


HEADER_SCAN_ROWS = 20
"""Non-blank rows searched for the header (title and 填报单位 rows come first)."""

MAX_GRID_CELLS = 30_000_000
"""Rows x columns of one sheet's used rectangle. calamine holds the whole rectangle in memory,
so a sparse sheet (one cell at A1, one at CV1000000) is refused before it is loaded."""

SUPPORTED_SUFFIXES = (".xlsx", ".xls", ".csv")
MACRO_SUFFIXES = (".xlsm", ".xltm", ".xlam", ".xla")

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

FOOTER_PREFIXES = (
    "合计",
    "总计",
    "小计",
    "共计",
    "制表",
    "填报",
    "填表",
    "审核",
    "负责人",
    "备注",
    "说明",
    "注:",
    "经办人",
    "单位(盖章)",
    "单位盖章",
    "领导签字",
    "领导签名",
    "日期:",
    "统计时间",
    "统计日期",
    "以下空白",
    "(以下空白)",
    "以下无",
    "(以下无",
)
"""A row whose first non-empty cell starts with one of these (after NFKC, spaces removed) is a footer.

A first cell that is exactly ``日期`` (its date in the next cell) is one too (:data:`FOOTER_EXACT`)."""

FOOTER_EXACT = ("日期",)

FOOTER_WORDS = (
    "合计",
    "总计",
    "小计",
    "共计",
    "制表",
    "填报人",
    "填表人",
    "审核人",
    "负责人",
    "备注",
    "说明",
    "经办人",
    "盖章",
    "签字",
    "以下空白",
)
"""A row holding a single non-empty cell that contains one of these is a footer (``山亭区合计:936户``)."""


@dataclass
class ReadResult:
    tables: list[SheetTable]
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- public API


def read_file(path: Path, department: str | None, limits: Limits | None = None) -> ReadResult:
    """Read every sheet of ``path`` that holds a roster of ``department`` (None: of any department,
    to tell where a file dropped outside the department folders belongs).

    Raises ``FileRejected``: any code of :func:`inspect_file`, ``file_empty`` (no cell at all),
    ``file_no_roster`` (no sheet recognised), ``file_wrong_department`` (a sheet holds another
    department's roster), ``file_encoding``, ``file_encoding_big5`` (a Big5 CSV),
    ``file_missing_columns`` (no sheet read, one lacking a required column),
    ``file_too_many_columns``, ``file_too_large``,
    ``file_corrupt`` / ``file_unreadable`` (the parser failed; ``detail`` is the exception type).
    ``ValueError`` for an unknown department (a configuration error, not the file's fault).
    ``limits``: the file safety limits (default: :class:`Limits`' defaults).
    """
    path = Path(path)
    checks = limits or Limits()
    if department is not None and department not in catalogue().departments:
        raise ValueError(f"unknown department {department!r}")
    with contextlib.suppress(OSError):  # an unreadable file is _inspect's to reject
        if path.stat().st_size > PROGRESS_BYTES:
            log.info(
                "read: %s: %s, checking the file before parsing it",
                path.name,
                _human_bytes(path.stat().st_size),
            )
    container = _inspect(path, checks)
    notes: list[str] = []
    if container == "csv":
        try:
            return _guarded(
                lambda: _read_grids([_csv_grid(path, checks)], department, notes, source=path.name)
            )
        except FileRejected as exc:
            # Big5 bytes decode as GBK without an error, into nonsense with no header in it
            if exc.code == "file_no_roster" and _looks_like_big5(path.read_bytes()):
                raise FileRejected("file_encoding_big5", detail="Big5") from None
            raise

    def read_workbook() -> ReadResult:
        if path.suffix.lower() == {"zip": ".xlsx", "ole": ".xls"}[container]:
            # By name: calamine then reports a password-protected .xls as PasswordError.
            book = calamine.CalamineWorkbook.from_path(str(path))
        else:  # a renamed file (.xls holding xlsx, or the reverse): calamine sniffs the content
            with path.open("rb") as handle:
                book = calamine.CalamineWorkbook.from_filelike(handle)
        hidden = _xlsx_hidden(path) if container == "zip" else _xls_hidden(path.read_bytes())
        try:
            return _read_grids(
                _workbook_grids(book, checks, notes, source=path.name, hidden=hidden),
                department,
                notes,
                source=path.name,
            )
        finally:
            book.close()

    return _guarded(read_workbook)


def inspect_file(path: Path, limits: Limits) -> None:
    """The content safety checks alone (no cell is parsed); raises ``FileRejected``.

    Codes: ``file_empty``, ``file_too_large``, ``file_unsupported_type``, ``file_macro``,
    ``file_encrypted``, ``file_corrupt``, ``file_zip_bomb``, ``file_too_many_columns``,
    ``file_encoding`` (UTF-16 CSV), ``file_nul_byte``, ``file_unreadable``.
    """
    _inspect(Path(path), limits)


# --------------------------------------------------------------------------- safety checks


def _inspect(path: Path, limits: Limits) -> str:
    """Run the safety checks; return the container to parse: ``"zip"``, ``"ole"`` or ``"csv"``."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise FileRejected("file_unreadable", detail="not a regular file")
        suffix = path.suffix.lower()
        if suffix in MACRO_SUFFIXES:
            raise FileRejected("file_macro", detail=suffix)
        if suffix not in SUPPORTED_SUFFIXES and suffix != ".xlsb":
            raise FileRejected("file_unsupported_type", detail=suffix, ext=suffix or "（无扩展名）")
        if size == 0:
            raise FileRejected("file_empty")
        if size > limits.max_file_bytes:
            raise FileRejected(
                "file_too_large",
                detail=f"{size} bytes",
                size=_human_bytes(size),
                limit=_human_bytes(limits.max_file_bytes),
            )
        if suffix == ".csv":
            _inspect_csv_bytes(path)
            return "csv"
        with path.open("rb") as handle:
            magic = handle.read(len(OLE_MAGIC))
        if magic.startswith(ZIP_MAGIC):
            _inspect_zip(path, limits)
            container = "zip"
        elif magic == OLE_MAGIC:
            _inspect_ole(path.read_bytes())
            container = "ole"
        else:
            raise FileRejected("file_corrupt", detail="neither zip nor OLE2")
        if suffix == ".xlsb":  # binary workbook without macros: still not a format we read
            raise FileRejected("file_unsupported_type", detail=suffix, ext=suffix)
        return container
    except FileRejected:
        raise
    except OSError as exc:
        failure = type(exc).__name__
    raise FileRejected("file_unreadable", detail=failure)


def _inspect_csv_bytes(path: Path) -> None:
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise FileRejected("file_encoding", detail="UTF-16")
        handle.seek(0)
        while chunk := handle.read(1 << 20):
            if b"\x00" in chunk:
                raise FileRejected("file_nul_byte")


def _inspect_zip(path: Path, limits: Limits) -> None:
    """Zip bomb, zip-level encryption, macros, and the extent of each worksheet."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            unpacked = sum(e.file_size for e in entries)
            packed = sum(e.compress_size for e in entries)
            ratio = unpacked / packed if packed else 0.0
            if unpacked > limits.max_uncompressed_bytes or ratio > limits.max_compression_ratio:
                raise FileRejected("file_zip_bomb", detail=f"{unpacked} bytes, ratio {ratio:.0f}")
            names = {e.filename.lower() for e in entries}
            if any(name.endswith("vbaproject.bin") for name in names):
                raise FileRejected("file_macro", detail="vbaProject.bin")
            if any(e.flag_bits & 0x1 for e in entries):
                raise FileRejected("file_encrypted", detail="zip encryption")
            if "xl/workbook.xml" not in names:
                if path.suffix.lower() == ".xlsb" and "xl/workbook.bin" in names:
                    return
                raise FileRejected("file_corrupt", detail="no xl/workbook.xml")
            for part in _worksheet_parts(archive):
                _check_extent(*_xml_sheet_extent(archive, part), limits)
    except FileRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - BadZipFile, zlib.error, EOFError...: a broken archive
        failure = type(exc).__name__
    else:
        return
    raise FileRejected("file_corrupt", detail=failure)


_RELATIONSHIP = re.compile(rb"<(?:\w+:)?Relationship\b([^>]*)>")
_ATTRIBUTE = re.compile(rb'(\w+)\s*=\s*"([^"]*)"')


def _worksheet_parts(archive: zipfile.ZipFile) -> list[str]:
    """Every worksheet part: those under ``xl/worksheets/`` and any the workbook relates elsewhere."""
    names = set(archive.namelist())
    parts = {name for name in names if name.startswith("xl/worksheets/") and name.endswith(".xml")}
    if "xl/_rels/workbook.xml.rels" in names:
        for found in _RELATIONSHIP.finditer(archive.read("xl/_rels/workbook.xml.rels")):
            attributes = dict(_ATTRIBUTE.findall(found.group(1)))
            if attributes.get(b"Type", b"").endswith(b"/worksheet"):
                target = attributes.get(b"Target", b"").decode("utf-8", errors="replace")
                absolute = target.startswith("/")
                parts.add(target.lstrip("/") if absolute else posixpath.normpath("xl/" + target))
    return sorted(parts & names)


_VALUED_CELL = re.compile(rb'\sr="([A-Z]{1,3})(\d{1,10})"[^>]*(?<!/)>\s*<(?:\w+:)?(?:v|is|f)\b')
"""The ``r="…"`` of a cell that holds a value (``<v>``), an inline string (``<is>``) or a formula
(``<f>``); only cells have column letters in ``r``.

A formatted empty cell (``<c r="A1048576" s="1"/>``, what a clerk leaves by formatting a whole
column) holds none: calamine skips it, and so does the extent."""
_UNREFERENCED_CELL = re.compile(rb"<(?:\w+:)?c(?:>|\s(?![^>]*\sr=)[^>]*(?<!/)>\s*<(?:\w+:)?(?:v|is|f)\b)")
"""A cell without ``r`` (holding a value): calamine places it after the previous cell, in the current row."""
_ROW_REF = re.compile(rb'<(?:\w+:)?row\b[^>]*?\sr="(\d{1,10})"')
_SCAN_OVERLAP = 1024
"""Bytes carried from one 1 MB chunk to the next, so that a match cut by the boundary is found
whole in the next buffer (a cell's start tag and the start of its value are far shorter)."""


def _xml_sheet_extent(archive: zipfile.ZipFile, part: str) -> tuple[int, int]:
    """Highest row and column number of a cell holding data in a worksheet's XML, streamed in 1 MB chunks.

    The data's extent, not the formatting's: formatted empty cells (``<c r="XFD1048576" s="1"/>``)
    and empty ``<row>`` elements do not count. calamine places a cell by its ``r`` reference;
    should a cell come without one, every ``<row r="…">`` counts as well (the old, cautious
    measure). Such cells are physically in the file and bounded by the uncompressed-size limit.
    """
    max_row, max_column, unreferenced = 0, 0, False
    tail = b""
    with archive.open(part) as stream:
        while chunk := stream.read(1 << 20):
            buffer = tail + chunk
            refs = _VALUED_CELL.findall(buffer)
            if refs:
                max_row = max(max_row, max(map(int, {number for _, number in refs})))
                max_column = max(max_column, *(_column_number(letters) for letters in {c for c, _ in refs}))
            if not unreferenced:
                # cheap counts first: cell tags beyond the r="…" of cells and rows call for the search
                tags = sum(buffer.count(tag) for tag in (b"<c ", b"<c>", b":c ", b":c>"))
                if tags > buffer.count(b' r="') - buffer.count(b"<row ") - buffer.count(b":row "):
                    unreferenced = _UNREFERENCED_CELL.search(buffer) is not None
            if unreferenced:
                max_row = max(max_row, *(int(number) for number in _ROW_REF.findall(buffer)), 0)
            tail = buffer[-_SCAN_OVERLAP:]
    return max_row, max_column


def _column_number(letters: bytes) -> int:
    number = 0
    for char in letters:
        number = number * 26 + (char - 64)
    return number


def _check_extent(rows: int, columns: int, limits: Limits) -> None:
    """A sheet's used rectangle (``rows`` x ``columns``, counted from A1) against the limits."""
    if columns > limits.max_columns:
        raise FileRejected(
            "file_too_many_columns", detail=f"{columns} columns", columns=columns, limit=limits.max_columns
        )
    if rows > limits.max_rows:
        raise FileRejected(
            "file_too_large", detail=f"{rows} rows", size=f"{rows}行", limit=f"{limits.max_rows}行"
        )
    if rows * columns > MAX_GRID_CELLS:
        raise FileRejected(
            "file_too_large",
            detail=f"{rows} rows x {columns} columns",
            size=f"{rows}行×{columns}列",
            limit=f"{MAX_GRID_CELLS}个单元格",
        )


def _inspect_ole(data: bytes) -> None:
    """OLE2 compound file: password-protected OOXML, VBA or no workbook at all."""
    try:
        names = _ole_entry_names(data)
    except (ValueError, IndexError):
        names = set()  # an unreadable directory: no Workbook stream either
    if "EncryptedPackage" in names:  # how Excel saves a password-protected .xlsx
        raise FileRejected("file_encrypted", detail="EncryptedPackage")
    if names & {"_VBA_PROJECT_CUR", "_VBA_PROJECT", "Macros"}:
        raise FileRejected("file_macro", detail="VBA storage")
    if not names & {"Workbook", "Book"}:
        raise FileRejected("file_corrupt", detail="no Workbook stream")


_END_OF_CHAIN = 0xFFFFFFFE


def _ole_entry_names(data: bytes) -> set[str]:
    """Names of the storages and streams in a compound file (MS-CFB), reading only the directory."""
    return {name for name, _, _, _ in _ole_entries(data)[0]}


def _ole_entries(data: bytes) -> tuple[list[tuple[str, int, int, int]], Callable[[int, int], bytes]]:
    """A compound file's directory, ``(name, kind, first sector, size)`` per entry, and a reader
    of a stream kept in regular sectors (``read(first sector, size)``, following the FAT)."""

    def u32(buffer: bytes, offset: int) -> int:
        return int.from_bytes(buffer[offset : offset + 4], "little")

    shift = int.from_bytes(data[0x1E:0x20], "little")
    if shift not in (9, 12):
        raise ValueError("sector size")
    size = 1 << shift

    def sector(number: int) -> bytes:
        start = (number + 1) * size
        chunk = data[start : start + size]
        if len(chunk) != size:
            raise ValueError("sector outside the file")
        return chunk

    fat_count, first_directory = u32(data, 0x2C), u32(data, 0x30)
    difat_next, difat_count = u32(data, 0x44), u32(data, 0x48)
    fat_sectors = [u32(data, 0x4C + 4 * i) for i in range(109)]
    for _ in range(min(difat_count, len(data) // size)):
        block = sector(difat_next)
        fat_sectors += [u32(block, 4 * i) for i in range(size // 4 - 1)]
        difat_next = u32(block, size - 4)
    fat_bytes = b"".join(sector(number) for number in fat_sectors[:fat_count])
    fat = [u32(fat_bytes, 4 * i) for i in range(len(fat_bytes) // 4)]

    def chain(first: int) -> Iterator[int]:
        current, seen = first, set()
        while current != _END_OF_CHAIN:
            if current in seen or current >= len(fat):
                raise ValueError("broken sector chain")
            seen.add(current)
            yield current
            current = fat[current]

    def read(first: int, length: int) -> bytes:
        return b"".join(sector(number) for number in chain(first))[:length]

    entries: list[tuple[str, int, int, int]] = []
    for number in chain(first_directory):
        block = sector(number)
        for offset in range(0, size, 128):
            entry = block[offset : offset + 128]
            length, kind = int.from_bytes(entry[0x40:0x42], "little"), entry[0x42]
            if kind in (1, 2, 5) and 2 <= length <= 64:
                name = entry[: length - 2].decode("utf-16-le", errors="replace")
                entries.append((name, kind, u32(entry, 0x74), u32(entry, 0x78)))
    return entries, read


_BIFF_BOUNDSHEET, _BIFF_ROW, _BIFF_COLINFO, _BIFF_EOF = 0x0085, 0x0208, 0x007D, 0x000A
_OLE_MINI_CUTOFF = 4096


def _xls_hidden(data: bytes) -> dict[str, _Hidden]:
    """Hidden rows (``ROW`` records, ``fDyZero``) and columns (``COLINFO``, ``fHidden``) of each
    worksheet of a BIFF8 .xls, by sheet name; anything unexpected gives no hidden rows or columns."""
    try:
        entries, read = _ole_entries(data)
        stream = next(
            (
                (first, size)
                for name, kind, first, size in entries
                if kind == 2 and name in ("Workbook", "Book")
            ),
            None,
        )
        if stream is None or stream[1] < _OLE_MINI_CUTOFF:
            return {}  # a workbook this small is kept in the mini stream: not worth the reading
        book = read(*stream)
        sheets: list[tuple[str, int]] = []
        for kind, body, _ in _biff_records(book, 0):
            if kind == _BIFF_BOUNDSHEET and len(body) > 8 and body[5] == 0:  # a worksheet
                count, wide = body[6], body[7] & 1
                text = body[8 : 8 + count * (2 if wide else 1)]
                sheets.append(
                    (text.decode("utf-16-le" if wide else "latin-1"), int.from_bytes(body[:4], "little"))
                )
            elif kind == _BIFF_EOF:
                break
        found: dict[str, _Hidden] = {}
        for name, position in sheets:
            hidden = found.setdefault(name, _Hidden())
            for kind, body, _ in _biff_records(book, position):
                if kind == _BIFF_ROW and len(body) >= 14 and body[12] & 0x20:
                    hidden.rows.add(int.from_bytes(body[:2], "little"))
                elif kind == _BIFF_COLINFO and len(body) >= 10 and body[8] & 0x01:
                    hidden.columns.append(
                        (int.from_bytes(body[:2], "little"), int.from_bytes(body[2:4], "little"))
                    )
                elif kind == _BIFF_EOF:
                    break
        return found
    except Exception:  # noqa: BLE001 - the file passed the safety checks; no hints is no harm
        return {}


def _biff_records(book: bytes, offset: int) -> Iterator[tuple[int, bytes, int]]:
    """``(type, body, offset)`` of each BIFF record from ``offset`` on."""
    while offset + 4 <= len(book):
        kind = int.from_bytes(book[offset : offset + 2], "little")
        length = int.from_bytes(book[offset + 2 : offset + 4], "little")
        yield kind, book[offset + 4 : offset + 4 + length], offset
        offset += 4 + length


def _human_bytes(size: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


T = TypeVar("T")


def _guarded(work: Callable[[], T]) -> T:
    """Run ``work``; a library exception becomes ``FileRejected`` without its text (it may quote cells)."""
    try:
        return work()
    except FileRejected:
        raise
    except calamine.PasswordError:
        code, failure = "file_encrypted", "PasswordError"
    except (calamine.CalamineError, zipfile.BadZipFile, csv.Error, UnicodeError) as exc:
        code, failure = "file_corrupt", type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - never let a parser's exception (and its text) escape
        code, failure = "file_unreadable", type(exc).__name__
    # Raised outside the ``except`` block, so the original exception is not chained.
    raise FileRejected(code, detail=failure)


# --------------------------------------------------------------------------- grids


@dataclass
class _Grid:
    """One sheet's cells. ``rows[i]`` is the clerk's row ``numbers[i]`` (``i + 1`` when None).

    ``merges`` are ``(first_row, first_col, last_row, last_col)`` indexes into ``rows``.
    """

    name: str
    rows: Sequence[Sequence[object]]
    numbers: list[int] | None = None
    merges: list[tuple[int, int, int, int]] = field(default_factory=list)
    hidden: _Hidden | None = None

    def number(self, index: int) -> int:
        return self.numbers[index] if self.numbers is not None else index + 1


@dataclass
class _Hidden:
    """A worksheet's hidden rows (indexes into ``rows``) and hidden columns (inclusive index ranges)."""

    rows: set[int] = field(default_factory=set)
    columns: list[tuple[int, int]] = field(default_factory=list)

    def column(self, index: int) -> bool:
        return any(first <= index <= last for first, last in self.columns)


def _workbook_grids(
    book: calamine.CalamineWorkbook,
    limits: Limits,
    notes: list[str],
    source: str = "",
    hidden: dict[str, _Hidden] | None = None,
) -> Iterator[_Grid]:
    """Visible worksheets, one at a time; hidden ones are noted and skipped.

    ``hidden``: each sheet's hidden rows and columns by sheet name (:func:`_xlsx_hidden`)."""
    for meta in book.sheets_metadata:
        if meta.typ == calamine.SheetTypeEnum.MacroSheet:
            raise FileRejected("file_macro", detail="Excel 4.0 macro sheet")
        if meta.typ != calamine.SheetTypeEnum.WorkSheet:
            continue
        if meta.visible != calamine.SheetVisibleEnum.Visible:
            notes.append(message("sheet_hidden", sheet=meta.name))
            continue
        started = time.perf_counter()
        sheet = book.get_sheet_by_name(meta.name)
        end = sheet.end  # None: an empty sheet
        if end is not None:
            _check_extent(end[0] + 1, end[1] + 1, limits)
        merges = [(r0, c0, r1, c1) for (r0, c0), (r1, c1) in (sheet.merged_cell_ranges or [])]
        # skip_empty_area=False: row i is Excel row i + 1 even when the first rows are empty.
        rows = sheet.to_python(skip_empty_area=False)
        if len(rows) > PROGRESS_ROWS:
            log.info(
                "read: %s: sheet %s: %d rows x %d columns loaded in %.1f s",
                source,
                meta.name,
                len(rows),
                end[1] + 1 if end is not None else 0,
                time.perf_counter() - started,
            )
        yield _Grid(meta.name, rows, merges=merges, hidden=(hidden or {}).get(meta.name))


_SHEET_ENTRY = re.compile(rb"<(?:\w+:)?sheet\b([^>]*)>")
_ROW_TAG = re.compile(rb"<(?:\w+:)?row\b([^>]*)>")
_COL_TAG = re.compile(rb"<(?:\w+:)?col\b([^>]*)>")
_HIDDEN_ATTRIBUTE = re.compile(rb"""\shidden\s*=\s*["'](?:1|true)["']""")
_NUMBER_ATTRIBUTE = re.compile(rb"""\s(r|min|max)\s*=\s*["'](\d{1,10})["']""")


def _xlsx_hidden(path: Path) -> dict[str, _Hidden]:
    """Hidden rows and columns of each worksheet of an xlsx file, by sheet name (calamine does not
    report them). Read from the XML, streamed; anything unexpected gives no hidden rows or columns."""
    found: dict[str, _Hidden] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            targets: dict[bytes, str] = {}
            if "xl/_rels/workbook.xml.rels" in names:
                for relation in _RELATIONSHIP.finditer(archive.read("xl/_rels/workbook.xml.rels")):
                    attributes = dict(_ATTRIBUTE.findall(relation.group(1)))
                    target = attributes.get(b"Target", b"").decode("utf-8", errors="replace")
                    absolute = target.startswith("/")
                    part = target.lstrip("/") if absolute else posixpath.normpath("xl/" + target)
                    targets[attributes.get(b"Id", b"")] = part
            for entry in _SHEET_ENTRY.finditer(archive.read("xl/workbook.xml")):
                attributes = dict(_ATTRIBUTE.findall(entry.group(1)))
                part = targets.get(attributes.get(b"id", b""), "")
                if part in names:
                    name = html.unescape(attributes.get(b"name", b"").decode("utf-8", errors="replace"))
                    found[name] = _scan_hidden(archive, part)
    except Exception:  # noqa: BLE001 - the archive passed the safety checks; no hints is no harm
        return {}
    return found


def _scan_hidden(archive: zipfile.ZipFile, part: str) -> _Hidden:
    hidden = _Hidden()
    tail = b""
    with archive.open(part) as stream:
        while chunk := stream.read(1 << 20):
            buffer = tail + chunk
            if b"hidden" not in buffer:
                tail = buffer[-_SCAN_OVERLAP:]
                continue
            for tag, into_rows in ((_ROW_TAG, True), (_COL_TAG, False)):
                for match in tag.finditer(buffer):
                    attributes = match.group(1)
                    if not _HIDDEN_ATTRIBUTE.search(attributes):
                        continue
                    numbers = {key: int(value) for key, value in _NUMBER_ATTRIBUTE.findall(attributes)}
                    if into_rows and b"r" in numbers:
                        hidden.rows.add(numbers[b"r"] - 1)
                    elif not into_rows and b"min" in numbers:
                        first = numbers[b"min"] - 1
                        hidden.columns.append((first, numbers.get(b"max", first + 1) - 1))
            tail = buffer[-_SCAN_OVERLAP:]
    hidden.columns = sorted(set(hidden.columns))
    return hidden


def _csv_grid(path: Path, limits: Limits) -> _Grid:
    """All records of a CSV file; ``numbers`` are the lines where the records start."""
    text = _decode_csv(path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text))
    rows: list[Sequence[object]] = []
    numbers: list[int] = []
    previous_end = 0
    progress = _Progress()
    for record in reader:
        numbers.append(previous_end + 1)  # a quoted field may span lines: the record's first line
        previous_end = reader.line_num
        if len(record) > limits.max_columns:
            raise FileRejected(
                "file_too_many_columns",
                detail=f"{len(record)} columns",
                columns=len(record),
                limit=limits.max_columns,
            )
        record = [_unwrap_text_formula(value) for value in record]
        if len(rows) >= limits.max_rows:
            raise FileRejected(
                "file_too_large",
                detail="too many records",
                size=f"超过{limits.max_rows}行",
                limit=f"{limits.max_rows}行",
            )
        rows.append(record)
        if progress.due(len(rows)):
            log.info("read: %s: %d records parsed", path.name, len(rows))
    return _Grid(path.stem, rows, numbers)


def _decode_csv(data: bytes) -> str:
    """Strict UTF-8, else strict GB18030 (covers GBK); never a lossy guess.

    UTF-8 first: UTF-8 bytes also decode as GB18030, into nonsense. A UTF-8 byte-order mark is
    stripped and settles the question: such a file is UTF-8 or it is broken.
    """
    encodings: tuple[str, ...] = ("utf-8", "gb18030")
    if data.startswith(codecs.BOM_UTF8):
        data, encodings = data[len(codecs.BOM_UTF8) :], ("utf-8",)
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FileRejected("file_encoding")


_TEXT_FORMULA = re.compile(r'^\s*="(.*)"\s*$', re.DOTALL)


def _unwrap_text_formula(value: str) -> str:
    """``="370406…"`` -> ``370406…``: the usual trick to keep an ID as text in a CSV file.

    Excel shows such a cell as the quoted text (``""`` inside it as ``"``), and so is it read.
    """
    if not value.startswith(("=", " ", "\t")):
        return value
    found = _TEXT_FORMULA.match(value)
    if found is None or '"' in found.group(1).replace('""', ""):
        return value
    return found.group(1).replace('""', '"')


def _looks_like_big5(data: bytes) -> bool:
    """Bytes that are Big5 (traditional Chinese), not UTF-8 or GBK, told apart by what GBK makes of them.

    Big5 decodes as GBK without an error, but about half of the characters it gives lie outside
    GB2312 (the common simplified characters); a real GBK roster has almost none there.
    """
    if data.startswith(codecs.BOM_UTF8):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return False
    try:
        data.decode("big5hkscs")
        as_gbk = data.decode("gb18030")
    except UnicodeDecodeError:
        return False
    wide = [char for char in as_gbk if ord(char) >= 0x2E80]
    if not wide:
        return False
    rare = sum(1 for char in wide if not _in_gb2312(char))
    return rare >= BIG5_RARE_SHARE * len(wide)


BIG5_RARE_SHARE = 0.2
"""Share of GBK-decoded characters outside GB2312 above which a CSV file is taken for Big5."""


def _in_gb2312(char: str) -> bool:
    try:
        char.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def _sniff_delimiter(text: str) -> str:
    """Comma, tab or semicolon; comma when nothing says otherwise."""
    sample = text[:32768]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;").delimiter
    except csv.Error:
        # Judge by the first line holding a delimiter: title lines above the header
        # (``山亭区特困家庭花名册``) hold none, and a tab file with one would be read as one column.
        first_line = next((line for line in sample.splitlines() if any(d in line for d in ",\t;")), "")
        counts = {d: first_line.count(d) for d in ",\t;"}
        best = max(counts, key=counts.__getitem__)
        return best if counts[best] else ","


# --------------------------------------------------------------------------- header detection


@dataclass(frozen=True)
class _Header:
    roster: RosterSpec
    last_row: int  # index of the (last) header row: data starts below it
    columns: dict[str, int]  # field -> column index
    texts: dict[str, str]  # field -> header text as written
    # field -> the group header above its cell as written (``监护人信息`` over ``姓名``), if any
    groups: dict[str, str] = field(default_factory=dict)

    def labels(self) -> dict[str, str]:
        """Field -> the column's name as the clerk reads it: ``监护人信息/姓名`` under a group header
        (``姓名`` alone would not tell the child's column from the guardian's), else the cell's text."""
        return {
            name: f"{self.groups[name]}/{text}" if name in self.groups else text
            for name, text in self.texts.items()
        }


_TRAILING_NOTE = re.compile(r"\([^()]*\)$")


@dataclass(frozen=True)
class _Band:
    """A candidate header: one row, or two or three when a cell is merged down from the first, or
    two under a group header (``儿童信息`` merged across the ``姓名`` / ``身份证号`` cells below it)."""

    last: int  # index of the band's last row
    cells: Sequence[Sequence[object]]
    keys: list[list[tuple[str, ...]]]  # per cell: the header_keys to try, in order
    groups: list[dict[int, str]]  # per row: column -> the group header text it was read under


_GROUP_SUFFIX = re.compile(r"(基本信息|基本情况|信息|情况)$")


def _cell_keys(cell: object) -> tuple[str, str]:
    if not isinstance(cell, str):
        return "", ""
    key = header_key(cell)
    return key, _TRAILING_NOTE.sub("", key)


def _known_aliases() -> frozenset[str]:
    """Every header alias of every field of the catalogue, as ``header_key``s."""
    return frozenset(header_key(alias) for spec in catalogue().fields.values() for alias in spec.aliases)


def _group_prefixes(
    grid: _Grid, across: list[tuple[int, int, int, int]], first: int, row: int
) -> dict[int, str]:
    """Column -> group prefix for the cells of ``row`` under a cell merged across columns
    (``across``) on a row of the band above it (``儿童信息`` over 姓名 / 身份证号 gives ``儿童``)."""
    return {col: prefix for col, (prefix, _) in _group_cells(grid, across, first, row).items()}


def _group_cells(
    grid: _Grid, across: list[tuple[int, int, int, int]], first: int, row: int
) -> dict[int, tuple[str, str]]:
    """Column -> (group prefix, group header text as written) for the cells of ``row`` under a cell
    merged across columns on a row of the band above it."""
    prefixes: dict[int, tuple[str, str]] = {}
    for r0, c0, r1, c1 in across:
        if not (first <= r0 < row and r1 < row):
            continue
        group = grid.rows[r0][c0] if c0 < len(grid.rows[r0]) else None
        if not isinstance(group, str):
            continue
        prefix = _GROUP_SUFFIX.sub("", header_key(group))
        if prefix:
            for col in range(c0, c1 + 1):
                prefixes[col] = (prefix, group.strip())
    return prefixes


def _band_keys(
    grid: _Grid, across: list[tuple[int, int, int, int]], first: int, last: int, known: frozenset[str]
) -> tuple[list[list[tuple[str, ...]]], list[dict[int, str]]]:
    """Per cell of the band, the keys to try, and per row the columns read under a group header
    (with its text). A cell under a group header whose group and own text together name a known
    header (``儿童`` + ``姓名``) is that header and nothing else: ``姓名`` under ``儿童信息`` must
    never be taken for a household head's name."""
    keys: list[list[tuple[str, ...]]] = []
    groups: list[dict[int, str]] = []
    for index in range(first, last + 1):
        cells = _group_cells(grid, across, first, index) if index > first else {}
        row_keys: list[tuple[str, ...]] = []
        row_groups: dict[int, str] = {}
        for col, cell in enumerate(grid.rows[index]):
            key, bare = _cell_keys(cell)
            prefix, group = cells.get(col, ("", ""))
            if key and prefix and (prefix + key in known or prefix + bare in known):
                row_keys.append((prefix + key, prefix + bare))
                row_groups[col] = group
            else:
                row_keys.append((key, bare))
        keys.append(row_keys)
        groups.append(row_groups)
    return keys, groups


def _groups_above(
    grid: _Grid, across: list[tuple[int, int, int, int]], first: int, known: frozenset[str]
) -> bool:
    """Row ``first`` holds a group header over the next row (a merged-across cell whose text and a
    cell below it together name a known header)."""
    if first + 1 >= len(grid.rows):
        return False
    below = grid.rows[first + 1]
    for col, prefix in _group_prefixes(grid, across, first, first + 1).items():
        if col < len(below):
            key, bare = _cell_keys(below[col])
            if key and (prefix + key in known or prefix + bare in known):
                return True
    return False


def _header_bands(grid: _Grid) -> list[_Band]:
    """Candidate headers starting on each of the first :data:`HEADER_SCAN_ROWS` non-blank rows."""
    bands: list[_Band] = []
    known = _known_aliases()
    across = [m for m in grid.merges if m[3] > m[1]]  # merged across columns: group headers, titles
    for first, row in enumerate(grid.rows):
        if len(bands) == HEADER_SCAN_ROWS:
            break
        if _is_blank(row):
            continue
        ends = [r1 for r0, _, r1, _ in grid.merges if r0 == first and r1 > r0]
        if not ends and _groups_above(grid, across, first, known):
            ends = [first + 1]
        last = min(max(ends, default=first), first + 2, len(grid.rows) - 1)
        cells = grid.rows[first : last + 1]
        keys, groups = _band_keys(grid, across, first, last, known)
        bands.append(_Band(last, cells, keys, groups))
    return bands


_Aliased = list[tuple[RosterSpec, dict[str, str]]]
"""Rosters, each with its alias table: ``header_key(alias)`` -> field, for that roster's fields only."""


def _with_aliases(rosters: list[RosterSpec]) -> _Aliased:
    fields = catalogue().fields
    aliased: _Aliased = []
    for roster in rosters:
        table: dict[str, str] = {}
        for name in roster.fields:
            for alias in fields[name].aliases:
                table.setdefault(header_key(alias), name)  # an alias of two fields: the first wins
        aliased.append((roster, table))
    return aliased


def _map_band(band: _Band, aliases: dict[str, str]) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """Fields named in a band; per column the lowest cell naming a field wins, per field the first column.

    A header such as ``身份证号码(18位)`` is accepted by dropping the trailing note. Returns the
    columns, their header texts, and the group headers the grouped ones were read under.
    """
    columns: dict[str, int] = {}
    texts: dict[str, str] = {}
    groups: dict[str, str] = {}
    for col in range(max(len(row) for row in band.cells)):
        for r in reversed(range(len(band.cells))):
            if col >= len(band.keys[r]):
                continue
            candidates = band.keys[r][col]
            name = next((aliases[k] for k in candidates if k and k in aliases), None)
            if name is not None:
                if name not in columns:
                    columns[name], texts[name] = col, str(band.cells[r][col])
                    if col in band.groups[r]:
                        groups[name] = band.groups[r][col]
                break
    return columns, texts, groups


def _find_header(bands: list[_Band], rosters: _Aliased) -> _Header | None:
    """The first band on which all signature fields of one of ``rosters`` are found.

    Several rosters matching on that band: longest signature, then most fields found, then the
    order of ``rosters`` (a sheet with 调整类型 is ``hardship_adjustment``, not ``hardship``).
    """
    for band in bands:
        best: tuple[tuple[int, int, int], _Header] | None = None
        for order, (roster, aliases) in enumerate(rosters):
            columns, texts, groups = _map_band(band, aliases)
            if not set(roster.signature) <= columns.keys():
                continue
            rank = (len(roster.signature), len(columns), -order)
            if best is None or rank > best[0]:
                best = (rank, _Header(roster, band.last, columns, texts, groups))
        if best is not None:
            return best[1]
    return None


def _nearest_roster(bands: list[_Band], rosters: _Aliased) -> tuple[RosterSpec, list[str]] | None:
    """A roster of which all but one signature field (and at least two) were found, and what is missing."""
    best: tuple[tuple[int, int, int], RosterSpec, list[str]] | None = None
    for band in bands:
        for order, (roster, aliases) in enumerate(rosters):
            columns, _, _ = _map_band(band, aliases)
            missing = [name for name in roster.signature if name not in columns]
            found = len(roster.signature) - len(missing)
            if len(missing) != 1 or found < 2:
                continue
            rank = (found, len(columns), -order)
            if best is None or rank > best[0]:
                best = (rank, roster, missing)
    return None if best is None else (best[1], best[2])


# --------------------------------------------------------------------------- data rows


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _is_blank(row: Sequence[object]) -> bool:
    return all(_is_empty(value) for value in row)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _is_blank_or_footer(row: Sequence[object]) -> bool:
    """Blank, or a footer: first non-empty cell starts with 合计/制表人/…, or a lone cell naming one."""
    first = next((value for value in row if not _is_empty(value)), None)
    if first is None:
        return True
    if not isinstance(first, str):
        return False
    text = _squash(first)
    if text.startswith(FOOTER_PREFIXES) or text in FOOTER_EXACT:
        return True
    return any(word in text for word in FOOTER_WORDS) and sum(not _is_empty(v) for v in row) == 1


def _is_header_repeat(row: Sequence[object], header: _Header) -> bool:
    """An exact copy of the header row (page headers pasted into the data when printing)."""
    return all(col < len(row) and row[col] == header.texts[name] for name, col in header.columns.items())


def _cell(row: Sequence[object], col: int | None) -> object:
    if col is None or col >= len(row):
        return None
    value = row[col]
    return None if isinstance(value, str) and value == "" else value


def _table(grid: _Grid, header: _Header, source: str = "") -> SheetTable:
    fields = header.roster.fields
    positions = [header.columns.get(name) for name in fields]
    records: list[list[object]] = []
    record_of_row: dict[int, int] = {}
    large = len(grid.rows) > PROGRESS_ROWS
    started, progress = time.perf_counter(), _Progress()
    for index in range(header.last_row + 1, len(grid.rows)):
        if large and progress.due(index):
            log.info(
                "read: %s: sheet %s: %d of %d rows read, %d records",
                source,
                grid.name,
                index,
                len(grid.rows),
                len(records),
            )
        row = grid.rows[index]
        if _is_blank_or_footer(row) or _is_header_repeat(row, header):
            continue
        record_of_row[index] = len(records)
        records.append([grid.number(index), *(_cell(row, col) for col in positions)])
    _fill_merged(grid, header, positions, records, record_of_row)
    frame = pd.DataFrame(records, columns=["_row", *fields], dtype=object)
    if large:
        log.info(
            "read: %s: sheet %s: all %d rows read, %d records (%s) in %.1f s",
            source,
            grid.name,
            len(grid.rows),
            len(records),
            header.roster.kind,
            time.perf_counter() - started,
        )
    return SheetTable(
        sheet=grid.name,
        roster=header.roster.kind,
        header_row=grid.number(header.last_row),
        headers=header.labels(),
        frame=frame,
    )


def _fill_merged(
    grid: _Grid,
    header: _Header,
    positions: list[int | None],
    records: list[list[object]],
    record_of_row: dict[int, int],
) -> None:
    """Give every row of a vertically merged range in the data area the range's top-left value.

    Excel keeps the value in the top-left cell only; the clerk sees it on every row of the range.
    Only the range's first column is filled (a range also merged across columns shows one value).
    """
    slot_of_column = {col: slot for slot, col in enumerate(positions, start=1) if col is not None}
    for r0, c0, r1, _ in grid.merges:
        if r1 <= r0 or r0 <= header.last_row or c0 not in slot_of_column:
            continue
        value = _cell(grid.rows[r0], c0)
        slot = slot_of_column[c0]
        for index in range(r0 + 1, min(r1, len(grid.rows) - 1) + 1):
            if index in record_of_row:
                records[record_of_row[index]][slot] = value


# --------------------------------------------------------------------------- file level


def _read_grids(
    grids: Iterator[_Grid] | list[_Grid], department: str | None, notes: list[str], source: str = ""
) -> ReadResult:
    """Detect each grid's roster; a sheet of another department rejects the whole file.

    Each sheet is recognised by its headers against every roster of every department (the best
    match, ties going to ``department``'s own); ``department`` None: any department's roster is
    read (what a file outside the department folders holds).

    ``notes`` may already hold notes added while the grids are produced (hidden sheets).
    """
    cat = catalogue()
    own_rosters = cat.rosters_of(department) if department is not None else []
    own = _with_aliases(own_rosters)
    # Every roster of every department, the folder's own first (a tie goes to the folder): a sheet
    # is what its headers say it is, whatever folder it was dropped into.
    every = _with_aliases(
        own_rosters + [r for dept in cat.departments if dept != department for r in cat.rosters_of(dept)]
    )
    tables: list[SheetTable] = []
    seen_cells = False
    short: dict[str, str] = {}  # the first sheet skipped for a missing required column
    for grid in grids:
        if all(_is_blank(row) for row in grid.rows):
            continue  # Excel's empty Sheet2/Sheet3: nothing to say
        seen_cells = True
        bands = _header_bands(grid)
        header = _find_header(bands, every)
        if header is not None and department is not None and header.roster.department != department:
            owner = header.roster.department
            raise FileRejected(
                "file_wrong_department",
                detail=header.roster.kind,
                roster=header.roster.label,
                owner=cat.departments[owner]["label"],
                folder=owner,
            )
        if header is None:
            notes.append(_no_header_note(grid.name, bands, own or every))
            continue
        header = _prefer_columns(grid, bands, header, notes)
        missing = _missing_required(header)
        if missing:
            values = {"sheet": grid.name, "roster": header.roster.label, "missing": missing}
            short = short or values
            notes.append(message("sheet_missing_columns", **values))
            continue
        table = _table(grid, header, source)
        if table.frame.empty:
            notes.append(message("sheet_no_rows", sheet=grid.name, roster=header.roster.label))
        notes.extend(_hidden_rows_note(grid, table))
        tables.append(table)
    if not tables:
        if short:  # one message for the file, naming the column: not one per row
            raise FileRejected("file_missing_columns", detail="required column missing", **short)
        raise FileRejected("file_no_roster" if seen_cells or notes else "file_empty")
    return ReadResult(tables=tables, notes=notes)


def _missing_required(header: _Header) -> str:
    """The roster's required columns the header lacks, as the clerk reads them (``“镇街”``), or ``""``.

    Such a sheet is not read: every one of its rows would be rejected for the same empty column."""
    fields = catalogue().fields
    return "、".join(
        f"“{fields[name].label}”" for name in header.roster.required if name not in header.columns
    )


def _rows_text(numbers: Sequence[int], shown: int = 10) -> str:
    """``第3、5、7行``; past ``shown`` rows ``第3、5、…、40行（共25行）``."""
    listed = "、".join(str(n) for n in numbers[:shown])
    if len(numbers) <= shown:
        return f"第{listed}行"
    return f"第{listed}、…、{numbers[-1]}行（共{len(numbers)}行）"


def _column_letters(index: int) -> str:
    """0 -> ``A``, 26 -> ``AA``: the column as Excel names it."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _hidden_rows_note(grid: _Grid, table: SheetTable) -> list[str]:
    """Rows read although hidden in Excel: loaded as any other, with a note so the clerk knows."""
    if grid.hidden is None or not grid.hidden.rows:
        return []
    hidden = {grid.number(index) for index in grid.hidden.rows if index < len(grid.rows)}
    loaded = sorted(int(number) for number in table.frame["_row"] if int(number) in hidden)
    return [message("sheet_hidden_rows", sheet=grid.name, rows=_rows_text(loaded))] if loaded else []


def _prefer_columns(grid: _Grid, bands: list[_Band], header: _Header, notes: list[str]) -> _Header:
    """Of several columns with a header of the same field: a visible one before a hidden one, then
    one holding data before an empty one; columns holding different data are noted.

    Header detection takes the first column per field; this only changes the choice among the
    columns of the same band that name the same field.
    """
    band = next((b for b in bands if b.last == header.last_row), None)
    if band is None:
        return header
    ((_, aliases),) = _with_aliases([header.roster])
    candidates: dict[str, list[tuple[int, str]]] = {}
    for col in range(max(len(row) for row in band.cells)):
        for r in reversed(range(len(band.cells))):
            if col >= len(band.keys[r]):
                continue
            key, bare = band.keys[r][col]
            name = (aliases.get(key) or aliases.get(bare)) if key else None
            if name is not None:
                candidates.setdefault(name, []).append((col, str(band.cells[r][col])))
                break
    doubled = {
        name: found
        for name, found in candidates.items()
        if len(found) > 1 and header.columns.get(name) in {col for col, _ in found}
    }
    if not doubled:
        return header
    data = [
        (index, grid.rows[index])
        for index in range(header.last_row + 1, len(grid.rows))
        if not _is_blank_or_footer(grid.rows[index])
    ]
    columns, texts = dict(header.columns), dict(header.texts)
    for name, found in doubled.items():
        hidden = grid.hidden
        visible = [(col, text) for col, text in found if hidden is None or not hidden.column(col)] or found
        filled = [(col, t) for col, t in visible if any(not _is_empty(_cell(row, col)) for _, row in data)]
        columns[name], texts[name] = (filled or visible)[0]
        differing = [
            grid.number(index)
            for index, row in data
            if len({_squash(str(v)) for v in (_cell(row, col) for col, _ in filled) if not _is_empty(v)}) > 1
        ]
        if differing:
            notes.append(
                message(
                    "sheet_duplicate_columns",
                    sheet=grid.name,
                    count=len(filled),
                    header=texts[name],
                    columns="、".join(_column_letters(col) for col, _ in filled),
                    chosen=_column_letters(columns[name]),
                    rows=_rows_text(differing),
                )
            )
    groups = {name: g for name, g in header.groups.items() if columns[name] == header.columns[name]}
    return _Header(header.roster, header.last_row, columns, texts, groups)


def _no_header_note(sheet: str, bands: list[_Band], rosters: _Aliased) -> str:
    """Why a sheet was skipped: a roster's header short of one column, or nothing recognised."""
    nearest = _nearest_roster(bands, rosters)
    if nearest is None:
        return message("sheet_no_roster", sheet=sheet)
    roster, missing = nearest
    labels = "、".join(f"“{catalogue().fields[name].label}”" for name in missing)
    return message("sheet_missing_columns", sheet=sheet, roster=roster.label, missing=labels)
