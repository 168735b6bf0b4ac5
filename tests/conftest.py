"""Shared test set-up: a private Airflow home, DAG runs through ``dag.test()``, PostgreSQL.

Airflow reads its configuration when first imported, so the environment is set here, at import
time of the conftest, before any test module imports airflow.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(os.environ.get("RL_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="rl-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "ROSTERLINK_TASK_RETRIES": "0",
        "ROSTERLINK_SETTLE_SECONDS": "0",
        "ROSTERLINK_DATA_DIR": str(_AIRFLOW_HOME / "rl-data"),
    }
)
for _key in [k for k in os.environ if k.startswith("ROSTERLINK_") and k.endswith(("_DIR", "_URL"))]:
    if _key not in ("ROSTERLINK_DATA_DIR",):
        del os.environ[_key]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata database, migrated once per session."""
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run(
        [str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def nightly_dag(airflow_db: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("rosterlink_nightly")


@pytest.fixture
def run_night(nightly_dag):
    """Run the nightly DAG once through Airflow; return the DagRun's state as a string."""

    def run(intake: Path, warehouse_url: str, exports: Path, as_of: str | None = None, **conf: object) -> str:
        dag_run = nightly_dag.test(
            run_conf={
                "intake_dir": str(intake),
                "warehouse_url": warehouse_url,
                "export_dir": str(exports),
                "as_of": as_of,
                **conf,
            }
        )
        return str(getattr(dag_run.state, "value", dag_run.state))

    return run


def _pg_up() -> bool:
    return (
        subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True).returncode == 0
    )


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL cluster if it is down (never assume it runs)."""
    if _pg_up():
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("no PostgreSQL server installed on this machine")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)
    for _ in range(60):
        if _pg_up():
            return
        time.sleep(0.5)
    pytest.fail("PostgreSQL did not start")


@contextlib.contextmanager
def fresh_pg_database(icu_locale: str | None = None):
    """A fresh, empty PostgreSQL database: yields (name, SQLAlchemy URL); dropped afterwards.

    ``icu_locale`` (``"en-US"``): the database's default collation is that ICU locale's, as many
    servers are set up, instead of this machine's C.UTF-8 (text sorted by code point)."""
    import sqlalchemy as sa

    ensure_postgres()
    name = f"rl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT"
    )
    options = f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{icu_locale}'" if icu_locale else ""
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"{options}')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield name, url
    finally:
        from rosterlink import warehouse

        warehouse.engine(url).dispose()
        warehouse.engine.cache_clear()
        warehouse.db.forget_migrations()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database() as (_, url):
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"
