"""A real Airflow deployment for end-to-end tests: api-server, scheduler, dag-processor and,
for CeleryExecutor, celery workers, each a subprocess on a private ``AIRFLOW_HOME``.

Each component runs in its own process group (own session) with its output in
``<home>/components/<name>.log``. Every wait is bounded and fails with an error that names what
was awaited and ends with the tail of every component log. :meth:`AirflowCluster.stop` (also on
``with`` exit, also after a failure) kills the process groups and then every process still
carrying this cluster's marker in its environment (task processes run in their own process groups).

The test process talks to the cluster through the REST API v2 (JWT from ``/auth/token`` of the
simple auth manager); it never imports Airflow, whose configuration in the pytest process belongs
to ``conftest.py``.

Celery workers on one machine share its host name, so the task instances they run would all carry
the same ``hostname``. Each worker therefore gets ``[core] hostname_callable`` =
:func:`component_hostname`, which returns its ``--celery-hostname`` (on separate hosts or
containers the default callable already tells them apart).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
AIRFLOW = BIN / "airflow"
DAG_ID = "rosterlink_nightly"
MARKER = "RL_AIRFLOW_CLUSTER_ID"
HOSTNAME_ENV = "RL_AIRFLOW_HOSTNAME"

TERMINAL_RUN_STATES = {"success", "failed"}


class ClusterError(AssertionError):
    """A component did not come up, or a wait ran out; the message carries the component logs."""


def component_hostname() -> str:
    """``[core] hostname_callable`` for components sharing one machine: the name they were given."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(
    what: str,
    probe: Callable[[], object],
    timeout: float,
    interval: float = 1.0,
    on_timeout: Callable[[], str] | None = None,
) -> object:
    """Call ``probe`` until it returns something truthy; raise ClusterError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except ClusterError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, reported then
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
            extra = on_timeout() if on_timeout else ""
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}{detail}\n{extra}")
        time.sleep(interval)


# --- services the tests need ------------------------------------------------------------------------
def redis_ping(host: str = "127.0.0.1", port: int = 6379, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def ensure_redis(port: int = 6379) -> str | None:
    """Start the machine's Redis if it is down. Returns None when up, else why it cannot start."""
    if redis_ping(port=port):
        return None
    server = shutil.which("redis-server")
    if not server:
        return "redis-server is not installed"
    for folder in ("/var/lib/redis", "/var/log/redis"):
        os.makedirs(folder, exist_ok=True)
    subprocess.run(
        [
            server,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
            "--logfile",
            "/var/log/redis/ci.log",
        ],
        check=False,
        capture_output=True,
        timeout=30,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if redis_ping(port=port):
            return None
        time.sleep(0.25)
    return "redis-server did not answer PING within 20 s (see /var/log/redis/ci.log)"


def celery_env(broker_url: str, metadata_url: str, queue: str) -> dict[str, str]:
    """CeleryExecutor settings of a cluster: the broker, results in Airflow's metadata database,
    every task on ``queue`` (a name of this run only, so workers of another run never take them), and
    one task at a time taken from the broker per worker process; the workers preload the night's
    modules (:mod:`rosterlink.worker`), as a deployment's do."""
    return {
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "rosterlink.worker.CELERY_CONFIG",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    }


# --- the cluster ------------------------------------------------------------------------------------
@dataclass
class Component:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class TaskInstanceInfo:
    task_id: str
    map_index: int
    state: str | None
    hostname: str | None
    try_number: int
    rendered_map_index: str | None
    duration: float | None


@dataclass
class AirflowCluster:
    """An Airflow deployment on ``home``; see the module docstring.

    ``executor`` is ``LocalExecutor`` or ``CeleryExecutor``; ``sql_alchemy_conn`` defaults to SQLite
    in ``home``; ``env`` adds or overrides variables for every component.
    """

    home: Path
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    parallelism: int = 2
    env: dict[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "components").mkdir(exist_ok=True)
        self.cluster_id = uuid.uuid4().hex[:12]
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.password = secrets.token_urlsafe(16)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        self._token: str | None = None
        self._client = None
        self._t0 = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self.base_env = self._base_env()

    def mark(self, event: str) -> None:
        self.events.append((time.monotonic() - self._t0, event))

    def timeline(self) -> str:
        return ", ".join(f"{event} {t:.0f}s" for t, event in self.events)

    # --- environment ---------------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "ROSTERLINK_", "PYTEST_", "RL_"))
        }
        conn = self.sql_alchemy_conn or f"sqlite:///{self.home / 'airflow.db'}"
        env.update(
            {
                MARKER: self.cluster_id,
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": conn,
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                # manual runs only: an unpaused DAG would otherwise get a scheduled run for the last 02:00
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "GX_ANALYTICS_ENABLED": "False",
                "ROSTERLINK_TASK_RETRIES": "0",
                "ROSTERLINK_SETTLE_SECONDS": "0",
                # a run without conf must not touch the project's data/ folder
                "ROSTERLINK_DATA_DIR": str(self.home / "rl-data"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if conn.startswith("postgresql"):
            # Airflow 3.3 derives postgresql+asyncpg:// for its async engine; asyncpg is not installed
            # (psycopg 3 does async too, and is the default from Airflow 3.4 on)
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = (
                "postgresql+psycopg_async://" + conn.split("://", 1)[1]
            )
        env.update(self.env)
        return env

    # --- processes -----------------------------------------------------------------------------
    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Component:
        if name in self.components and self.components[name].alive():
            raise ClusterError(f"component {name} already running")
        log_path = self.home / "components" / f"{name}.log"
        log = log_path.open("ab")
        process = subprocess.Popen(
            [str(AIRFLOW), *args],
            cwd=self.home,
            env={**self.base_env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        component = Component(name, process, log_path)
        self.components[name] = component
        return component

    def run_cli(self, args: list[str], timeout: float = 240) -> str:
        """Run an ``airflow`` command to completion; its output goes to ``components/cli.log``."""
        log_path = self.home / "components" / "cli.log"
        with log_path.open("ab") as log:
            log.write(f"\n$ airflow {' '.join(args)}\n".encode())
            log.flush()
            try:
                done = subprocess.run(
                    [str(AIRFLOW), *args],
                    cwd=self.home,
                    env=self.base_env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=timeout,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired as exc:
                raise ClusterError(
                    f"`airflow {' '.join(args)}` did not finish in {timeout:.0f}s\n"
                    f"{(exc.stdout or b'').decode(errors='replace')[-3000:]}"
                ) from exc
            log.write(done.stdout + done.stderr)
        if done.returncode != 0:
            raise ClusterError(
                f"`airflow {' '.join(args)}` exited {done.returncode}:\n"
                f"{(done.stdout + done.stderr).decode(errors='replace')[-4000:]}"
            )
        return done.stdout.decode(errors="replace")

    def migrate(self, timeout: float = 300) -> None:
        self.run_cli(["db", "migrate"], timeout=timeout)
        self.mark("migrated")

    def start_core(self, triggerer: bool = False) -> None:
        """api-server, scheduler and dag-processor (and a triggerer if asked for)."""
        self.start(
            "api-server",
            ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"],
        )
        self.start("scheduler", ["scheduler"])
        self.start("dag-processor", ["dag-processor"])
        if triggerer:
            self.start("triggerer", ["triggerer"])

    def start_celery_worker(self, hostname: str, queue: str, concurrency: int = 1) -> Component:
        return self.start(
            f"worker-{hostname}",
            [
                "celery",
                "worker",
                "--celery-hostname",
                hostname,
                "--queues",
                queue,
                "--concurrency",
                str(concurrency),
                "--skip-serve-logs",
            ],
            env={
                HOSTNAME_ENV: hostname,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_cluster.component_hostname",
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(TESTS_DIR), self.base_env.get("PYTHONPATH")])
                ),
            },
        )

    def check_alive(self) -> None:
        dead = [c for c in self.components.values() if not c.alive()]
        if dead:
            names = ", ".join(f"{c.name} (exit {c.process.returncode})" for c in dead)
            raise ClusterError(f"component(s) exited: {names}\n{self.report()}")

    def report(self, lines: int = 40) -> str:
        parts = []
        for c in self.components.values():
            state = "running" if c.alive() else f"exited {c.process.returncode}"
            parts.append(
                f"----- {c.name} ({state}), last {lines} lines of {c.log_path} -----\n{c.tail(lines)}"
            )
        return "\n".join(parts)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after ``grace`` s, then
        kill any process still carrying this cluster's marker (task processes have own groups)."""
        for c in self.components.values():
            _signal_group(c.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for c in self.components.values():
            _signal_group(c.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.process.wait(timeout=5)
        for pid in self.marked_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.components:
            self.mark("stopped")

    def assert_stopped(self, timeout: float = 10) -> None:
        """After :meth:`stop`: no process of this cluster is left (else ClusterError naming them)."""

        def left() -> str:
            rows = []
            for pid in self.marked_pids():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                except OSError:
                    continue
                rows.append(f"{pid}: {cmdline.decode(errors='replace')}")
            return "\n".join(rows)

        wait_for("every process of the cluster to exit", lambda: not left(), timeout, 0.5, left)

    def marked_pids(self) -> list[int]:
        """Processes whose environment carries this cluster's marker (Linux /proc)."""
        needle = f"{MARKER}={self.cluster_id}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def __enter__(self) -> AirflowCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- REST API ------------------------------------------------------------------------------
    @property
    def client(self):
        import httpx

        if self._client is None:
            self._client = httpx.Client(base_url=self.api_url, timeout=30)
        return self._client

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            r = self.client.post("/auth/token", json={"username": "admin", "password": self.password})
            if r.status_code != 201:
                raise ClusterError(f"POST /auth/token -> {r.status_code} {r.text[:500]}")
            self._token = r.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def api(self, method: str, path: str, expect: Iterable[int] = (200,), **kwargs) -> dict:
        r = self.client.request(method, f"/api/v2{path}", headers=self._auth(), **kwargs)
        if r.status_code not in set(expect):
            raise ClusterError(f"{method} /api/v2{path} -> {r.status_code} {r.text[:1000]}")
        return r.json() if r.content else {}

    def wait_api(self, timeout: float = 120) -> None:
        def probe() -> bool:
            self.check_alive()
            r = self.client.get("/api/v2/monitor/health", timeout=5)
            return r.status_code == 200

        wait_for("the api-server health endpoint", probe, timeout, 1.0, self.report)
        self.mark("api up")

    def wait_dag(self, dag_id: str = DAG_ID, timeout: float = 120) -> dict:
        """Wait until the dag-processor has serialized ``dag_id``; fail at once on an import error."""

        def probe() -> dict | None:
            self.check_alive()
            errors = self.api("GET", "/importErrors").get("import_errors", [])
            if errors:
                raise ClusterError(f"DAG import errors: {json.dumps(errors, ensure_ascii=False)[:3000]}")
            r = self.client.get(f"/api/v2/dags/{dag_id}", headers=self._auth())
            return r.json() if r.status_code == 200 else None

        dag = wait_for(f"DAG {dag_id} to be parsed", probe, timeout, 2.0, self.report)
        self.mark("dag parsed")
        return dag

    def unpause(self, dag_id: str = DAG_ID) -> None:
        body = self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        if body.get("is_paused"):
            raise ClusterError(f"DAG {dag_id} still paused: {body}")

    def trigger(self, conf: dict, dag_id: str = DAG_ID, run_id: str | None = None) -> str:
        body = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]
        self.mark("triggered")
        return run

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_run(
        self,
        run_id: str,
        dag_id: str = DAG_ID,
        timeout: float = 360,
        progress: Callable[[str], None] | None = None,
    ) -> str:
        """Poll the run until it is success or failed; return that state."""
        last = [""]

        def probe() -> str | None:
            self.check_alive()
            state = self.run_state(run_id, dag_id)
            if progress and state != last[0]:
                progress(state)
            last[0] = state
            return state if state in TERMINAL_RUN_STATES else None

        def on_timeout() -> str:
            try:
                tis = "\n".join(
                    f"  {t.task_id}[{t.map_index}] {t.state} on {t.hostname}"
                    for t in self.task_instances(run_id, dag_id)
                )
            except Exception as exc:  # noqa: BLE001
                tis = f"  (task instances unavailable: {exc})"
            return f"run {run_id} is {last[0]!r}; task instances:\n{tis}\n{self.report()}"

        state = wait_for(f"run {run_id} to finish", probe, timeout, 2.0, on_timeout)
        self.mark(f"run {state}")
        return state

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[TaskInstanceInfo]:
        out: list[TaskInstanceInfo] = []
        offset = 0
        while True:
            page = self.api(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                params={"limit": 100, "offset": offset},
            )
            rows = page.get("task_instances", [])
            out += [
                TaskInstanceInfo(
                    t["task_id"],
                    t["map_index"],
                    t["state"],
                    t.get("hostname"),
                    t.get("try_number", 0),
                    t.get("rendered_map_index"),
                    t.get("duration"),
                )
                for t in rows
            ]
            offset += len(rows)
            if not rows or offset >= page.get("total_entries", 0):
                return out

    def task_logs(self, run_id: str, task_id: str | None = None, lines: int = 60) -> str:
        """Tails of the task log files this run wrote (local log folder)."""
        base = self.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
        parts = []
        for path in sorted(base.glob(f"task_id={task_id or '*'}/**/*.log")):
            text = path.read_text(errors="replace").splitlines()
            parts.append(f"----- {path.relative_to(base)} -----\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or f"(no task logs under {base})"

    def explain_run(self, run_id: str, state: str, tis: list[TaskInstanceInfo]) -> str:
        """For an assertion message: every task instance's state, the logs of the failed ones, and
        the tails of the component logs."""
        lines = [f"run {run_id} is {state}:"]
        lines += [f"  {t.task_id}[{t.map_index}] {t.state} try {t.try_number} on {t.hostname}" for t in tis]
        for task_id in sorted({t.task_id for t in tis if t.state == "failed"}):
            lines.append(self.task_logs(run_id, task_id))
        lines.append(self.report())
        return "\n".join(lines)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies (Linux), so a killed pytest
    leaves no cluster behind; the component then stops its own children."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort only
        pass


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # start_new_session: the group id is the component's pid
