"""Validation of normalised rows with Great Expectations: which rows load, which go back.

Input: the ``SheetTable`` (for ``sheet``, ``roster``, ``headers`` and the raw ``frame``), the
normalised frame and the findings from :func:`rosterlink.intake.normalise.normalise_table`.
Output: :class:`Validation` with ``valid`` (the normalised rows that pass, same columns, in
order), ``rejected`` (error findings, one or more per rejected row) and ``warnings`` (findings on
rows that are loaded anyway).

Which rows are rejected and which only flagged is decided by the suites (rejection policy:
:mod:`rosterlink.validate.suites`); this module runs them.

Per failing (row, field) one finding is reported: the normaliser's specific one (e.g.
``id_bad_checksum``, ``id_numeric_cell``) when it dropped that value, else the expectation's
``reason_code``; its severity is the expectation's. Every row ends in ``valid`` or is named by
at least one error finding in ``rejected``, never both. Warnings are reported only for rows that
are loaded; normaliser findings that no expectation reproduced are passed on as warnings.

GX is imported lazily (about 3 s) and one ephemeral context per suite file is cached per
process; validating 1,500 rows then takes a fraction of a second.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rosterlink.core.findings import ERROR, WARNING, Finding
from rosterlink.core.masking import mask_text
from rosterlink.core.spec import catalogue, district
from rosterlink.core.tables import SheetTable
from rosterlink.intake.normalise import enum_choices, is_blank, make_finding
from rosterlink.validate.suites import date_column, err_column, region_column, suite_path

if TYPE_CHECKING:
    pass


class SuiteError(RuntimeError):
    """A suite could not run (missing column, broken expectation): a bug, not bad data."""


@dataclass
class Validation:
    """A sheet's rows split: those that load, the error findings of those that go back, the warnings."""

    valid: pd.DataFrame  # the normalised rows that pass (same columns)
    rejected: list[Finding] = field(default_factory=list)  # error findings; a row may have several
    warnings: list[Finding] = field(default_factory=list)  # rows still loaded, but flagged
    # GX's ExpectationSuiteValidationResult as JSON, row numbers only (:func:`kept_result`): what
    # the night's Data Docs are built from (None for an empty sheet, which no suite ran on)
    gx_result: dict[str, Any] | None = None

    @property
    def rejected_rows(self) -> list[int]:
        """Excel row numbers of the rejected rows, ascending."""
        return sorted({f.row_number for f in self.rejected})


# --------------------------------------------------------------------------------------------
# running GX


_RUNNERS: dict[tuple[str, int, int], Any] = {}


def import_gx() -> Any:
    """Great Expectations, imported when a suite first runs (about 3 s), with analytics off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _runner(path: Path) -> Any:
    """A GX ValidationDefinition for the suite file, cached per (path, mtime, size)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _RUNNERS:
        gx = import_gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        with path.open(encoding="utf-8") as f:
            suite = context.suites.add(gx.ExpectationSuite(**json.load(f)))
        batch = (
            context.data_sources.add_pandas("rosterlink")
            .add_dataframe_asset("rows")
            .add_batch_definition_whole_dataframe("whole")
        )
        _RUNNERS[key] = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"validate:{suite.name}", data=batch, suite=suite)
        )
    return _RUNNERS[key]


RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": ["_row"],
    "exclude_unexpected_values": True,  # only row numbers come back, never cell values
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}


_VALUE_KEYS = (
    "unexpected_list",
    "partial_unexpected_list",
    "partial_unexpected_counts",
    "unexpected_index_query",
)


def kept_result(result: Any) -> dict[str, Any]:
    """GX's suite validation result as JSON, with every list that could carry a cell value removed
    (``exclude_unexpected_values`` already keeps them out; this makes sure): row numbers only."""
    data = result.to_json_dict()
    for res in data.get("results") or []:
        detail = res.get("result")
        if isinstance(detail, dict):
            for key in _VALUE_KEYS:
                detail.pop(key, None)
    return data


def _raised(exception_info: Any) -> str | None:
    """The exception message if the expectation could not run, else None."""
    if not isinstance(exception_info, dict):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message") or "exception")
    for value in exception_info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "exception")
    return None


def failed_rows(result: dict[str, Any]) -> list[int]:
    """The row numbers (``_row``) an expectation's COMPLETE result lists as unexpected."""
    rows: list[int] = []
    for item in result.get("unexpected_index_list") or []:
        value = item.get("_row") if isinstance(item, dict) else item
        if isinstance(value, (list, tuple)):
            rows.extend(int(v) for v in value)
        elif value is not None:
            rows.append(int(value))
    return rows


def gx_frame(roster_kind: str, frame: pd.DataFrame, dropped: dict[tuple[int, str], str]) -> pd.DataFrame:
    """The normalised frame plus helper columns ``_err_*``, ``_date_*`` and ``_region_*``."""
    cat = catalogue()
    roster = cat.rosters[roster_kind]
    rows = [int(r) for r in frame["_row"]]
    data: dict[str, pd.Series] = {"_row": pd.Series(rows, dtype="int64")}
    for name in roster.fields:
        values = list(frame[name]) if name in frame.columns else [None] * len(frame)
        values = [None if v is None or is_blank(v) else v for v in values]
        data[name] = pd.Series(values, dtype=object)
        data[err_column(name)] = pd.Series([dropped.get((r, name)) for r in rows], dtype=object)
        spec = cat.fields[name]
        if spec.type == "date":
            data[date_column(name)] = pd.Series([_as_date(v) for v in values], dtype=object)
        elif spec.type == "id_number":
            data[region_column(name)] = pd.Series(
                [v[:6] if isinstance(v, str) and len(v) >= 6 else None for v in values], dtype=object
            )
    return pd.DataFrame(data)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None  # the regex expectation reports it
    return None


