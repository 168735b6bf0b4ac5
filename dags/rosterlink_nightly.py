"""
### rosterlink nightly

Takes every new file the departments and units dropped into their intake folders, reads, normalises and
validates it (one mapped task per file), renders the validate tasks' GX results as offline Data Docs
(`<exports>/data_docs/<night>/`, linked from the rosterlink dashboard), loads the good rows into the
warehouse, links them to households, cadres and cases, refreshes statuses from explicit change
rows, rebuilds the pairings, ties the units' visit logs to the pairs (follow-through figures), and
writes feedback workbooks for the clerks, the pairing workbook for the organization department and
the opinions heard on visits for the departments that can act on them.

Settings come from the run conf (`intake_dir`, `warehouse_url`, `export_dir`, `as_of`,
`allow_mass_end`), then Airflow Variables `rosterlink_*`, then `ROSTERLINK_*` environment variables.
Every task calls one plain function of `rosterlink.tasks` (`document_validation`: of
`rosterlink.validate.datadocs`). Data Docs are built in parallel with loading and the stages after it; the
three workbook tasks run in parallel; `finish_night` clears the staging table and records the figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

if TYPE_CHECKING:
    from rosterlink.core.payloads import FileItem, ScannedFile

TZ = "Asia/Shanghai"


def _retries() -> tuple[int, dt.timedelta]:
    """Task retries and their delay, read through the table of environment variables (its defaults)."""
    from rosterlink.core.environment import value  # the standard library only: cheap at parse time

    delay = dt.timedelta(seconds=int(value("ROSTERLINK_RETRY_DELAY_SECONDS")))
    return int(value("ROSTERLINK_TASK_RETRIES")), delay


RETRIES, RETRY_DELAY = _retries()


def _settings():
    from rosterlink.core import settings

    params = get_current_context()["params"]
    return settings.load(**{k: params.get(k) for k in ("intake_dir", "warehouse_url", "export_dir")})


def _as_of() -> dt.date:
    context = get_current_context()
    if context["params"].get("as_of"):
        return dt.date.fromisoformat(context["params"]["as_of"])
    moment = context.get("logical_date") or context["dag_run"].run_after
    return pendulum.instance(moment).in_timezone(TZ).date()


@contextlib.contextmanager
def _night(last: bool = False):
    """Settings and run id for a task, with the night's lease on the warehouse held throughout.

    A night locked out by another one fails at once (no retries) with the lock's message.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from rosterlink import tasks
    from rosterlink.ops import nightlock

    settings, run_id = _settings(), get_current_context()["run_id"]
    try:
        with tasks.night(settings, run_id, last=last):
            yield settings, run_id
    except nightlock.NightLocked as exc:
        raise AirflowFailException(str(exc)) from None


def _on_failure(context) -> None:
    from rosterlink.ops.alerts import night_failed

    night_failed(context)


@dag(
    dag_id="rosterlink_nightly",
    schedule=CronTriggerTimetable("0 2 * * *", timezone=TZ),
    start_date=pendulum.datetime(2026, 1, 1, tz=TZ),
    catchup=False,
    max_active_runs=1,
    tags=["rosterlink"],
    default_args={
        "owner": "data-team",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "on_failure_callback": _on_failure,
    },
    params={
        "intake_dir": Param(None, type=["null", "string"]),
        "warehouse_url": Param(None, type=["null", "string"]),
        "export_dir": Param(None, type=["null", "string"]),
        "as_of": Param(
            None, type=["null", "string"], description="night date YYYY-MM-DD (default: logical date)"
        ),
        "allow_mass_end": Param(False, type="boolean"),
    },
    doc_md=__doc__,
)
def rosterlink_nightly():
    @task
    def begin_night() -> Mapping[str, Any]:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.begin_night(settings, run_id, _as_of())

    @task
    def scan_intake(_night_started: dict) -> list[ScannedFile]:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.scan(settings, run_id)

    @task(map_index_template="{{ task.op_kwargs['item']['file_name'] }}")
    def read_file(item: ScannedFile) -> Mapping[str, Any]:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.read_file(settings, item, _as_of())

    @task(map_index_template="{{ task.op_kwargs['item']['file_name'] }}")
    def validate_file(item: FileItem) -> Mapping[str, Any]:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.validate_file(settings, item, _as_of())

    @task(trigger_rule="none_failed")
    def document_validation(items: list[dict] | None) -> dict:
        """The night's validation pages (Data Docs), rendered from the GX results the validate tasks
        kept (no suite runs again), in parallel with loading and the stages after it.

        ``datadocs.build_night`` never raises: documentation that cannot be written is logged and the
        night goes on."""
        from rosterlink.validate import datadocs

        with _night() as (settings, run_id):
            return datadocs.build_night(settings, list(items or []), as_of=_as_of(), run_id=run_id)

    @task(trigger_rule="none_failed")
    def load_files(items: list[FileItem] | None) -> Mapping[str, Any]:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.load(settings, list(items or []), _as_of().isoformat())

    @task(trigger_rule="none_failed")
    def link_entities(_loaded: dict) -> dict:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.link(settings)

    @task(trigger_rule="none_failed", retries=0)
    def refresh_statuses(_linked: dict) -> dict:
        from rosterlink import tasks

        allow = bool(get_current_context()["params"].get("allow_mass_end"))
        with _night() as (settings, _):
            return tasks.refresh_statuses(settings, _as_of(), allow)

    @task(trigger_rule="none_failed")
    def rebuild_pairings(_statuses: dict) -> dict:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.rebuild_pairings(settings, _as_of(), run_id)

    @task(trigger_rule="none_failed")
    def follow_through(_pairs: dict) -> dict:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.follow_through(settings, _as_of(), run_id)

    # the night's workbooks: three tasks, so that with several workers they are written at once
    @task(trigger_rule="none_failed")
    def write_feedback(scanned: list[ScannedFile], _followed: dict | None) -> dict:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.write_feedback(
                settings, _as_of(), tasks.night_file_ids(settings, run_id, scanned or [])
            )

    @task(trigger_rule="none_failed")
    def write_pairing_workbook(_followed: dict | None) -> dict:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.write_pairing_workbook(settings, _as_of())

    @task(trigger_rule="none_failed")
    def write_change_log(_followed: dict | None) -> dict:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.write_change_log(settings, _as_of())

    @task(trigger_rule="none_failed")
    def finish_night(
        pairs: dict,
        followed: dict | None,
        feedback: dict,
        pairing: dict,
        change_log: dict,
        documented: dict | None,
    ) -> dict:
        """Clears the staging table, records the night's figures, releases the night's lease."""
        from rosterlink import tasks

        written = {**(feedback or {}), **(pairing or {}), **(change_log or {})}
        with _night(last=True) as (settings, run_id):
            tasks.clear_staging(settings)
            figures = tasks.finish_night(
                settings,
                run_id,
                {"pairing": pairs, "followup": followed, "exports": written, "data_docs": documented},
            )
        return {"exports": written, "figures": figures, "where": tasks.where(settings)}

    night = begin_night()
    scanned = scan_intake(night)
    validated = validate_file.expand(item=read_file.expand(item=scanned))
    documented = document_validation(validated)
    pairs = rebuild_pairings(refresh_statuses(link_entities(load_files(validated))))
    followed = follow_through(pairs)
    finish_night(
        pairs,
        followed,
        write_feedback(scanned, followed),
        write_pairing_workbook(followed),
        write_change_log(followed),
        documented,
    )


rosterlink_nightly()
