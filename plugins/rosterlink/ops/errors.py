"""Which failures a retry can cure, and which it cannot.

A task of the night is retried (``ROSTERLINK_TASK_RETRIES`` times, ``ROSTERLINK_RETRY_DELAY_SECONDS``
apart) because a dropped connection or a server restarting comes back a minute later. A bad date,
a refused login, a missing or misplaced folder, or a night the mass-end guard refused are the same
a minute later: waiting only delays the alert. :func:`permanent` tells them apart; the DAG fails
such a task at once (Airflow's ``AirflowFailException``: no retry) with :func:`reason` as its
message. Anything not known to be permanent keeps its retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

# a folder that is missing, is a file, or cannot be written: the same on the next attempt
PERMANENT_OS_ERRORS: tuple[type[OSError], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    FileExistsError,
    PermissionError,
)

# what a database server or driver says when it refuses the login or the database is not there
REFUSED_CONNECTION = (
    "password authentication failed",
    "no password supplied",
    "role ",  # role "x" does not exist
    "does not exist",  # database "x" does not exist
    "pg_hba.conf",
    "access denied",
    "unable to open database file",
    "file is not a database",
)


class PermanentError(Exception):
    """A failure that retrying cannot cure (the night's settings or inputs must change first)."""


def permanent(exc: BaseException) -> bool:
    """True when retrying the task that raised ``exc`` cannot help."""
    if isinstance(exc, (PermanentError, *PERMANENT_OS_ERRORS)):
        return True
    try:
        import sqlalchemy as sa
    except ImportError:  # pragma: no cover - the package depends on SQLAlchemy
        return False
    if isinstance(exc, sa.exc.ArgumentError | sa.exc.NoSuchModuleError):  # an unreadable warehouse URL
        return True
    if isinstance(exc, sa.exc.OperationalError):
        text = str(getattr(exc, "orig", None) or exc).lower()
        return any(words in text for words in REFUSED_CONNECTION)
    return False


def reason(exc: BaseException) -> str:
    """The failure in one masked line (type and first line of its message; never a full ID or phone)."""
    from rosterlink.core.masking import mask_text

    cause = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    return mask_text(f"{type(cause).__name__}: {first}" if first else type(cause).__name__)[:500]


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """Inside an Airflow task: a permanent failure becomes ``AirflowFailException`` (the task fails
    now, its retries unused) with the masked one-line reason; anything else is raised as it is."""
    try:
        yield
    except Exception as exc:
        if not permanent(exc):
            raise
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"not retried: {reason(exc)}") from None
