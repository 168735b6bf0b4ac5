"""The one workbook writer: every .xlsx the project writes for people goes through :class:`Book`.

House rules built in: every string is masked for ID-/phone-shaped numbers (``masking.mask_text``,
unless the book is made with ``mask=False``), stripped of characters XML cannot hold, passed
through ``masking.defuse`` and written as text (``write_string``), so nothing coming from a
spreadsheet can become a live formula. Workbooks are streamed by XlsxWriter in its constant-memory
mode (a province's million pairs in flat memory; a table longer than a sheet goes on in
continuation sheets ``<title>(2)``, ``<title>(3)`` ...), to a temporary file in the target folder
that replaces the target only when complete (``os.replace``), with fixed document properties and
zip timestamps so the same data gives the same bytes.

Cells are styled with :class:`Style` (a fill, bold, a font size, wrapped text, a number format),
combined with ``|``: ``sheet.row(values, BOLD | RED, styles={4: PERCENT})``. Each combination
becomes one XlsxWriter format, built the first time it is used.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import re
import tempfile
import unicodedata
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xlsxwriter

from rosterlink.core.masking import defuse, mask_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence


@dataclass(frozen=True)
class Style:
    """How a cell looks. The default is a plain cell; combine two with ``a | b`` (``b``'s fill,
    size and number format win where it has them; bold, wrap and top add up)."""

    fill: str | None = None  # solid background, "#RRGGBB"
    bold: bool = False
    size: float | None = None  # font size in points (the default font's size when None)
    wrap: bool = False  # wrapped text, aligned to the top of the cell
    num_format: str | None = None  # Excel number format, e.g. "0.0%"
    top: bool = False  # aligned to the top of the cell (rows beside a wrapped cell read from the top)
    # a string that looks like a formula (= + - @) shown as typed: a text cell with Excel's quote
    # prefix (as when a clerk types '=1+1) instead of a visible leading apostrophe
    as_typed: bool = False

    def __post_init__(self) -> None:
        # looked up once per cell (its format, its derived styles): hash the fields once
        object.__setattr__(self, "_hash", hash(astuple(self)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    def __reduce__(self) -> tuple[type[Style], tuple[object, ...]]:
        # rebuilt from its fields (its hash is made again where it is unpickled)
        return (self.__class__, astuple(self))

    def __or__(self, other: Style) -> Style:
        return Style(
            fill=other.fill or self.fill,
            bold=self.bold or other.bold,
            size=other.size or self.size,
            wrap=self.wrap or other.wrap,
            num_format=other.num_format or self.num_format,
            top=self.top or other.top,
            as_typed=self.as_typed or other.as_typed,
        )


PLAIN = Style()
RED = Style(fill="#FFC7CE")  # an error, something to act on
YELLOW = Style(fill="#FFEB9C")  # a warning, a note
GREEN = Style(fill="#C6EFCE")  # new tonight
GREY = Style(fill="#D9D9D9")  # ended tonight
BOLD = Style(bold=True)
HEADER = Style(fill="#DDEBF7", bold=True)  # a table's header row
TITLE = Style(bold=True, size=14.0)
WRAP = Style(wrap=True)
TOP = Style(top=True)
AS_TYPED = Style(as_typed=True)  # what a clerk typed, formula-like text included, shown as typed
DATE_FORMAT = "yyyy-mm-dd"
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
PERCENT = Style(num_format="0.0%")

MAX_SHEET_ROWS = 1_048_576
"""Rows an .xlsx sheet can hold (Excel's limit); a longer table continues on a sheet named
``<title>(2)`` with the same header (a province's night-1 change sheet lists a million pairs).
Read when a sheet is made."""

_WORKBOOK_OPTIONS = {
    "constant_memory": True,  # rows stream to disk as they are written: memory stays flat
    "strings_to_numbers": False,
    "strings_to_formulas": False,
    "strings_to_urls": False,
}
# characters an XML 1.0 document cannot hold (the same set openpyxl refuses)
_ILLEGAL_CHARACTERS = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")

_DERIVED: dict[tuple[Style, str, object], Style] = {}


def _derived(style: Style, name: str, value: object) -> Style:
    """``replace(style, name=value)``, made once per style (cells ask for it row after row)."""
    key = (style, name, value)
    found = _DERIVED.get(key)
    if found is None:
        change: dict[str, Any] = {name: value}
        found = _DERIVED[key] = replace(style, **change)
    return found


@functools.lru_cache(maxsize=1 << 16)
def _texts(value: str, mask: bool) -> tuple[str, str]:
    """A string as a cell shows it: ``(typed, defused)``: masked (if ``mask``) and XML-safe, then
    the same never a formula (a leading apostrophe where it starts like one). Towns, villages,
    units and reasons repeat on every row: each is cleaned once."""
    s = _ILLEGAL_CHARACTERS.sub("", mask_text(value) if mask else value)
    return s, str(defuse(s))


CellValue = str | float | dt.date | None
Cell = tuple[CellValue, Any]
"""A cell ready to write: ``(value, XlsxWriter format or None)``, as :meth:`Sheet.cell` makes it."""


def date_tag(day: dt.date) -> str:
    """``2026-11-20`` -> ``20261120``, the date in the names of the night's workbooks."""
    return f"{day:%Y%m%d}"


def midnight(day: dt.date) -> dt.datetime:
    """The start of ``day``: the creation stamp of a workbook written for that night."""
    return dt.datetime.combine(day, dt.time())


A4 = 9
"""XlsxWriter's paper code for A4."""


def text_width(text: str) -> float:
    """The column width a header needs to show whole: a wide (CJK) character takes two units,
    anything else one, plus a margin for the filter button."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text) + 2.5


def print_widths(widths: Sequence[float], columns: Sequence[str]) -> tuple[float, ...]:
    """Column widths for a printed sheet: each at least as wide as its header needs."""
    n = max(len(widths), len(columns))
    return tuple(
        max(widths[i] if i < len(widths) else 0.0, text_width(columns[i]) if i < len(columns) else 0.0)
        for i in range(n)
    )


def sheet_title(title: str, taken: Sequence[str]) -> str:
    """A sheet name Excel accepts (31 characters, none of ``[]:*?/\\``), unique among ``taken``
    regardless of case (``name(2)``, ``name(3)`` ...)."""
    base = _BAD_SHEET_CHARS.sub("_", _ILLEGAL_CHARACTERS.sub("", title)).strip("'") or "Sheet"
    base = base[:31]
    name, n = base, 2
    while name.lower() in (t.lower() for t in taken):
        suffix = f"({n})"
        name = base[: 31 - len(suffix)] + suffix
        n += 1
    return name


@dataclass
class Sheet:
    """A sheet being written, row after row (constant memory: a written row cannot be changed)."""

    book: Book
    ws: Any  # the XlsxWriter worksheet written now (a continuation sheet once the first is full)
    width: int
    rows: int = 0
    autofilter: bool = False
    title: str = ""
    widths: Sequence[float] = ()
    columns: Sequence[str] = ()
    freeze: bool = True
    max_rows: int = MAX_SHEET_ROWS
    parts: int = 1  # the sheet and its continuation sheets
    printed: bool = False  # A4 landscape, fit to width, the header row on every page

    def cell(self, value: object, style: Style = PLAIN) -> Cell | None:
        """One cell: strings masked (where the book asks), defused and written as text; booleans
        as 是/否; dates formatted; anything else that is not a number as its text. None and "" stay
        empty (a blank cell when the style has a fill, else no cell at all)."""
        out: CellValue
        if value.__class__ is str:  # the common case first (a subclass takes the general path)
            if not value and style.fill is None:
                return None
            out = value or None
        elif value is None:
            if style.fill is None:
                return None
            out = None
        elif value.__class__ is int:
            out = value
        elif value == "":
            if style.fill is None:
                return None
            out = None
        elif isinstance(value, bool):
            out = "是" if value else "否"
        elif isinstance(value, dt.date):
            if not style.num_format:
                fmt = DATETIME_FORMAT if isinstance(value, dt.datetime) else DATE_FORMAT
                style = _derived(style, "num_format", fmt)
            out = value
        elif isinstance(value, float) and not math.isfinite(value):
            out = str(value)
        elif isinstance(value, (int, float, str)):
            out = value
        else:
            out = str(value)  # anything else is shown as text
        if isinstance(out, str):
            typed, defused = _texts(out, self.book.mask)
            if style.as_typed and typed != defused:
                out = typed  # a text cell with the quote prefix: shown as typed, never a formula
            else:
                out = defused
                if style.as_typed:
                    style = _derived(style, "as_typed", False)
        elif style.as_typed:
            style = _derived(style, "as_typed", False)
        return (out, self.book.cell_format(style))

    def append(self, cells: Sequence[Cell | None]) -> None:
        """Write one row of :meth:`cell` results (None leaves the cell out)."""
        if self.rows >= self.max_rows:
            self._continue()
        ws, r = self.ws, self.rows
        for c, cell in enumerate(cells):
            if cell is None:
                continue
            value, fmt = cell
            if value is None:
                ws.write_blank(r, c, None, fmt)
            elif isinstance(value, str):
                ws.write_string(r, c, value, fmt)
            elif isinstance(value, dt.date):
                ws.write_datetime(r, c, value, fmt)
            else:
                ws.write_number(r, c, value, fmt)
        self.rows += 1

    def row(
        self, values: Sequence[object], style: Style = PLAIN, *, styles: Mapping[int, Style] | None = None
    ) -> None:
        """One row of values in ``style``; ``styles`` adds to it by column index (``{4: WRAP}``)."""
        if not styles:
            self.append(self.cells(values, style))
            return
        self.append([self.cell(v, style | styles[i] if i in styles else style) for i, v in enumerate(values)])

    def cells(self, values: Iterable[object], style: Style = PLAIN) -> list[Cell | None]:
        """:meth:`cell` of each value, in one style. A non-empty string (most cells of a list)
        takes the short way: its format is looked up once for the row, and its text once per
        workbook (:func:`_texts`)."""
        if style.as_typed:
            return [self.cell(v, style) for v in values]
        fmt, mask, cell = self.book.cell_format(style), self.book.mask, self.cell
        return [(_texts(v, mask)[1], fmt) if v.__class__ is str and v else cell(v, style) for v in values]

    def header(self, names: Sequence[str]) -> None:
        """A header row (bold, on the header fill)."""
        self.append([self.cell(n, HEADER) for n in names])

    def close_filter(self) -> None:
        """Set the filter range over the rows written (the book does it when it saves)."""
        if self.autofilter and self.width:
            self.ws.autofilter(0, 0, max(self.rows, 1) - 1, self.width - 1)

    def _continue(self) -> None:
        """The sheet is full: close its filter range and go on writing on a continuation sheet."""
        self.close_filter()
        self.parts += 1
        suffix = f"({self.parts})"
        self.ws, self.rows = self.book.worksheet(f"{self.title[: 31 - len(suffix)]}{suffix}", self.widths), 0
        if self.printed:
            set_print(self.ws, bool(self.columns))
        if self.columns:
            if self.freeze:
                self.ws.freeze_panes(1, 0)
            self.header(self.columns)


def format_props(style: Style) -> dict[str, object]:
    """The XlsxWriter format properties of a style."""
    props: dict[str, object] = {}
    if style.num_format:
        props["num_format"] = style.num_format
    if style.fill is not None:
        props.update(pattern=1, bg_color=style.fill)
    if style.bold or style.size:
        props["bold"] = style.bold
        if style.size:
            props["font_size"] = float(style.size)
    if style.wrap:
        props.update(text_wrap=True, valign="top")
    elif style.top:
        props["valign"] = "top"
    if style.as_typed:
        props["quote_prefix"] = True
    return props


def set_print(ws: Any, header: bool) -> None:
    """Print settings for a sheet people print: A4 landscape, fit to one page wide (as many pages
    down as it takes), the header row (row 1) repeated on every page."""
    ws.set_landscape()
    ws.set_paper(A4)
    ws.fit_to_pages(1, 0)
    if header:
        ws.repeat_rows(0)


@dataclass
class Book:
    """A streaming workbook (XlsxWriter, constant memory) with the house rules built in.

    ``stamp`` is its fixed creation time (document properties); ``mask=False`` leaves strings
    unmasked (they are still defused and written as text); ``before_replace`` is called once the
    workbook is complete on disk, just before it replaces the target (where the exports' failpoint
    hooks in)."""

    stamp: dt.datetime
    mask: bool = True
    before_replace: Callable[[], object] | None = None
    sheets: list[Sheet] = field(default_factory=list)
    _formats: dict[Style, Any] = field(default_factory=dict)
    _cell_formats: dict[Style, Any] = field(default_factory=dict)
    _titles: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wb = xlsxwriter.Workbook(None, _WORKBOOK_OPTIONS)
        # fixed document properties: the same data gives the same bytes (XlsxWriter already gives
        # every zip member a fixed timestamp)
        self.wb.set_properties({"author": "rosterlink", "created": self.stamp})

    def text(self, value: str, *, defused: bool = True) -> str:
        """A string as it may appear in the workbook: masked (if asked), XML-safe, never a formula
        (``defused=False``: without the leading apostrophe, for a cell with the quote prefix)."""
        typed, safe = _texts(value, self.mask)
        return safe if defused else typed

    def cell_format(self, style: Style) -> Any:
        """The XlsxWriter format of a cell in ``style`` (None for a plain cell)."""
        try:
            return self._cell_formats[style]
        except KeyError:
            found = self._cell_formats[style] = None if style == PLAIN else self.format(style)
            return found

    def format(self, style: Style) -> Any:
        """The XlsxWriter format of a style, built once (formats are numbered in order of first use)."""
        found = self._formats.get(style)
        if found is None:
            found = self._formats[style] = self.wb.add_format(format_props(style))
        return found

    def worksheet(self, title: str, widths: Sequence[float] = ()) -> Any:
        """A bare XlsxWriter worksheet with a unique, valid name and the column widths."""
        ws = self.wb.add_worksheet(sheet_title(title, self._titles))
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
        printed: bool = False,
    ) -> Sheet:
        """A new sheet; with ``columns`` it starts with a header row (frozen, with a filter).

        ``printed``: a sheet people print (:func:`set_print`: A4 landscape, fit to width, the
        header row on every page), its columns at least as wide as their headers need."""
        if printed:
            widths = print_widths(widths, columns)
        ws = self.worksheet(title, widths)
        if printed:
            set_print(ws, bool(columns))
        sheet = Sheet(
            self,
            ws,
            max(len(widths), len(columns)),
            autofilter=bool(columns) and autofilter,
            title=ws.name,
            widths=widths,
            columns=columns,
            freeze=freeze,
            max_rows=MAX_SHEET_ROWS,
            printed=printed,
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
            sheet.close_filter()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".~", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            self.wb.filename = tmp
            self.wb.close()
            if self.before_replace is not None:
                self.before_replace()
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
