"""Loaded rows written straight into a warehouse, the way the load stage writes them.

For tests of the stages after loading (link, status, pairing) that need exact control over the
rows: one ledger file per :meth:`Loader.file` call, row numbers as a clerk would see them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterator

import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import idnumber
from rosterlink.warehouse import dumps, now, schema

BORN = dt.date(1960, 5, 4)


def id_number(n: int, born: dt.date = BORN, region: str = "370406") -> str:
    """A valid (checksummed) synthetic ID number, distinct for each ``n``."""
    return idnumber.make(region, born, n)


class Loader:
    """Writes loaded rows the way the load stage does, one ledger file per call."""

    def __init__(self, url: str) -> None:
        self.eng = warehouse.connect(url)
        self.row = 3

    def file(self, department: str, rows: list[dict]) -> int:
        with self.eng.begin() as conn:
            file_id = conn.execute(
                schema.intake_file.insert().values(
                    department=department,
                    file_name=f"{department}/f{self.row}.xlsx",
                    sha256=f"{self.row:064d}",
                    size_bytes=1,
                    status="loaded",
                    rows_read=len(rows),
                    rows_loaded=len(rows),
                    received_at=now(),
                )
            ).inserted_primary_key[0]
            for r in rows:
                r = dict(r)
                self.row += 1
                conn.execute(
                    schema.source_record.insert().values(
                        file_id=file_id,
                        sheet="Sheet1",
                        row_number=self.row,
                        department=department,
                        loaded_at=now(),
                        attrs=dumps(r.pop("attrs", {})),
                        **r,
                    )
                )
        return file_id

    def q(self, sql: str) -> list[tuple]:
        with self.eng.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


@contextlib.contextmanager
def rows_read(eng: sa.Engine) -> Iterator[Counter[str]]:
    """Count the rows the process fetches from a SQLite warehouse while the block runs, by the name
    of each query's first column (``record_id``: rows of ``source_record``; ``pairing_id``: pairs),
    counted by the driver itself as it hands each row to SQLAlchemy."""
    seen: Counter[str] = Counter()

    def count(cursor, row):
        seen[cursor.description[0][0]] += 1
        return row

    def checkout(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.row_factory = count

    sa.event.listen(eng, "checkout", checkout)
    try:
        yield seen
    finally:
        sa.event.remove(eng, "checkout", checkout)
        eng.dispose()  # no pooled connection keeps counting


def hh(
    roster: str,
    n: int | None,
    name: str,
    category: str,
    event: str | None = None,
    date: dt.date | None = None,
    village: str | None = "东庄村",
    *,
    phone: str | None = None,
    town: str = "店子镇",
    attrs: dict | None = None,
) -> dict:
    """A household-kind row: ``n`` picks the (valid) ID number, None for a row without one."""
    return {
        "roster": roster,
        "entity_kind": "household",
        "category": category,
        "person_name": name,
        "id_number": id_number(n) if n is not None else None,
        "town": town,
        "village": village,
        "phone": phone,
        "event": event,
        "event_date": date,
        "attrs": dict(attrs or {}),
    }


def cadre(
    n: int, name: str, event: str | None = None, date: dt.date | None = None, rank: str = "section"
) -> dict:
    roster = "cadre_change" if event else "cadre"
    return {
        "roster": roster,
        "entity_kind": "cadre",
        "person_name": name,
        "id_number": id_number(500 + n),
        "town": "店子镇",
        "event": event,
        "event_date": date,
        "attrs": {"rank": rank, "unit": "区财政局", "linked_town": "店子镇"},
    }
