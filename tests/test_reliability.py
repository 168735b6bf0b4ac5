"""Faults: killed nights, a second night at once, a full disk, and personal data kept out of logs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rosterlink import warehouse
from rosterlink.ops import nightlock
from rosterlink.synthetic import sample

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).with_name("rosterlink"))
FULL_ID = re.compile(
    r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])"
)
FULL_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# Airflow logs are full of UUIDs (ti_id, correlation_id) whose hex tail can look like a phone number
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

# what a night leaves that must not depend on how many attempts it took
SNAPSHOT = {
    "intake_file": (
        "SELECT file_id, file_name, status, rows_read, rows_loaded, rows_rejected FROM intake_file"
    ),
    "household": "SELECT household_key, head_name, head_id_number, town, village, status FROM household",
    "household_category": "SELECT household_key, category, status FROM household_category",
    "cadre": "SELECT cadre_key, name, id_number, rank, unit, town, status FROM cadre",
    "petition_case": "SELECT case_key, case_number, status FROM petition_case",
    "source_row": "SELECT file_id, sheet, row_number, entity_kind, entity_key FROM source_row",
    "rejected_row": "SELECT file_id, sheet, row_number, field, reason_code FROM rejected_row",
    "source_record": "SELECT file_id, sheet, row_number FROM source_record",
    "pairing": (
        "SELECT cadre_key, target_kind, target_key, valid_from, valid_to, end_reason, made_reason "
        "FROM pairing"
    ),
}


def snapshot(url: str) -> dict[str, list]:
    with warehouse.connect(url).connect() as conn:
        return {
            name: sorted((tuple(map(str, r)) for r in conn.exec_driver_sql(sql)), key=repr)
            for name, sql in SNAPSHOT.items()
        }


def cli(args: list[str], env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def night_args(base: Path, url: str, as_of: str = "2026-11-25") -> list[str]:
    return [
        "nightly",
        "--intake",
        str(base / "intake"),
        "--warehouse",
        url,
        "--exports",
        str(base / "exports"),
        "--as-of",
        as_of,
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, airflow_db) -> tuple[Path, dict]:
    """One uninterrupted night on a small sample: what every interrupted night must end up as."""
    base = tmp_path_factory.mktemp("reference")
    sample.generate(base / "intake", scale=0.08)
    url = f"sqlite:///{base / 'w.db'}"
    done = cli(night_args(base, url))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return base, snapshot(url)


def _interrupted_then_rerun(base: Path, url: str, failpoint: str) -> None:
    sample.generate(base / "intake", scale=0.08)
    killed = cli(night_args(base, url), env={"ROSTERLINK_FAILPOINT": failpoint})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    # the next run takes over the killed night's lock once it is stale, and completes
    again = cli(night_args(base, url), env={"ROSTERLINK_LOCK_STALE_SECONDS": "0"})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]


@pytest.mark.parametrize(
    "failpoint", ["load.mid=kill", "link.mid=kill", "pairing.mid=kill", "export.write=kill"]
)
@pytest.mark.slow
def test_night_killed_midway_is_completed_by_the_next_run_exactly(tmp_path, reference, failpoint):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    _interrupted_then_rerun(tmp_path, url, failpoint)
    assert snapshot(url) == reference[1]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("failpoint", ["load.mid=kill", "link.mid=kill", "pairing.mid=kill"])
def test_night_killed_midway_on_postgres_is_completed_by_the_next_run_exactly(
    tmp_path, reference, pg_url, failpoint
):
    _interrupted_then_rerun(tmp_path, pg_url, failpoint)
    assert snapshot(pg_url) == reference[1]


@pytest.mark.slow
def test_a_night_killed_while_writing_its_data_docs_gets_them_from_the_rerun(tmp_path):
    """Issue 15: SIGKILL half-way through the night's Data Docs; the rerun of the night removes the
    half-written ``.building-*`` folder and writes the night's pages (from the kept results when
    the files were loaded before the kill)."""
    from rosterlink.validate import datadocs

    url = f"sqlite:///{tmp_path / 'w.db'}"
    sample.generate(tmp_path / "intake", scale=0.05)
    root = datadocs.docs_root(tmp_path / "exports")
    killed = cli(night_args(tmp_path, url), env={"ROSTERLINK_FAILPOINT": "datadocs.build=kill"})
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    assert [p.name for p in root.iterdir() if p.name.startswith(".building-")]
    assert not (root / "2026-11-25" / "index.html").exists()
    again = cli(night_args(tmp_path, url), env={"ROSTERLINK_LOCK_STALE_SECONDS": "0"})
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert not [p.name for p in root.iterdir() if p.name.startswith((".building-", ".old-"))]
    site = root / "2026-11-25"
    index = (site / "index.html").read_text(encoding="utf-8")
    with warehouse.connect(url).connect() as conn:
        files = conn.exec_driver_sql("SELECT COUNT(*) FROM intake_file WHERE status = 'loaded'").scalar()
    assert files
    assert len(set(re.findall(r'data-file-id="(\d+)"', index))) == files


@pytest.mark.slow
def test_a_second_night_while_one_runs_is_locked_out_with_a_clear_message(tmp_path, sqlite_url):
    eng = warehouse.connect(sqlite_url)
    with nightlock.held(eng, "scheduled__2026-11-25"):
        sample.generate(tmp_path / "intake", scale=0.05)
        other = cli(night_args(tmp_path, sqlite_url))
        assert other.returncode != 0
        assert "another night is running" in other.stdout + other.stderr
        assert "scheduled__2026-11-25" in other.stdout + other.stderr
    with eng.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM intake_file").scalar() == 0


def test_lock_is_reentrant_for_its_own_run_and_taken_over_only_when_stale(sqlite_url):
    eng = warehouse.connect(sqlite_url)
    nightlock.acquire(eng, "run-a", stale=60)
    nightlock.acquire(eng, "run-a", stale=60)  # a retry or the next task of the same night
    with pytest.raises(nightlock.NightLocked):
        nightlock.acquire(eng, "run-b", stale=60)
    time.sleep(1.1)
    nightlock.acquire(eng, "run-b", stale=1)  # run-a stopped beating: taken over
    with pytest.raises(nightlock.NightLocked):
        nightlock.acquire(eng, "run-a", stale=60)
    nightlock.release(eng, "run-b")
    nightlock.acquire(eng, "run-a", stale=60)


def test_lock_heartbeat_keeps_a_long_task_locked(sqlite_url):
    eng = warehouse.connect(sqlite_url)
    with nightlock.held(eng, "long", stale=1.0):
        time.sleep(2.0)
        with pytest.raises(nightlock.NightLocked):
            nightlock.acquire(eng, "intruder", stale=1.0)


@pytest.mark.slow
def test_full_disk_while_writing_exports_keeps_last_nights_workbooks(tmp_path, sqlite_url):
    sample.generate(tmp_path / "intake", scale=0.05)
    first = cli(night_args(tmp_path, sqlite_url, "2026-11-25"))
    assert first.returncode == 0
    workbook = tmp_path / "exports" / "结对汇总_20261125.xlsx"
    before = workbook.read_bytes()
    towns = {p: p.read_bytes() for p in (tmp_path / "exports" / "分镇结对名单").glob("*.xlsx")}
    assert towns
    pairs_before = snapshot(sqlite_url)["pairing"]
    full = cli(
        night_args(tmp_path, sqlite_url, "2026-11-25"), env={"ROSTERLINK_FAILPOINT": "export.write=enospc"}
    )
    assert full.returncode != 0
    assert workbook.read_bytes() == before
    assert {p: p.read_bytes() for p in (tmp_path / "exports" / "分镇结对名单").glob("*.xlsx")} == towns
    assert not list((tmp_path / "exports").rglob(".~*"))
    assert snapshot(sqlite_url)["pairing"] == pairs_before


@pytest.mark.slow
def test_no_full_id_or_phone_in_cli_output_or_airflow_logs(tmp_path, airflow_db):
    sample.generate(tmp_path / "intake", scale=0.1)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    done = cli(night_args(tmp_path, url), env={"AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"})
    assert done.returncode == 0
    texts = [done.stdout, done.stderr]
    texts += [p.read_text(errors="replace") for p in Path(os.environ["AIRFLOW_HOME"]).rglob("*.log")]
    for text in (UUID.sub("<uuid>", t) for t in texts):
        assert not FULL_ID.findall(text), FULL_ID.findall(text)[:3]
        assert not FULL_PHONE.findall(text), FULL_PHONE.findall(text)[:3]


@pytest.mark.slow
def test_full_disk_while_writing_the_pairings_keeps_last_nights_tables(tmp_path, sqlite_url):
    sample.generate(tmp_path / "intake", scale=0.05)
    assert cli(night_args(tmp_path, sqlite_url, "2026-11-25")).returncode == 0
    before = snapshot(sqlite_url)
    # night 2: exits, cadre changes and closures; the disk fills up while the pairings are written
    sample.generate(tmp_path / "intake", scale=0.05, night=2)
    full = cli(
        night_args(tmp_path, sqlite_url, "2026-11-26"), env={"ROSTERLINK_FAILPOINT": "pairing.mid=enospc"}
    )
    assert full.returncode != 0
    assert snapshot(sqlite_url)["pairing"] == before["pairing"]
    # space freed: the next run completes the night, and the pairs follow tonight's statuses
    again = cli(night_args(tmp_path, sqlite_url, "2026-11-26"), env={"ROSTERLINK_LOCK_STALE_SECONDS": "0"})
    assert again.returncode == 0, again.stdout[-3000:]
    after = snapshot(sqlite_url)["pairing"]
    assert after != before["pairing"]
    assert any(row[5] != "None" for row in after)
