"""Alerting: what happens when a task of the night fails for good.

Airflow calls :func:`night_failed` as the tasks' ``on_failure_callback``. It marks the night failed
in the warehouse (when reachable) and writes one line to the task log naming the task and the
exception type. It never includes row values: exceptions raised by this package carry masked text.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def night_failed(context: dict) -> None:
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    task_id = getattr(ti, "task_id", "?")
    log.error("rosterlink night %s failed in task %s: %s", context.get("run_id"), task_id, type(exc).__name__)
    try:
        import sqlalchemy as sa

        from rosterlink import nightlock, schema, settings, warehouse
        from rosterlink.masking import mask_text

        params = context.get("params") or {}
        cfg = settings.load(**{k: params.get(k) for k in ("intake_dir", "warehouse_url", "export_dir")})
        eng = warehouse.engine(cfg.warehouse_url)
        n = schema.night_run
        with eng.begin() as conn:
            conn.execute(n.update().where(n.c.run_id == context.get("run_id")).values(
                status="failed", finished_at=warehouse.now(),
                summary=warehouse.dumps({"failed_task": task_id, "error": mask_text(str(exc))[:2000]})))
        nightlock.release(eng, context.get("run_id"))  # only ever this run's own lease
    except Exception as err:  # noqa: BLE001 - the warehouse may be the thing that is down
        log.error("could not record the failure in the warehouse: %s", type(err).__name__)
