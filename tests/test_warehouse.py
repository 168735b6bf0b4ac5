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


# --- length limits: a row rejected with a reason on every engine, never a failed night -----------------
def _long_cells_night(tmp_path, url: str) -> dict:
    """A hardship list with a 150-character 村(居) under a 300-character header, and a case ledger
    with a 150-character 责任单位, through the stages the DAG runs (read, validate, load, link)."""
    import datetime as dt

    from intake_files import intake, ledger, rows, run_stages, write_xlsx

    from rosterlink import tasks
    from rosterlink.core import idnumber

    cfg = intake(tmp_path, url)
    long_text = "东庄村第一村民小组（原西庄村、北庄村合并）" * 7  # 147 characters, then 3 more
    long_text += "一二三"
    header = "村(居)(" + "请填写行政村或社区的全称，不要填写自然村或村民小组名称；" * 10 + ")"
    assert (len(long_text), len(header) > 255) == (150, True)
    born = dt.date(1960, 5, 4)
    hardship = write_xlsx(
        cfg.intake_dir / "civil_affairs" / "特困家庭名单.xlsx",
        "特困家庭名单",
        ["户主姓名", "身份证号码", "镇街", header, "家庭人口"],
        [
            ["张秀英", idnumber.make("370406", born, 1), "店子镇", long_text, 3],
            ["王秀兰", idnumber.make("370406", born, 2), "店子镇", "东庄村", 2],
        ],
    )
    case = write_xlsx(
        cfg.intake_dir / "petition" / "重点信访案件台账.xlsx",
        "重点信访案件台账",
        ["案件编号", "信访人姓名", "镇街", "诉求类别", "责任单位", "登记日期", "办理状态"],
        [
            ["XF-2026-001", "李娜", "店子镇", "土地", long_text, "2026-03-01", "在办"],
            ["XF-2026-002", "赵强", "店子镇", "土地", "店子镇政府", "2026-03-01", "在办"],
        ],
    )
    as_of = dt.date(2026, 11, 25)
    ids = [run_stages(cfg, "civil_affairs", hardship, as_of), run_stages(cfg, "petition", case, as_of)]
    tasks.link(cfg)
    return {
        "ledger": [ledger(cfg, i) for i in ids],
        "rejected": [r for i in ids for r in rows(cfg, schema.rejected_row, i)],
        "url": cfg.warehouse_url,
    }


def _assert_long_cells_rejected_per_row(out: dict) -> None:
    counts = [(x["status"], x["rows_read"], x["rows_loaded"], x["rows_rejected"]) for x in out["ledger"]]
    assert counts == [("loaded", 2, 1, 1), ("loaded", 2, 1, 1)]
    got = sorted((r["row_number"], r["field"], r["reason_code"]) for r in out["rejected"])
    assert got == [(3, "responsible_unit", "text_too_long"), (3, "village", "text_too_long")]
    by_field = {r["field"]: r for r in out["rejected"]}
    assert "（150个字），最多128个字" in by_field["village"]["message"]
    assert len(by_field["village"]["header"]) <= 255
    assert by_field["village"]["header"].startswith("村(居)")
    eng = warehouse.connect(out["url"])
    with eng.connect() as conn:
        assert conn.exec_driver_sql("SELECT head_name FROM household").scalars().all() == ["王秀兰"]
        cases = conn.exec_driver_sql("SELECT case_number FROM petition_case").scalars().all()
    assert cases == ["XF-2026-002"]


def test_overlong_village_unit_and_header_are_row_rejections_on_sqlite(tmp_path, sqlite_url):
    _assert_long_cells_rejected_per_row(_long_cells_night(tmp_path, sqlite_url))


@pytest.mark.postgres
def test_overlong_village_unit_and_header_are_row_rejections_on_postgres(tmp_path, pg_url):
    _assert_long_cells_rejected_per_row(_long_cells_night(tmp_path, pg_url))
