"""A task is retried only when a retry can cure it.

A missing folder, a refused login, a bad date or a night the mass-end guard refused fail the task
at its first attempt (no two waits of 60 s for the same error); a dropped connection is retried,
and ``rosterlink nightly`` says so while it waits ("attempt 1 failed, retrying in 60 s").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from rosterlink.ops import errors
from rosterlink.ops.nightlock import NightLocked
from rosterlink.status import NightRefused

ROOT = Path(__file__).resolve().parents[1]


def nightly_dag_with_deployment_retries(monkeypatch):
    """The DAG as a deployment parses it: ROSTERLINK_TASK_RETRIES and the delay at their defaults
    (2 retries, 60 s apart; the rest of the suite runs with 0)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("ROSTERLINK_TASK_RETRIES", raising=False)
    monkeypatch.delenv("ROSTERLINK_RETRY_DELAY_SECONDS", raising=False)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "rosterlink_nightly.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("rosterlink_nightly")
    assert dag.get_task("scan_intake").retries == 2
    return dag


def test_a_folder_that_cannot_be_made_fails_the_night_at_the_first_attempt(tmp_path, monkeypatch, airflow_db):
    monkeypatch.setenv("ROSTERLINK_ALERT_DIR", str(tmp_path / "alerts"))
    dag = nightly_dag_with_deployment_retries(monkeypatch)
    intake = tmp_path / "intake"
    intake.mkdir()
    (intake / "civil_affairs").write_text("a file where the department's folder should be")

    run = dag.test(
        run_conf={
            "intake_dir": str(intake),
            "warehouse_url": f"sqlite:///{tmp_path / 'w.db'}",
            "export_dir": str(tmp_path / "exports"),
            "as_of": "2026-11-26",
        }
    )

    assert str(getattr(run.state, "value", run.state)) == "failed"
    scan = next(ti for ti in run.get_task_instances() if ti.task_id == "scan_intake")
    assert str(getattr(scan.state, "value", scan.state)) == "failed"  # not up_for_retry
    assert scan.try_number == 1
    (alert,) = [json.loads(ln) for ln in (tmp_path / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert alert["task_id"] == "scan_intake"
    assert alert["error"].startswith("not retried: FileExistsError")


@pytest.mark.postgres
def test_a_refused_login_is_permanent_and_a_server_not_listening_is_not(pg_url):
    refused = pg_url.replace("postgres@", "rosterlink_nobody@")
    with pytest.raises(sa.exc.OperationalError) as login:
        sa.create_engine(refused, poolclass=sa.pool.NullPool).connect()
    assert errors.permanent(login.value)
    assert errors.reason(login.value).startswith("OperationalError: ")

    down = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    with pytest.raises(sa.exc.OperationalError) as dropped:
        sa.create_engine(down, poolclass=sa.pool.NullPool).connect()
    assert not errors.permanent(dropped.value)


def test_what_a_retry_cannot_cure(tmp_path):
    assert errors.permanent(NightRefused("the night would end 40 % of the pairs"))
    assert errors.permanent(NightLocked("another night is running on this warehouse"))
    with pytest.raises(FileNotFoundError) as missing:
        (tmp_path / "nowhere" / "x.xlsx").read_bytes()
    assert errors.permanent(missing.value)
    assert not errors.permanent(ConnectionResetError(104, "Connection reset by peer"))
    assert not errors.permanent(OSError(28, "No space left on device"))
    assert not errors.permanent(RuntimeError("something else"))


def test_the_reason_of_a_permanent_failure_is_masked():
    exc = FileNotFoundError(2, "No such file or directory", "/srv/intake/民政局/370406196005040019.xlsx")
    assert "370406196005040019" not in errors.reason(exc)


@pytest.mark.slow
def test_nightly_says_it_waits_to_retry_a_dropped_connection(tmp_path):
    from test_cli import run_cli  # the CLI as a person runs it: its own process, a clean environment

    (tmp_path / "intake").mkdir()
    done = run_cli(
        tmp_path,
        "nightly",
        "--intake",
        str(tmp_path / "intake"),
        "--warehouse",
        f"sqlite:///{tmp_path / 'w.db'}",
        "--exports",
        str(tmp_path / "exports"),
        "--as-of",
        "2026-11-26",
        extra={
            "ROSTERLINK_TASK_RETRIES": "1",
            "ROSTERLINK_RETRY_DELAY_SECONDS": "1",
            "ROSTERLINK_FAILPOINT": "link.mid=connreset",
            "ROSTERLINK_ALERT_DIR": str(tmp_path / "alerts"),
        },
    )
    assert done.returncode == 1, done.stdout + done.stderr
    progress = re.compile(
        r"  \d\d:\d\d:\d\d  link_entities: attempt 1 failed, retrying in 1 s \(ConnectionResetError"
    )
    assert [ln for ln in done.stdout.splitlines() if progress.match(ln)], done.stdout
    assert "attempt 2 failed" not in done.stdout  # one retry configured: the second failure is final
