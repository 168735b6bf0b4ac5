"""One masking function for everything a person reads, and one guard against formula injection.

Full ID numbers and phones live only in the warehouse. Logs never carry row values at all.
"""

from __future__ import annotations

import re

# A digit is an ASCII digit or its full-width form (０-９, what Chinese input methods type and what
# NFKC folds to 0-9); the check character X likewise (Ｘ, ｘ). A run mixing both is one number.
_D = "0-9\uff10-\uff19"
_X = "Xx\uff38\uff58"
_ID18 = re.compile(
    rf"(?<![{_D}])([1-9\uff11-\uff19][{_D}]{{5}})([{_D}]{{8}})([{_D}]{{3}}[{_D}{_X}])(?![{_D}])"
)
_ID15 = re.compile(rf"(?<![{_D}])([1-9\uff11-\uff19][{_D}]{{5}})([{_D}]{{6}})([{_D}]{{3}})(?![{_D}])")
_PHONE = re.compile(rf"(?<![{_D}])([1\uff11][3-9\uff13-\uff19][{_D}])([{_D}]{{4}})([{_D}]{{4}})(?![{_D}])")
# every pattern above needs a run of at least 11 digits (a phone; an ID holds 15 or 17): text
# without one cannot hold anything to mask (masking only puts in "*", it never makes a longer run)
_DIGIT_RUN = re.compile(rf"[{_D}]{{11}}")


def mask_id(value: object) -> str:
    """``370406198001011234`` -> ``370406********1234``.

    Shorter or malformed values never show more than about half their characters: ID-length
    values (15+) keep the region code and the last four, others keep three and four at most.
    """
    if value is None:
        return ""
    s = str(value).strip()
    if len(s) >= 15:
        return s[:6] + "*" * (len(s) - 10) + s[-4:]
    if len(s) >= 9:
        return s[:3] + "*" * (len(s) - 7) + s[-4:]
    if len(s) > 4:
        return "*" * (len(s) - 2) + s[-2:]
    return "*" * len(s)


def mask_phone(value: object) -> str:
    """``13812345678`` -> ``138****5678``."""
    if value is None:
        return ""
    s = str(value).strip()
    if len(s) == 11:
        return s[:3] + "****" + s[-4:]
    return mask_id(s) if len(s) > 4 else "*" * len(s)


def mask_text(text: object) -> str:
    """Mask every ID-shaped or phone-shaped number inside free text (messages, exceptions, file
    and sheet names), in ASCII or full-width digits (``３７０４０６…``, ``１３８…``: masked as their
    NFKC forms would be, the characters shown kept as typed)."""
    if text is None:
        return ""
    s = str(text)
    if len(s) < 11 or _DIGIT_RUN.search(s) is None:
        return s
    s = _ID18.sub(lambda m: m.group(1) + "********" + m.group(3)[-4:], s)
    s = _ID15.sub(lambda m: m.group(1) + "*****" + m.group(3)[-4:], s)
    return _PHONE.sub(lambda m: m.group(1) + "****" + m.group(3), s)


def mask_value(field_type: str, value: object) -> str | None:
    """Mask a cell for display according to its field type (id_number, phone, or free text)."""
    if value is None:
        return None
    if field_type == "id_number":
        return mask_id(value)
    if field_type == "phone":
        return mask_phone(value)
    return mask_text(value)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def defuse(value: object) -> object:
    """Make a value safe to write into a spreadsheet cell or CSV: never a live formula.

    Strings starting with ``= + - @`` (or tab/CR) get a leading apostrophe-free guard: a zero-width
    prefix is not reliable in every reader, so we prefix a single quote character, which Excel shows
    as text. Writers using openpyxl must additionally set ``cell.data_type = "s"``.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