def validate_table(
    table: SheetTable,
    frame: pd.DataFrame,
    findings: list[Finding],
    expectations_dir: Path | None = None,
    today: dt.date | None = None,
) -> Validation:
    """Run ``expectations/<table.roster>.json`` on the normalised ``frame``; split rows.

    ``frame``: ``_row`` plus one column per roster field, as returned by ``normalise_table``;
    ``findings``: the normaliser's findings for it. ``Validation.valid`` is the subset of
    ``frame`` that passes (same columns, order and index labels). Raises :class:`SuiteError` if
    the suite cannot run and ``ValueError`` if ``_row`` is not unique. ``today``: the night's
    ``as_of`` (default: the machine's date), the latest date a row may carry.
    """
    today = today or dt.date.today()
    cat = catalogue()
    roster = cat.rosters[table.roster]
    rows = [int(r) for r in frame["_row"]]
    if len(set(rows)) != len(rows):
        raise ValueError("validate_table: _row must be unique within a sheet")
    if not rows:
        return Validation(valid=frame.copy(), rejected=[], warnings=[])

    field_order = {name: i for i, name in enumerate(roster.fields)}
    position = {r: i for i, r in enumerate(rows)}
    normaliser: dict[tuple[int, str], Finding] = {}
    dropped: dict[tuple[int, str], str] = {}
    for f in findings:
        if f.row_number not in position or f.field not in field_order:
            continue
        normaliser.setdefault((f.row_number, f.field), f)
        value = frame[f.field].iloc[position[f.row_number]] if f.field in frame.columns else None
        if is_blank(value):
            dropped.setdefault((f.row_number, f.field), f.reason_code)

    path = suite_path(table.roster, expectations_dir)
    runner = _runner(path)
    params = {
        "towns": list(district().towns),
        "region_codes": list(district().known_region_codes),
        "today": today.isoformat(),
    }
    result = runner.run(
        batch_parameters={"dataframe": gx_frame(table.roster, frame, dropped)},
        expectation_parameters=params,
        result_format=RESULT_FORMAT,
    )

    # (row, field) -> [(severity, code, meta)] in suite order
    failures: dict[tuple[int, str], list[tuple[str, str, dict[str, Any]]]] = {}
    for res in result.results:
        config = res.expectation_config
        meta = dict(config.meta or {})
        problem = _raised(res.exception_info)
        if problem:
            raise SuiteError(
                f"{path.name}: {config.type} on {config.kwargs.get('column')} could not run: "
                f"{mask_text(problem)[:300]}"
            )
        if res.success:
            continue
        level = meta.get("severity", ERROR)
        failed = failed_rows(res.result or {})
        if not failed and level == ERROR:
            raise SuiteError(f"{path.name}: {config.type} failed without row numbers (not a row check)")
        name = meta.get("field") or config.kwargs.get("column")
        for row in failed:
            failures.setdefault((row, name), []).append((level, meta.get("reason_code", "unknown"), meta))

    raw_frame = table.frame
    raw_position: dict[int, int] = {}
    if "_row" in raw_frame.columns:
        raw_position = {int(r): i for i, r in enumerate(raw_frame["_row"])}

    def raw_value(row: int, name: str) -> Any:
        if row in raw_position and raw_frame is not None and name in raw_frame.columns:
            return raw_frame[name].iloc[raw_position[row]]
        return frame[name].iloc[position[row]] if name in frame.columns else None

    def generic(row: int, name: str, code: str, level: str, meta: dict[str, Any]) -> Finding:
        spec = cat.fields[name]
        extra: dict[str, Any] = {"towns": "、".join(district().towns), "as_of": today.isoformat()}
        if spec.enum:
            extra["choices"] = enum_choices(spec.enum)
        if meta.get("condition"):
            extra["condition"] = meta["condition"]
        if meta.get("max_length"):
            extra["max"] = meta["max_length"]
        raw = raw_value(row, name)
        extra["length"] = len(str(raw)) if raw is not None else 0
        return make_finding(table, row, name, code, raw, extra, level=level)

    rejected_rows: set[int] = set()
    errors: list[Finding] = []
    flagged: list[Finding] = []
    used: set[tuple[int, str]] = set()
    for (row, name), items in failures.items():
        nf = normaliser.get((row, name))
        error_items = [item for item in items if item[0] == ERROR]
        if error_items:
            rejected_rows.add(row)
            if nf is not None and (row, name) in dropped:
                errors.append(replace(nf, severity=ERROR))
                used.add((row, name))
            else:
                _, code, meta = error_items[0]
                errors.append(generic(row, name, code, ERROR, meta))
            continue
        seen: set[str] = set()
        for _, code, meta in items:
            if nf is not None and (meta.get("source") == "normaliser" or nf.reason_code == code):
                finding = replace(nf, severity=WARNING)
                used.add((row, name))
            else:
                finding = generic(row, name, code, WARNING, meta)
            if finding.reason_code not in seen:
                seen.add(finding.reason_code)
                flagged.append(finding)
    for key, nf in normaliser.items():
        if key not in used and key not in failures:
            flagged.append(replace(nf, severity=WARNING))

    def order(f: Finding) -> tuple[int, int, str]:
        return (f.row_number, field_order.get(f.field, len(field_order)), f.reason_code)

    warnings = sorted((f for f in flagged if f.row_number not in rejected_rows), key=order)
    keep = [r not in rejected_rows for r in rows]
    valid = frame.loc[keep]
    return Validation(
        valid=valid, rejected=sorted(errors, key=order), warnings=warnings, gx_result=kept_result(result)
    )
