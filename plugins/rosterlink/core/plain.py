"""Figures as a person reads them, for log lines and the CLI: never a Python dict or list."""

from __future__ import annotations

from collections.abc import Mapping


def counts(values: Mapping[str, int] | None) -> str:
    """``{'loaded': 7, 'rejected': 1}`` as ``8 (loaded 7, rejected 1)``; nothing as ``0``. The
    largest count first, ties by name, thousands separated."""
    if not values:
        return "0"
    parts = ", ".join(f"{k} {v:,}" for k, v in sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{sum(values.values()):,} ({parts})"
