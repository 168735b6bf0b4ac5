"""Small JSON state files the night keeps beside what it writes (the town workbooks' records, the
review workbook's digest): read as a dict whatever state they are in, written all at once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_dict(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when the file is missing, unreadable or not an object (a
    state file that cannot be read is no state: what depends on it is done again)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_atomic(path: Path, value: dict[str, Any], *, sort_keys: bool = False) -> None:
    """``value`` as JSON at ``path``, replaced at once through a temporary file beside it (a reader
    never sees half of it); the folder is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".~{path.name}")
    tmp.write_text(json.dumps(value, ensure_ascii=False, sort_keys=sort_keys), encoding="utf-8")
    os.replace(tmp, path)
