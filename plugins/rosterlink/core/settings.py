"""Run settings: where the intake, warehouse and exports are, and the safety limits.

Precedence, highest first: values passed explicitly (DAG run conf / CLI flags), then, only inside a
running Airflow task, the Airflow connection ``rosterlink_warehouse`` (warehouse URL only), then
Airflow Variables (``rosterlink_intake_dir`` ...), then environment variables
(``ROSTERLINK_INTAKE_DIR`` ...), then defaults under the project's ``data/`` folder.

The connection sits above the Variable because a connection is where Airflow keeps credentials
(secret backends, masked in logs); a URL with a password does not belong in a Variable. Its URI
(``Connection.get_uri()``, ``postgres://...``) is rewritten to ``postgresql+psycopg://...``, which
SQLAlchemy 2 accepts; a ``sqlite`` connection's path is taken from its schema (or host).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from rosterlink.core.paths import DATA_DIR, EXPECTATIONS_DIR


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
    limits: Limits = field(default_factory=Limits)

    @property
    def review_dir(self) -> Path:
        """Where the link review queue (``待核实.xlsx``) is written and reviewers' workbooks are read."""
        return self.intake_dir / "review"

    @property
    def archive_dir(self) -> Path:
        return self.intake_dir.parent / (self.intake_dir.name + "_archive")

    def with_overrides(self, **values: object) -> Settings:
        clean = {k: v for k, v in values.items() if v not in (None, "")}
        for key in ("intake_dir", "export_dir", "expectations_dir"):
            if key in clean:
                clean[key] = Path(str(clean[key])).expanduser().resolve()
        return replace(self, **clean)


_KEYS = ("intake_dir", "warehouse_url", "export_dir", "expectations_dir")


def _from_airflow_variables() -> dict[str, str]:
    """Airflow Variables override the environment, but only when running inside Airflow."""
    if not os.environ.get("AIRFLOW_CTX_DAG_ID"):
        return {}
    try:
        from airflow.sdk import Variable
    except ImportError:  # pragma: no cover - Airflow is a dependency
        return {}
    found = {}
    for key in _KEYS:
        try:
            value = Variable.get(f"rosterlink_{key}", default=None)
        except Exception:  # noqa: BLE001 - no variable store reachable: environment wins
            value = None
        if value:
            found[key] = value
    return found


def normalise_url(url: str) -> str:
    """Accept the URLs people paste: ``postgres://`` and ``postgresql://`` mean psycopg 3 here."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


WAREHOUSE_CONN_ID = "rosterlink_warehouse"


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


def airflow_connection(conn_id: str):
    """The Airflow connection ``conn_id`` when running inside an Airflow task and it exists, else None."""
    if not in_airflow_task():
        return None
    try:
        from airflow.sdk import Connection

        return Connection.get(conn_id)
    except Exception:  # noqa: BLE001 - not defined (AirflowNotFoundException) or no store reachable
        return None


def connection_url(conn) -> str:
    """A SQLAlchemy 2 URL for an Airflow connection (``postgres://`` -> ``postgresql+psycopg://``)."""
    kind = (conn.conn_type or "").lower()
    if kind == "sqlite":
        path = conn.schema or conn.host or ""
        return f"sqlite:///{path}" if path else "sqlite://"
    return normalise_url(conn.get_uri())


def _from_airflow_connection() -> dict[str, str]:
    conn = airflow_connection(WAREHOUSE_CONN_ID)
    if conn is None:
        return {}
    return {"warehouse_url": connection_url(conn)}


def load(**overrides: object) -> Settings:
    env = {k: os.environ.get(f"ROSTERLINK_{k.upper()}") for k in _KEYS}
    default = Settings(
        intake_dir=(DATA_DIR / "intake").resolve(),
        warehouse_url=f"sqlite:///{(DATA_DIR / 'warehouse.db').resolve()}",
        export_dir=(DATA_DIR / "exports").resolve(),
        archive=os.environ.get("ROSTERLINK_ARCHIVE", "") in ("1", "true", "yes"),
        max_end_share=float(os.environ.get("ROSTERLINK_MAX_END_SHARE", "0.10")),
        limits=Limits(
            max_file_bytes=int(os.environ.get("ROSTERLINK_MAX_FILE_BYTES", Limits.max_file_bytes)),
            settle_seconds=float(os.environ.get("ROSTERLINK_SETTLE_SECONDS", Limits.settle_seconds)),
        ),
    )
    return (
        default.with_overrides(**env)
        .with_overrides(**_from_airflow_variables())
        .with_overrides(**_from_airflow_connection())
        .with_overrides(**overrides)
    )
