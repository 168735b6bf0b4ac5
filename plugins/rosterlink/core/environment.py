"""Every ``ROSTERLINK_*`` environment variable the code reads, in one table: name, default, meaning.

The README's configuration table is :func:`markdown_table` of this one, and
``tests/test_environment.py`` fails on a ``ROSTERLINK_*`` name in the package, ``dags/`` or
``deploy/env.example`` that is not here, and on an entry here that no code reads.

:func:`get` reads a variable through the table (an unset or empty variable gives the table's
default); a name missing from the table is a ``KeyError``, not a silently ignored setting.

Only the standard library: the DAG file reads its retry settings through it at parse time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    """One environment variable the code reads."""

    name: str
    default: str | None  # what the code uses when it is unset or empty; None: no value (or computed)
    meaning: str
    airflow: str = ""  # the Airflow Variable or connection that overrides it inside Airflow, if any
    shown_default: str = ""  # the default as a person reads it, when it is computed (``data/intake``)

    @property
    def documented_default(self) -> str:
        return self.shown_default or (f"`{self.default}`" if self.default else "none")


_TABLE = (
    EnvVar(
        "ROSTERLINK_INTAKE_DIR",
        None,
        "intake root: one folder per department, `review/` for the link review queue",
        airflow="Variable `rosterlink_intake_dir`",
        shown_default="`data/intake`",
    ),
    EnvVar(
        "ROSTERLINK_WAREHOUSE_URL",
        None,
        "the warehouse, a SQLAlchemy URL (`postgres://` accepted)",
        airflow="connection `rosterlink_warehouse`, then Variable `rosterlink_warehouse_url`",
        shown_default="`sqlite:///data/warehouse.db`",
    ),
    EnvVar(
        "ROSTERLINK_EXPORT_DIR",
        None,
        "where the night's workbooks and Data Docs are written",
        airflow="Variable `rosterlink_export_dir`",
        shown_default="`data/exports`",
    ),
    EnvVar(
        "ROSTERLINK_EXPECTATIONS_DIR",
        None,
        "the Great Expectations suites, one `<roster>.json` each",
        airflow="Variable `rosterlink_expectations_dir`",
        shown_default="`expectations/`",
    ),
    EnvVar(
        "ROSTERLINK_DATA_DIR",
        None,
        "the folder the default intake, warehouse, exports and alerts live under",
        shown_default="`data/`",
    ),
    EnvVar(
        "ROSTERLINK_CONFIG_DIR",
        None,
        "a folder with the district's own `district.json`, `rosters.json`, `pairing.json` ... "
        "(`linkage.json` falls back to the package's)",
        shown_default="`plugins/rosterlink/config/`",
    ),
    EnvVar(
        "ROSTERLINK_ARCHIVE",
        "",
        "`1`/`true`/`yes`: move each loaded file to `<intake>_archive/<night>/`",
        shown_default="off",
    ),
    EnvVar("ROSTERLINK_MAX_FILE_BYTES", "104857600", "a bigger intake file is rejected unread"),
    EnvVar(
        "ROSTERLINK_SETTLE_SECONDS",
        "1.0",
        "a file whose size or time changes within this is left for the next scan (still being copied)",
    ),
    EnvVar(
        "ROSTERLINK_MAX_END_SHARE", "0.10", "a night that would end more than this share of the pairs stops"
    ),
    EnvVar(
        "ROSTERLINK_TOWN_BATCHES",
        "4",
        "the town workbooks that changed are written by at most this many parallel tasks",
    ),
    EnvVar(
        "ROSTERLINK_LOCK_STALE_SECONDS",
        "300",
        "a night's lease not refreshed for this long is taken over by the next night",
    ),
    EnvVar(
        "ROSTERLINK_TASK_RETRIES",
        "2",
        "retries of each task of the nightly DAG (read when the DAG is parsed)",
    ),
    EnvVar("ROSTERLINK_RETRY_DELAY_SECONDS", "60", "seconds between a task's retries"),
    EnvVar(
        "ROSTERLINK_LINKAGE_BACKEND",
        None,
        "where the linkage model runs: `duckdb` or `spark`",
        airflow="Variable `rosterlink_linkage_backend`",
        shown_default="`backend` of `linkage.json` (`duckdb`)",
    ),
    EnvVar(
        "ROSTERLINK_SPARK_MASTER",
        None,
        "the Spark master with the `spark` backend (`spark://host:7077`)",
        airflow="Variable `rosterlink_spark_master`",
        shown_default="`spark.master` of `linkage.json` (`local[2]`)",
    ),
    EnvVar(
        "ROSTERLINK_PSEUDONYM_KEY",
        None,
        "the HMAC key of the analytics copy and the child ID tokens (16 characters or more)",
        airflow="connection `rosterlink_pseudonym` (password)",
    ),
    EnvVar(
        "ROSTERLINK_PURGE_REJECTED_DAYS",
        "365",
        "age in days after which `rosterlink purge` blanks rejected raw values",
    ),
    EnvVar(
        "ROSTERLINK_ALERT_DIR",
        None,
        "where night failures are appended (`alerts.jsonl`)",
        shown_default="`data/alerts`",
    ),
    EnvVar("ROSTERLINK_ALERT_WEBHOOK", None, "optional: a URL night failures are posted to (JSON)"),
    EnvVar(
        "ROSTERLINK_FAILPOINT",
        None,
        "tests only: `<point>=kill` (or `=enospc`, `=connreset`, or anything else: an error) fails the "
        "code at that point",
    ),
)

VARIABLES: dict[str, EnvVar] = {v.name: v for v in _TABLE}


def get(name: str) -> str | None:
    """The variable's value, or the table's default when it is unset or empty (None: no default).

    A name that is not in the table raises ``KeyError``."""
    entry = VARIABLES[name]
    return os.environ.get(name) or entry.default


def value(name: str) -> str:
    """:func:`get` for a variable whose table entry has a default (``ValueError`` otherwise)."""
    found = get(name)
    if found is None:
        raise ValueError(f"{name} has no default in the table of environment variables")
    return found


def markdown_table() -> str:
    """The table as the README shows it (its configuration section holds this text verbatim)."""
    lines = [
        "| environment variable | default | what | inside Airflow, overridden by |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{v.name}` | {v.documented_default} | {v.meaning} | {v.airflow} |" for v in _TABLE]
    return "\n".join(lines) + "\n"
