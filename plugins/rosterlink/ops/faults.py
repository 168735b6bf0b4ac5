"""Named failpoints, for the kill and full-disk tests (the technique of etcd's and TiKV's failpoints).

Production never sets ``ROSTERLINK_FAILPOINT``; then :func:`point` is a dictionary lookup and
nothing more. A test sets ``ROSTERLINK_FAILPOINT=load.mid=kill`` to SIGKILL the process at that
point (a task process dying mid-transaction), ``export.write=enospc`` to raise "no space left
on device" there, or ``link.mid=connreset`` to drop the connection there (a failure a retry cures).
"""

from __future__ import annotations

import errno
import os
import signal


def point(name: str) -> None:
    spec = os.environ.get("ROSTERLINK_FAILPOINT")
    if not spec:
        return
    where, _, action = spec.partition("=")
    if where != name:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    elif action == "connreset":
        raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))
    else:
        raise RuntimeError(f"failpoint {name}")
