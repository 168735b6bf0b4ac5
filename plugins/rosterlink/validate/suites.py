"""The GX suites ``expectations/<roster>.json``: built from ``config/rosters.json``, written, checked.

:func:`build_suite` is the one statement of which rows a roster rejects and which it only flags;
:func:`write_suites` writes the checked-in JSON (``python -m rosterlink.validate.suites
--write-suites``; ``--check`` exits 1 when one is out of date). Running a suite over a sheet is
:mod:`rosterlink.validate.run`.

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
(``python -m rosterlink.validate.suites --write-suites``) and checked in; a test keeps them in sync.
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
  parameter ``region_codes``, text not starting with ``= + - @``; text no longer than the
  field's ``max_length`` (``text_too_long``, error: the warehouse keeps no more);
- conditional rules (:data:`CONDITIONAL_REQUIRED`, code because ``rosters.json`` has no place
  for them): a ``cadre_change`` row of type ``join`` must carry ``rank`` and ``unit``, written as
  GX ``row_condition`` objects (``{"type": "comparison", ...}``: the string form with
  ``condition_parser="pandas"`` works in 1.24 but is deprecated since 1.9).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosterlink.core import settings
from rosterlink.core.findings import ERROR, WARNING
from rosterlink.core.spec import catalogue

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
        if spec.max_length:
            # the warehouse keeps this many characters (a VARCHAR on PostgreSQL): a longer value
            # rejects its row, the same on every engine
            exps.append(
                _expectation(
                    "expect_column_value_lengths_to_be_between",
                    name,
                    {"max_value": spec.max_length},
                    field_name=name,
                    code="text_too_long",
                    level=ERROR,
                    max_length=spec.max_length,
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
            "generated_by": "python -m rosterlink.validate.suites --write-suites (from config/rosters.json)",
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


# --------------------------------------------------------------------------------------------
# command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rosterlink.validate.suites",
        description="Write or check the GX suites in expectations/.",
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
