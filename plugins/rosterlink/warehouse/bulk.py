"""Bulk I/O on the warehouse: the one write path for many rows (COPY on PostgreSQL, executemany
batches on SQLite), bulk updates by key, and set-based SQL kept in ``sql/`` files.

Every function runs inside the caller's transaction (``conn``): a rollback removes what it wrote.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TypeVar

import sqlalchemy as sa

from rosterlink.core.paths import SQL_DIR

_T = TypeVar("_T")
IN_LIST = 500  # values per IN (...) list: well under SQLite's limit on bound parameters


def insert_many(conn: sa.Connection, table: sa.Table, rows: Iterable[dict], batch: int = 5000) -> int:
    """The one bulk write path: COPY on PostgreSQL, executemany batches on SQLite.

    On PostgreSQL (psycopg 3) the rows are streamed with ``COPY table (columns) FROM STDIN`` through
    the raw driver connection of ``conn``, so they land inside ``conn``'s transaction exactly like
    an INSERT would (a rollback removes them). The columns are the keys of the first row; every row
    must have them (columns left out take their server default, as with an INSERT). Values go
    through the columns' bind processors first, so what is stored equals what executemany stores.
    """
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    names = list(first)
    values = ([row[name] for name in names] for row in itertools.chain((first,), iterator))
    return insert_rows(conn, table, names, values, batch)


def insert_rows(
    conn: sa.Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence], batch: int = 5000
) -> int:
    """:func:`insert_many` for rows given as values in the order of ``columns`` (no dictionary per
    row): the same write path (COPY on PostgreSQL, executemany of tuples on SQLite) and the same
    stored values."""
    names = list(columns)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        return _copy_rows(conn, table, names, rows)
    if conn.dialect.name == "sqlite" and not _has_python_defaults(table, names):
        return _executemany_rows(conn, table, names, rows, batch)
    # another driver, or columns left out that SQLAlchemy fills from Python: its own executemany
    total = 0
    for chunk in batched(rows, batch):
        conn.execute(table.insert(), [dict(zip(names, row, strict=True)) for row in chunk])
        total += len(chunk)
    return total


def _has_python_defaults(table: sa.Table, given: list[str]) -> bool:
    """Whether an INSERT through SQLAlchemy would fill a column left out from Python (a
    ``default=``), which the driver-level path below would not."""
    return any(col.default is not None for col in table.columns if col.name not in given)


def _processed(rows: Iterable[Sequence], processors: list[tuple[int, Callable]]) -> Iterator[tuple]:
    """Each row as a tuple, its values passed through the columns' bind ``processors``.

    A value that is the very object the row before had in that column (the one stamp of a batch,
    a flag, a repeated date) takes the value processed for it then: the processors are pure
    functions of immutable values, so what is stored is the same."""
    if not processors:
        yield from (tuple(row) for row in rows)
        return
    last_in: list[object] = [_UNSEEN] * len(processors)
    last_out: list[object] = [None] * len(processors)
    for row in rows:
        values = list(row)
        for j, (i, process) in enumerate(processors):
            value = values[i]
            if value is last_in[j]:
                values[i] = last_out[j]
            else:
                last_in[j] = value
                values[i] = last_out[j] = process(value)
        yield tuple(values)


_UNSEEN = object()


def _executemany_rows(
    conn: sa.Connection, table: sa.Table, names: list[str], rows: Iterable[Sequence], batch: int
) -> int:
    """SQLite: one compiled ``INSERT``, executemany of plain tuples at the driver level.

    The values go through the columns' bind processors, exactly as SQLAlchemy's own executemany
    would (dates and datetimes as ISO text, booleans as integers); what is stored is the same, without
    SQLAlchemy building a parameter dictionary per row (most of a large insert's time)."""
    quote = conn.dialect.identifier_preparer
    sql = (
        f"INSERT INTO {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) "
        f"VALUES ({', '.join('?' * len(names))})"
    )
    total = 0
    for chunk in batched(_processed(rows, _processors(conn, table, names)), batch):
        conn.exec_driver_sql(sql, chunk)
        total += len(chunk)
    return total


def _processors(conn: sa.Connection, table: sa.Table, names: list[str]) -> list[tuple[int, Callable]]:
    """(position, bind processor) of the columns ``names`` that have one on this dialect: the
    dialect's own implementation of each type (SQLite's DateTime and Date write ISO text with
    microseconds, which the generic types' processors would not)."""
    out = []
    for i, name in enumerate(names):
        process = table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if process is not None:
            out.append((i, process))
    return out


def batched(rows: Iterable[_T], size: int) -> Iterator[list[_T]]:
    """``rows`` in lists of ``size`` (the last one shorter): bulk writes a batch at a time, or keys
    :data:`IN_LIST` at a time into an ``IN (...)`` list."""
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _copy_rows(conn: sa.Connection, table: sa.Table, names: list[str], rows: Iterable[Sequence]) -> int:
    columns = [table.c[name] for name in names]
    processors = [(i, p) for i, col in enumerate(columns) if (p := col.type.bind_processor(conn.dialect))]
    quote = conn.dialect.identifier_preparer
    sql = f"COPY {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) FROM STDIN"
    total = 0
    driver = conn.connection.driver_connection
    assert driver is not None  # a live connection (COPY runs inside the caller's transaction)
    with driver.cursor() as cursor, cursor.copy(sql) as copy:
        for values in _processed(rows, processors):
            copy.write_row(values)
            total += 1
    return total


def driver_rows(conn: sa.Connection, query: sa.Select) -> list[tuple]:
    """The rows of ``query`` as the driver returns them (plain tuples, no SQLAlchemy row objects),
    read inside ``conn``'s transaction. For columns whose values the driver gives as they are
    (text, integers): a result processor (dates on SQLite ...) is not applied."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args: Sequence | Mapping = (
        tuple(params[name] for name in compiled.positiontup or ()) if compiled.positional else params
    )
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def update_many(conn: sa.Connection, table: sa.Table, keys: list[str], rows: list[dict]) -> int:
    """Bulk UPDATE by key: each row names the key columns ``keys`` and the new values of the other
    columns (the same columns in every row). PostgreSQL: COPY into a temporary table, then one
    ``UPDATE ... FROM``; SQLite: executemany. Returns the number of rows given."""
    if not rows:
        return 0
    names = list(rows[0])
    values = [n for n in names if n not in keys]
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        quote = conn.dialect.identifier_preparer
        temp = sa.Table(
            f"_upd_{table.name}",
            sa.MetaData(),
            *(sa.Column(n, table.c[n].type) for n in names),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote.format_table(temp)}")
        temp.create(conn)
        _copy_rows(conn, temp, names, ([r[n] for n in names] for r in rows))
        t, u = quote.format_table(table), quote.format_table(temp)
        sets = ", ".join(f"{quote.quote(n)} = u.{quote.quote(n)}" for n in values)
        on = " AND ".join(f"{t}.{quote.quote(k)} = u.{quote.quote(k)}" for k in keys)
        conn.exec_driver_sql(f"ANALYZE {u}")
        conn.exec_driver_sql(f"UPDATE {t} SET {sets} FROM {u} AS u WHERE {on}")
        conn.exec_driver_sql(f"DROP TABLE {u}")
        return len(rows)
    if conn.dialect.name == "sqlite":  # one compiled UPDATE, executemany of tuples at the driver level
        quote = conn.dialect.identifier_preparer
        order = [*values, *keys]
        processors = _processors(conn, table, order)
        sql = (
            f"UPDATE {quote.format_table(table)} SET {', '.join(f'{quote.quote(n)} = ?' for n in values)} "
            f"WHERE {' AND '.join(f'{quote.quote(k)} = ?' for k in keys)}"
        )
        for chunk in batched(_processed(([r[n] for n in order] for r in rows), processors), 5000):
            conn.exec_driver_sql(sql, chunk)
        return len(rows)
    stmt = (
        table.update()
        .where(*(table.c[k] == sa.bindparam(f"_k_{k}") for k in keys))
        .values(**{n: sa.bindparam(f"_v_{n}") for n in values})
    )
    params = [{**{f"_k_{k}": r[k] for k in keys}, **{f"_v_{n}": r[n] for n in values}} for r in rows]
    for i in range(0, len(params), 5000):
        conn.execute(stmt, params[i : i + 5000])
    return len(rows)


@lru_cache(maxsize=64)
def sql_statements(name: str) -> tuple[str, ...]:
    """The statements of ``sql/<name>`` (e.g. ``status/01_compute.sql``), split at a ``;`` that ends
    a line; comment-only pieces dropped. The files hold portable SQL without semicolons in strings."""
    text = (SQL_DIR / name).read_text(encoding="utf-8")
    out = []
    for piece in re.split(r";[ \t]*(?:\n|$)", text):
        code = "\n".join(line for line in piece.splitlines() if not line.strip().startswith("--")).strip()
        if code:
            out.append(piece.strip())
    return tuple(out)


def run_sql(conn: sa.Connection, name: str, dates: dict[str, dt.date] | None = None) -> list[sa.CursorResult]:
    """Run every statement of ``sql/<name>`` on ``conn`` (inside its transaction), in order.

    ``dates`` binds named date parameters (``:as_of`` in the SQL) the same way on SQLite and
    PostgreSQL; without it the statements go to the driver as they are."""
    if not dates:
        return [conn.exec_driver_sql(statement) for statement in sql_statements(name)]
    out = []
    for statement in sql_statements(name):
        names = [k for k in dates if f":{k}" in statement]
        if not names:
            out.append(conn.exec_driver_sql(statement))
            continue
        stmt = sa.text(statement).bindparams(*(sa.bindparam(k, type_=sa.Date) for k in names))
        out.append(conn.execute(stmt, {k: dates[k] for k in names}))
    return out
