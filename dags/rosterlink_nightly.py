"""
### rosterlink nightly

Takes every new file dropped into the intake folders, reads, normalises and validates it (one mapped
task per file; Data Docs under `<exports>/data_docs/<night>/` from the GX results it kept), loads
the good rows, links them to households, cadres and cases, refreshes statuses, rebuilds the
pairings, ties the visit logs to the pairs, and writes the clerks' feedback, the town workbooks
that changed (mapped over a few batches), the district's pairing summary, the change log and the
opinions.

Settings: the run conf (the params), then Airflow Variables `rosterlink_*`, then `ROSTERLINK_*`
environment variables. Every task calls one plain function of `rosterlink.tasks`. A task is retried
only for what a retry can cure (a dropped connection), never for a bad date, a refused login or a
missing folder. File names are shown with ID numbers and phones masked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

if TYPE_CHECKING:
    from rosterlink.core.payloads import FileItem, ScannedFile, TownBatch

TZ = "Asia/Shanghai"
TEXT = ["null", "string"]  # an optional text param


def _retries() -> tuple[int, dt.timedelta]:
    """Task retries and their delay, read through the table of environment variables (its defaults)."""
    from rosterlink.core.environment import value  # the standard library only: cheap at parse time

    delay = dt.timedelta(seconds=int(value("ROSTERLINK_RETRY_DELAY_SECONDS")))
    return int(value("ROSTERLINK_TASK_RETRIES")), delay


RETRIES, RETRY_DELAY = _retries()


def _masked(name: str) -> str:  # a file's name as the UI shows it (a mapped task's name)
    from rosterlink.core.masking import mask_text

    return mask_text(name)


def _as_of() -> dt.date:
    context = get_current_context()
    if context["params"].get("as_of"):  # a real YYYY-MM-DD: the Param's format "date" checks it
        return dt.date.fromisoformat(context["params"]["as_of"])
    moment = context.get("logical_date") or context["dag_run"].run_after
    return pendulum.instance(moment).in_timezone(TZ).date()


@contextlib.contextmanager
def _night(last: bool = False):
    """Settings and run id for a task, with the night's lease on the warehouse held throughout.

    What no retry can cure (``rosterlink.ops.errors``) fails the task at once with a masked reason."""
    from rosterlink import tasks
    from rosterlink.core import settings as config
    from rosterlink.ops import errors

    with errors.fail_fast():
        params, run_id = get_current_context()["params"], get_current_context()["run_id"]
        settings = config.load(**{k: params.get(k) for k in ("intake_dir", "warehouse_url", "export_dir")})
        with tasks.night(settings, run_id, last=last):
            yield settings, run_id


def _on_failure(context) -> None:
    from rosterlink.ops import alerts

    alerts.night_failed(context)


def _on_retry(context) -> None:  # "attempt 1 failed, retrying in 60 s" in the log and the CLI
    from rosterlink.ops import alerts

    alerts.task_retrying(context)


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
        "on_retry_callback": _on_retry,
        "show_return_value_in_logs": False,  # file names: in XCom, not in the task log
    },
    params={  # empty: the settings (Variables rosterlink_*, connection rosterlink_warehouse, environment)
        "intake_dir": Param(None, type=TEXT, description="intake root folder (empty: settings)"),
        "warehouse_url": Param(None, type=TEXT, description="SQLAlchemy URL (empty: settings)"),
        "export_dir": Param(None, type=TEXT, description="export folder (empty: settings)"),
        "as_of": Param(None, type=TEXT, format="date", description="night YYYY-MM-DD (empty: run date)"),
        "allow_mass_end": Param(False, type="boolean", description="accept a night ending many pairs"),
    },
    user_defined_filters={"masked": _masked},
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

    @task(map_index_template="{{ task.op_kwargs['item']['file_name'] | masked }}")
    def read_and_validate_file(item: ScannedFile) -> Mapping[str, Any]:  # one task start per file
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.read_and_validate_file(settings, item, _as_of())

    @task(trigger_rule="none_failed")
    def document_validation(items: list[dict] | None) -> dict:
        """The night's validation pages, rendered from the GX results the file tasks kept (no suite
        runs again), beside loading; never raises (pages that cannot be written are logged)."""
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

        with _night() as (settings, run_id):
            return tasks.link(settings, run_id)

    @task(trigger_rule="none_failed", retries=0)
    def refresh_statuses(_linked: dict) -> dict:
        from rosterlink import tasks

        allow = bool(get_current_context()["params"].get("allow_mass_end"))
        with _night() as (settings, run_id):
            return tasks.refresh_statuses(settings, _as_of(), allow, run_id)

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

    # the night's workbooks: with several workers they are written at once
    @task(trigger_rule="none_failed")
    def write_feedback(scanned: list[ScannedFile], _followed: dict | None) -> dict:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            file_ids = tasks.night_file_ids(settings, run_id, scanned or [])
            return tasks.write_feedback(settings, _as_of(), file_ids)

    @task(trigger_rule="none_failed")
    def plan_town_workbooks(_followed: dict | None) -> list[TownBatch]:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.plan_town_workbooks(settings, _as_of(), run_id)

    @task(map_index_template="batch {{ task.op_kwargs['batch']['batch'] }}")
    def write_town_workbooks(batch: TownBatch) -> dict:  # a few batches, never one task per town
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.write_town_workbooks(settings, _as_of(), run_id, batch)

    @task(trigger_rule="none_failed")
    def write_pairing_summary(batches: list[dict] | None) -> dict:
        from rosterlink import tasks

        with _night() as (settings, run_id):
            return tasks.write_pairing_summary(settings, _as_of(), list(batches or []), run_id)

    @task(trigger_rule="none_failed")
    def write_change_log(_followed: dict | None) -> dict:
        from rosterlink import tasks

        with _night() as (settings, _):
            return tasks.write_change_log(settings, _as_of())

    @task(trigger_rule="none_failed")
    def finish_night(
        pairs: dict, followed: dict | None, books: list[dict | None], documented: dict | None
    ) -> dict:
        """Clears the staging table, records the night's figures, releases the night's lease."""
        from rosterlink import tasks

        written = {k: v for book in books for k, v in (book or {}).items()}
        summary = {"pairing": pairs, "followup": followed, "exports": written, "data_docs": documented}
        with _night(last=True) as (settings, run_id):
            tasks.clear_staging(settings)
            figures = tasks.finish_night(settings, run_id, summary)
        return tasks.night_result(settings, run_id, figures, written, documented)

    night = begin_night()
    scanned = scan_intake(night)
    validated = read_and_validate_file.expand(item=scanned)
    documented = document_validation(validated)
    pairs = rebuild_pairings(refresh_statuses(link_entities(load_files(validated))))
    followed = follow_through(pairs)
    towns = write_town_workbooks.expand(batch=plan_town_workbooks(followed))
    books = [write_feedback(scanned, followed), write_pairing_summary(towns), write_change_log(followed)]
    finish_night(pairs, followed, books, documented)


rosterlink_nightly()
