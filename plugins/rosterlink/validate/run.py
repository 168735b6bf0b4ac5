"""Validation of normalised rows with Great Expectations: which rows load, which go back.

Input: the ``SheetTable`` (for ``sheet``, ``roster``, ``headers`` and the raw ``frame``), the
normalised frame and the findings from :func:`rosterlink.intake.normalise.normalise_table`.
Output: :class:`Validation` with ``valid`` (the normalised rows that pass, same columns, in
order), ``rejected`` (error findings, one or more per rejected row) and ``warnings`` (findings on
rows that are loaded anyway).

Rejection policy
----------------
A row is rejected when a required field of its roster is empty or could not be normalised, or
when any ID number in the row is present but invalid (required or not); a bad optional value
(a phone that is no phone, an unparseable optional date, an unknown optional town) is set to
empty and only flagged as a warning, as are an unusual ID region code and a text value that
looks like a formula.

The policy lives in one place: the GX suites ``expectations/<roster>.json``. Each expectation's
``meta`` holds ``field``, ``reason_code`` and ``severity`` (``error`` rejects the row,
``warning`` flags it); GX's own ``severity`` is kept in step (``critical``/``warning``). The
suites are generated from ``config/rosters.json`` by :func:`build_suite`
(``python -m rosterlink.validate.run --write-suites``) and checked in; a test keeps them in sync.
Per field they hold:

- required fields: ``expect_column_values_to_not_be_null`` (``required_missing`` /
  ``id_missing``), error;
- every field: ``expect_column_values_to_be_null`` on the helper column ``_err_<field>``, which
  holds the normaliser's reason code where it had to drop a value; error for required fields
  and ID numbers, warning otherwise;
- checks on the normalised values themselves (defence in depth, same severity rule): ID regex
  ``^[1-9][0-9]{16}[0-9X]$``, towns in the suite parameter ``towns`` (from the district config
  at run time), enum codes in set, dates ``YYYY-MM-DD`` and (helper column ``_date_<field>``)
  between 1900-01-01 and the parameter ``today``, phone regex, names without digits/symbols,
  non-negative numbers; always warnings: ID region (helper ``_region_<field>``) in the
  parameter ``region_codes``, text not starting with ``= + - @``;
- conditional rules (:data:`CONDITIONAL_REQUIRED`, code because ``rosters.json`` has no place
  for them): a ``cadre_change`` row of type ``join`` must carry ``rank`` and ``unit``, written as
  GX ``row_condition`` objects (``{"type": "comparison", ...}``: the string form with
  ``condition_parser="pandas"`` works in 1.24 but is deprecated since 1.9).

Per failing (row, field) one finding is reported: the normaliser's specific one (e.g.
``id_bad_checksum``, ``id_numeric_cell``) when it dropped that value, else the expectation's
``reason_code``; its severity is the expectation's. Every row ends in ``valid`` or is named by
at least one error finding in ``rejected``, never both. Warnings are reported only for rows that
are loaded; normaliser findings that no expectation reproduced are passed on as warnings.

GX is imported lazily (about 3 s) and one ephemeral context per suite file is cached per
process; validating 1,500 rows then takes a fraction of a second.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from rosterlink.core import settings
from rosterlink.core.findings import ERROR, WARNING, Finding
from rosterlink.core.masking import mask_text
from rosterlink.core.spec import catalogue, district
from rosterlink.core.tables import SheetTable
from rosterlink.intake.normalise import enum_choices, is_blank, make_finding

if TYPE_CHECKING:
    from collections.abc import Sequence

ID_REGEX = r"^[1-9][0-9]{16}[0-9X]$"
DATE_REGEX = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
PHONE_REGEX = r"^(?:1[3-9][0-9]{9}|0[1-9][0-9]{8,10})$"
NAME_FORBIDDEN_REGEX = r"[0-9!-/:-@\[-`{-~]"  # ASCII digits and symbols anywhere
FORMULA_REGEX = r"^[=+\-@]"
EARLIEST_DATE = "1900-01-01"

CONDITIONAL_REQUIRED: dict[str, list[dict[str, Any]]] = {
    "cadre_change": [{"field": "change_type", "equals": "join", "required": ["rank", "unit"]}],
}
"""Fields required only when another field has a given (normalised) value."""

GX_SEVERITY = {ERROR: "critical", WARNING: "warning"}


class SuiteError(RuntimeError):
    """A suite could not run (missing column, broken expectation): a bug, not bad data."""


@dataclass
class Validation:
    valid: pd.DataFrame  # the normalised rows that pass (same columns)
    rejected: list[Finding] = field(default_factory=list)  # error findings; a row may have several
    warnings: list[Finding] = field(default_factory=list)  # rows still loaded, but flagged

    @property
    def rejected_rows(self) -> list[int]:
        """Excel row numbers of the rejected rows, ascending."""
        return sorted({f.row_number for f in self.rejected})


# --------------------------------------------------------------------------------------------
# suites: generated from rosters.json, checked in as JSON


def err_column(name: str) -> str:
    return f"_err_{name}"


def date_column(name: str) -> str:
    return f"_date_{name}"


def region_column(name: str) -> str:
    return f"_region_{name}"


def _expectation(
    kind: str, column: str, kwargs: dict[str, Any], *, field_name: str, code: str, level: str, **meta: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "kwargs": {"column": column, **kwargs},
        "meta": {"field": field_name, "reason_code": code, "severity": level, **meta},
        "severity": GX_SEVERITY[level],
    }


def _condition_zh(rule: dict[str, Any]) -> str:
    spec = catalogue().fields[rule["field"]]
    words = catalogue().enums[spec.enum][rule["equals"]] if spec.enum else (rule["equals"],)
    return f"“{spec.label}”为{'/'.join(words)}"


def build_suite(kind: str) -> dict[str, Any]:
    """The GX suite (as a JSON-ready dict) for a roster kind, from ``config/rosters.json``."""
    cat = catalogue()
    roster = cat.rosters[kind]
    exps: list[dict[str, Any]] = []
    for name in roster.fields:
        spec = cat.fields[name]
        required = name in roster.required
        level = ERROR if required or spec.type == "id_number" else WARNING
        common = {"field_name": name, "level": level}
        if required:
            code = "id_missing" if spec.type == "id_number" else "required_missing"
            exps.append(
                _expectation(
                    "expect_column_values_to_not_be_null", name, {}, field_name=name, code=code, level=ERROR
                )
            )
        exps.append(
            _expectation(
                "expect_column_values_to_be_null",
                err_column(name),
                {},
                code="value_invalid",
                source="normaliser",
                **common,
            )
        )
        if spec.type == "id_number":
            exps.append(
                _expectation(
                    "expect_column_values_to_match_regex",
                    name,
                    {"regex": ID_REGEX},
                    code="id_invalid",
                    **common,
                )
            )
            exps.append(
                _expectation(
                    "expect_column_values_to_be_in_set",
                    region_column(name),
                    {"value_set": {"$PARAMETER": "region_codes"}},
                    field_name=name,
                    code="id_region_unknown",
                    level=WARNING,
                )
            )
        elif spec.type == "town":
            exps.append(
                _expectation(
                    "expect_column_values_to_be_in_set",
                    name,
                    {"value_set": {"$PARAMETER": "towns"}},
                    code="town_unknown",
                    **common,
                )
            )
        elif spec.enum:
            exps.append(
                _expectation(
                    "expect_column_values_to_be_in_set",
                    name,
                    {"value_set": list(cat.enums[spec.enum])},
                    code="enum_invalid",
                    **common,
                )
            )
        elif spec.type == "date":
            exps.append(
                _expectation(
                    "expect_column_values_to_match_regex",
                    name,
                    {"regex": DATE_REGEX},
                    code="date_invalid",
                    **common,
                )
            )
            exps.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    date_column(name),
                    {"min_value": EARLIEST_DATE, "max_value": {"$PARAMETER": "today"}},
                    code="date_out_of_range",
                    **common,
                )
            )
        elif spec.type == "phone":
            exps.append(
                _expectation(
                    "expect_column_values_to_match_regex",
                    name,
                    {"regex": PHONE_REGEX},
                    code="phone_invalid",
                    **common,
                )
            )
        elif spec.type == "person_name":
            exps.append(
                _expectation(
                    "expect_column_values_to_not_match_regex",
                    name,
                    {"regex": NAME_FORBIDDEN_REGEX},
                    code="name_invalid",
                    **common,
                )
            )
        elif spec.type in ("int", "money"):
            exps.append(
                _expectation(
                    "expect_column_values_to_be_between",
                    name,
                    {"min_value": 0},
                    code=f"{spec.type}_invalid",
                    **common,
                )
            )
        elif spec.type == "code":
            exps.append(
                _expectation(
                    "expect_column_values_to_not_match_regex",
                    name,
                    {"regex": FORMULA_REGEX},
                    code="code_invalid",
                    **common,
                )
            )
        else:  # text
            exps.append(
                _expectation(
                    "expect_column_values_to_not_match_regex",
                    name,
                    {"regex": FORMULA_REGEX},
                    field_name=name,
                    code="text_formula",
                    level=WARNING,
                )
            )
    for rule in CONDITIONAL_REQUIRED.get(kind, []):
        condition = {
            "type": "comparison",
            "column": {"name": rule["field"]},
            "operator": "==",
            "parameter": rule["equals"],
        }
        for name in rule["required"]:
            if name in roster.required:
                continue
            when = {"row_condition": condition}
            exps.append(
                _expectation(
                    "expect_column_values_to_not_be_null",
                    name,
                    when,
                    field_name=name,
                    code="required_when",
                    level=ERROR,
                    condition=_condition_zh(rule),
                )
            )
            exps.append(
                _expectation(
                    "expect_column_values_to_be_null",
                    err_column(name),
                    when,
                    field_name=name,
                    code="value_invalid",
                    level=ERROR,
                    source="normaliser",
                )
            )
    return {
        "name": f"rosterlink.{kind}",
        "meta": {
            "roster": kind,
            "generated_by": "python -m rosterlink.validate.run --write-suites (from config/rosters.json)",
            "parameters": ["towns", "region_codes", "today"],
        },
        "expectations": exps,
    }


def suite_path(kind: str, expectations_dir: Path | None = None) -> Path:
    return Path(expectations_dir or settings.load().expectations_dir) / f"{kind}.json"


def suite_text(kind: str) -> str:
    """The exact file content written for a roster kind."""
    return json.dumps(build_suite(kind), ensure_ascii=False, indent=2) + "\n"


def write_suites(expectations_dir: Path | None = None, kinds: Sequence[str] | None = None) -> list[Path]:
    """Write ``<kind>.json`` for every roster kind (or ``kinds``); returns the paths written."""
    written = []
    for kind in kinds or catalogue().rosters:
        path = suite_path(kind, expectations_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(suite_text(kind), encoding="utf-8")
        written.append(path)
    return written


# --------------------------------------------------------------------------------------------
# running GX


_RUNNERS: dict[tuple[str, int, int], Any] = {}


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


def _runner(path: Path) -> Any:
    """A GX ValidationDefinition for the suite file, cached per (path, mtime, size)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _RUNNERS:
        gx = _gx()
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


