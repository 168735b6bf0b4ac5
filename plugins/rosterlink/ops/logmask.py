"""Masked log lines: no full ID number or phone from a file or sheet name reaches a task log.

rosterlink never logs a row value, but it logs file names (``ledger: file 民政局/...xlsx recorded``),
and offices name files after people. :func:`install` puts a handler on the ``rosterlink`` logger
that rewrites every record of the package (``rosterlink.*``) with :func:`masking.mask_text` before
the handlers above it (Airflow's task log, the terminal) format it. It emits nothing itself.
"""

from __future__ import annotations

import logging

from rosterlink.core.masking import mask_text


class MaskingHandler(logging.Handler):
    """Rewrites a record's message, masked; passes it on to the handlers above (emits nothing)."""

    def handle(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_text(record.getMessage()), None
        return True

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() does the work
        pass


def install() -> None:
    """Mask every record of the package from now on in this process (idempotent)."""
    package = logging.getLogger("rosterlink")
    if not any(isinstance(h, MaskingHandler) for h in package.handlers):
        package.addHandler(MaskingHandler())
