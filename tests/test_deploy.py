"""The deployment example (deploy/) against the code: a compose file that sets a variable nothing
reads, or installs an Airflow other than the pinned one, is a misconfiguration found only at night."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from rosterlink.core import settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


def _common_env() -> dict[str, str]:
    return _compose()["x-airflow-common"]["environment"]


def _source_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "plugins" / "rosterlink").rglob("*.py"))


def test_every_rosterlink_variable_the_compose_file_sets_is_read_by_the_code():
    source = _source_text()
    names = [k for k in _common_env() if k.startswith("ROSTERLINK_")]
    assert len(names) >= 8
    unread = [
        name
        for name in names
        if name not in source
        and name.removeprefix("ROSTERLINK_").lower() not in re.findall(r'"(\w+)"', source)
    ]
    assert not unread, f"deploy/docker-compose.yml sets variables no code reads: {unread}"


def test_the_warehouse_connection_is_the_one_the_settings_look_up():
    env = _common_env()
    conn_vars = [k for k in env if k.startswith("AIRFLOW_CONN_")]
    assert conn_vars == [f"AIRFLOW_CONN_{settings.WAREHOUSE_CONN_ID.upper()}"]
    assert env[conn_vars[0]].startswith("postgresql://")
    assert "ROSTERLINK_WAREHOUSE_URL" not in env  # a password does not belong in a plain variable


def test_celery_executor_on_redis_and_postgres_with_the_installed_drivers():
    compose, env = _compose(), _common_env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        assert "postgresql+psycopg://" in env[key], key  # psycopg 3 is what pyproject installs
    # Airflow 3.3 would derive an asyncpg URL, and asyncpg is not installed
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].startswith("postgresql+psycopg_async://")
    assert {
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
    } <= set(compose["services"])
    assert compose["services"]["airflow-worker"]["deploy"]["replicas"] >= 2


def test_every_airflow_service_runs_the_project_image_and_shares_the_intake_volume():
    compose = _compose()
    env = _common_env()
    airflow_services = {n: s for n, s in compose["services"].items() if n.startswith("airflow-")}
    assert airflow_services
    mount = "rosterlink-data:/srv/rosterlink"
    for name, service in airflow_services.items():
        assert service["image"] == "${ROSTERLINK_IMAGE:-rosterlink:latest}", name
        assert mount in service["volumes"], name
    for key in ("ROSTERLINK_INTAKE_DIR", "ROSTERLINK_EXPORT_DIR"):
        assert env[key].startswith("/srv/rosterlink/"), key
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/rosterlink/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/rosterlink/plugins"


def test_the_image_installs_the_pinned_airflow_and_existing_extras():
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = next(d for d in project["dependencies"] if d.startswith("apache-airflow=="))
    version = pinned.split("==", 1)[1]
    assert re.search(rf"^FROM apache/airflow:{re.escape(version)}-python3\.1[1-3]$", dockerfile, re.M), pinned
    extras = re.search(r"rosterlink\[([\w,]+)\]", dockerfile).group(1).split(",")
    assert set(extras) <= set(project["optional-dependencies"]), extras
    assert "celery" in extras
    assert "COPY --chown=airflow:root . /opt/rosterlink" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", "data", ".git", "deploy/.env"} <= set(ignored)
