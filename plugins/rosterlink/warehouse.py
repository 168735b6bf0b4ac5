"""The warehouse: engine, schema migrations, report views, and the load stage.

Works the same on SQLite (the embedded default) and PostgreSQL. The schema is created and upgraded
by Alembic (``sql/migrations``); report views are (re)created from ``sql/views/*.sql``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import itertools
import json
import logging
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from rosterlink import schema
from rosterlink.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)

SQL_DIR = PROJECT_ROOT / "sql"


def normalise_url(url: str) -> str:
    """Accept the URLs people paste: ``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def display_url(url: str) -> str:
    """A warehouse URL as a person may read it: without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DBAPI types
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache(maxsize=8)
def engine(url: str) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        eng = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return sa.create_engine(url, pool_pre_ping=True)


_MIGRATION_LOCK_ID = 0x726C6D67  # PostgreSQL advisory lock key ("rlmg")


@contextlib.contextmanager
def _migration_lock(eng: sa.Engine) -> Iterator[None]:
    """One process at a time migrates: the tasks of a night start in parallel (mapped tasks under
    LocalExecutor or Celery), and every one of them brings the schema up to date first.

    SQLite's driver runs DDL outside transactions, so two processes could interleave their
    ``DROP VIEW``/``CREATE VIEW``; a lock file beside the database serialises them. PostgreSQL: a
    session advisory lock.
    """
    if eng.dialect.name == "sqlite":
        database = eng.url.database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.migrate-lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    if eng.dialect.name == "postgresql":
        with eng.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK_ID})")
            conn.commit()
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK_ID})")
                conn.commit()
        return
    yield


def migrate(eng: sa.Engine) -> None:
    """Bring the schema to the newest migration and recreate the report views."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(SQL_DIR / "migrations"))
    with _migration_lock(eng):
        with eng.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        create_views(eng)


def _view_sql(path: Path) -> str:
    return f"CREATE VIEW {path.stem} AS\n{path.read_text(encoding='utf-8').strip().rstrip(';')}"


def create_views(eng: sa.Engine) -> None:
    """(Re)create the report views of ``sql/views``; on SQLite, only when one of them changed (so a
    night's parallel tasks do not rewrite the schema under each other's readers)."""
    views = sorted((SQL_DIR / "views").glob("*.sql"))
    wanted = {path.stem: _view_sql(path) for path in views}
    with eng.begin() as conn:
        if eng.dialect.name == "sqlite":
            have = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'view'").all())
            if all(have.get(name) == sql for name, sql in wanted.items()):
                return
        for path in reversed(views):
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {path.stem}")
        for sql in wanted.values():
            conn.exec_driver_sql(sql)


def connect(url: str) -> sa.Engine:
    """Engine with the schema brought up to date: what every stage calls first."""
    eng = engine(url)
    _migrated(url)
    return eng


@lru_cache(maxsize=8)
def _migrated(url: str) -> bool:
    migrate(engine(url))
    return True


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def insert_many(conn: sa.Connection, table: sa.Table, rows: Iterable[dict], batch: int = 5000) -> int:
    """The one bulk write path: COPY on PostgreSQL, executemany batches on SQLite.

    On PostgreSQL (psycopg 3) the rows are streamed with ``COPY table (columns) FROM STDIN`` through
    the raw driver connection of ``conn``, so they land inside ``conn``'s transaction exactly like
    an INSERT would (a rollback removes them). The columns are the keys of the first row; every row
    must have them (columns left out take their server default, as with an INSERT). Values go
    through the columns' bind processors first, so what is stored equals what executemany stores.
    """
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        return _copy_rows(conn, table, rows)
    total, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            conn.execute(table.insert(), chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        conn.execute(table.insert(), chunk)
        total += len(chunk)
    return total


def _copy_rows(conn: sa.Connection, table: sa.Table, rows: Iterable[dict]) -> int:
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    names = list(first)
    columns = [table.c[name] for name in names]
    processors = [(i, p) for i, col in enumerate(columns) if (p := col.type.bind_processor(conn.dialect))]
    quote = conn.dialect.identifier_preparer
    sql = (f"COPY {quote.format_table(table)} ({', '.join(quote.quote(n) for n in names)}) FROM STDIN")
    total = 0
    with conn.connection.driver_connection.cursor() as cursor, cursor.copy(sql) as copy:
        for row in itertools.chain((first,), iterator):
            values = [row[name] for name in names]
            for i, process in processors:
                values[i] = process(values[i])
            copy.write_row(values)
            total += 1
    return total


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
        temp = sa.Table(f"_upd_{table.name}", sa.MetaData(), *(sa.Column(n, table.c[n].type) for n in names),
                        prefixes=["TEMPORARY"], postgresql_on_commit="DROP")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote.format_table(temp)}")
        temp.create(conn)
        _copy_rows(conn, temp, rows)
        t, u = quote.format_table(table), quote.format_table(temp)
        sets = ", ".join(f"{quote.quote(n)} = u.{quote.quote(n)}" for n in values)
        on = " AND ".join(f"{t}.{quote.quote(k)} = u.{quote.quote(k)}" for k in keys)
        conn.exec_driver_sql(f"ANALYZE {u}")
        conn.exec_driver_sql(f"UPDATE {t} SET {sets} FROM {u} AS u WHERE {on}")
        conn.exec_driver_sql(f"DROP TABLE {u}")
        return len(rows)
    stmt = (table.update().where(*(table.c[k] == sa.bindparam(f"_k_{k}") for k in keys))
            .values(**{n: sa.bindparam(f"_v_{n}") for n in values}))
    params = [{**{f"_k_{k}": r[k] for k in keys}, **{f"_v_{n}": r[n] for n in values}} for r in rows]
    for i in range(0, len(params), 5000):
        conn.execute(stmt, params[i:i + 5000])
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


def run_sql(conn: sa.Connection, name: str) -> list[sa.CursorResult]:
    """Run every statement of ``sql/<name>`` on ``conn`` (inside its transaction), in order."""
    return [conn.exec_driver_sql(statement) for statement in sql_statements(name)]


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
