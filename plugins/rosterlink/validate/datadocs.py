"""Great Expectations Data Docs for a night: a static HTML site per night under the exports.

``build_night`` re-runs the roster suites (``expectations/<roster>.json``, the same suites and the
same result format as :mod:`rosterlink.validate.run`) over the night's staged rows, i.e. every row the
night read, the ones about to be rejected included, and renders the results with GX's own site
builder into ``<export_dir>/data_docs/<as_of>/``:

- ``index.html``: our index (one line per validated sheet: department, file, sheet, rows, rows
  failing an error / a warning expectation, expectations met), readable without JavaScript;
- ``validations/...html``: GX's validation result pages, one per sheet;
- ``expectations/...html``: GX's pages for the suites used tonight.

It must run while the staged rows are still there: after ``validate_file`` and before the night's
last task clears them (the DAG's ``document_validation`` task runs beside ``load_files`` and the
stages after it). Only row
numbers ever reach the pages (``exclude_unexpected_values``), never a cell value, so no ID number
or phone can appear in them. GX's page templates load Bootstrap/jQuery from public CDNs, which this
machine cannot reach: those tags are removed and a small local stylesheet is linked instead, so
the pages read the same offline.

A site is built in a temporary folder beside the target and swapped in whole; the last
``KEEP_NIGHTS`` nights are kept. ``build_night`` never raises: a night does not fail because its
documentation could not be written (the error's type is logged and returned).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pandas as pd
import sqlalchemy as sa

from rosterlink import warehouse
from rosterlink.core.findings import ERROR, Finding
from rosterlink.core.spec import catalogue, district
from rosterlink.warehouse import schema, staging
from rosterlink.warehouse.staging import StagedSheet

if TYPE_CHECKING:
    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

DOCS_DIR = "data_docs"
SITE_NAME = "rosterlink"
KEEP_NIGHTS = 60
_NIGHT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_CDN_TAG = re.compile(
    r"<script\b[^>]*\bsrc=[\"']https?://[^\"']*[\"'][^>]*>\s*</script>|<link\b[^>]*\bhref=[\"']https?://[^\"']*[\"'][^>]*/?>",
    re.IGNORECASE,
)
_REMOTE_IMAGE = re.compile(r"(<img\b[^>]*\bsrc=[\"'])https?://[^\"']*([\"'])", re.IGNORECASE)
_HEAD_END = re.compile(r"</head>", re.IGNORECASE)
STYLESHEET = "static/styles/rosterlink.css"
LOGO = "static/images/logo-long.png"


def docs_root(export_dir: Path | str) -> Path:
    return Path(export_dir) / DOCS_DIR


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


@dataclass
class SheetResult:
    file_id: int
    department: str
    file_name: str
    sheet: str
    roster: str
    rows: int
    error_rows: int = 0
    warning_rows: int = 0
    evaluated: int = 0
    successful: int = 0
    page: str | None = None  # path of GX's validation page, relative to the site
    failed: list[dict[str, Any]] = field(default_factory=list)  # expectation, field, code, severity, rows


# --------------------------------------------------------------------------------------------
# staged rows -> the frames the suites ran on


def _staged_sheets(conn: sa.Connection, file_ids: list[int] | None) -> list[tuple[sa.Row, StagedSheet]]:
    """(ledger row, staged sheet) per sheet with a roster and staged rows, in file/sheet order."""
    f = schema.intake_file
    out = []
    for staged in staging.read_sheets(conn, file_ids):
        if staged.table.frame.empty:
            continue
        ledger = conn.execute(sa.select(f).where(f.c.file_id == staged.file_id)).one()
        out.append((ledger, staged))
    return out


def _gx_batch(roster: str, frame: pd.DataFrame, findings: list[Finding]) -> pd.DataFrame:
    """The frame with the helper columns the suites check (as ``validate.validate_table`` builds it)."""
    from rosterlink.intake.normalise import is_blank
    from rosterlink.validate import run as validate

    fields = set(catalogue().rosters[roster].fields)
    position = {int(r): i for i, r in enumerate(frame["_row"])}
    dropped: dict[tuple[int, str], str] = {}
    for f in findings:
        if f.row_number not in position or f.field not in fields:
            continue
        if is_blank(frame[f.field].iloc[position[f.row_number]]):
            dropped.setdefault((f.row_number, f.field), f.reason_code)
    return validate.gx_frame(roster, frame, dropped)  # the one definition of the batch


# --------------------------------------------------------------------------------------------
# building the site


def _asset_name(file_id: int, sheet: str) -> str:
    clean = re.sub(r"[\\/:*?\"<>|\s]+", "_", sheet).strip("._") or "sheet"
    return f"file{file_id:05d}-{clean}"


def _site_config(base_directory: Path) -> dict[str, Any]:
    return {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(base_directory)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def _summarise(result: Any, sheet: SheetResult) -> None:
    from rosterlink.validate import run as validate

    error_rows: set[int] = set()
    warning_rows: set[int] = set()
    stats = result.statistics or {}
    sheet.evaluated = int(stats.get("evaluated_expectations") or 0)
    sheet.successful = int(stats.get("successful_expectations") or 0)
    for res in result.results:
        if res.success:
            continue
        meta = dict(res.expectation_config.meta or {})
        rows = validate.failed_rows(res.result or {})  # the same reading of GX's row lists
        severity = meta.get("severity", ERROR)
        (error_rows if severity == ERROR else warning_rows).update(rows)
        sheet.failed.append(
            {
                "expectation": res.expectation_config.type,
                "column": res.expectation_config.kwargs.get("column"),
                "field": meta.get("field"),
                "reason_code": meta.get("reason_code"),
                "severity": severity,
                "rows": len(set(rows)),
            }
        )
    sheet.error_rows = len(error_rows)
    sheet.warning_rows = len(warning_rows - error_rows)


def build(
    eng: sa.Engine,
    target: Path,
    *,
    run_id: str,
    as_of: dt.date,
    expectations_dir: Path,
    file_ids: list[int] | None = None,
) -> list[SheetResult]:
    """Validate the staged rows of ``file_ids`` (all staged files if None) and write the site to
    ``target`` (replaced whole). Returns one :class:`SheetResult` per sheet."""
    from rosterlink.validate import run as validate

    gx = validate.import_gx()  # lazy GX import with analytics off
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    with eng.connect() as conn:
        sheets = _staged_sheets(conn, file_ids)

    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".building-{target.name}-", dir=target.parent))
    try:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        for name in list(context.get_config().data_docs_sites or {}):
            context.delete_data_docs_site(name)
        context.add_data_docs_site(SITE_NAME, _site_config(building))
        source = context.data_sources.add_pandas("rosterlink")
        run = RunIdentifier(run_name=run_id, run_time=dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC))
        params = {
            "towns": list(district().towns),
            "region_codes": list(district().known_region_codes),
            "today": dt.date.today().isoformat(),
        }
        suites: dict[str, Any] = {}
        results: list[SheetResult] = []
        for ledger, staged in sheets:
            sheet, findings = staged.table, staged.findings
            roster, frame = sheet.roster, sheet.frame
            if roster not in suites:
                with validate.suite_path(roster, expectations_dir).open(encoding="utf-8") as f:
                    suites[roster] = context.suites.add(gx.ExpectationSuite(**json.load(f)))
            asset = source.add_dataframe_asset(_asset_name(ledger.file_id, sheet.sheet))
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(
                    name=asset.name,
                    data=asset.add_batch_definition_whole_dataframe("night"),
                    suite=suites[roster],
                )
            )
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=f"night:{asset.name}",
                    validation_definitions=[definition],
                    result_format=validate.RESULT_FORMAT,
                )
            )
            outcome = checkpoint.run(
                batch_parameters={"dataframe": _gx_batch(roster, frame, findings)},
                expectation_parameters=params,
                run_id=run,
            )
            item = SheetResult(
                ledger.file_id, ledger.department, ledger.file_name, sheet.sheet, roster, len(frame)
            )
            for result in outcome.run_results.values():
                _summarise(result, item)
            results.append(item)
        context.build_data_docs(site_names=[SITE_NAME])
        _finish_site(building, results, run_id=run_id, as_of=as_of)
        _swap_in(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return results


def _local_images(text: str, src: str) -> str:
    """Every remote ``<img src>`` of a page pointed at ``src`` (the local logo)."""
    return _REMOTE_IMAGE.sub(lambda m: m.group(1) + src + m.group(2), text)


def _finish_site(site: Path, results: list[SheetResult], *, run_id: str, as_of: dt.date) -> None:
    """Offline pages: CDN tags out, our stylesheet in; our own index instead of GX's JS-only one."""
    (site / STYLESHEET).parent.mkdir(parents=True, exist_ok=True)
    (site / STYLESHEET).write_text(_CSS, encoding="utf-8")
    pages = sorted(p for p in site.rglob("*.html"))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        href = os.path.relpath(site / STYLESHEET, page.parent).replace(os.sep, "/")
        logo = os.path.relpath(site / LOGO, page.parent).replace(os.sep, "/")
        text = _CDN_TAG.sub("", text)
        text = _local_images(text, html.escape(logo))
        text = _HEAD_END.sub(f'<link rel="stylesheet" href="{html.escape(href)}"></head>', text, count=1)
        page.write_text(text, encoding="utf-8")
    for item in results:
        found = sorted(site.glob(f"validations/**/*{_asset_name(item.file_id, item.sheet)}.html"))
        item.page = found[-1].relative_to(site).as_posix() if found else None
    (site / "gx_index.html").unlink(missing_ok=True)
    if (site / "index.html").exists():
        (site / "index.html").rename(site / "gx_index.html")
    (site / "index.html").write_text(_index_html(site, results, run_id=run_id, as_of=as_of), encoding="utf-8")
    (site / "results.json").write_text(
        json.dumps(
            {"as_of": as_of.isoformat(), "run_id": run_id, "sheets": [vars(r) for r in results]},
            ensure_ascii=False,
            indent=1,
        ),
        encoding="utf-8",
    )


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


