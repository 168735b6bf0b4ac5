"""Row-level findings: why a row was rejected or flagged, in words a clerk can act on.

Errors are values where a row can fail: a :class:`Finding` names the sheet, the Excel row number
the clerk sees, the canonical field, a stable reason code and a Chinese message. Whole files that
cannot be read raise :class:`FileRejected` instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache

from rosterlink.core.paths import PACKAGE_CONFIG

ERROR = "error"
WARNING = "warning"


@lru_cache(maxsize=1)
def _messages() -> dict[str, dict[str, str]]:
    return json.loads((PACKAGE_CONFIG / "messages.json").read_text(encoding="utf-8"))


def message(code: str, **values: object) -> str:
    """The Chinese message for a reason code, filled with ``values`` (header, value, ...)."""
    template = _messages().get(code, {}).get("zh") or _messages()["unknown"]["zh"]
    try:
        return template.format(**values)
    except (KeyError, IndexError):
        return template


def severity(code: str) -> str:
    return _messages().get(code, {}).get("severity", ERROR)


@dataclass(frozen=True)
class Finding:
    sheet: str
    row_number: int  # as the clerk sees it in Excel (title and header rows counted) or the CSV line
    field: str  # canonical field name ("" for the row as a whole)
    reason_code: str
    message: str  # Chinese, ready for the clerk
    severity: str = ERROR
    value: str | None = None  # the offending value, already masked if it is personal data

    def as_dict(self) -> dict:
        return asdict(self)


class FileRejected(Exception):
    """A whole file is rejected: it cannot be opened, is unsafe, or holds no known roster."""

    def __init__(self, code: str, detail: str = "", **values: object) -> None:
        self.code = code
        self.detail = detail
        self.message_zh = message(code, **values)
        super().__init__(f"{code}: {self.message_zh}" + (f" ({detail})" if detail else ""))
