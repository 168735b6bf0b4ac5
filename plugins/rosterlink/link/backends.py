"""Where Splink runs: DuckDB in-process (the default) or Spark (local mode or a cluster).

:mod:`rosterlink.link.model` asks :func:`open_engine` for an :class:`Engine` and only uses its small
surface: ``api`` (the Splink database API), :meth:`Engine.register` (a pandas DataFrame in, a Splink
table out), :meth:`Engine.fetch` (SQL in, a pandas DataFrame out), :meth:`Engine.columns` and
:meth:`Engine.close`. The link stage (:mod:`rosterlink.link.night`) never sees which engine runs.

Which one, highest first: the Airflow Variable ``rosterlink_linkage_backend`` (only inside a
running Airflow task), the environment variable ``ROSTERLINK_LINKAGE_BACKEND``, then ``"backend"``
in ``config/linkage.json`` (``"duckdb"`` or ``"spark"``). The Spark master the same way:
``rosterlink_spark_master`` / ``ROSTERLINK_SPARK_MASTER`` / ``spark.master`` (``local[2]`` here, a
``spark://host:7077`` URL in production).

Spark: one ``SparkSession`` per process, created on first use (``pip install -c constraints.txt
-e '.[spark]'`` and Java 17+), small shuffle partition counts for local mode, UTC session time zone,
Splink's similarity-function jar on the class path, intermediate tables written as parquet under a
checkpoint folder (a temporary one in local mode, removed when the process exits; on a cluster
``spark.checkpoint_dir`` must name a folder every executor can reach). Data goes in and out as
Arrow tables (explicit schemas: an empty frame has no types to infer).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import uuid
from typing import TYPE_CHECKING, Any

from rosterlink.link.config import BACKENDS, LinkageConfig

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
INSTALL_HINT = (
    "the Spark link backend needs pyspark and Java 17+: `make install` (or `make test`) installs the "
    "extra, by hand `.venv/bin/pip install -c constraints.txt -e '.[spark]'`; Java: "
    "`apt-get install openjdk-17-jre-headless`"
)


class BackendUnavailable(RuntimeError):
    """The configured backend cannot run on this machine (pyspark or Java missing)."""


# --- which backend ---------------------------------------------------------------------------------
def _airflow_variable(name: str) -> str | None:
    from rosterlink.core.settings import airflow_variable

    return airflow_variable(name)


def _setting(variable: str, env: str, configured: object, default: str) -> str:
    value = _airflow_variable(variable) or os.environ.get(env) or configured or default
    return str(value).strip()


def backend_name(cfg: LinkageConfig) -> str:
    name = _setting("rosterlink_linkage_backend", "ROSTERLINK_LINKAGE_BACKEND", cfg.backend, "duckdb").lower()
    if name not in BACKENDS:
        raise ValueError(f"linkage backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return name


def spark_master(cfg: LinkageConfig) -> str:
    return _setting("rosterlink_spark_master", "ROSTERLINK_SPARK_MASTER", cfg.spark.master, DEFAULT_MASTER)


def open_engine(cfg: LinkageConfig) -> Engine:
    """A fresh engine for one training or one scoring pass of the configured backend."""
    return SparkEngine(cfg) if backend_name(cfg) == "spark" else DuckDBEngine(cfg)


# --- engines -------------------------------------------------------------------------------------------
class Engine:
    name = "base"
    api: Any  # the Splink DatabaseAPI

    def __init__(self) -> None:
        self._token = uuid.uuid4().hex[:8]

    def table_name(self, base: str) -> str:
        """A table name private to this engine (one Spark session is shared by the whole process)."""
        return f"{base}_{self._token}"

    def register(self, df: pd.DataFrame, base: str):
        raise NotImplementedError

    def fetch(self, sql: str) -> pd.DataFrame:
        raise NotImplementedError

    def columns(self, table: str) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, cfg: LinkageConfig) -> None:
        import duckdb
        from splink.backends.duckdb import DuckDBAPI

        super().__init__()
        self.con = duckdb.connect()
        opts = cfg.duckdb
        self.con.execute(f"SET threads = {int(opts.threads)}")
        self.con.execute(f"SET memory_limit = '{opts.memory_limit}'")
        self.con.execute("SET preserve_insertion_order = false")
        self.api = DuckDBAPI(connection=self.con)

    def register(self, df: pd.DataFrame, base: str):
        return self.api.register(df, table_name=self.table_name(base))

    def fetch(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).fetchdf()

    def columns(self, table: str) -> list[str]:
        return list(self.con.execute(f"SELECT * FROM {table} LIMIT 0").fetchdf().columns)

    def close(self) -> None:
        self.con.close()


# --- Spark -----------------------------------------------------------------------------------------------
_lock = threading.Lock()
_session = None
_session_master: str | None = None
_temp_dir: str | None = None


def _check_spark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable(f"pyspark is not installed: {INSTALL_HINT}") from exc
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise BackendUnavailable(f"no Java runtime found (java on PATH or JAVA_HOME): {INSTALL_HINT}")


def spark_session(cfg: LinkageConfig):
    """The process's SparkSession, created on first use with the configured master."""
    global _session, _session_master, _temp_dir
    master = spark_master(cfg)
    with _lock:
        if _session is not None:
            if master != _session_master:
                log.warning(
                    "linkage: a Spark session on %s is running; %s is used from the next process",
                    _session_master,
                    master,
                )
            return _session
        _check_spark()
        logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines at exit hit closed streams
        from pyspark.sql import SparkSession
        from splink.backends.spark import similarity_jar_location

        opts = cfg.spark
        local = master.startswith("local")
        builder = (
            SparkSession.builder.master(master)
            .appName(str(opts.app_name))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.jars", similarity_jar_location())
            .config("spark.log.level", str(opts.log_level))
        )
        if local:  # a cluster keeps its own partition counts (or "conf" sets them)
            partitions = str(int(opts.shuffle_partitions_local))
            builder = (
                builder.config("spark.sql.shuffle.partitions", partitions)
                .config("spark.default.parallelism", partitions)
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .config("spark.driver.host", "127.0.0.1")
                .config("spark.driver.bindAddress", "127.0.0.1")
                .config("spark.driver.memory", str(opts.driver_memory))
            )
        for key, value in opts.conf.items():
            builder = builder.config(str(key), str(value))
        checkpoint = opts.checkpoint_dir
        if not checkpoint:
            if not local:
                log.warning(
                    "linkage: Spark on %s without spark.checkpoint_dir: a local temporary folder is "
                    "used, which executors on other hosts cannot reach",
                    master,
                )
            _temp_dir = tempfile.mkdtemp(prefix="rl-spark-")
            checkpoint = os.path.join(_temp_dir, "checkpoints")
            builder = builder.config("spark.local.dir", os.path.join(_temp_dir, "local"))
            builder = builder.config("spark.sql.warehouse.dir", os.path.join(_temp_dir, "warehouse"))
        try:
            session = builder.getOrCreate()
        except Exception as exc:  # the JVM did not start (no or too old Java)
            raise BackendUnavailable(
                f"Spark did not start on {master} ({type(exc).__name__}: {exc}); {INSTALL_HINT}"
            ) from exc
        session.sparkContext.setCheckpointDir(str(checkpoint))
        session.sparkContext.setLogLevel(str(opts.log_level))
        _session, _session_master = session, master
        log.info(
            "linkage: Spark %s session started on %s (%s shuffle partitions)",
            session.version,
            master,
            session.conf.get("spark.sql.shuffle.partitions"),
        )
        return session


