"""End to end under CeleryExecutor: Redis broker, PostgreSQL as Airflow's metadata database and as
the warehouse, api-server + scheduler + dag-processor + two celery workers, one night over nine
files; the mapped tasks must spread over both workers and XComs must stay small."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # pytest's default import mode puts it there; other modes may not
    sys.path.insert(0, _HERE)
from test_pipeline import check_night_against_truth, q  # noqa: E402
from test_scheduler_e2e import check_mapped_once_per_file  # noqa: E402

from rosterlink.synthetic import sample  # noqa: E402

from airflow_cluster import AirflowCluster, celery_env, ensure_redis, wait_for  # noqa: E402
from conftest import ensure_postgres  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

AS_OF = "2026-11-25"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_DB = 11  # shared with nobody else on this machine; the queue name below is unique per run
WORKERS = ("rl-worker-a", "rl-worker-b")
RUN_TIMEOUT = 300
MAX_XCOM_BYTES = 4096


@pytest.fixture
def redis_url() -> str:
    why = ensure_redis()
    if why:
        pytest.skip(f"Redis cannot be started: {why}")
    return f"redis://127.0.0.1:6379/{REDIS_DB}"


@pytest.fixture
def celery_queue(redis_url: str):
    """A queue name of this run only (workers of another test run on this broker never see our
    tasks); its kombu binding keys are removed from the broker afterwards."""
    import redis

    queue = f"rl-e2e-{uuid.uuid4().hex[:8]}"
    yield queue
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    finally:
        client.close()


@pytest.fixture
def airflow_pg_db():
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards."""
    ensure_postgres()
    name = f"rl_airflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{PG_SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield f"{PG_SERVER}/{name}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def two_batches(intake: Path, scratch: Path) -> dict:
    """Night 1 at scale 0.1 (five files), plus a second batch of households and cadres from another
    seed (distinct people) in ``<department>/第二批/``: nine distinct files. The second seed's case
    ledger is left out: case numbers are a per-district sequence and would collide. Returns the
    merged truth (files and counts)."""
    first = sample.generate(intake, night=1, scale=0.1).to_dict()
    second = sample.generate(scratch, night=1, scale=0.1, seed=sample.DEFAULT_SEED + 1).to_dict()
    files = dict(first["files"])
    for rel, f in second["files"].items():
        department, name = rel.split("/", 1)
        if department == "petition":
            continue
        target = intake / department / "第二批" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(scratch / rel, target)
        files[f"{department}/第二批/{name}"] = f
    counts = {kind: _add(first["counts"][kind], second["counts"][kind]) for kind in ("households", "cadres")}
    return {"files": files, "counts": {**counts, "cases": first["counts"]["cases"]}}


def _add(a: dict, b: dict) -> dict:
    return {k: _add(v, b[k]) if isinstance(v, dict) else v + b[k] for k, v in a.items()}