def _prune(root: Path, keep: int) -> None:
    nights = sorted(p for p in root.iterdir() if p.is_dir() and _NIGHT.match(p.name))
    for stale in nights[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)


def build_night(
    settings: Settings,
    items: list[dict] | None = None,
    *,
    as_of: dt.date,
    run_id: str,
    keep: int = KEEP_NIGHTS,
) -> dict:
    """The night's Data Docs under ``<export_dir>/data_docs/<as_of>/``; never raises.

    ``items``: the mapped ``validate_file`` results (only files whose status is ``validated`` are
    documented); None documents every file with staged rows.
    Returns ``{"data_docs": path or None, "sheets": n}`` (and ``"error"``: the exception's type).

    A night that validated no file (nothing new dropped, or a re-run of a night whose files are
    already loaded) leaves the night's site as it is: ``{"data_docs": path or None, "sheets": 0,
    "skipped": True}``; a re-run must not replace the first run's pages with an empty site.
    """
    file_ids = None
    if items is not None:
        file_ids = [i["file_id"] for i in items if i and i.get("status") == "validated"]
    target = night_dir(settings.export_dir, as_of)
    if file_ids == []:
        log.info("data docs for %s: no file validated tonight; site left as it is", as_of)
        return {
            "data_docs": str(target) if (target / "index.html").is_file() else None,
            "sheets": 0,
            "skipped": True,
        }
    try:
        results = build(
            warehouse.connect(settings.warehouse_url),
            target,
            run_id=run_id,
            as_of=as_of,
            expectations_dir=settings.expectations_dir,
            file_ids=file_ids,
        )
        _prune(target.parent, keep)
    except Exception as exc:  # noqa: BLE001 - documentation never fails the night
        log.warning("data docs for %s not built: %s", as_of, type(exc).__name__)
        return {"data_docs": None, "sheets": 0, "error": type(exc).__name__}
    log.info("data docs for %s: %d sheets", as_of, len(results))
    return {"data_docs": str(target), "sheets": len(results)}


