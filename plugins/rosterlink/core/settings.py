"""Run settings: where the intake, warehouse and exports are, and the safety limits.

Precedence, highest first: values passed explicitly (DAG run conf / CLI flags), then, only inside a
running Airflow task (or in Airflow's API server, for the dashboard), the Airflow connection
``rosterlink_warehouse`` (warehouse URL only), then Airflow Variables (``rosterlink_intake_dir``
...), then environment variables (``ROSTERLINK_INTAKE_DIR`` ..., all listed in
:mod:`rosterlink.core.environment`), then defaults under the project's ``data/`` folder.

Airflow is asked by :func:`airflow_variable` and :func:`airflow_connection`, the package's only
readers of Variables and connections: through the Task SDK inside a task, through the metadata
database and secrets backends in the API server.

The connection sits above the Variable because a connection is where Airflow keeps credentials
(secret backends, masked in logs); a URL with a password does not belong in a Variable. Its URI
(``Connection.get_uri()``, ``postgres://...``) is rewritten to ``postgresql+psycopg://...``, which
SQLAlchemy 2 accepts; a ``sqlite`` connection's path is taken from its schema (or host).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from rosterlink.core import environment
from rosterlink.core.paths import DATA_DIR, EXPECTATIONS_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What a file may be before we refuse to open it."""

    max_file_bytes: int = 100 * 1024 * 1024
    max_uncompressed_bytes: int = 500 * 1024 * 1024
    max_compression_ratio: float = 200.0
    max_columns: int = 256
    max_rows: int = 1_000_000
    settle_seconds: float = 1.0  # a file whose size/mtime changes within this is left for the next scan


@dataclass(frozen=True)
class Settings:
    intake_dir: Path
    warehouse_url: str
    export_dir: Path
    expectations_dir: Path = EXPECTATIONS_DIR
    archive: bool = False  # move processed files into an archive folder beside the intake
    max_end_share: float = 0.10  # a night that would end more pairs than this share stops
    town_batches: int = 4  # at most this many tasks write the town workbooks that changed
    limits: Limits = field(default_factory=Limits)

    @property
    def review_dir(self) -> Path:
        """Where the link review queue (``待核实.xlsx``) is written and reviewers' workbooks are read."""
        return self.intake_dir / "review"

    @property
    def archive_dir(self) -> Path:
        return self.intake_dir.parent / (self.intake_dir.name + "_archive")

    def with_overrides(self, **values: object) -> Settings:
        clean: dict[str, Any] = {k: v for k, v in values.items() if v not in (None, "")}
        for key in ("intake_dir", "export_dir", "expectations_dir"):
            if key in clean:
                clean[key] = Path(str(clean[key])).expanduser().resolve()
        return replace(self, **clean)


_KEYS = ("intake_dir", "warehouse_url", "export_dir", "expectations_dir")
WAREHOUSE_CONN_ID = "rosterlink_warehouse"