def _failed_rows(result: dict[str, Any]) -> list[int]:
    rows: list[int] = []
    for item in result.get("unexpected_index_list") or []:
        value = item.get("_row") if isinstance(item, dict) else item
        if isinstance(value, (list, tuple)):
            rows.extend(int(v) for v in value)
        elif value is not None:
            rows.append(int(value))
    return rows


def _gx_frame(roster_kind: str, frame: pd.DataFrame, dropped: dict[tuple[int, str], str]) -> pd.DataFrame:
    """The normalised frame plus helper columns ``_err_*``, ``_date_*`` and ``_region_*``."""
    cat = catalogue()
    roster = cat.rosters[roster_kind]
    rows = [int(r) for r in frame["_row"]]
    data: dict[str, pd.Series] = {"_row": pd.Series(rows, dtype="int64")}
    for name in roster.fields:
        values = list(frame[name]) if name in frame.columns else [None] * len(frame)
        values = [None if is_blank(v) else v for v in values]
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
    table: SheetTable, frame: pd.DataFrame, findings: list[Finding], expectations_dir: Path | None = None
) -> Validation:
    """Run ``expectations/<table.roster>.json`` on the normalised ``frame``; split rows.

    ``frame``: ``_row`` plus one column per roster field, as returned by ``normalise_table``;
    ``findings``: the normaliser's findings for it. ``Validation.valid`` is the subset of
    ``frame`` that passes (same columns, order and index labels). Raises :class:`SuiteError` if
    the suite cannot run and ``ValueError`` if ``_row`` is not unique.
    """
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
        "today": dt.date.today().isoformat(),
    }
    result = runner.run(
        batch_parameters={"dataframe": _gx_frame(table.roster, frame, dropped)},
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
        failed = _failed_rows(res.result or {})
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
        if row in raw_position and name in raw_frame.columns:
            return raw_frame[name].iloc[raw_position[row]]
        return frame[name].iloc[position[row]] if name in frame.columns else None

    def generic(row: int, name: str, code: str, level: str, meta: dict[str, Any]) -> Finding:
        spec = cat.fields[name]
        extra: dict[str, Any] = {"towns": "、".join(district().towns)}
        if spec.enum:
            extra["choices"] = enum_choices(spec.enum)
        if meta.get("condition"):
            extra["condition"] = meta["condition"]
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
    return Validation(valid=valid, rejected=sorted(errors, key=order), warnings=warnings)


# --------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rosterlink.validate.run", description="Write or check the GX suites in expectations/."
    )
    parser.add_argument("--write-suites", action="store_true", help="write expectations/<roster>.json")
    parser.add_argument("--check", action="store_true", help="exit 1 if a checked-in suite is out of date")
    parser.add_argument("--dir", type=Path, default=None, help="expectations folder (default: settings)")
    args = parser.parse_args(argv)
    if args.write_suites:
        for path in write_suites(args.dir):
            print(path)
        return 0
    if args.check:
        stale = [
            k
            for k in catalogue().rosters
            if not suite_path(k, args.dir).exists()
            or suite_path(k, args.dir).read_text(encoding="utf-8") != suite_text(k)
        ]
        for kind in stale:
            print(f"out of date: {suite_path(kind, args.dir)}")
        return 1 if stale else 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
