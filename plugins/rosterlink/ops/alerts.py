"""Alerting: what happens when a task of the night fails for good.

Airflow calls :func:`night_failed` as the tasks' ``on_failure_callback`` (after the task's retries
are used up). It

- writes one line to the task log naming the night, the task and the exception type;
- appends one JSON line to the data team's alert log ``$ROSTERLINK_ALERT_DIR/alerts.jsonl``
  (default ``data/alerts/``), which a monitoring agent can tail;
- POSTs the same JSON to ``$ROSTERLINK_ALERT_WEBHOOK`` when it is set (a chat or paging webhook;
  a webhook that is down is logged, never raised);
- marks the night failed in the warehouse (when reachable) and releases the night's lease.

Nothing it sends includes row values: only the night, the task, the exception type and a masked,
shortened message.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def alert_dir() -> Path:
    from rosterlink.core.paths import DATA_DIR

    return Path(os.environ.get("ROSTERLINK_ALERT_DIR") or DATA_DIR / "alerts")


def alert_payload(context: dict, task_id: str, exc: BaseException | None) -> dict:
    """The alert for a failed task: night, task, error type and masked message (never a row value)."""
    from rosterlink.core.masking import mask_text

    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dag_id": getattr(context.get("dag"), "dag_id", None) or "rosterlink_nightly",
        "run_id": context.get("run_id"),
        "task_id": task_id,
        "try_number": getattr(context.get("task_instance") or context.get("ti"), "try_number", None),
        "error_type": type(exc).__name__ if exc is not None else None,
        "error": mask_text(str(exc))[:500] if exc is not None else None,
    }


def send(alert: dict) -> None:
    """Append the alert to the alert log and POST it to the webhook, if one is configured."""
    line = json.dumps(alert, ensure_ascii=False, sort_keys=True)
    try:
        folder = alert_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "alerts.jsonl").open("a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError as err:
        log.error("could not write the alert log: %s", type(err).__name__)
    url = os.environ.get("ROSTERLINK_ALERT_WEBHOOK")
    if url:
        try:
            import httpx

            httpx.post(
                url, content=line.encode("utf-8"), headers={"Content-Type": "application/json"}, timeout=10
            ).raise_for_status()
        except Exception as err:  # noqa: BLE001 - an alert channel that is down must not hide the failure
            log.error("could not post the alert to the webhook: %s", type(err).__name__)


def task_retrying(context: dict) -> None:
    """A task failed and will be tried again: one line saying which attempt failed, how long the
    night waits, and why (masked). Airflow calls it as the tasks' ``on_retry_callback``; the
    ``rosterlink nightly`` command shows it among its progress lines."""
    from rosterlink.ops.errors import reason

    ti = context.get("task_instance") or context.get("ti")
    task = context.get("task")
    delay = getattr(task, "retry_delay", None)
    seconds = int(delay.total_seconds()) if delay is not None else 0
    exc = context.get("exception")
    log.warning(
        "%s: attempt %s failed, retrying in %d s (%s)",
        getattr(ti, "task_id", "?"),
        getattr(ti, "try_number", "?"),
        seconds,
        reason(exc) if exc is not None else "no exception",
    )


def night_failed(context: dict) -> None:
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    task_id = getattr(ti, "task_id", "?")
    log.error("rosterlink night %s failed in task %s: %s", context.get("run_id"), task_id, type(exc).__name__)
    send(alert_payload(context, task_id, exc))
    try:
        from rosterlink import warehouse
        from rosterlink.core import settings
        from rosterlink.core.masking import mask_text
        from rosterlink.ops import nightlock
        from rosterlink.warehouse import schema

        params = context.get("params") or {}
        cfg = settings.load(**{k: params.get(k) for k in ("intake_dir", "warehouse_url", "export_dir")})
        eng = warehouse.engine(cfg.warehouse_url)
        n = schema.night_run
        with eng.begin() as conn:
            conn.execute(
                n.update()
                .where(n.c.run_id == context.get("run_id"))
                .values(
                    status="failed",
                    finished_at=warehouse.now(),
                    summary=warehouse.dumps({"failed_task": task_id, "error": mask_text(str(exc))[:2000]}),
                )
            )
        if (run_id := context.get("run_id")) is not None:
            nightlock.release(eng, run_id)  # only ever this run's own lease
    except Exception as err:  # noqa: BLE001 - the warehouse may be the thing that is down
        log.error("could not record the failure in the warehouse: %s", type(err).__name__)
