"""The warehouse connection: engine, schema migrations, report views, clock and JSON for columns.

Works the same on SQLite (the embedded default) and PostgreSQL. The schema is created and upgraded
by Alembic (``sql/migrations``); report views are (re)created from ``sql/views/*.sql``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import json.scanner
import logging
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rosterlink.core.paths import SQL_DIR
from rosterlink.core.settings import normalise_url
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def display_url(url: str) -> str:
    """A warehouse URL as a person may read it: without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
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


def analyze(eng: sa.Engine, tables: Iterable[str]) -> None:
    """PostgreSQL: refresh the planner's statistics of ``tables``, which a stage has just written in
    bulk; the next stages plan their queries on them. SQLite: nothing (its planner does without).

    Without it a table a night has just filled still looks empty to the planner until autovacuum's
    analyze comes round (never, where autovacuum is off): the pairing stage's "which households wait
    for a cadre" anti-join, planned for one row, ran as a nested loop over every pair for every
    household: 10.9 s instead of 25 ms at ten times the reference district, and quadratic beyond.
    ANALYZE reads a fixed sample of each table (30,000 rows), whatever its size.
    """
    if eng.dialect.name != "postgresql":
        return
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:
            conn.exec_driver_sql(f'ANALYZE "{table}"')


def record_change(eng: sa.Engine, run_id: str | None, stage: str, changes: int) -> int:
    """Note that tonight's ``stage`` changed ``changes`` things the exports show (``content_change``):
    the warehouse's generation moves on, and the town workbooks are checked again. Returns the
    change's id."""
    with eng.begin() as conn:
        inserted = conn.execute(
            schema.content_change.insert().values(
                run_id=run_id, stage=stage, changes=int(changes), recorded_at=now()
            )
        ).inserted_primary_key
    assert inserted is not None  # a single-row INSERT
    return int(inserted[0])


UNFINISHED = -1
"""``content_change.changes`` of a stage that began and never said how it ended (its process
died, or it raised): whatever it changed counts as a change."""


@contextlib.contextmanager
def changes_of(eng: sa.Engine, run_id: str | None, stage: str) -> Iterator[list[int]]:
    """Record what ``stage`` changes, even if it never finishes: a change is recorded as
    :data:`UNFINISHED` before the stage starts; the caller appends the number of things the stage
    changed to the list it is given, and the record keeps that number, or is removed when the
    stage changed nothing. A stage that raises, or whose process dies between committing its
    writes and saying so, leaves the record: a retry that finds nothing left to do cannot hide the
    first attempt's changes from the town workbooks."""
    change_id = record_change(eng, run_id, stage, UNFINISHED)
    changed: list[int] = []
    yield changed
    c = schema.content_change
    with eng.begin() as conn:
        if sum(changed):
            conn.execute(
                c.update().where(c.c.change_id == change_id).values(changes=sum(changed), recorded_at=now())
            )
        else:
            conn.execute(c.delete().where(c.c.change_id == change_id))


def stage_changes(conn: sa.Connection, stage: str) -> tuple[int | None, int]:
    """``stage``'s recorded changes as a digest taken inside the stage reads them: the last change
    it finished recording, and how many it left :data:`UNFINISHED`. Tonight's own record is
    unfinished while the stage runs (:func:`changes_of`) and gone after it if it changed nothing:
    read from inside, it is one more unfinished every night, so the digest does not move with it;
    a run that died leaves one more, and the digest moves."""
    c = schema.content_change
    last, unfinished = conn.execute(
        sa.select(
            sa.func.max(sa.case((c.c.changes != UNFINISHED, c.c.change_id))),
            sa.func.count(sa.case((c.c.changes == UNFINISHED, 1))),
        ).where(c.c.stage == stage)
    ).one()
    return last, int(unfinished)


def generation(conn: sa.Connection) -> int:
    """The warehouse's generation: the last change a stage recorded (0: none yet)."""
    c = schema.content_change
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(c.c.change_id), 0))).scalar_one())


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
            views_now = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
            have: dict[str, str] = dict(views_now.all())
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


def forget_migrations() -> None:
    """Forget which warehouses this process has migrated: the next :func:`connect` migrates again
    (for tests and benchmarks that drop and recreate a database under the same URL)."""
    _migrated.cache_clear()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)


def _one_shot_encoder() -> Callable[[object], str]:
    """``_ENCODER.encode``, but with CPython's C encoder made once rather than per call (as
    ``json.dumps`` and ``JSONEncoder.encode`` do: most of the time of a small value), without the
    check for circular references (what is written here has none). ``_ENCODER.encode`` itself
    where this Python has no C encoder, or it does not write what ``json.dumps`` writes."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _ENCODER.encode
    sample = {"b": [1, 2.5, None, True, -0.0, float("nan")], "a": '中"\n\x00', "c": dt.date(2026, 1, 2)}
    try:
        iterencode = make(None, str, json.encoder.encode_basestring, None, ": ", ", ", True, False, True)
        if "".join(iterencode(sample, 0)) != _ENCODER.encode(sample):
            return _ENCODER.encode
    except TypeError:  # another signature
        return _ENCODER.encode
    return lambda value: "".join(iterencode(value, 0))


_encode = _one_shot_encoder()


def dumps(value: object) -> str:
    """JSON for a column: what ``json.dumps(value, ensure_ascii=False, sort_keys=True,
    default=str)`` writes."""
    return _encode(value)


# what json.loads scans with (typeshed types the context argument wrongly)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def loads(text: str) -> Any:
    """A JSON column as :func:`dumps` wrote it, parsed: what ``json.loads`` returns (and raises),
    without its look for whitespace around the value, which :func:`dumps` never writes."""
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # whitespace first, or not JSON: json.loads parses it or says why not
        return json.loads(text)
    return value if end == len(text) else json.loads(text)
