"""End to end under the real scheduler: api-server + scheduler + dag-processor, LocalExecutor on a
SQLite metadata database (what ``airflow standalone`` runs), one night of the sample intake
triggered through the REST API and checked against the generator's truth."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # pytest's default import mode puts it there; other modes may not
    sys.path.insert(0, _HERE)
from test_pipeline import check_night_against_truth, q  # noqa: E402

from rosterlink.synthetic import sample  # noqa: E402

from airflow_cluster import AirflowCluster  # noqa: E402

pytestmark = pytest.mark.slow

AS_OF = "2026-11-25"
RUN_TIMEOUT = 300


def check_mapped_once_per_file(tis, files: set[str]) -> None:
    """read_and_validate_file: one successful first try per file (one task start, not two), map
    indexes 0..n-1, each named after its file."""
    mine = [t for t in tis if t.task_id == "read_and_validate_file"]
    assert sorted(t.map_index for t in mine) == list(range(len(files))), mine
    assert {t.rendered_map_index for t in mine} == files, mine
    assert all(t.state == "success" and t.try_number == 1 for t in mine), mine
    singles = {t.task_id: t for t in tis if t.map_index == -1}
    assert set(singles) == {
        "begin_night",
        "scan_intake",
        "document_validation",
        "load_files",
        "link_entities",
        "refresh_statuses",
        "rebuild_pairings",
        "follow_through",
        "write_feedback",
        "plan_town_workbooks",
        "write_pairing_summary",
        "write_change_log",
        "finish_night",
    }, sorted(singles)
    assert all(t.state == "success" for t in singles.values()), singles
    # the town workbooks: one mapped batch for a district this small
    towns = [t for t in tis if t.task_id == "write_town_workbooks"]
    assert [(t.map_index, t.state) for t in towns] == [(0, "success")], towns


def test_night_under_the_real_scheduler_with_local_executor(tmp_path: Path):
    intake, exports = tmp_path / "intake", tmp_path / "exports"
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    truth = sample.generate(intake, night=1, scale=0.1)
    files = set(truth.files)

    started = time.monotonic()
    with AirflowCluster(tmp_path / "airflow", executor="LocalExecutor", parallelism=2) as cluster:
        cluster.migrate()
        cluster.start_core()
        cluster.wait_api(timeout=120)
        cluster.wait_dag(timeout=120)
        cluster.unpause()
        run_id = cluster.trigger(
            {
                "intake_dir": str(intake),
                "warehouse_url": warehouse_url,
                "export_dir": str(exports),
                "as_of": AS_OF,
            }
        )
        state = cluster.wait_run(run_id, timeout=RUN_TIMEOUT)
        tis = cluster.task_instances(run_id)
        assert state == "success", cluster.explain_run(run_id, state, tis)
        # a manual trigger only: no scheduled run appeared beside it
        runs = cluster.api("GET", "/dags/rosterlink_nightly/dagRuns")["dag_runs"]
        assert [r["dag_run_id"] for r in runs] == [run_id]
    cluster.assert_stopped()
    print(f"\nLocalExecutor night: {time.monotonic() - started:.0f}s ({cluster.timeline()})")

    check_mapped_once_per_file(tis, files)
    check_night_against_truth(warehouse_url, truth)
    assert q(warehouse_url, "SELECT COUNT(*) FROM intake_file") == [(len(files),)]
    assert q(warehouse_url, f"SELECT status FROM night_run WHERE run_id = '{run_id}'") == [("success",)]
    assert (exports / "结对汇总_20261125.xlsx").is_file()
