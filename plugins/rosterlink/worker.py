"""Celery settings for the night's workers: Airflow's own, plus the night's libraries imported once.

Under the CeleryExecutor on Linux, every task runs in a process that Airflow's task supervisor forks
from the Celery worker's pool process, so whatever the worker has imported a task has at no cost.
Airflow itself preloads a few of its modules that way (``on_celery_import_modules`` in the Celery
provider). A night's 40-file province run starts about a hundred task processes, and each one
imported pandas, SQLAlchemy and this package again (about 0.5 s of CPU); each ``validate_file``
also imported Great Expectations (about 1.9 s of CPU, because GX imports pyspark when it is
installed). Those imports are now done once, when the worker starts.

Point Airflow at it with ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=rosterlink.worker.CELERY_CONFIG``
(``deploy/docker-compose.yml`` and the Celery test clusters do). The configuration itself is
Airflow's default, unchanged: importing this module to read it is what registers the preload.
"""

from __future__ import annotations

import logging
import time

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import import_modules

log = logging.getLogger(__name__)

CELERY_CONFIG = DEFAULT_CELERY_CONFIG  # Airflow's own settings: the preload is all this module adds

# what the night's tasks import: the task functions and the libraries they reach for
PRELOAD = (
    "rosterlink.tasks",
    "rosterlink.intake.read",
    "rosterlink.intake.normalise",
    "rosterlink.validate.run",
    "rosterlink.warehouse.load",
    "rosterlink.link.night",
    "rosterlink.pairing.rebuild",
    "rosterlink.export.town_books",
    "python_calamine",
    "openpyxl",
    "xlsxwriter",
)


@import_modules.connect
def preload(*_args: object, **_kwargs: object) -> None:
    """Import the night's modules in the worker, before its pool forks (Celery's ``import_modules``
    signal). A module that cannot be imported is logged and skipped: the task will import it (and
    fail there, with its own message) as it always did."""
    import importlib

    started = time.process_time()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a preload must never stop a worker from starting
            log.warning("rosterlink worker: could not preload %s (%s)", name, type(exc).__name__)
    try:
        from rosterlink.validate.run import import_gx

        import_gx()  # with GX's analytics off, as the validate tasks import it
    except Exception as exc:  # noqa: BLE001
        log.warning("rosterlink worker: could not preload Great Expectations (%s)", type(exc).__name__)
    log.info(
        "rosterlink worker: the night's modules preloaded in %.1f s of CPU", time.process_time() - started
    )
