"""Raw cells -> canonical values: one pure function per field type, and one per table.

Input: a ``SheetTable`` of :mod:`rosterlink.core.tables` (only ``sheet``, ``roster``, ``headers`` and
``frame`` are used). ``frame`` holds ``_row`` (the clerk's Excel row number) and one column per
roster field with raw cell values (str, int, float, datetime/date or None).

Output of :func:`normalise_table`: a DataFrame with the same rows in the same order, ``_row``
kept, then one column per roster field (object dtype) holding

=================  ==========================================================================
field type         normalised value
=================  ==========================================================================
``person_name``    str, NFKC, inner spaces removed, middle-dot variants folded to ``·``
``id_number``      18-character str (15-digit legacy numbers upgraded), uppercase ``X``
``town``           one of ``district().towns`` (unambiguous short forms such as ``店子`` accepted)
``text``           str, NFKC, trimmed (a leading ``= + - @`` is kept and flagged ``text_formula``)
``code``           str, NFKC, no whitespace, ASCII letters upper-cased
``int``            int (``"3"``, ``3.0``, ``"3人"`` -> 3), never negative
``money``          float (``"1,234.5元"`` -> 1234.5), never negative
``phone``          str of digits: mobile ``1[3-9]xxxxxxxxx`` or landline with area code
``date``           ISO ``YYYY-MM-DD`` str (``2016年8月`` -> first of the month)
``enum:<name>``    the enum's code (rank -> ``county``/``section``/``ordinary``, sex -> ``M``/``F``)
=================  ==========================================================================

plus a list of :class:`~rosterlink.core.findings.Finding`. An empty cell is simply None (no finding:
whether it may be empty is the validation suite's business). A value that cannot be normalised
becomes None and yields a finding; two warnings keep their value (``id_region_unknown``,
``text_formula``). Findings carry the header as the clerk wrote it and a masked value only.

Every per-field function is pure, never raises, and returns a :class:`Normalised` triple
``(value_or_None, reason_code_or_None, extra)`` where ``extra`` holds additional message values
(e.g. ``{"length": 17}`` for ``id_bad_length``). A code with a non-None value is a warning.

An ID number in a field marked ``adult`` (a head's, guardian's, cadre's) whose birth date makes
its holder under 18 on the night's date is dropped (``id_minor_as_adult``, the value never
quoted): a child's ID number is never kept as a grown-up's.

ID numbers in numeric cells are refused (``id_numeric_cell``): Excel keeps 15 significant digits,
so the last digits are gone; the number is never rounded or reconstructed.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypeGuard

import pandas as pd

from rosterlink.core import idnumber
from rosterlink.core.findings import Finding, message, severity
from rosterlink.core.masking import mask_value
from rosterlink.core.spec import catalogue, district, header_key
from rosterlink.core.tables import SheetTable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence


class Normalised(NamedTuple):
    value: Any
    code: str | None = None
    extra: dict[str, Any] = {}  # noqa: RUF012 - never mutated


OK_EMPTY = Normalised(None, None, {})

# --------------------------------------------------------------------------------------------
# shared helpers

_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_ALL_SPACE = re.compile(r"\s+")
_PLACEHOLDER = re.compile(r"^[-—–_/\\－—]*$")  # "-", "--", "/", "——": the clerk's "nothing here"
_NULL_WORDS = frozenset({"nan", "NaN", "None", "null", "NULL", "NaT", "N/A", "n/a", "#N/A"})
_FORMULA_START = ("=", "+", "-", "@")


_LINE_CONTROLS = re.compile("[\x0b\x0c]")
_XML_ILLEGAL = re.compile("[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
"""Characters no xlsx (XML 1.0) may hold, nor any output: C0 controls but tab, line feed and
carriage return (DEL too), lone surrogates, U+FFFE/U+FFFF. Word's vertical tab (a manual line
break, ``\x0b``) and form feed (``\x0c``) become a space; the others are removed."""


def printable(text: str) -> str:
    """``text`` without the characters no output may hold (a header as written, for messages)."""
    return _XML_ILLEGAL.sub("", _LINE_CONTROLS.sub(" ", text))


def _clean_str(raw: str) -> str:
    """NFKC, control characters and zero-width characters removed, trimmed."""
    if raw.isprintable() and unicodedata.is_normalized("NFKC", raw):
        # nothing to replace or remove: every character the patterns below match (C0 controls,
        # DEL, lone surrogates, U+FFFE/U+FFFF, the zero-width ones) is one str.isprintable()
        # refuses, and the text is already NFKC; most cells are, and skip four passes over them
        return raw.strip()
    return _clean_str_fully(raw)


def _clean_str_fully(raw: str) -> str:
    """:func:`_clean_str` without its shortcut: every pass made."""
    text = unicodedata.normalize("NFKC", _XML_ILLEGAL.sub("", _LINE_CONTROLS.sub(" ", raw)))
    return _ZERO_WIDTH.sub("", text).strip()


def is_blank(raw: object) -> bool:
    """None, NaN/NaT, an empty or whitespace string, or a placeholder such as ``-`` or ``/``."""
    if raw is None:
        return True
    if isinstance(raw, str):  # most cells: tested first
        if raw and ("0" <= raw[0] <= "9" or "\u4e00" <= raw[0] <= "\u9fff"):
            # an ID, a phone, a date, a name, a village: a first character that cleaning keeps
            # first (neither space nor control) and that no blank word or placeholder starts with
            return False
        s = _clean_str(raw)
        return s == "" or s in _NULL_WORDS or bool(_PLACEHOLDER.match(s))
    if isinstance(raw, float):
        return math.isnan(raw)
    if raw is pd.NaT:
        return True
    try:
        return bool(pd.isna(raw))  # numpy nan, pd.NA, numpy NaT
    except (TypeError, ValueError):
        return False


def _is_number(raw: object) -> TypeGuard[float]:
    """An int or float cell value (numpy scalars included), never a bool."""
    return isinstance(raw, numbers.Number) and not isinstance(raw, bool)


def _as_text(raw: object) -> str:
    """A readable string for any cell value (for messages and text fields)."""
    if isinstance(raw, str):
        return _clean_str(raw)
    if isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, numbers.Integral):
        return str(int(raw))
    if isinstance(raw, numbers.Real):
        f = float(raw)
        if math.isfinite(f) and f.is_integer() and abs(f) < 1e15:
            return str(int(f))
        return repr(f)
    if isinstance(raw, dt.datetime):
        return raw.date().isoformat() if raw.time() == dt.time() else raw.isoformat(sep=" ")
    if isinstance(raw, dt.date):
        return raw.isoformat()
    try:
        return _clean_str(str(raw))
    except Exception:  # noqa: BLE001 - a cell whose str() fails is shown as nothing
        return ""


# --------------------------------------------------------------------------------------------
# ID numbers (GB 11643-1999)

_ID_STRIP = re.compile(r"[\s\-‐‑‒–—―_]+")
_ID_NUMERIC_TEXT = re.compile(r"^\d+(\.\d*)?[eE][+]?\d+$|^\d+\.\d*$")
_ID18 = re.compile(r"^[0-9]{17}[0-9X]$")
_EARLIEST = dt.date(1900, 1, 1)


def normalise_id(
    raw: object, known_regions: Sequence[str] | None = None, today: dt.date | None = None
) -> Normalised:
    """Clean an ID number cell and check it: ``(id18, None)``, ``(id18, "id_region_unknown")``
    (a warning, value kept) or ``(None, reason)``.

    Order: numeric cell -> characters -> length (15-digit legacy numbers upgraded when their
    birth date is valid) -> embedded birth date -> checksum -> region code.
    """
    if type(raw) is str and _ID18.fullmatch(raw):
        # 17 ASCII digits and a digit or X, as most cells are: every cleaning step below would
        # leave it as it is, and every check before the ones of an 18-character number passes
        return _checked_id18(raw, known_regions, today)
    return _normalise_id_fully(raw, known_regions, today)


def _normalise_id_fully(
    raw: object, known_regions: Sequence[str] | None = None, today: dt.date | None = None
) -> Normalised:
    """:func:`normalise_id` without its shortcut: every step made."""
    if is_blank(raw):
        return OK_EMPTY
    if _is_number(raw):
        return Normalised(None, "id_numeric_cell", {})
    if not isinstance(raw, str):
        return Normalised(None, "id_bad_chars", {})
    s = _ID_STRIP.sub("", _clean_str(raw)).lstrip("'").upper()
    if not s:
        return OK_EMPTY
    if _ID_NUMERIC_TEXT.match(s):
        return Normalised(None, "id_numeric_cell", {})
    if not s.isascii() or not re.fullmatch(r"[0-9X]+", s):
        return Normalised(None, "id_bad_chars", {})
    if len(s) == 15:
        if not s.isdigit():
            return Normalised(None, "id_bad_chars", {})
        try:
            dt.date(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12]))
        except ValueError:
            return Normalised(None, "id_bad_birthdate", {})
        s = idnumber.upgrade_15(s)
    if len(s) != 18:
        return Normalised(None, "id_bad_length", {"length": len(s)})
    if not _ID18.match(s):
        return Normalised(None, "id_bad_chars", {})  # an X anywhere but last
    return _checked_id18(s, known_regions, today)


def _checked_id18(
    s: str, known_regions: Sequence[str] | None = None, today: dt.date | None = None
) -> Normalised:
    """The checks of a clean 18-character number (17 digits, then a digit or X): region, birth
    date, checksum, known region."""
    if s[0] == "0":
        return Normalised(None, "id_bad_region", {})
    born = idnumber.birth_date(s)
    if born is None or born < _EARLIEST or born > (today or dt.date.today()):
        return Normalised(None, "id_bad_birthdate", {})
    if not idnumber.is_valid_checksum(s):
        return Normalised(None, "id_bad_checksum", {})
    regions = district().known_region_codes if known_regions is None else known_regions
    if idnumber.region(s) not in regions:
        return Normalised(s, "id_region_unknown", {"region": idnumber.region(s)})
    return Normalised(s, None, {})


# --------------------------------------------------------------------------------------------
# person names

_DOTS = re.compile("[\u00b7\u2022\u2027\u2219\u22c5\u30fb\uff65\u318d\u0387]")
_ASCII_DOT_BETWEEN = re.compile(r"(?<=[^\x00-\x7f])\.(?=[^\x00-\x7f])")
NAME_MAX = 20


_CJK_NAME = re.compile(f"[\u4e00-\u9fff]{{1,{NAME_MAX}}}")


def normalise_name(raw: object) -> Normalised:
    """A person's name: letters (Chinese or other scripts) and the middle dot ``·`` only.

    NFKC, trimmed, inner spaces removed; middle-dot variants (``•``, ``・``, ``‧``, and an ASCII
    ``.`` between two Chinese characters) become ``·``. Refused (``name_invalid``): a leading
    ``= + - @``, digits, ASCII or other symbols, a leading/trailing/doubled dot, more than 20
    characters. Empty is None without a finding.
    """
    if type(raw) is str and _CJK_NAME.fullmatch(raw):
        # CJK ideographs only (most names): letters, NFKC and NFC already, nothing to trim,
        # remove or fold
        return Normalised(raw, None, {})
    return _normalise_name_fully(raw)


def _normalise_name_fully(raw: object) -> Normalised:
    """:func:`normalise_name` without its shortcut: every step made."""
    if is_blank(raw):
        return OK_EMPTY
    if not isinstance(raw, str):
        return Normalised(None, "name_invalid", {})
    # NFKC may split a spacing mark into a space and a combining mark ("H¨" -> "H \u0308"):
    # compose again once the spaces are gone, so normalising twice gives the same name
    s = unicodedata.normalize("NFC", _ALL_SPACE.sub("", _clean_str(raw)))
    if not s:
        return OK_EMPTY
    if s.startswith(_FORMULA_START):
        return Normalised(None, "name_invalid", {})
    s = _DOTS.sub("·", _ASCII_DOT_BETWEEN.sub("·", s))
    if len(s) > NAME_MAX or s.startswith("·") or s.endswith("·") or "··" in s:
        return Normalised(None, "name_invalid", {})
    for ch in s:
        if ch == "·" or ch == "〇":
            continue
        cat = unicodedata.category(ch)
        if not (cat.startswith("L") or cat in ("Mn", "Mc")):
            return Normalised(None, "name_invalid", {})
    return Normalised(s, None, {})


# --------------------------------------------------------------------------------------------
# towns

_TOWN_SUFFIXES = ("街道办事处", "街道办", "办事处", "街道", "镇", "乡", "街")


def _town_stem(name: str) -> str:
    for suffix in _TOWN_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


@lru_cache(maxsize=16)
def _town_index(towns: tuple[str, ...]) -> dict[str, str | None]:
    """Stem -> town; a stem shared by two towns maps to None (ambiguous)."""
    index: dict[str, str | None] = {}
    for town in towns:
        stem = _town_stem(town)
        index[stem] = town if stem not in index else None
    return index


def normalise_town(raw: object, towns: Sequence[str] | None = None) -> Normalised:
    """One of ``towns`` (default: the district's). ``店子`` -> ``店子镇``, ``山城街道办事处`` ->
    ``山城街道``, ``山亭区店子镇`` -> ``店子镇``; otherwise ``town_unknown`` (extra ``towns``)."""
    towns = tuple(district().towns if towns is None else towns)
    if is_blank(raw):
        return OK_EMPTY
    s = _ALL_SPACE.sub("", _as_text(raw))
    if s in towns:
        return Normalised(s, None, {})
    try:
        prefix = district().name
    except Exception:  # noqa: BLE001 - no district config: no prefix to strip
        prefix = ""
    if prefix and s.startswith(prefix) and len(s) > len(prefix):
        s = s[len(prefix) :]
        if s in towns:
            return Normalised(s, None, {})
    found = _town_index(towns).get(_town_stem(s)) if s else None
    if found:
        return Normalised(found, None, {})
    return Normalised(None, "town_unknown", {"towns": "、".join(towns)})


# --------------------------------------------------------------------------------------------
# dates

_EXCEL_EPOCH = dt.date(1899, 12, 30)  # 1900 date system, after Lotus' fictitious 1900-02-29
_TIME_PART = re.compile(r"^(.*?)(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)$")
_DATE_YMD = re.compile(r"^(\d{4})[年./\-](\d{1,2})[月./\-](\d{1,2})[日号]?$")
_DATE_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DATE_YM = re.compile(r"^(\d{4})[年./\-](\d{1,2})月?$")
_SERIAL_TEXT = re.compile(r"^\d{5}(\.\d+)?$")


def excel_serial_to_date(serial: float) -> dt.date | None:
    """Excel 1900 date system: 1 = 1900-01-01, 60 = the non-existent 1900-02-29 (None)."""
    if not math.isfinite(serial) or serial < 1 or serial >= 2958466:  # 9999-12-31
        return None
    days = math.floor(serial)
    if days == 60:
        return None
    if days < 60:
        return dt.date(1899, 12, 31) + dt.timedelta(days=days)
    return _EXCEL_EPOCH + dt.timedelta(days=days)


def _ymd(y: str | int, m: str | int, d: str | int) -> dt.date | None:
    try:
        return dt.date(int(y), int(m), int(d))
    except (ValueError, OverflowError):
        return None


def _parse_date(raw: object) -> dt.date | None:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if _is_number(raw):
        f = float(raw)
        if not math.isfinite(f):
            return None
        if f.is_integer() and 19000101 <= f <= 29991231:  # 20160812 typed into a number cell
            n = int(f)
            return _ymd(n // 10000, n // 100 % 100, n % 100)
        if 1800 <= f <= 2200:  # a bare year (2016) or year.month (1945.1): ambiguous
            return None
        return excel_serial_to_date(f)
    if isinstance(raw, str):
        s = _clean_str(raw)
        m = _TIME_PART.match(s)
        if m:
            s = m.group(1)
        s = _ALL_SPACE.sub("", s)
        if m := _DATE_YMD.match(s):
            return _ymd(*m.groups())
        if m := _DATE_COMPACT.match(s):
            return _ymd(*m.groups())
        if m := _DATE_YM.match(s):
            return _ymd(m.group(1), m.group(2), 1)
        if _SERIAL_TEXT.match(s):
            return excel_serial_to_date(float(s))
        return None
    try:  # numpy datetime64 and friends
        ts = pd.Timestamp(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if pd.isna(ts) else ts.date()


def normalise_date(raw: object, today: dt.date | None = None) -> Normalised:
    """ISO ``YYYY-MM-DD`` from a date cell, an Excel serial number (42594 -> 2016-08-12),
    ``2016年8月12日``, ``2016.8.12``, ``2016/08/12``, ``2016-08-12``, ``20160812`` or
    ``2016年8月`` (first of the month). Unparseable: ``date_invalid``; before 1900 or after
    ``today`` (the night's ``as_of``; the machine's date when not given): ``date_out_of_range``
    (extra ``as_of``). A bare year is not a date."""
    if is_blank(raw):
        return OK_EMPTY
    try:
        day = _parse_date(raw)
    except Exception:  # noqa: BLE001 - whatever the cell holds, it is not a date
        day = None
    if day is None:
        return Normalised(None, "date_invalid", {})
    last = today or dt.date.today()
    if day < _EARLIEST or day > last:
        return Normalised(None, "date_out_of_range", {"as_of": last.isoformat()})
    return Normalised(day.isoformat(), None, {})


# --------------------------------------------------------------------------------------------
# phones

_PHONE_STRIP = re.compile(r"[\s\-‐‑‒–—―()（）.]+")
_PHONE_SPLIT = re.compile(r"[/、,，;；|\\或]+")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0[1-9]\d{8,10}$")  # area code (3-4 digits with the 0) + 7-8 digits
_PHONE_NOTHING = frozenset({"无", "暂无", "没有"})


def _one_phone(candidate: str) -> str | None:
    s = candidate
    if s.endswith(".0"):
        s = s[:-2]
    s = _PHONE_STRIP.sub("", s)
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    if _MOBILE.match(s) or _LANDLINE.match(s):
        return s
    return None


def normalise_phone(raw: object) -> Normalised:
    """``13812345678`` from ``138 1234 5678``, ``+86-138...``, ``13812345678.0`` (a numeric cell
    is fine: 11 digits fit a double); ``0632-1234567`` -> ``06321234567``. Of several numbers
    (``138.../139...``) the first valid one is kept. Otherwise ``phone_invalid`` (a warning)."""
    if type(raw) is str and len(raw) == 11 and raw.isascii() and _MOBILE.match(raw):
        return Normalised(raw, None, {})  # a mobile number as it should be written (most cells)
    return _normalise_phone_fully(raw)


def _normalise_phone_fully(raw: object) -> Normalised:
    """:func:`normalise_phone` without its shortcut: every step made."""
    if is_blank(raw):
        return OK_EMPTY
    if _is_number(raw):
        f = float(raw)
        if not (math.isfinite(f) and f.is_integer() and f > 0):
            return Normalised(None, "phone_invalid", {})
        s = str(int(f))
        if len(s) == 10 and s[0] != "1":  # a landline whose leading 0 the number cell dropped
            s = "0" + s
        found = _one_phone(s)
        return Normalised(found, None, {}) if found else Normalised(None, "phone_invalid", {})
    if not isinstance(raw, str):
        return Normalised(None, "phone_invalid", {})
    s = _clean_str(raw)
    if s in _PHONE_NOTHING:
        return OK_EMPTY
    candidates = _PHONE_SPLIT.split(s)
    candidates += [part for c in candidates for part in c.split()]  # "138... 139..." as two numbers
    for candidate in candidates:
        found = _one_phone(candidate)
        if found:
            return Normalised(found, None, {})
    return Normalised(None, "phone_invalid", {})


# --------------------------------------------------------------------------------------------
# enumerations


@lru_cache(maxsize=32)
def _enum_table(enum_name: str) -> tuple[dict[str, str], str]:
    words = catalogue().enum_lookup(enum_name)
    for code in catalogue().enums[enum_name]:
        words.setdefault(header_key(code), code)  # an already-normalised code is accepted
    choices = "、".join(w for ws in catalogue().enums[enum_name].values() for w in ws)
    return words, choices


def enum_choices(enum_name: str) -> str:
    """The accepted words of an enumeration, for messages: ``正县级、副县级、...``."""
    return _enum_table(enum_name)[1]


def normalise_enum(raw: object, enum_name: str) -> Normalised:
    """The enum's code for any accepted word (``副科级`` -> ``section``), else ``enum_invalid``
    with extra ``choices``."""
    if is_blank(raw):
        return OK_EMPTY
    words, choices = _enum_table(enum_name)
    code = words.get(header_key(_as_text(raw)))
    if code is None:
        return Normalised(None, "enum_invalid", {"choices": choices})
    return Normalised(code, None, {})


# --------------------------------------------------------------------------------------------
# numbers, text, codes

_INT_TEXT = re.compile(r"^(\d+)(?:\.0*)?(?:人|口|户|名|个)?$")
_MONEY_TEXT = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)$")
_MONEY_DECORATION = re.compile(r"[\s,，元¥￥]|RMB|rmb|人民币")


def normalise_int(raw: object) -> Normalised:
    """A non-negative integer: ``3``, ``3.0``, ``"3"``, ``"3人"``; else ``int_invalid``."""
    if is_blank(raw):
        return OK_EMPTY
    if _is_number(raw):
        f = float(raw)
        if math.isfinite(f) and f.is_integer() and f >= 0:
            return Normalised(int(f) if not isinstance(raw, numbers.Integral) else int(raw), None, {})
        return Normalised(None, "int_invalid", {})
    if not isinstance(raw, str):
        return Normalised(None, "int_invalid", {})
    m = _INT_TEXT.match(_ALL_SPACE.sub("", _clean_str(raw)).replace(",", ""))
    if not m or len(m.group(1)) > 15:
        return Normalised(None, "int_invalid", {})
    return Normalised(int(m.group(1)), None, {})


def normalise_money(raw: object) -> Normalised:
    """A non-negative amount in yuan as float: ``1234.5``, ``"1,234.5元"``; else ``money_invalid``."""
    if is_blank(raw):
        return OK_EMPTY
    if _is_number(raw):
        f = float(raw)
        if math.isfinite(f) and f >= 0:
            return Normalised(f, None, {})
        return Normalised(None, "money_invalid", {})
    if not isinstance(raw, str):
        return Normalised(None, "money_invalid", {})
    s = _MONEY_DECORATION.sub("", _clean_str(raw))
    if not _MONEY_TEXT.match(s) or len(s) > 20:
        return Normalised(None, "money_invalid", {})
    return Normalised(float(s), None, {})


def normalise_text(raw: object) -> Normalised:
    """NFKC and trimmed; a value starting with ``= + - @`` is kept, flagged ``text_formula``."""
    if is_blank(raw):
        return OK_EMPTY
    s = _as_text(raw)
    if not s:
        return OK_EMPTY
    if s.startswith(_FORMULA_START):
        return Normalised(s, "text_formula", {})
    return Normalised(s, None, {})


CODE_MAX = 64


def normalise_code(raw: object) -> Normalised:
    """An identifier such as a case number: NFKC, whitespace removed, ASCII letters upper-cased
    (``st-2024-001`` -> ``ST-2024-001``). ``code_invalid`` if it starts with ``= + - @``, holds
    no letter or digit, or is longer than 64 characters."""
    if is_blank(raw):
        return OK_EMPTY
    s = unicodedata.normalize("NFC", _ALL_SPACE.sub("", _as_text(raw)))  # see normalise_name
    if not s:
        return OK_EMPTY
    if s.startswith(_FORMULA_START) or len(s) > CODE_MAX or not any(c.isalnum() for c in s):
        return Normalised(None, "code_invalid", {})
    return Normalised("".join(c.upper() if c.isascii() else c for c in s), None, {})


# --------------------------------------------------------------------------------------------
# dispatch and the table


def normalise_value(
    field_type: str,
    raw: object,
    *,
    towns: Sequence[str] | None = None,
    known_regions: Sequence[str] | None = None,
    today: dt.date | None = None,
) -> Normalised:
    """Normalise one cell by its field type (``FieldSpec.type``). Never raises."""
    try:
        if field_type == "id_number":
            return normalise_id(raw, known_regions, today)
        if field_type == "person_name":
            return normalise_name(raw)
        if field_type == "town":
            return normalise_town(raw, towns)
        if field_type == "date":
            return normalise_date(raw, today)
        if field_type == "phone":
            return normalise_phone(raw)
        if field_type == "int":
            return normalise_int(raw)
        if field_type == "money":
            return normalise_money(raw)
        if field_type == "code":
            return normalise_code(raw)
        if field_type.startswith("enum:"):
            return normalise_enum(raw, field_type.split(":", 1)[1])
        return normalise_text(raw)
    except Exception:  # noqa: BLE001 - a cell never stops a file; the row is flagged instead
        return Normalised(None, "unknown", {})


MINOR_HIDDEN = "不显示"  # what a message quotes instead of a child's value (fields marked "minor")


def display_value(field_type: str, raw: object) -> str:
    """The raw cell as shown to a clerk: text, masked by field type (IDs, phones)."""
    text = "" if is_blank(raw) else _as_text(raw)
    return mask_value(field_type, text) or ""


def make_finding(
    table: Any,
    row_number: int,
    field: str,
    code: str,
    raw: object,
    extra: dict[str, Any] | None = None,
    level: str | None = None,
    *,
    hidden: bool = False,
) -> Finding:
    """A finding for one cell: Chinese message with the clerk's header and the masked value
    (``hidden``: not even masked, as for a child's)."""
    spec = catalogue().fields[field]
    header = printable((getattr(table, "headers", None) or {}).get(field) or spec.label)
    # a child's value is never quoted, not even masked: the header and row number say what to fix
    hidden = hidden or spec.minor
    shown = MINOR_HIDDEN if hidden else display_value(spec.type, raw)
    values: dict[str, Any] = {"length": "", "towns": "", "choices": "", "as_of": "今天"}
    values.update(extra or {})
    values["header"], values["value"] = header, shown
    return Finding(
        sheet=str(getattr(table, "sheet", "")),
        row_number=int(row_number),
        field=field,
        reason_code=code,
        message=message(code, **values),
        severity=level or severity(code),
        value=None if hidden else (shown or None),
    )


ADULT_AGE = 18


def age_on(id18: str, day: dt.date) -> int | None:
    """Whole years of age on ``day`` by the birth date an ID number carries."""
    born = idnumber.birth_date(id18)
    if born is None:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class _ColumnMemo:
    """A column's values normalised once each: a town, a category, a date or a household size
    repeats down a column, and its result (a pure function of the value, the night's date and the
    district) is the same on every row. Keyed by type and value (``1``, ``1.0`` and ``True`` are
    equal in Python, not as cells); a float zero is not kept (``-0.0`` equals ``0.0``). A column
    whose values hardly repeat (ID numbers, names, phones) stops keeping them after
    :attr:`TRIAL` rows, and none keeps more than :attr:`MAX_KEPT`, so no column holds a copy of
    a million distinct values."""

    TRIAL = 2_000
    """Rows after which a column that repeated fewer than one value in :attr:`MIN_REPEAT` stops."""
    MIN_REPEAT = 4
    MAX_KEPT = 50_000
    """Distinct values kept at most (a column that repeats early and not later holds no more)."""

    def __init__(self) -> None:
        self.kept: dict[tuple[type, object], Normalised] | None = {}
        self.seen = 0
        self.hits = 0

    def normalised(self, raw: object, normalise: Callable[[object], Normalised]) -> Normalised:
        """``normalise(raw)``, kept for the next equal cell, or the result kept for an earlier one."""
        if self.kept is None:
            return normalise(raw)
        self.seen += 1
        if isinstance(raw, float) and raw == 0:
            return normalise(raw)
        key = (type(raw), raw)
        try:
            found = self.kept.get(key)
        except TypeError:  # an unhashable value: normalised every time
            return normalise(raw)
        if found is not None:
            self.hits += 1
            return found
        result = normalise(raw)
        if self.seen == self.TRIAL and self.hits * self.MIN_REPEAT < self.seen:
            self.kept = None
        elif len(self.kept) < self.MAX_KEPT:
            self.kept[key] = result
        return result


def normalise_table(table: SheetTable, today: dt.date | None = None) -> tuple[pd.DataFrame, list[Finding]]:
    """Normalise every field of ``table.frame`` for ``table.roster``.

    ``today``: the night's ``as_of`` (default: the machine's date). No date, and no birth date in
    an ID number, may be later: a change dated after the night does not take effect that night.

    Returns ``(frame, findings)``: ``frame`` has the same rows in the same order (same index),
    column ``_row`` (int64) then one column per roster field (object dtype, None when empty or
    not normalisable); ``findings`` in row order, then field order.
    """
    roster = catalogue().rosters[table.roster]
    raw_frame: pd.DataFrame = table.frame
    towns = district().towns
    regions = district().known_region_codes
    today = today or dt.date.today()
    out: dict[str, list[Any]] = {"_row": [int(r) for r in raw_frame["_row"]]}
    per_row: list[list[Finding]] = [[] for _ in range(len(raw_frame))]
    for field in roster.fields:
        spec = catalogue().fields[field]
        field_type = spec.type
        present = field in raw_frame.columns
        raw_values: Iterable[Any] = raw_frame[field] if present else [None] * len(raw_frame)
        column: list[Any] = []
        memo = _ColumnMemo()

        def one(raw: object, field_type: str = field_type) -> Normalised:
            return normalise_value(field_type, raw, towns=towns, known_regions=regions, today=today)

        for i, raw in enumerate(raw_values):
            result = memo.normalised(raw, one)
            if spec.adult and isinstance(result.value, str):
                age = age_on(result.value, today)
                if age is not None and age < ADULT_AGE:
                    # a child's ID in a head's (guardian's, cadre's) column: never kept, never quoted
                    column.append(None)
                    found = make_finding(
                        table, out["_row"][i], field, "id_minor_as_adult", raw, {"age": age}, hidden=True
                    )
                    per_row[i].append(found)
                    continue
            column.append(result.value)
            if result.code:
                per_row[i].append(make_finding(table, out["_row"][i], field, result.code, raw, result.extra))
        out[field] = column
    if {"member_relation", "head_name", "head_id_number"} <= set(roster.fields):
        _group_members(table, out, per_row)
    frame = pd.DataFrame({k: pd.Series(v, dtype="int64" if k == "_row" else object) for k, v in out.items()})
    frame.index = raw_frame.index
    findings = [f for row in per_row for f in row]
    return frame, findings


HEAD_RELATIONS = frozenset({"户主", "本人", "户主本人"})
"""What ``与户主关系`` says on the head's own row of a roster listing every family member."""


def _group_members(table: SheetTable, out: dict[str, list[Any]], per_row: list[list[Finding]]) -> None:
    """A roster with one row per family member (``成员姓名`` and ``与户主关系`` columns): the head's
    own row is the household; every other member's row is grouped under it (rejected with
    ``member_row``, its ID number, a member's and not the head's, dropped and never quoted) and
    counted into the head's ``household_size`` when that is empty. Members whose head has no row of
    their own get ``member_row_no_head``: the clerk adds the head's row."""
    n = len(out["_row"])
    relation = out["member_relation"]
    member = out.get("member_name", [None] * n)
    head = out["head_name"]
    if all(m is None for m in member):
        return  # no member's name on any row: one row per household, whatever 与户主关系 says

    def is_head(i: int) -> bool:  # the relation says so, or the member is the head by name
        if head[i] is None or member[i] == head[i]:
            return True  # no head's name: not a member's row to group (its own checks reject it)
        if relation[i] is not None:
            return str(relation[i]) in HEAD_RELATIONS
        return member[i] is None

    if all(is_head(i) for i in range(n)):
        return  # one row per household: nothing to group
    family: dict[tuple, list[int]] = {}
    for i in range(n):
        family.setdefault(
            (head[i], out.get("town", [None] * n)[i], out.get("village", [None] * n)[i]), []
        ).append(i)
    for rows in family.values():
        heads = [i for i in rows if is_head(i)]
        if heads and "household_size" in out and out["household_size"][heads[0]] is None:
            out["household_size"][heads[0]] = len(rows)
        for i in rows:
            if i in heads:
                continue
            code = "member_row" if heads else "member_row_no_head"
            out["head_id_number"][i] = None
            per_row[i] = [f for f in per_row[i] if f.field != "head_id_number"]
            extra = {"head": head[i] or "", "relation": relation[i] or member[i] or "家庭成员"}
            per_row[i].append(
                make_finding(table, out["_row"][i], "head_id_number", code, None, extra, hidden=True)
            )


__all__ = [
    "Normalised",
    "display_value",
    "enum_choices",
    "excel_serial_to_date",
    "is_blank",
    "make_finding",
    "normalise_code",
    "normalise_date",
    "normalise_enum",
    "normalise_id",
    "normalise_int",
    "normalise_money",
    "normalise_name",
    "normalise_phone",
    "normalise_table",
    "normalise_text",
    "normalise_town",
    "normalise_value",
    "printable",
]
