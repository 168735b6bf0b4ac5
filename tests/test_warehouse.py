"""The warehouse schema: created by Alembic on SQLite and PostgreSQL, matching the code's tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core import paths
from rosterlink.core.settings import normalise_url
from rosterlink.warehouse import schema

CONTRACT = {
    "intake_file": {
        "file_id",
        "department",
        "file_name",
        "sha256",
        "status",
        "rows_read",
        "rows_loaded",
        "rows_rejected",
        "message",
    },
    "source_row": {"file_id", "sheet", "row_number", "entity_kind", "entity_key"},
    "rejected_row": {"file_id", "sheet", "row_number", "field", "reason_code", "message"},
    "household": {"household_key", "head_name", "head_id_number", "town", "village", "status"},
    "household_category": {"household_key", "category"},
    "cadre": {"cadre_key", "name", "id_number", "rank", "unit", "town", "status"},
    "petition_case": {"case_key", "case_number", "petitioner_name", "town", "status", "responsible_unit"},
    "pairing": {"cadre_key", "target_kind", "target_key", "valid_from", "valid_to", "end_reason"},
}


def _check_schema(url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    eng = warehouse.connect(url)
    inspector = sa.inspect(eng)
    for table, columns in CONTRACT.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        assert columns <= present, (table, columns - present)
    with eng.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), schema.metadata
        )
    assert diff == [], "schema.py changed without a migration: " + repr(diff)
    assert {"file_reconciliation", "current_pairing"} <= set(inspector.get_view_names())


def test_sqlite_schema_has_the_contract_tables_and_matches_migrations(sqlite_url):
    _check_schema(sqlite_url)


@pytest.mark.postgres
def test_postgres_schema_has_the_contract_tables_and_matches_migrations(pg_url):
    _check_schema(pg_url)


def test_migrating_twice_is_harmless(sqlite_url):
    eng = warehouse.connect(sqlite_url)
    warehouse.migrate(eng)
    assert "intake_file" in sa.inspect(eng).get_table_names()


def test_postgres_urls_as_people_paste_them_are_accepted():
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


_MIGRATE_AND_READ = """
import sys
sys.path.insert(0, sys.argv[2])
from rosterlink import warehouse
eng = warehouse.engine(sys.argv[1])
for _ in range(int(sys.argv[3])):
    warehouse.migrate(eng)
    with eng.connect() as conn:
        conn.exec_driver_sql("SELECT COUNT(*) FROM file_reconciliation").all()
"""


def _parallel_migrations(url: str, processes: int = 4, rounds: int = 15) -> list:
    import subprocess
    import sys

    plugins = str(paths.PLUGINS_DIR)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE_AND_READ, url, plugins, str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    return [(p.wait(timeout=300), p.stderr.read()[-2000:]) for p in procs]


def test_the_parallel_tasks_of_a_night_can_all_migrate_at_once_on_sqlite(tmp_path):
    # mapped tasks under LocalExecutor/Celery start together, each bringing the schema up to date
    url = f"sqlite:///{tmp_path / 'w.db'}"
    for code, err in _parallel_migrations(url):
        assert code == 0, err


@pytest.mark.postgres
def test_the_parallel_tasks_of_a_night_can_all_migrate_at_once_on_postgres(pg_url):
    for code, err in _parallel_migrations(pg_url, rounds=5):
        assert code == 0, err
