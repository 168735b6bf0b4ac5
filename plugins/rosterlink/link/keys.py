"""Stable entity keys: ``H000001`` (household), ``C000001`` (cadre), ``K000001`` (case).

A key is never reused: the next number is one past the highest ever issued, including keys that
now live only in ``source_record`` or were retired by a merge. Of two keys, the older (the lower
number) survives a merge.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from rosterlink.warehouse import schema

KEY_PREFIX = {"household": "H", "cadre": "C", "case": "K"}


class KeyIssuer:
    """Hands out the next keys of one kind, in order."""

    def __init__(self, kind: str, next_number: int) -> None:
        self.kind, self.next_number = kind, next_number

    def new(self) -> str:
        key = f"{KEY_PREFIX[self.kind]}{self.next_number:06d}"
        self.next_number += 1
        return key


def key_number(key: str) -> int:
    return int(key[1:])


def older(keys: Iterable[str]) -> str:
    """The key issued first (the one that survives a merge)."""
    return min(keys, key=key_number)


def next_number(conn: sa.Connection, kind: str) -> int:
    """One past the highest key of ``kind`` the warehouse has ever held.

    Compared as numbers, not as text: past the millionth key the keys are a digit longer
    (``H1000000``), and as text ``H999999`` would be the highest."""
    table, column = {
        "household": (schema.household, "household_key"),
        "cadre": (schema.cadre, "cadre_key"),
        "case": (schema.petition_case, "case_key"),
    }[kind]
    s = schema.source_row  # the rows' keys
    tops = [
        conn.execute(sa.select(_highest(table.c[column]))).scalar(),
        conn.execute(sa.select(_highest(s.c.entity_key)).where(s.c.entity_kind == kind)).scalar(),
    ]
    if kind == "household":
        tops.append(conn.execute(sa.select(_highest(schema.household_merge.c.retired_key))).scalar())
    return max((int(t) for t in tops if t is not None), default=0) + 1


def _highest(keys: sa.ColumnElement) -> sa.ColumnElement:
    """The highest number among ``keys`` (the digits after the kind's letter), in SQL."""
    return sa.func.max(sa.cast(sa.func.substr(keys, 2), sa.BigInteger))


def issuer(conn: sa.Connection, kind: str) -> KeyIssuer:
    """A :class:`KeyIssuer` that continues after the warehouse's highest key of ``kind``."""
    return KeyIssuer(kind, next_number(conn, kind))
