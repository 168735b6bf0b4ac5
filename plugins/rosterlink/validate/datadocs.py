"""The night's validation reports ("Data Docs"): static HTML pages built from the GX results the
night's file tasks kept, readable offline, under ``<export_dir>/data_docs/<YYYY-MM-DD>/``.

The suites run once, in the validation half of the ``read_and_validate_file`` tasks (one per
file; :mod:`rosterlink.validate.run`, real Great Expectations ``ValidationDefinition`` runs); each
keeps its file's ``ExpectationSuiteValidationResult`` JSON (row numbers only, never a cell value)
with :func:`keep` in ``<export_dir>/data_docs/.results/file<id>.json``. :func:`build_night`
renders those results, without running any suite again, into:

- ``index.html``: one line per validated sheet (department, file, sheet, roster, rows, rows
  failing an error / a warning expectation, expectations met, a status in words and an inline
  SVG mark) with a "failed only" filter (a checkbox and CSS: no script at all);
- ``sheets/file<id>-<n>.html``: one page per sheet, each expectation in Chinese on the column as
  the clerk wrote its header (or the field's Chinese name), its status, the number of rows that
  failed it and the first row numbers, with the same filter;
- ``results.json``: the figures of the index, for tools.

The pages carry no URL at all (no font, script or stylesheet from outside; the CSS is inline):
they render the same with no network. File and sheet names are masked (:func:`mask_text`) on the
pages; page file names hold only file ids. A site is built in a ``.building-*`` folder beside the
target and swapped in whole; leftovers of a build that was killed are removed by the next build.
The last ``KEEP_NIGHTS`` nights are kept, and kept results for as many days. ``build_night`` never
raises: a night does not fail because its documentation could not be written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core.findings import ERROR
from rosterlink.core.masking import mask_text
from rosterlink.core.spec import catalogue
from rosterlink.ops import faults
from rosterlink.warehouse import schema

if TYPE_CHECKING:
    import jinja2

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

DOCS_DIR = "data_docs"
RESULTS_DIR = ".results"
KEEP_NIGHTS = 60
EXAMPLE_ROWS = 10  # row numbers shown per failed expectation
TEMPLATES_DIR = Path(__file__).parent / "templates"
_NIGHT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_LEFTOVER = re.compile(r"^\.(building|old)-")


def docs_root(export_dir: Path | str) -> Path:
    return Path(export_dir) / DOCS_DIR


def results_dir(export_dir: Path | str) -> Path:
    """Where the validate tasks keep their GX results: ``<export_dir>/data_docs/.results``."""
    return docs_root(export_dir) / RESULTS_DIR


def night_dir(export_dir: Path | str, as_of: dt.date | str) -> Path:
    """``<export_dir>/data_docs/<YYYY-MM-DD>``; refuses anything that is not a date."""
    name = as_of.isoformat() if isinstance(as_of, dt.date) else str(as_of)
    if not _NIGHT.match(name):
        raise ValueError("night must be YYYY-MM-DD")
    return docs_root(export_dir) / name


def nights_with_docs(export_dir: Path | str) -> list[str]:
    root = docs_root(export_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _NIGHT.match(p.name) and (p / "index.html").is_file())


# --------------------------------------------------------------------------------------------
# the validate tasks' results, kept


def _kept_path(directory: Path, file_id: int) -> Path:
    return directory / f"file{int(file_id):06d}.json"


def keep(directory: Path, item: dict[str, Any], sheets: list[dict[str, Any]]) -> Path:
    """Keep one file's validation results for the night's pages (replaces the file's earlier ones).

    ``item``: the validate task's file (``file_id``, ``department``, ``file_name``); ``sheets``:
    per sheet ``sheet``, ``roster``, ``headers`` (field -> header as written), ``rows`` and
    ``result`` (:func:`rosterlink.validate.run.kept_result`: GX's JSON, row numbers only)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = _kept_path(directory, item["file_id"])
    data = {  # names masked here already: nothing below needs them whole
        "file_id": int(item["file_id"]),
        "department": item.get("department"),
        "file_name": mask_text(item.get("file_name") or ""),
        "sheets": [{**s, "sheet": mask_text(s.get("sheet") or "")} for s in sheets],
    }
    fd, tmp = tempfile.mkstemp(prefix=".keep-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, default=str)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _read_kept(directory: Path, file_id: int) -> dict[str, Any] | None:
    path = _kept_path(directory, file_id)
    try:
        with path.open(encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data


# --------------------------------------------------------------------------------------------
# GX results -> what the pages show


@dataclass
class Check:
    """One expectation of a sheet's suite, as a clerk reads it."""

    column: str  # the header as written in the file, or the field's Chinese name
    field_label: str  # the field's Chinese name (shown when the header differs)
    rule: str  # what is expected, in Chinese
    severity: str  # error | warning
    state: str  # ok | warn | bad
    unexpected: int = 0
    percent: float = 0.0
    examples: list[int] = field(default_factory=list)
    expectation: str = ""  # GX's expectation type, for the technical reader


@dataclass
class SheetResult:
    file_id: int
    department: str
    file_name: str  # masked
    sheet: str  # masked
    roster: str
    rows: int
    error_rows: int = 0
    warning_rows: int = 0
    evaluated: int = 0
    successful: int = 0
    page: str | None = None  # the sheet's page, relative to the site
    failed: list[dict[str, Any]] = field(default_factory=list)  # expectation, field, code, severity, rows

    @property
    def state(self) -> str:
        if self.error_rows:
            return "bad"
        return "warn" if self.successful < self.evaluated else "ok"


def _rows(result: dict[str, Any]) -> list[int]:
    from rosterlink.validate import run as validate

    return validate.failed_rows(result)  # the same reading of GX's row lists as the validate task


_ENUM_RULE = "取值须为：{choices}"
_RULES: dict[str, str] = {
    "required_missing": "必填，不能为空",
    "id_missing": "必填，不能为空",
    "value_invalid": "能识别为有效的值（整理时无法识别、只得置空的值记为不符）",
    "name_invalid": "是真实姓名：不含数字或符号",
    "id_invalid": "是 18 位身份证号（前 17 位数字，末位数字或 X）",
    "id_region_unknown": "身份证号前 6 位是本地区已知的地区码",
    "town_unknown": "是本区的镇街之一：{towns}",
    "date_invalid": "是可识别的日期（年-月-日）",
    "date_out_of_range": "日期不早于 1900-01-01，不晚于今天",
    "phone_invalid": "是 11 位手机号或带区号的固定电话",
    "int_invalid": "是不小于 0 的整数",
    "money_invalid": "是不小于 0 的金额（元）",
    "code_invalid": "是有效的编号",
    "text_formula": "不以 =、+、-、@ 开头（防止被当作公式）",
}


def _rule(kind: str, code: str, name: str | None, meta: dict[str, Any]) -> str:
    from rosterlink.core.spec import district
    from rosterlink.intake.normalise import enum_choices

    cat = catalogue()
    spec = cat.fields.get(name or "")
    if kind == "expect_column_values_to_not_be_null":
        text = "必填，不能为空"
    elif code == "enum_invalid" and spec is not None and spec.enum:
        text = _ENUM_RULE.format(choices=enum_choices(spec.enum))
    elif code in _RULES:
        text = _RULES[code].format(towns="、".join(district().towns))
    else:
        text = code or kind
    if meta.get("condition"):
        text += f"（条件：{meta['condition']}）"
    return text


def _checks(result: dict[str, Any], headers: dict[str, str]) -> tuple[list[Check], SheetResult]:
    """The expectations of one GX suite result, and the sheet's figures (file fields left blank)."""
    cat = catalogue()
    figures = SheetResult(0, "", "", "", "", 0)
    stats = result.get("statistics") or {}
    figures.evaluated = int(stats.get("evaluated_expectations") or 0)
    figures.successful = int(stats.get("successful_expectations") or 0)
    error_rows: set[int] = set()
    warning_rows: set[int] = set()
    checks = []
    for res in result.get("results") or []:
        config = res.get("expectation_config") or {}
        meta = dict(config.get("meta") or {})
        kwargs = config.get("kwargs") or {}
        name = meta.get("field") or kwargs.get("column")
        spec = cat.fields.get(name or "")
        label = spec.label if spec is not None else str(name)
        severity = meta.get("severity", ERROR)
        detail = res.get("result") or {}
        rows = sorted(set(_rows(detail)))
        if not res.get("success"):
            (error_rows if severity == ERROR else warning_rows).update(rows)
            figures.failed.append(
                {
                    "expectation": config.get("type"),
                    "field": name,
                    "reason_code": meta.get("reason_code"),
                    "severity": severity,
                    "rows": len(rows),
                }
            )
        state = "ok" if res.get("success") else ("bad" if severity == ERROR else "warn")
        checks.append(
            Check(
                column=mask_text(headers.get(name or "") or label),
                field_label=label,
                rule=_rule(str(config.get("type")), str(meta.get("reason_code") or ""), name, meta),
                severity=severity,
                state=state,
                unexpected=int(detail.get("unexpected_count") or len(rows)) if state != "ok" else 0,
                percent=float(detail.get("unexpected_percent") or 0.0) if state != "ok" else 0.0,
                examples=rows[:EXAMPLE_ROWS],
                expectation=str(config.get("type") or ""),
            )
        )
    figures.error_rows = len(error_rows)
    figures.warning_rows = len(warning_rows - error_rows)
    order = {"bad": 0, "warn": 1, "ok": 2}
    checks.sort(key=lambda c: order[c.state])  # stable: suite order within a state
    return checks, figures


# --------------------------------------------------------------------------------------------
# building the site


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build(kept: list[dict[str, Any]], target: Path, *, run_id: str, as_of: dt.date) -> list[SheetResult]:
    """Render the kept results of the night's files (:func:`keep`'s JSON) into ``target``
    (replaced whole). Returns one :class:`SheetResult` per sheet."""
    cat = catalogue()
    env = _environment()
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=target.parent))
    try:
        (building / "sheets").mkdir()
        results: list[SheetResult] = []
        for doc in sorted(kept, key=lambda d: int(d["file_id"])):
            department = str(doc.get("department") or "")
            dept_label = cat.department_label(department)
            file_name = mask_text(doc.get("file_name") or "")
            for n, sheet in enumerate(doc.get("sheets") or [], start=1):
                roster = str(sheet.get("roster") or "")
                checks, item = _checks(sheet.get("result") or {}, dict(sheet.get("headers") or {}))
                item.file_id, item.department, item.roster = int(doc["file_id"]), department, roster
                item.file_name, item.sheet = file_name, mask_text(sheet.get("sheet") or "")
                item.rows = int(sheet.get("rows") or 0)
                item.page = f"sheets/file{item.file_id:06d}-{n}.html"
                roster_label = cat.rosters[roster].label if roster in cat.rosters else roster
                (building / item.page).write_text(
                    env.get_template("datadocs_sheet.html").render(
                        as_of=as_of.isoformat(),
                        run_id=mask_text(run_id),
                        sheet=item,
                        department_label=dept_label,
                        roster_label=roster_label,
                        suite=f"expectations/{roster}.json",
                        checks=checks,
                        css=_CSS,
                    ),
                    encoding="utf-8",
                )
                results.append(item)
                faults.point("datadocs.build")  # the kill test: a build killed half-way
        lines = [
            {
                "sheet": r,
                "department_label": cat.department_label(r.department),
                "roster_label": cat.rosters[r.roster].label if r.roster in cat.rosters else r.roster,
            }
            for r in results
        ]
        (building / "index.html").write_text(
            env.get_template("datadocs_index.html").render(
                as_of=as_of.isoformat(), run_id=mask_text(run_id), lines=lines, css=_CSS
            ),
            encoding="utf-8",
        )
        (building / "results.json").write_text(
            json.dumps(
                {
                    "as_of": as_of.isoformat(),
                    "run_id": run_id,
                    "sheets": [dict(vars(r)) for r in results],
                },
                ensure_ascii=False,
                indent=1,
            ),
            encoding="utf-8",
        )
        _swap_in(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return results


def _swap_in(building: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    building.rename(target)
    os.chmod(target, 0o755)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(root: Path) -> int:
    """Remove the ``.building-*`` / ``.old-*`` folders a killed build left (one night runs at a
    time, so none of them belongs to a build still running). Returns how many were removed."""
    if not root.is_dir():
        return 0
    stale = [p for p in root.iterdir() if _LEFTOVER.match(p.name) and p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def _prune(root: Path, keep_nights: int) -> None:
    nights = sorted(p for p in root.iterdir() if p.is_dir() and _NIGHT.match(p.name))
    for stale in nights[:-keep_nights] if keep_nights > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    kept = root / RESULTS_DIR
    if kept.is_dir() and keep_nights > 0:
        horizon = time.time() - keep_nights * 86400
        for p in kept.glob("file*.json"):
            if p.stat().st_mtime < horizon:
                p.unlink(missing_ok=True)


def _night_files(settings: Settings, as_of: dt.date, run_id: str) -> list[int]:
    """Files scanned by any run of the night ``as_of`` (the first run and its reruns) or by this run."""
    f, n = schema.intake_file, schema.night_run
    runs = sa.select(n.c.run_id).where(n.c.as_of == as_of)
    with warehouse.connect(settings.warehouse_url).connect() as conn:
        found = conn.execute(
            sa.select(f.c.file_id).where(sa.or_(f.c.run_id.in_(runs), f.c.run_id == run_id))
        ).scalars()
        return sorted(int(i) for i in found)


def build_night(
    settings: Settings,
    items: list[dict] | None = None,
    *,
    as_of: dt.date,
    run_id: str,
    keep: int = KEEP_NIGHTS,
) -> dict:
    """The night's pages under ``<export_dir>/data_docs/<as_of>/``, from the kept results of the
    night's files; never raises.

    ``items``: the mapped ``read_and_validate_file`` results. The pages cover the files validated tonight
    and every other file of the same night (scanned by an earlier run of it) whose results are
    kept. When no file was validated tonight and the night's pages exist, they are left as they
    are; when they do not (the first run was killed while writing them, and its files are loaded
    by now), they are built from the kept results. Returns ``{"data_docs": path or None,
    "sheets": n}``, ``"skipped": True`` when nothing was written, ``"error"`` (the exception's
    type) when the pages could not be written.
    """
    target = night_dir(settings.export_dir, as_of)
    root = target.parent
    tonight = [int(i["file_id"]) for i in items or [] if i and i.get("status") == "validated"]
    try:
        if clean_leftovers(root):
            log.info("data docs: removed what a killed build left in %s", root.name)
        if items is not None and not tonight and (target / "index.html").is_file():
            log.info("data docs for %s: no file validated tonight; pages left as they are", as_of)
            return {"data_docs": str(target), "sheets": 0, "skipped": True}
        file_ids = sorted({*tonight, *_night_files(settings, as_of, run_id)})
        directory = results_dir(settings.export_dir)
        kept = [d for d in (_read_kept(directory, i) for i in file_ids) if d is not None]
        if not kept:
            log.info("data docs for %s: no validation results for this night", as_of)
            exists = (target / "index.html").is_file()
            return {"data_docs": str(target) if exists else None, "sheets": 0, "skipped": True}
        results = build(kept, target, run_id=run_id, as_of=as_of)
        _prune(root, keep)
    except Exception as exc:  # noqa: BLE001 - documentation never fails the night
        log.warning("data docs for %s not built: %s", as_of, type(exc).__name__)
        return {"data_docs": None, "sheets": 0, "error": type(exc).__name__}
    log.info("data docs for %s: %d sheets", as_of, len(results))
    return {"data_docs": str(target), "sheets": len(results)}


_CSS = """
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", system-ui, sans-serif;
       margin: 1.5rem; color: #1f2933; line-height: 1.45; }
a { color: #0b5cad; }
h1 { font-size: 1.4rem; margin-bottom: .3rem; }
p.meta { color: #52606d; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d5dbe1; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #eef2f6; }
td.n, td.dept { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.dept { text-align: left; }
tr.bad td { background: #fff4f4; }
tr.warn td { background: #fffbea; }
.status { white-space: nowrap; font-weight: 600; }
.status svg { width: 1em; height: 1em; vertical-align: -0.15em; margin-right: .25em; }
tr.ok .status { color: #1b7f3b; } tr.warn .status { color: #9a6700; } tr.bad .status { color: #b42318; }
.filter { margin: .5rem 0; }
#failed-only:checked ~ table tr.ok { display: none; }
small, code.gx { color: #7b8794; }
.summary span { margin-right: 1rem; }
"""
