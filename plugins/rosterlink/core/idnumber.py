"""Resident identity numbers (GB 11643-1999): checksum, legacy 15-digit upgrade, embedded facts.

Pure functions, no I/O. ``normalise`` in :mod:`rosterlink.intake.normalise` decides what to do with a
cell; this module only knows the arithmetic of the number itself.
"""

from __future__ import annotations

import datetime as dt
import operator

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


_ZERO_WEIGHED = ord("0") * sum(_WEIGHTS)


def check_digit(first17: str) -> str:
    """The 18th character for the first 17 digits."""
    if len(first17) == 17 and first17.isascii() and first17.isdigit():
        # ASCII digits (every normalised number): weighed by their code points, less the zeros'
        total = sum(map(operator.mul, first17.encode("ascii"), _WEIGHTS)) - _ZERO_WEIGHED
    else:
        total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def is_valid_checksum(id18: str) -> bool:
    return len(id18) == 18 and id18[:17].isdigit() and id18[17] == check_digit(id18[:17])


def upgrade_15(id15: str) -> str:
    """Legacy 15-digit number (YYMMDD birth, no check digit) to its 18-digit form (born 19YY)."""
    first17 = id15[:6] + "19" + id15[6:]
    return first17 + check_digit(first17)


def birth_date(id18: str) -> dt.date | None:
    try:
        return dt.date(int(id18[6:10]), int(id18[10:12]), int(id18[12:14]))
    except ValueError:
        return None


def sex(id18: str) -> str:
    """``M`` or ``F`` from the 17th digit (odd = male)."""
    return "M" if int(id18[16]) % 2 else "F"


def region(id18: str) -> str:
    return id18[:6]


def make(region_code: str, born: dt.date, sequence: int) -> str:
    """Build a valid 18-digit number (for synthetic data): ``sequence`` is 0..999, parity = sex."""
    first17 = f"{region_code}{born:%Y%m%d}{sequence % 1000:03d}"
    return first17 + check_digit(first17)