class AirflowConnection(Protocol):
    """What the package reads of an Airflow connection (the Task SDK's or the server's class)."""

    @property
    def conn_type(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...
    @property
    def schema(self) -> str | None: ...
    @property
    def password(self) -> str | None: ...
    def get_uri(self) -> str: ...


def in_airflow_task() -> bool:
    """True only while an Airflow task runs in this process (not merely after one has run)."""
    if not os.environ.get("AIRFLOW_CTX_DAG_ID"):
        return False
    try:
        from airflow.sdk import get_current_context

        get_current_context()
    except Exception:  # noqa: BLE001 - no task context: not inside a task
        return False
    return True


def airflow_variable(key: str, *, server: bool = False) -> str | None:
    """The Airflow Variable ``key``; None when it is not set or Airflow is not there to ask.

    Inside a running task through the Task SDK (``airflow.sdk.Variable``: a worker has no metadata
    database, the API server answers for it). ``server=True`` is for a process of Airflow's own
    with the metadata database and the secrets backends (the API server, where the dashboard
    runs): there ``airflow.models.Variable`` answers. Anywhere else (the CLI, a test, a DAG file
    being parsed) Airflow is not asked.
    """
    try:
        if in_airflow_task():
            from airflow.sdk import Variable

            found = Variable.get(key, default=None)
        elif server:
            from airflow.models.variable import Variable as StoredVariable

            found = StoredVariable.get(key, default_var=None)
        else:
            return None
    except Exception:  # noqa: BLE001 - no variable store reachable: the environment decides
        log.debug("Airflow Variable %s not readable; using the environment", key)
        return None
    return str(found) if found else None


def airflow_connection(
    conn_id: str, *, server: bool = False, environment: bool = False
) -> AirflowConnection | None:
    """The Airflow connection ``conn_id``; None when it is not defined or Airflow is not there to ask.

    Where it is asked as for :func:`airflow_variable`: inside a running task through the Task SDK
    (``airflow.sdk.Connection``), with ``server=True`` through the server's secrets backends
    (``Connection.get_connection_from_secrets``: ``AIRFLOW_CONN_*``, then the metadata database).
    ``environment=True`` (the ``rosterlink`` command before Airflow starts) reads only
    ``AIRFLOW_CONN_<CONN_ID>`` from the environment, as a URI or as JSON, without importing Airflow.
    """
    try:
        if in_airflow_task():
            from airflow.sdk import Connection

            return Connection.get(conn_id)
        if server:
            from airflow.models.connection import Connection as StoredConnection

            return StoredConnection.get_connection_from_secrets(conn_id)
        if environment:
            return _connection_in_environment(conn_id)
    except Exception:  # noqa: BLE001 - not defined (AirflowNotFoundException) or no store reachable
        log.debug("no Airflow connection %s", conn_id)
    return None


@dataclass(frozen=True)
class _EnvironmentConnection:
    """An ``AIRFLOW_CONN_*`` connection as the package reads it (:class:`AirflowConnection`)."""

    conn_type: str | None
    host: str | None
    schema: str | None
    password: str | None
    uri: str

    def get_uri(self) -> str:
        return self.uri


def _connection_in_environment(conn_id: str) -> AirflowConnection | None:
    """``AIRFLOW_CONN_<CONN_ID>`` as Airflow accepts it: a URI, or JSON with ``conn_type``, ``host``,
    ``port``, ``login``, ``password``, ``schema``."""
    import json
    from urllib.parse import quote, urlsplit

    raw = os.environ.get("AIRFLOW_CONN_" + conn_id.upper(), "").strip()
    if not raw:
        return None
    if raw.startswith("{"):
        data = json.loads(raw)
        kind = str(data.get("conn_type") or "")
        host, schema, password = data.get("host") or "", data.get("schema") or "", data.get("password")
        login = quote(str(data.get("login") or ""), safe="")
        auth = login + (":" + quote(str(password), safe="") if password else "")
        netloc = (auth + "@" if auth else "") + str(host) + (f":{data['port']}" if data.get("port") else "")
        uri = f"{kind}://{netloc}/{quote(str(schema), safe='/')}" if kind else ""
        return _EnvironmentConnection(kind, str(host), str(schema), password, uri)
    if "://" not in raw:
        return None
    parts = urlsplit(raw)
    return _EnvironmentConnection(parts.scheme, parts.hostname, parts.path[1:], parts.password, raw)


def normalise_url(url: str) -> str:
    """Accept the URLs people paste: ``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def connection_url(conn: AirflowConnection) -> str:
    """A SQLAlchemy 2 URL for an Airflow connection (``postgres://`` -> ``postgresql+psycopg://``)."""
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        path = conn.schema or conn.host or ""
        return f"sqlite:///{path}" if path else "sqlite://"
    return normalise_url(conn.get_uri())


def _from_environment() -> dict[str, str | None]:
    return {
        "intake_dir": environment.get("ROSTERLINK_INTAKE_DIR"),
        "warehouse_url": environment.get("ROSTERLINK_WAREHOUSE_URL"),
        "export_dir": environment.get("ROSTERLINK_EXPORT_DIR"),
        "expectations_dir": environment.get("ROSTERLINK_EXPECTATIONS_DIR"),
    }


def _from_airflow(server: bool) -> dict[str, str]:
    """The ``rosterlink_*`` Variables, then the warehouse connection above them."""
    found = {}
    for key in _KEYS:
        value = airflow_variable(f"rosterlink_{key}", server=server)
        if value:
            found[key] = value
    conn = airflow_connection(WAREHOUSE_CONN_ID, server=server)
    if conn is not None:
        found["warehouse_url"] = connection_url(conn)
    return found


def load(**overrides: object) -> Settings:
    """The settings, highest first: ``overrides``, Airflow (only inside a running task), the
    environment, the defaults."""
    return _load(overrides, server=False)


def load_in_server(**overrides: object) -> Settings:
    """:func:`load` in a process of Airflow's own with its metadata database (the API server, where
    the dashboard runs): the Variables and the connection are read there (``server=True`` of
    :func:`airflow_variable`), as the night's tasks read them through the Task SDK."""
    return _load(overrides, server=True)


def _load(overrides: dict[str, object], *, server: bool) -> Settings:
    default = Settings(
        intake_dir=(DATA_DIR / "intake").resolve(),
        warehouse_url=f"sqlite:///{(DATA_DIR / 'warehouse.db').resolve()}",
        export_dir=(DATA_DIR / "exports").resolve(),
        archive=environment.value("ROSTERLINK_ARCHIVE") in ("1", "true", "yes"),
        max_end_share=float(environment.value("ROSTERLINK_MAX_END_SHARE")),
        town_batches=max(1, int(environment.value("ROSTERLINK_TOWN_BATCHES"))),
        limits=Limits(
            max_file_bytes=int(environment.value("ROSTERLINK_MAX_FILE_BYTES")),
            settle_seconds=float(environment.value("ROSTERLINK_SETTLE_SECONDS")),
        ),
    )
    return (
        default.with_overrides(**_from_environment())
        .with_overrides(**_from_airflow(server))
        .with_overrides(**overrides)
    )
