"""One night at a time: a lease in the warehouse that every task of a night holds.

The scheduler already runs one ``rosterlink_nightly`` at a time (``max_active_runs=1``), but the
CLI (``rosterlink nightly``) or a second Airflow deployment pointed at the same warehouse would
not know about it. So the night takes a lease in ``night_lock``: every task acquires it for its
run (re-entrant for the same run id: retries and later tasks of the night), refreshes it from a
background thread while it works, and the last task releases it. Another run is locked out with a
clear message while the lease is fresh. A lease nobody refreshed for ``stale_seconds`` (a killed
night) is taken over by the next run.

Acquisition is one conditional UPDATE (or an INSERT that may collide), so it is atomic on SQLite and
PostgreSQL alike without table locks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Iterator

import sqlalchemy as sa

from rosterlink.ops.errors import PermanentError
from rosterlink.warehouse import schema

log = logging.getLogger(__name__)

LOCK_NAME = "rosterlink_nightly"


def stale_seconds() -> float:
    return float(os.environ.get("ROSTERLINK_LOCK_STALE_SECONDS", "300"))


class NightLocked(PermanentError):
    """Another night holds the warehouse (no retry: the task fails at once, see :mod:`.errors`)."""


def now() -> dt.datetime:
    """UTC, naive, with microseconds (a lease is measured in seconds, not whole ones)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire(eng: sa.Engine, run_id: str, stale: float | None = None) -> None:
    """Take or refresh the lease for ``run_id``; raise :class:`NightLocked` if another run has it."""
    stale = stale_seconds() if stale is None else stale
    t = schema.night_lock
    moment = now()
    cutoff = moment - dt.timedelta(seconds=stale)
    with eng.begin() as conn:
        taken = conn.execute(
            t.update()
            .where(t.c.name == LOCK_NAME, sa.or_(t.c.run_id == run_id, t.c.heartbeat_at < cutoff))
            .values(run_id=run_id, holder=_holder(), heartbeat_at=moment)
        ).rowcount
    if taken:
        return
    try:
        with eng.begin() as conn:
            conn.execute(
                t.insert().values(
                    name=LOCK_NAME, run_id=run_id, holder=_holder(), acquired_at=moment, heartbeat_at=moment
                )
            )
        return
    except sa.exc.IntegrityError:
        pass
    with eng.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.name == LOCK_NAME)).first()
    if row is None or row.run_id == run_id:  # released or ours in the meantime
        return acquire(eng, run_id, stale)
    raise NightLocked(
        f"another night is running on this warehouse: run {row.run_id} (on {row.holder}) has held it since "
        f"{row.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last seen {row.heartbeat_at:%H:%M:%S} UTC. "
        f"This run stops without changing anything; if that night was killed, its lock is taken over "
        f"{stale:.0f} s after its last heartbeat."
    )


def release(eng: sa.Engine, run_id: str) -> None:
    t = schema.night_lock
    with eng.begin() as conn:
        conn.execute(t.delete().where(t.c.name == LOCK_NAME, t.c.run_id == run_id))


@contextlib.contextmanager
def held(
    eng: sa.Engine, run_id: str, stale: float | None = None, release_after: bool = False
) -> Iterator[None]:
    """Hold the lease for the duration of one task, refreshing it in the background.

    ``release_after`` (the night's last task) gives the lease up once the heartbeat has stopped.
    """
    stale = stale_seconds() if stale is None else stale
    acquire(eng, run_id, stale)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(stale / 4, 0.5)):
            try:
                acquire(eng, run_id, stale)
            except Exception as exc:  # noqa: BLE001 - the task itself will notice at its next step
                log.warning("night lock heartbeat failed: %s", type(exc).__name__)

    thread = threading.Thread(target=beat, name="rosterlink-night-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
    if release_after:
        release(eng, run_id)