def test_night_under_celery_with_two_workers(
    tmp_path: Path, redis_url: str, celery_queue: str, airflow_pg_db: str, pg_url: str
):
    assert importlib.util.find_spec("airflow.providers.celery"), (
        "apache-airflow-providers-celery is not installed: pip install -c constraints.txt -e '.[test]'"
    )
    intake, exports = tmp_path / "intake", tmp_path / "exports"
    truth = two_batches(intake, tmp_path / "second")
    files = set(truth["files"])
    assert len(files) >= 6
    queue = celery_queue
    workers = tuple(f"{w}-{queue[-8:]}" for w in WORKERS)

    started = time.monotonic()
    cluster = AirflowCluster(
        tmp_path / "airflow",
        executor="CeleryExecutor",
        sql_alchemy_conn=airflow_pg_db,
        parallelism=4,
        env=celery_env(redis_url, airflow_pg_db, queue),
    )
    with cluster:
        cluster.migrate()
        cluster.start_core()
        for name in workers:
            cluster.start_celery_worker(name, queue=queue, concurrency=1)
        cluster.wait_api(timeout=120)
        wait_workers(cluster, redis_url, workers, timeout=120)
        cluster.wait_dag(timeout=120)
        cluster.unpause()
        run_id = cluster.trigger(
            {"intake_dir": str(intake), "warehouse_url": pg_url, "export_dir": str(exports), "as_of": AS_OF}
        )
        state = cluster.wait_run(run_id, timeout=RUN_TIMEOUT)
        tis = cluster.task_instances(run_id)
        assert state == "success", cluster.explain_run(run_id, state, tis)
        worker_logs = {
            name: cluster.components[f"worker-{name}"].log_path.read_text(errors="replace")
            for name in workers
        }
    cluster.assert_stopped()
    print(f"\nCeleryExecutor night: {time.monotonic() - started:.0f}s ({cluster.timeline()})")

    check_mapped_once_per_file(tis, files)
    # every task ran on one of the two workers, and the mapped ones on both
    assert {t.hostname for t in tis} <= set(workers), {t.hostname for t in tis}
    hosts = {t.hostname for t in tis if t.task_id == "read_and_validate_file"}
    assert hosts == set(workers), [
        (t.map_index, t.hostname) for t in tis if t.task_id == "read_and_validate_file"
    ]

    # independent of the hostname callable: each task's Celery id is in the log of the worker it names
    af = sa.create_engine(airflow_pg_db)
    try:
        with af.connect() as conn:
            executed = conn.execute(
                sa.text(
                    "SELECT task_id, map_index, hostname, external_executor_id FROM task_instance "
                    "WHERE dag_id = 'rosterlink_nightly' AND run_id = :r"
                ),
                {"r": run_id},
            ).all()
            xcoms = conn.execute(
                sa.text(
                    "SELECT task_id, map_index, key, octet_length(value::text) FROM xcom "
                    "WHERE dag_id = 'rosterlink_nightly' AND run_id = :r"
                ),
                {"r": run_id},
            ).all()
    finally:
        af.dispose()
    for task_id, map_index, hostname, celery_id in executed:
        assert celery_id, (task_id, map_index)
        assert celery_id in worker_logs[hostname], (task_id, map_index, hostname, celery_id)
        other = next(w for w in workers if w != hostname)
        assert celery_id not in worker_logs[other], (task_id, map_index, celery_id)

    # each worker imported the night's libraries once, before forking its task processes
    for name in workers:
        assert "the night's modules preloaded" in worker_logs[name], worker_logs[name][-2000:]

    # XComs carry small summaries only; rows travel through the warehouse
    assert {(t, m) for t, m, _, _ in xcoms} >= {(t.task_id, t.map_index) for t in tis}
    big = [(t, m, k, n) for t, m, k, n in xcoms if n > MAX_XCOM_BYTES]
    assert not big, big
    print(f"largest XCom: {max(xcoms, key=lambda x: x[3])}")

    check_night_against_truth(pg_url, truth)
    assert q(pg_url, "SELECT COUNT(*) FROM intake_file") == [(len(files),)]
    assert q(pg_url, f"SELECT status FROM night_run WHERE run_id = '{run_id}'") == [("success",)]
    assert (exports / "结对汇总_20261125.xlsx").is_file()


def wait_workers(cluster: AirflowCluster, broker: str, names: tuple[str, ...], timeout: float) -> None:
    """Both workers answer a Celery ping (they consume before the first task is queued)."""
    from celery import Celery

    app = Celery(broker=broker)
    wanted = {f"celery@{n}" for n in names}

    def probe() -> bool:
        cluster.check_alive()
        replies = app.control.ping(destination=sorted(wanted), timeout=1.0)
        return wanted <= {name for reply in replies for name in reply}

    try:
        wait_for(f"celery workers {sorted(wanted)} to answer a ping", probe, timeout, 1.0, cluster.report)
    finally:
        app.close()
