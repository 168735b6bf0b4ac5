"""The DAG file as the data team relies on it: it imports, is scheduled nightly in Asia/Shanghai,
one run at a time, thin, and every task retries and alerts when it fails for good."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rosterlink.ops import alerts

ROOT = Path(__file__).resolve().parents[1]
TASKS = [
    "begin_night",
    "scan_intake",
    "read_and_validate_file",
    "document_validation",
    "load_files",
    "link_entities",
    "refresh_statuses",
    "rebuild_pairings",
    "follow_through",
    "write_feedback",
    "plan_town_workbooks",
    "write_town_workbooks",
    "write_pairing_summary",
    "write_change_log",
    "finish_night",
]


def test_nightly_dag_is_scheduled_once_a_night_in_shanghai_time_one_run_at_a_time(nightly_dag):
    dag = nightly_dag
    assert dag.dag_id == "rosterlink_nightly"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.timetable.expression == "0 2 * * *"
    assert "Asia/Shanghai" in str(dag.timetable.timezone)
    assert sorted(t.task_id for t in dag.tasks) == sorted(TASKS)
    from rosterlink.tasks import NIGHT_TASKS  # what the benchmarks report per task

    assert sorted(NIGHT_TASKS) == sorted(TASKS)
    assert dag.doc_md
    assert "rosterlink nightly" in dag.doc_md


def test_each_file_is_read_and_validated_by_one_mapped_task_named_after_it(nightly_dag):
    """Issue 14: one task start per file, not two (each start costs a process and seconds of
    imports); the task is named after its file, masked; Data Docs and the load take its result."""
    files = nightly_dag.get_task("read_and_validate_file")
    assert files.upstream_task_ids == {"scan_intake"}
    assert files.downstream_task_ids == {"document_validation", "load_files"}
    assert "| masked" in files.map_index_template
    assert "file_name" in files.map_index_template


def test_every_task_alerts_when_it_fails_for_good(nightly_dag):
    for task in nightly_dag.tasks:
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert any(getattr(cb, "__name__", "") == "_on_failure" for cb in callbacks), task.task_id
        assert task.owner == "data-team"


def test_tasks_retry_by_default_except_the_status_refresh_that_may_refuse_a_night():
    # the tests run with ROSTERLINK_TASK_RETRIES=0; a deployment gets the DAG file's defaults
    probe = (
        "import json; from airflow.dag_processing.dagbag import DagBag; "
        f"bag = DagBag(dag_folder={str(ROOT / 'dags')!r}); d = bag.get_dag('rosterlink_nightly'); "
        "print(json.dumps({t.task_id: [t.retries, t.retry_delay.total_seconds()] for t in d.tasks}))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ROSTERLINK_TASK_RETRIES", "ROSTERLINK_RETRY_DELAY_SECONDS")
    }
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    retries = json.loads(out.stdout.strip().splitlines()[-1])
    assert retries.pop("refresh_statuses") == [0, 60.0]  # a refused night must not be retried into passing
    assert all(r == [2, 60.0] for r in retries.values()), retries


def test_the_dag_file_stays_thin_and_does_no_work_at_import():
    source = (ROOT / "dags" / "rosterlink_nightly.py").read_text(encoding="utf-8")
    top_level_imports = [ln for ln in source.splitlines() if ln.startswith(("import ", "from "))]
    assert not [
        ln for ln in top_level_imports if "rosterlink" in ln or "great_expectations" in ln or "pandas" in ln
    ]
    assert len(source.splitlines()) < 250


def test_an_alert_names_the_night_task_and_error_type_but_never_a_value(tmp_path, monkeypatch):
    monkeypatch.setenv("ROSTERLINK_ALERT_DIR", str(tmp_path))
    monkeypatch.delenv("ROSTERLINK_ALERT_WEBHOOK", raising=False)
    secret = "370406196005040019"
    alerts.send(
        alerts.alert_payload(
            {"run_id": "scheduled__2026-11-25"},
            "load_files",
            ValueError(f"bad row with {secret} and 13812345678"),
        )
    )
    line = (tmp_path / "alerts.jsonl").read_text(encoding="utf-8")
    alert = json.loads(line)
    assert (alert["run_id"], alert["task_id"], alert["error_type"]) == (
        "scheduled__2026-11-25",
        "load_files",
        "ValueError",
    )
    assert secret not in line
    assert "13812345678" not in line


def test_data_docs_and_the_workbooks_do_not_hold_up_the_night(nightly_dag):
    """With several workers, Data Docs are built while the night loads, links and pairs, and the
    feedback, the pairing workbooks and the change log are written at once (the town workbooks, then
    the summary that gives their dates); the last task waits for all of them."""
    dag = nightly_dag

    def upstream(task_id: str) -> set[str]:
        return dag.get_task(task_id).get_flat_relative_ids(upstream=True)

    assert "document_validation" not in upstream("load_files")
    assert "document_validation" not in upstream("rebuild_pairings")
    books = {"write_feedback", "write_pairing_summary", "write_change_log"}
    for book in books:
        assert not (books - {book}) & upstream(book), book
        assert {"follow_through", "rebuild_pairings"} <= upstream(book)
    assert {"plan_town_workbooks", "write_town_workbooks"} <= upstream("write_pairing_summary")
    assert not books & upstream("write_town_workbooks")
    assert books | {"document_validation", "follow_through"} <= upstream("finish_night")
    assert dag.get_task("finish_night").downstream_task_ids == set()


def test_every_param_is_described_and_the_trigger_form_refuses_a_bad_night_date(nightly_dag, tmp_path):
    from airflow.sdk.definitions.param import ParamValidationError

    params = nightly_dag.params
    for name in ("intake_dir", "warehouse_url", "export_dir", "as_of", "allow_mass_end"):
        assert params.get_param(name).description, f"param {name} has no description"
    as_of = params.get_param("as_of")
    assert as_of.schema["format"] == "date"  # the UI's trigger form shows a date field
    assert as_of.resolve("2026-11-26") == "2026-11-26"
    assert as_of.resolve(None) is None
    for bad in ("2026-02-30", "garbage", "26.11.2026"):
        with pytest.raises(ParamValidationError):
            as_of.resolve(bad)
    # a run asked for with a bad date is refused before any task starts
    with pytest.raises(ParamValidationError, match="as_of"):
        nightly_dag.test(
            run_conf={
                "intake_dir": str(tmp_path / "intake"),
                "warehouse_url": f"sqlite:///{tmp_path / 'w.db'}",
                "export_dir": str(tmp_path / "exports"),
                "as_of": "2026-02-30",
            }
        )
    assert not (tmp_path / "w.db").exists()


@pytest.mark.slow
def test_the_town_workbooks_are_written_by_a_few_mapped_tasks_then_the_summary(
    nightly_dag, tmp_path, monkeypatch
):
    """Issue 14: the town workbooks are written by at most ``ROSTERLINK_TOWN_BATCHES`` mapped tasks
    (never one task per town), each a batch of towns, then the district's summary; what the tasks
    pass each other stays small. A night on which no stage changed anything keeps them all in one
    batch that rewrites none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from rosterlink.core.spec import district
    from rosterlink.export import town_books
    from rosterlink.synthetic import sample

    monkeypatch.setenv("ROSTERLINK_TOWN_BATCHES", "3")
    monkeypatch.setattr(town_books, "BATCH_ROWS", 10)  # a small district in more than one batch
    sample.generate(tmp_path / "intake", scale=0.05)
    exports = tmp_path / "exports"
    conf = {
        "intake_dir": str(tmp_path / "intake"),
        "warehouse_url": f"sqlite:///{tmp_path / 'w.db'}",
        "export_dir": str(exports),
    }

    def night(as_of: str):
        run = nightly_dag.test(run_conf={**conf, "as_of": as_of})
        assert str(getattr(run.state, "value", run.state)) == "success"
        states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
        with create_session() as session:
            xcoms = {
                (x.task_id, x.map_index): XComModel.deserialize_value(x)
                for x in session.scalars(
                    XComModel.get_many(run_id=run.run_id, dag_ids=run.dag_id, key="return_value")
                )
            }
        return states, xcoms

    states, xcoms = night("2026-11-25")
    batches = sorted(i for task, i in states if task == "write_town_workbooks")
    assert batches == [0, 1, 2]
    assert all(states[("write_town_workbooks", i)] == "success" for i in batches)
    towns = sorted((exports / "分镇结对名单").glob("*.xlsx"))
    assert sorted(p.name for p in towns) == sorted(f"{t}_结对名单.xlsx" for t in district().towns)
    assert (exports / "结对汇总_20261125.xlsx").is_file()
    written = xcoms[("finish_night", -1)]["written"]
    assert ["town workbooks", f"{exports / '分镇结对名单'}/ (10 of 10 rewritten tonight)"] in written
    assert [len(xcoms[("write_town_workbooks", i)]) for i in batches] == [2, 2, 2]  # batch, written
    assert max(len(json.dumps(v)) for v in xcoms.values()) < 4096

    before = {p.name: p.stat().st_mtime_ns for p in towns}
    states, xcoms = night("2026-11-26")  # no new file: no stage changed anything a town shows
    quiet = sorted(i for task, i in states if task == "write_town_workbooks")
    assert quiet == [0]  # one batch that only looks at the files
    assert xcoms[("plan_town_workbooks", -1)] == [{"batch": 1, "towns": 10, "rows": 0}]
    assert xcoms[("write_town_workbooks", 0)] == {"batch": 1, "written": 0}
    assert states[("write_pairing_summary", -1)] == "success"
    assert (exports / "结对汇总_20261126.xlsx").is_file()
    assert {p.name: p.stat().st_mtime_ns for p in (exports / "分镇结对名单").glob("*.xlsx")} == before
    written = xcoms[("finish_night", -1)]["written"]
    assert ["town workbooks", f"{exports / '分镇结对名单'}/ (0 of 10 rewritten tonight)"] in written

    # a second quiet night: the status and pairing stages changed nothing last night and nothing
    # they read has changed since, so they keep last night's result (and say what it was)
    settled = {t: xcoms[(t, -1)] for t in ("refresh_statuses", "rebuild_pairings")}
    assert settled["rebuild_pairings"]["ended"] == settled["rebuild_pairings"]["made"] == {}
    states, xcoms = night("2026-11-27")
    volatile = {"as_of", "run_id", "seconds", "settled_since"}
    for t, before_night in settled.items():
        kept = xcoms[(t, -1)]
        assert kept["settled_since"] == "2026-11-26"
        assert {k: v for k, v in kept.items() if k not in volatile} == {
            k: v for k, v in before_night.items() if k not in volatile
        }
    assert xcoms[("rebuild_pairings", -1)]["as_of"] == "2026-11-27"
    assert xcoms[("plan_town_workbooks", -1)] == [{"batch": 1, "towns": 10, "rows": 0}]
    assert (exports / "结对汇总_20261127.xlsx").is_file()
