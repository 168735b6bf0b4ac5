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
    """One past the highest key of ``kind`` the warehouse has ever held."""
    table, column = {
        "household": (schema.household, "household_key"),
        "cadre": (schema.cadre, "cadre_key"),
        "case": (schema.petition_case, "case_key"),
    }[kind]
    tops = [
        conn.execute(sa.select(sa.func.max(table.c[column]))).scalar(),
        conn.execute(
            sa.select(sa.func.max(schema.source_record.c.entity_key)).where(
                schema.source_record.c.entity_kind == kind
            )
        ).scalar(),
    ]
    if kind == "household":
        tops.append(conn.execute(sa.select(sa.func.max(schema.household_merge.c.retired_key))).scalar())
    return max((key_number(t) for t in tops if t), default=0) + 1


def issuer(conn: sa.Connection, kind: str) -> KeyIssuer:
    """A :class:`KeyIssuer` that continues after the warehouse's highest key of ``kind``."""
    return KeyIssuer(kind, next_number(conn, kind))