# --------------------------------------------------------------------------------------------
# our index page


def _index_html(site: Path, results: list[SheetResult], *, run_id: str, as_of: dt.date) -> str:
    cat = catalogue()
    e = html.escape
    rows = []
    for r in results:
        dept = cat.departments.get(r.department, {}).get("label", r.department)
        roster = cat.rosters[r.roster].label if r.roster in cat.rosters else r.roster
        suite_page = site / "expectations" / SITE_NAME / f"{r.roster}.html"
        suite = (
            f'<a href="{e(quote(suite_page.relative_to(site).as_posix()))}">{e(roster)}</a>'
            if suite_page.exists()
            else e(roster)
        )
        page = f'<a href="{e(quote(r.page))}">结果页</a>' if r.page else ""
        state = "ok" if r.error_rows == 0 else "bad"
        rows.append(
            f'<tr class="{state}" data-file-id="{r.file_id}"><td>{e(dept)}</td><td>{e(r.file_name)}</td>'
            f"<td>{e(r.sheet)}</td><td>{suite}</td><td class=n>{r.rows}</td>"
            f'<td class=n data-figure="error_rows">{r.error_rows}</td>'
            f'<td class=n data-figure="warning_rows">{r.warning_rows}</td>'
            f"<td class=n>{r.successful}/{r.evaluated}</td><td>{page}</td></tr>"
        )
    body = (
        "\n".join(rows) or '<tr><td colspan="9">本夜没有需要校验的文件 (no file validated tonight)</td></tr>'
    )
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>Data Docs {e(as_of.isoformat())}</title>
<link rel="stylesheet" href="{STYLESHEET}"></head>
<body class="rl-index">
<h1>数据校验报告 Data Docs · {e(as_of.isoformat())}</h1>
<p>Great Expectations suites (<code>expectations/&lt;roster&gt;.json</code>) re-run over every row read
tonight, before loading. Run <code>{e(run_id)}</code>. Pages show row numbers only, never cell values.</p>
<table><thead><tr><th>部门</th><th>文件</th><th>工作表</th><th>名册 / suite</th><th>行数</th>
<th>错误行</th><th>提示行</th><th>通过的期望</th><th>GX</th></tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""


_CSS = """
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", system-ui, sans-serif;
       margin: 1.5rem; color: #1f2933; line-height: 1.45; }
a { color: #0b5cad; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d5dbe1; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #eef2f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.bad td { background: #fff4f4; }
h1 { font-size: 1.4rem; } h2, h3, h4, h5, h6 { font-size: 1.05rem; }
img { max-height: 2.5rem; }
.hide-succeeded-validations-column-section-target-child, .d-none { display: none; }
ul { padding-left: 1.3rem; }
footer, .ge-footer { display: none; }
"""