def stop_spark() -> None:
    """Stop the process's SparkSession (if any) and remove its temporary folder."""
    global _session, _session_master, _temp_dir
    with _lock:
        if _session is not None:
            with contextlib.suppress(Exception):  # the JVM may already be gone at exit
                _session.stop()
        _session = _session_master = None
        if _temp_dir:
            shutil.rmtree(_temp_dir, ignore_errors=True)
        _temp_dir = None


atexit.register(stop_spark)


def _arrow(df: pd.DataFrame):
    """A pandas frame as an Arrow table with explicit types (int64 / float64 / string)."""
    import pyarrow as pa

    fields = []
    for col, dtype in df.dtypes.items():
        kind = getattr(dtype, "kind", "O")
        fields.append(
            pa.field(
                str(col),
                pa.int64()
                if kind in "iu"
                else pa.float64()
                if kind == "f"
                else pa.bool_()
                if kind == "b"
                else pa.string(),
            )
        )
    schema = pa.schema(fields)
    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


class SparkEngine(Engine):
    name = "spark"

    def __init__(self, cfg: LinkageConfig) -> None:
        from splink.backends.spark import SparkAPI

        super().__init__()
        self.spark = spark_session(cfg)
        opts = cfg.spark
        self.api = SparkAPI(
            spark_session=self.spark,
            break_lineage_method=str(opts.break_lineage_method),
            num_partitions_on_repartition=opts.repartition_partitions,
        )
        self._views: list[str] = []

    def register(self, df: pd.DataFrame, base: str):
        name = self.table_name(base)
        self._views.append(name)
        return self.api.register(self.spark.createDataFrame(_arrow(df)), table_name=name)

    def fetch(self, sql: str) -> pd.DataFrame:
        return self.spark.sql(sql).toArrow().to_pandas()

    def columns(self, table: str) -> list[str]:
        return list(self.spark.table(table).columns)

    def close(self) -> None:
        for name in self._views:
            self.spark.catalog.dropTempView(name)
        self.spark.catalog.clearCache()
        if _temp_dir:  # local mode: tonight's intermediate parquet is no longer needed
            for entry in (
                os.scandir(os.path.join(_temp_dir, "checkpoints"))
                if os.path.isdir(os.path.join(_temp_dir, "checkpoints"))
                else ()
            ):
                if entry.is_dir():
                    shutil.rmtree(entry.path, ignore_errors=True)
