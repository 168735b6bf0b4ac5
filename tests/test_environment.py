"""Every ``ROSTERLINK_*`` environment variable is in one table (``rosterlink.core.environment``),
the README shows that table, and the Airflow Variables and connections have one reader each."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rosterlink.core import environment, settings
from rosterlink.core.paths import DAGS_DIR, PACKAGE_DIR, PROJECT_ROOT

NAME = re.compile(r"(?<![A-Za-z0-9_])ROSTERLINK_[A-Z_]+")
REGISTRY = Path(environment.__file__).resolve()


def _package_files() -> list[Path]:
    return sorted(
        p for p in PACKAGE_DIR.rglob("*") if p.suffix in (".py", ".json") and p.resolve() != REGISTRY
    )


def _places() -> list[Path]:
    return [*_package_files(), *sorted(DAGS_DIR.glob("*.py")), PROJECT_ROOT / "deploy" / "env.example"]


def _read_by_code() -> set[str]:
    """Names written as a whole string in Python code (``os.environ.get("ROSTERLINK_X")``,
    ``KEY_ENV = "ROSTERLINK_X"``), docstrings and comments left out."""
    found = set()
    for path in [*_package_files(), *sorted(DAGS_DIR.glob("*.py"))]:
        if path.suffix != ".py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        found |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and NAME.fullmatch(node.value)
        }
    return found


def test_every_rosterlink_variable_the_code_dags_or_deploy_example_name_is_in_the_table():
    named = {
        (name, path.relative_to(PROJECT_ROOT).as_posix())
        for path in _places()
        for name in NAME.findall(path.read_text(encoding="utf-8"))
    }
    assert len({name for name, _ in named}) >= 15
    missing = sorted((name, where) for name, where in named if name not in environment.VARIABLES)
    assert missing == []


def test_every_variable_of_the_table_is_read_by_some_code():
    assert sorted(set(environment.VARIABLES) - _read_by_code()) == []


def test_the_scan_sees_a_name_missing_from_the_table():
    assert NAME.findall('os.environ.get("ROSTERLINK_NEW_THING") or AIRFLOW_CONN_ROSTERLINK_WAREHOUSE') == [
        "ROSTERLINK_NEW_THING"
    ]
    assert "ROSTERLINK_NEW_THING" not in environment.VARIABLES


def test_the_readme_configuration_section_holds_the_table():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert environment.markdown_table() in section


def test_the_table_defaults_are_the_ones_the_settings_use(monkeypatch):
    for name in environment.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    loaded = settings.load()
    assert (
        float(environment.value("ROSTERLINK_MAX_END_SHARE"))
        == loaded.max_end_share
        == settings.Settings.max_end_share
    )
    assert (
        int(environment.value("ROSTERLINK_MAX_FILE_BYTES"))
        == loaded.limits.max_file_bytes
        == settings.Limits.max_file_bytes
    )
    assert float(environment.value("ROSTERLINK_SETTLE_SECONDS")) == settings.Limits.settle_seconds
    assert loaded.archive is False


def test_get_gives_the_value_or_the_default_and_refuses_a_name_not_in_the_table(monkeypatch):
    monkeypatch.delenv("ROSTERLINK_TASK_RETRIES", raising=False)
    assert environment.get("ROSTERLINK_TASK_RETRIES") == "2"
    monkeypatch.setenv("ROSTERLINK_TASK_RETRIES", "")
    assert environment.value("ROSTERLINK_TASK_RETRIES") == "2"  # empty counts as unset
    monkeypatch.setenv("ROSTERLINK_TASK_RETRIES", "5")
    assert environment.value("ROSTERLINK_TASK_RETRIES") == "5"
    monkeypatch.delenv("ROSTERLINK_ALERT_WEBHOOK", raising=False)
    assert environment.get("ROSTERLINK_ALERT_WEBHOOK") is None
    with pytest.raises(ValueError, match="no default"):
        environment.value("ROSTERLINK_ALERT_WEBHOOK")
    with pytest.raises(KeyError):
        environment.get("ROSTERLINK_NOT_A_SETTING")


def test_settings_read_the_environment_through_the_table(monkeypatch, tmp_path):
    monkeypatch.setenv("ROSTERLINK_EXPECTATIONS_DIR", str(tmp_path / "suites"))
    monkeypatch.setenv("ROSTERLINK_ARCHIVE", "yes")
    monkeypatch.setenv("ROSTERLINK_SETTLE_SECONDS", "0")
    loaded = settings.load()
    assert loaded.expectations_dir == (tmp_path / "suites").resolve()
    assert loaded.archive is True
    assert loaded.limits.settle_seconds == 0.0


# --- Airflow Variables and connections: one reader each ------------------------------------------
def test_outside_airflow_neither_variables_nor_connections_are_asked(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ROSTERLINK_EXPORT_DIR", "/from/the/variable")
    monkeypatch.setenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE", "postgres://rl@db.example:5432/wh")
    assert settings.airflow_variable("rosterlink_export_dir") is None
    assert settings.airflow_connection(settings.WAREHOUSE_CONN_ID) is None


def test_in_the_api_server_variables_and_connections_come_from_airflow(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ROSTERLINK_EXPORT_DIR", "/from/the/variable")
    monkeypatch.setenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE", "postgres://rl@db.example:5432/wh")
    assert settings.airflow_variable("rosterlink_export_dir", server=True) == "/from/the/variable"
    conn = settings.airflow_connection(settings.WAREHOUSE_CONN_ID, server=True)
    assert conn is not None
    assert settings.connection_url(conn) == "postgresql+psycopg://rl@db.example:5432/wh"
    loaded = settings.load_in_server()
    assert loaded.warehouse_url == "postgresql+psycopg://rl@db.example:5432/wh"
    assert loaded.export_dir == Path("/from/the/variable")
    monkeypatch.delenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE")
    assert settings.airflow_connection(settings.WAREHOUSE_CONN_ID, server=True) is None


def test_no_other_module_reads_airflow_variables_or_connections_itself():
    readers = re.compile(r"Variable\.get\(|Connection\.get\(|get_connection_from_secrets")
    found = [
        p.relative_to(PACKAGE_DIR).as_posix()
        for p in PACKAGE_DIR.rglob("*.py")
        if readers.search(p.read_text(encoding="utf-8"))
    ]
    assert found == ["core/settings.py"]


# --- the DAG file --------------------------------------------------------------------------------
def test_the_dag_reads_its_retries_through_the_table_and_imports_nothing_heavy_at_parse():
    dag_file = str(DAGS_DIR / "rosterlink_nightly.py")
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('rl_dag', {dag_file!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(json.dumps({'retries': module.RETRIES, 'delay': module.RETRY_DELAY.total_seconds(),\n"
        "    'library': sorted(m for m in sys.modules if m.split('.')[0] == 'rosterlink'),\n"
        "    'pandas': 'pandas' in sys.modules}))\n"
    )
    env = {**os.environ, "ROSTERLINK_TASK_RETRIES": "4", "ROSTERLINK_RETRY_DELAY_SECONDS": ""}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["retries"] == 4
    assert got["delay"] == 60.0  # empty: the table's default
    assert got["library"] == ["rosterlink", "rosterlink.core", "rosterlink.core.environment"]
    assert got["pandas"] is False
