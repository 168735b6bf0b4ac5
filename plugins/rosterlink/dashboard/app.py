"""The data team's dashboard: tonight's and past nights' figures, served inside the Airflow UI.

The Airflow plugin (``plugins/rosterlink_dashboard.py``) mounts :func:`create_app` at
``/rosterlink`` in the API server and adds a nav entry that frames it. Routes:

- ``/`` the page: server-rendered HTML with inline SVG charts (no JavaScript, nothing loaded from
  outside the API server);
- ``/api/figures`` the same figures as JSON (for scripts and BI checks);
- ``/data-docs/<YYYY-MM-DD>/...`` the night's Great Expectations Data Docs
  (:mod:`rosterlink.validate.datadocs`), as static files.

Every route needs a user signed in to Airflow who may read the DAG ``rosterlink_nightly``: the
API server does not protect plugin apps, so :func:`airflow_reader` resolves the user from the
same JWT the Airflow UI holds (the ``_token`` cookie, or an ``Authorization: Bearer`` header) with
Airflow's own ``get_user`` dependency and asks the configured auth manager
(``is_authorized_dag(GET, rosterlink_nightly)``). Without a valid token a browser is sent to
Airflow's login page, anything else gets 401; a user without read access to the DAG gets 403.

The figures (:func:`figures`) come from the warehouse (``settings.load().warehouse_url``, or the
``rosterlink_warehouse_url`` Airflow Variable) through the ``sql/views/dashboard_*.sql`` views, so
a BI tool reading the views sees the same numbers; a warehouse whose views were not (re)created yet
is queried with the views' own SQL inline. Night history comes from ``night_run.summary``. Only
aggregates are shown, plus case numbers of open key cases that lack a county-level leader: no
names, ID numbers or phones.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import sqlalchemy as sa

from rosterlink.core.spec import CATEGORY_LABELS, FIVE_ONES, RANK_LABELS

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

DAG_ID = "rosterlink_nightly"
HISTORY_NIGHTS = 30
VIEW_COLUMNS = {
    "dashboard_intake_by_night": (
        "run_id",
        "department",
        "status",
        "files",
        "rows_read",
        "rows_loaded",
        "rows_rejected",
    ),
    "dashboard_households_by_category": ("category", "status", "households"),
    "dashboard_pairs_by_town": ("town", "target_kind", "pairs", "same_town_pairs", "cadres"),
    "dashboard_load_spread": ("rank", "target_kind", "pair_load", "cadres"),
    "dashboard_open_cases": (
        "case_key",
        "case_number",
        "town",
        "registered_on",
        "has_leader",
        "has_county_leader",
        "has_work_team",
        "has_resolution_plan",
        "has_responsible_unit",
        "has_stabilisation_measures",
        "gaps",
    ),
    "dashboard_rejections_by_reason": (
        "run_id",
        "department",
        "field",
        "reason_code",
        "findings",
        "rejected_rows",
    ),
}
FILE_STATUSES = ("loaded", "rejected", "duplicate", "pending")
STATUS_LABELS = {"loaded": "已导入", "rejected": "整份退回", "duplicate": "重复文件", "pending": "处理中"}
CATEGORY_ORDER = ("hardship", "orphan", "old_member")
RANK_ORDER = ("county", "section", "ordinary")
REVIEW_REASON_LABELS = {
    "model_uncertain": "模型不确定 model uncertain",
    "cluster_bridge": "将合并两组记录 cluster bridge",
    "id_name_conflict": "同一身份证号两个姓名 ID/name conflict",
    "name_village_id_conflict": "同名同村不同身份证号 name/village/ID conflict",
}
BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
NIGHT_STATUS_LABELS = {"success": "成功", "failed": "失败", "running": "运行中", "refused": "已拒绝"}
# link_review (the link stage's queue): a row waits for a person while its status is one of these
LINK_REVIEW_OPEN = ("pending", "open")


# ================================================================================================
# figures


def _view_sql(name: str) -> str:
    from rosterlink.core.paths import SQL_DIR

    return (SQL_DIR / "views" / f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";")


def _rows(conn: sa.Connection, name: str, views: set[str]) -> list[dict[str, Any]]:
    """All rows of a dashboard view (its own SQL inline when the view is not in the database yet)."""
    columns = ", ".join(VIEW_COLUMNS[name])
    source = name if name in views else f"(\n{_view_sql(name)}\n) AS {name}"
    return [dict(r._mapping) for r in conn.exec_driver_sql(f"SELECT {columns} FROM {source}")]  # noqa: SLF001


def _int(value: Any) -> int:
    return int(value or 0)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _summary(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _town_key(town: str | None) -> tuple[int, str]:
    from rosterlink.core.spec import district

    towns = district().towns
    return (towns.index(town), "") if town in towns else (len(towns), town or "")


def _link_review(conn: sa.Connection, inspector: sa.Inspector) -> dict[str, Any]:
    """The link-review queue (``link_review``, written by the link stage): rows waiting for a person
    (``status`` pending), by reason, and decisions not yet applied by a night.

    ``available`` is False while the table does not exist (a warehouse migrated before it came).
    """
    if not inspector.has_table("link_review"):
        return {
            "available": False,
            "backlog": None,
            "total": None,
            "by_status": {},
            "by_reason": {},
            "awaiting_apply": None,
        }
    columns = {c["name"] for c in inspector.get_columns("link_review")}
    total = _int(conn.exec_driver_sql("SELECT COUNT(*) FROM link_review").scalar())
    by_status: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    awaiting = None
    if "status" in columns:
        for status, n in conn.exec_driver_sql("SELECT status, COUNT(*) FROM link_review GROUP BY status"):
            by_status[str(status) if status is not None else "(none)"] = _int(n)
        open_states = [s for s in by_status if s.lower() in (*LINK_REVIEW_OPEN, "(none)")]
        backlog = sum(by_status[s] for s in open_states)
        if "reason" in columns and open_states:
            marks = ", ".join(f"'{s}'" for s in open_states if s != "(none)") or "''"
            for reason, n in conn.exec_driver_sql(
                f"SELECT reason, COUNT(*) FROM link_review WHERE status IN ({marks}) GROUP BY reason"
            ):
                by_reason[str(reason)] = _int(n)
        if "applied_at" in columns:
            awaiting = _int(
                conn.exec_driver_sql(
                    "SELECT COUNT(*) FROM link_review WHERE status = 'decided' AND applied_at IS NULL"
                ).scalar()
            )
    else:
        backlog = (
            _int(conn.exec_driver_sql("SELECT COUNT(*) FROM link_review WHERE decision IS NULL").scalar())
            if "decision" in columns
            else total
        )
    return {
        "available": True,
        "backlog": backlog,
        "total": total,
        "by_status": by_status,
        "by_reason": by_reason,
        "awaiting_apply": awaiting,
    }


def figures(
    eng: sa.Engine, export_dir: Path | str | None = None, history: int = HISTORY_NIGHTS
) -> dict[str, Any]:
    """Every number the page shows, as plain JSON-able data.

    ``night``: the latest night (by start time) or None; ``nights``: up to ``history`` nights, newest
    first; ``files`` / ``rows``: per file status and per department, for the latest night's files
    (``tonight``) and the whole ledger (``all``); ``households``: category -> status -> count;
    ``pairs_by_town``; ``load_spread``: kind -> rank -> {load: cadres} with min/max/spread;
    ``cases``: open key cases, those without a county-level leader and the five-ones gaps;
    ``link_review``: the review backlog (``available`` False while that table is absent);
    ``rejections``: tonight's most frequent rejection reasons.
    """
    from rosterlink.validate.datadocs import nights_with_docs

    inspector = sa.inspect(eng)
    if not (inspector.has_table("night_run") and inspector.has_table("intake_file")):
        return {"ready": False}
    views = set(inspector.get_view_names())
    docs = set(nights_with_docs(export_dir)) if export_dir else set()
    from rosterlink.warehouse.schema import night_run as n

    with eng.connect() as conn:
        nights = conn.execute(
            sa.select(n).order_by(n.c.started_at.desc(), n.c.run_id.desc()).limit(history)
        ).all()
        intake = _rows(conn, "dashboard_intake_by_night", views)
        households = _rows(conn, "dashboard_households_by_category", views)
        towns = _rows(conn, "dashboard_pairs_by_town", views)
        loads = _rows(conn, "dashboard_load_spread", views)
        cases = _rows(conn, "dashboard_open_cases", views)
        rejections = _rows(conn, "dashboard_rejections_by_reason", views)
        review = _link_review(conn, inspector)
        followup_towns = (
            [
                {k: (round(float(v or 0)) if k == "help_value" else v) for k, v in r.items()}
                for r in conn.execute(sa.text("SELECT * FROM followup_by_town")).mappings()
            ]
            if "followup_by_town" in views
            else []
        )
        household_status = {
            str(s): _int(c)
            for s, c in conn.exec_driver_sql("SELECT status, COUNT(*) FROM household GROUP BY status")
        }

    latest = nights[0] if nights else None
    tonight_run = latest.run_id if latest else None

    def per_status(rows: list[dict]) -> dict[str, int]:
        out = dict.fromkeys(FILE_STATUSES, 0)
        for r in rows:
            out[r["status"]] = out.get(r["status"], 0) + _int(r["files"])
        return out

    def totals_by(key: str, rows: list[dict]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in rows:
            d = out.setdefault(r[key], {"files": 0, "read": 0, "loaded": 0, "rejected": 0})
            d["files"] += _int(r["files"])
            d["read"] += _int(r["rows_read"])
            d["loaded"] += _int(r["rows_loaded"])
            d["rejected"] += _int(r["rows_rejected"])
        return out

    tonight_rows = [r for r in intake if r["run_id"] == tonight_run]
    by_run = totals_by("run_id", intake)

    # households: category -> status -> n
    by_category: dict[str, dict[str, int]] = {}
    for r in households:
        by_category.setdefault(r["category"], {})[r["status"]] = _int(r["households"])

    # pairs by town
    town_rows: dict[str, dict[str, int]] = {}
    for r in towns:
        t = town_rows.setdefault(r["town"], {"households": 0, "cases": 0, "same_town": 0, "cadres": 0})
        if r["target_kind"] == "household":
            t["households"] += _int(r["pairs"])
            t["same_town"] += _int(r["same_town_pairs"])
            t["cadres"] += _int(r["cadres"])
        else:
            t["cases"] += _int(r["pairs"])
    pairs_by_town = [
        {"town": town, **v} for town, v in sorted(town_rows.items(), key=lambda kv: _town_key(kv[0]))
    ]

    # load spread: kind -> rank -> {"loads": {load: cadres}, min, max, spread, cadres}
    spread: dict[str, dict[str, dict[str, Any]]] = {}
    for r in loads:
        s = spread.setdefault(r["target_kind"], {}).setdefault(r["rank"], {"loads": {}})
        s["loads"][_int(r["pair_load"])] = s["loads"].get(_int(r["pair_load"]), 0) + _int(r["cadres"])
    for ranks in spread.values():
        for s in ranks.values():
            present = sorted(s["loads"])
            s["loads"] = {str(k): s["loads"][k] for k in present}
            s["min"], s["max"] = present[0], present[-1]
            s["spread"] = present[-1] - present[0]
            s["cadres"] = sum(s["loads"].values())

    # open key cases and the five ones
    gaps = dict.fromkeys((key for key, _ in FIVE_ONES), 0)
    for c in cases:
        for key, _ in FIVE_ONES:
            if not _int(c[f"has_{key}"]):
                gaps[key] += 1
    no_county = sorted(
        (c for c in cases if not _int(c["has_county_leader"])),
        key=lambda c: (_town_key(c["town"]), c["case_number"] or ""),
    )
    case_figures = {
        "open": len(cases),
        "without_county_leader": len(no_county),
        "without_county_leader_cases": [
            {"case_number": c["case_number"], "town": c["town"]} for c in no_county
        ],
        "five_ones_gaps": gaps,
        "five_ones_complete": sum(1 for c in cases if not _int(c["gaps"])),
    }

    top_rejections = sorted(
        (
            {
                "department": r["department"],
                "field": r["field"],
                "reason_code": r["reason_code"],
                "rows": _int(r["rejected_rows"]),
            }
            for r in rejections
            if r["run_id"] == tonight_run
        ),
        key=lambda r: (-r["rows"], r["department"], r["field"], r["reason_code"]),
    )[:10]

    history_rows = []
    for night in nights:
        summary = _summary(night.summary)
        fig = summary.get("figures") or {}
        pairing = summary.get("pairing") or {}
        received = by_run.get(night.run_id, {"files": 0, "read": 0, "loaded": 0, "rejected": 0})
        as_of = _iso(night.as_of)
        history_rows.append(
            {
                "run_id": night.run_id,
                "as_of": as_of,
                "status": night.status,
                "started_at": _iso(night.started_at),
                "finished_at": _iso(night.finished_at),
                "files": received["files"],
                "rows_read": received["read"],
                "rows_loaded": received["loaded"],
                "rows_rejected": received["rejected"],
                "households_active": (fig.get("households") or {}).get("active"),
                "pairs_current": sum((fig.get("pairs_current") or {}).values())
                if fig.get("pairs_current")
                else None,
                "pairs_made": pairing.get("made_total"),
                "pairs_ended": pairing.get("ended_total"),
                "cases_without_leader": pairing.get("cases_without_leader"),
                "data_docs": as_of in docs,
            }
        )

    return {
        "ready": True,
        "night": history_rows[0] if history_rows else None,
        "nights": history_rows,
        "files": {"tonight": per_status(tonight_rows), "all": per_status(intake)},
        "rows": {"tonight": totals_by("department", tonight_rows), "all": totals_by("department", intake)},
        "households": by_category,
        "households_by_status": household_status,
        "pairs_by_town": pairs_by_town,
        "load_spread": spread,
        "cases": case_figures,
        "link_review": review,
        "rejections": top_rejections,
        "followup": {
            **_followup_headline(eng),
            "by_town": sorted(followup_towns, key=lambda r: _town_key(r["town"])),
        },
    }


def _followup_headline(eng: sa.Engine) -> dict[str, Any]:
    from rosterlink.followup import visits

    return visits.headline(eng)


# ================================================================================================
# charts: small server-side SVG, no script

PALETTE = {
    "loaded": "#2f7d4f",
    "rejected": "#c8463d",
    "duplicate": "#8b95a1",
    "pending": "#d39b2a",
    "active": "#2f6db5",
    "exited": "#b8c4d0",
    "household": "#2f6db5",
    "case": "#a0522d",
    "bar": "#2f6db5",
}
_esc = html.escape


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:,}" if isinstance(value, int) else _esc(str(value))


def hbar_chart(
    title: str, rows: list[tuple[str, list[tuple[str, int]]]], series: dict[str, str], width: int = 520
) -> str:
    """Horizontal stacked bars: ``rows`` = [(label, [(series key, value), ...])]; ``series`` = key -> legend."""
    if not rows:
        return f'<p class="empty">{_esc(title)}: 无数据 (no data)</p>'
    label_w, bar_h, gap, top = 120, 18, 6, 24
    total_max = max((sum(v for _, v in parts) for _, parts in rows), default=0) or 1
    plot_w = width - label_w - 60
    height = top + len(rows) * (bar_h + gap) + 4
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{_esc(title)}</title>",
    ]
    x = label_w
    for key, legend in series.items():
        out.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{PALETTE.get(key, PALETTE["bar"])}"/>'
            f'<text x="{x + 14}" y="13" class="legend">{_esc(legend)}</text>'
        )
        x += 24 + 13 * len(legend)
    for i, (label, parts) in enumerate(rows):
        y = top + i * (bar_h + gap)
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h - 5}" text-anchor="end" class="label">{_esc(label)}</text>'
        )
        x0 = float(label_w)
        for key, value in parts:
            w = plot_w * value / total_max
            if value:
                out.append(
                    f'<rect x="{x0:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" '
                    f'fill="{PALETTE.get(key, PALETTE["bar"])}"><title>{_esc(label)} · '
                    f"{_esc(series.get(key, key))}: {value:,}</title></rect>"
                )
            x0 += w
        total = sum(v for _, v in parts)
        out.append(f'<text x="{x0 + 4:.1f}" y="{y + bar_h - 5}" class="value">{total:,}</text>')
    out.append("</svg>")
    return "".join(out)


def column_chart(
    title: str,
    labels: list[str],
    series: dict[str, str],
    values: dict[str, list[int]],
    width: int = 760,
    height: int = 200,
) -> str:
    """Vertical stacked columns over ``labels`` (e.g. nights); ``values`` = series key -> one value per label."""
    if not labels:
        return f'<p class="empty">{_esc(title)}: 无数据 (no data)</p>'
    left, bottom, top = 44, 34, 22
    plot_h = height - bottom - top
    totals = [sum(values[k][i] for k in series) for i in range(len(labels))]
    peak = max(totals) or 1
    step = (width - left - 10) / len(labels)
    bar_w = max(min(step * 0.7, 48), 4)
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{_esc(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 6}" y2="{top + plot_h}" stroke="#9aa5b1"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" class="axis">{peak:,}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" class="axis">0</text>',
    ]
    x = left
    for key, legend in series.items():
        out.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{PALETTE.get(key, PALETTE["bar"])}"/>'
            f'<text x="{x + 14}" y="13" class="legend">{_esc(legend)}</text>'
        )
        x += 24 + 13 * len(legend)
    for i, label in enumerate(labels):
        cx = left + step * i + (step - bar_w) / 2
        y = float(top + plot_h)
        for key in series:
            v = values[key][i]
            h = plot_h * v / peak
            if v:
                out.append(
                    f'<rect x="{cx:.1f}" y="{y - h:.1f}" width="{bar_w:.1f}" height="{max(h, 1):.1f}" '
                    f'fill="{PALETTE.get(key, PALETTE["bar"])}"><title>{_esc(label)} · '
                    f"{_esc(series[key])}: {v:,}</title></rect>"
                )
            y -= h
        if len(labels) <= 16 or i % max(len(labels) // 12, 1) == 0:
            out.append(
                f'<text x="{cx + bar_w / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle" '
                f'class="axis">{_esc(label[5:] if len(label) == 10 else label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


# ================================================================================================
# the page


def _beijing(value: dt.datetime | str | None) -> str:
    """A UTC time (warehouse times are naive UTC) as Beijing time for people."""
    if value is None:
        return "—"
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return f"{moment.astimezone(BEIJING):%Y-%m-%d %H:%M} 北京时间"


def _fig(key: str, value: Any) -> str:
    return f'<span data-figure="{_esc(key)}">{_num(value)}</span>'


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def render_page(data: dict[str, Any], *, warehouse: str, generated: dt.datetime) -> str:
    from rosterlink.core.masking import mask_text
    from rosterlink.core.spec import catalogue

    departments = catalogue().departments

    def dept_label(code: str) -> str:
        return departments.get(code, {}).get("label", code)

    head = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>rosterlink 夜间数据看板</title><style>{_PAGE_CSS}</style></head><body>"""
    if not data.get("ready"):
        return (
            head + '<h1>rosterlink 夜间数据看板</h1><p class="empty" data-figure="ready">'
            "仓库尚未初始化：还没有运行过夜间任务 (the warehouse has no night yet).</p>"
            f'<p class="meta">仓库 warehouse: {_esc(warehouse)}</p></body></html>'
        )

    night = data["night"]
    parts: list[str] = [head, "<header><h1>rosterlink 夜间数据看板 <small>nightly figures</small></h1>"]
    if night:
        status = night["status"]
        docs = (
            f'<a href="data-docs/{quote(night["as_of"])}/index.html" data-link="data-docs">数据校验报告 Data Docs</a>'
            if night["data_docs"]
            else '<span class="muted">本夜无 Data Docs</span>'
        )
        parts.append(
            f'<p class="meta">最近一夜 night of {_fig("night.as_of", night["as_of"])} · '
            f'<span class="status {_esc(status)}" data-figure="night.status">{_esc(status)}</span> '
            f"{_esc(NIGHT_STATUS_LABELS.get(status, ''))} · 结束 finished {_esc(_beijing(night['finished_at']))} · "
            f'{docs} · <a href="api/figures">JSON</a></p>'
        )
    else:
        parts.append('<p class="meta">还没有夜间运行记录 (no night recorded yet).</p>')
    parts.append(
        f'<p class="meta muted">仓库 warehouse: {_esc(warehouse)} · 生成于 generated '
        f"{_esc(_beijing(generated))}</p></header>"
    )

    # --- headline cards
    files_t, files_a = data["files"]["tonight"], data["files"]["all"]
    rows_t = data["rows"]["tonight"]
    t_read = sum(d["read"] for d in rows_t.values())
    t_loaded = sum(d["loaded"] for d in rows_t.values())
    t_rejected = sum(d["rejected"] for d in rows_t.values())
    cases = data["cases"]
    review = data["link_review"]
    pairs_total = sum(t["households"] + t["cases"] for t in data["pairs_by_town"])
    cards = [
        ("本夜文件 files tonight", _fig("files.tonight.total", sum(files_t.values()))),
        (
            "本夜读取/导入/退回行 rows read / loaded / rejected",
            f"{_fig('rows.tonight.read', t_read)} / {_fig('rows.tonight.loaded', t_loaded)} / "
            f"{_fig('rows.tonight.rejected', t_rejected)}",
        ),
        (
            "在册家庭 active households",
            _fig("households.active", data["households_by_status"].get("active", 0)),
        ),
        ("当前结对 current pairs", _fig("pairs.total", pairs_total)),
        (
            "无县级包案领导的在办案件 open cases without a county leader",
            _fig("cases.without_county_leader", cases["without_county_leader"]),
        ),
        (
            "关联待复核 link-review backlog",
            _fig("link_review.backlog", review["backlog"])
            if review["available"]
            else '<span data-figure="link_review.backlog">n/a</span>',
        ),
    ]
    parts.append(
        '<section class="cards">'
        + "".join(
            f'<div class="card{" alert" if "county" in label and cases["without_county_leader"] else ""}">'
            f'<div class="card-label">{_esc(label)}</div><div class="card-value">{value}</div></div>'
            for label, value in cards
        )
        + "</section>"
    )

    # --- files by status
    status_rows = [
        [
            _esc(f"{STATUS_LABELS.get(s, s)} {s}"),
            _fig(f"files.tonight.{s}", files_t.get(s, 0)),
            _fig(f"files.all.{s}", files_a.get(s, 0)),
        ]
        for s in files_a
    ]
    parts.append(
        '<section class="grid two"><div class="panel"><h2>文件状态 Files by status</h2>'
        + hbar_chart(
            "本夜文件状态",
            [(STATUS_LABELS.get(s, s), [(s, files_t.get(s, 0))]) for s in files_a if files_t.get(s, 0)],
            {s: STATUS_LABELS.get(s, s) for s in files_a if files_t.get(s, 0)},
        )
        + _table(["状态 status", "本夜 tonight", "累计 all nights"], status_rows, "num")
        + "</div>"
    )

    # --- rows by department
    depts = sorted(
        set(data["rows"]["all"]), key=lambda d: list(departments).index(d) if d in departments else 99
    )
    dept_rows = []
    for d in depts:
        t = rows_t.get(d, {"files": 0, "read": 0, "loaded": 0, "rejected": 0})
        a = data["rows"]["all"][d]
        dept_rows.append(
            [
                _esc(dept_label(d)),
                _fig(f"rows.tonight.{d}.loaded", t["loaded"]),
                _fig(f"rows.tonight.{d}.rejected", t["rejected"]),
                _fig(f"rows.all.{d}.loaded", a["loaded"]),
                _fig(f"rows.all.{d}.rejected", a["rejected"]),
            ]
        )
    parts.append(
        '<div class="panel"><h2>各部门导入/退回行 Rows loaded / rejected by department</h2>'
        + hbar_chart(
            "本夜各部门行数",
            [
                (dept_label(d), [("loaded", rows_t[d]["loaded"]), ("rejected", rows_t[d]["rejected"])])
                for d in depts
                if d in rows_t
            ],
            {"loaded": "导入 loaded", "rejected": "退回 rejected"},
        )
        + _table(["部门 department", "本夜导入", "本夜退回", "累计导入", "累计退回"], dept_rows, "num")
        + "</div>"
    )

    # --- households by category
    cats = [c for c in CATEGORY_ORDER if c in data["households"]] + sorted(
        c for c in data["households"] if c not in CATEGORY_ORDER
    )
    hh_rows = [
        [
            _esc(CATEGORY_LABELS.get(c, c)),
            _fig(f"households.{c}.active", data["households"][c].get("active", 0)),
            _fig(f"households.{c}.exited", data["households"][c].get("exited", 0)),
        ]
        for c in cats
    ]
    parts.append(
        '<div class="panel"><h2>家庭类别与状态 Households by category and status</h2>'
        + hbar_chart(
            "家庭类别",
            [
                (
                    CATEGORY_LABELS.get(c, c),
                    [
                        ("active", data["households"][c].get("active", 0)),
                        ("exited", data["households"][c].get("exited", 0)),
                    ],
                )
                for c in cats
            ],
            {"active": "在册 active", "exited": "已退出 exited"},
        )
        + _table(["类别 category", "在册 active", "已退出 exited"], hh_rows, "num")
        + "</div>"
    )

    # --- pairs by town
    town_rows = [
        [
            _esc(t["town"]),
            _fig(f"pairs.{t['town']}.households", t["households"]),
            _fig(f"pairs.{t['town']}.cases", t["cases"]),
            f"{(100 * t['same_town'] / t['households']):.0f}%" if t["households"] else "—",
        ]
        for t in data["pairs_by_town"]
    ]
    parts.append(
        '<div class="panel"><h2>各镇街结对 Pairs by town</h2>'
        + hbar_chart(
            "各镇街结对",
            [
                (t["town"], [("household", t["households"]), ("case", t["cases"])])
                for t in data["pairs_by_town"]
            ],
            {"household": "家庭 households", "case": "信访案件 cases"},
        )
        + _table(["镇街 town", "家庭结对", "案件结对", "本镇街干部 same town"], town_rows, "num")
        + "</div></section>"
    )

    # --- load spread
    spread = data["load_spread"]
    spread_rows, bars = [], []
    for kind, kind_label in (("household", "家庭"), ("case", "案件")):
        for rank in [r for r in RANK_ORDER if r in spread.get(kind, {})] + sorted(
            r for r in spread.get(kind, {}) if r not in RANK_ORDER
        ):
            s = spread[kind][rank]
            label = f"{RANK_LABELS.get(rank, rank)} · {kind_label}"
            loads = ", ".join(f"{k}→{_fig(f'load.{kind}.{rank}.{k}', v)}" for k, v in s["loads"].items())
            spread_rows.append(
                [
                    _esc(label),
                    _fig(f"load.{kind}.{rank}.cadres", s["cadres"]),
                    _fig(f"load.{kind}.{rank}.min", s["min"]),
                    _fig(f"load.{kind}.{rank}.max", s["max"]),
                    _fig(f"load.{kind}.{rank}.spread", s["spread"]),
                    loads,
                ]
            )
            bars += [
                (f"{RANK_LABELS.get(rank, rank)}·{kind_label} {k}", [(kind, v)])
                for k, v in s["loads"].items()
            ]
    parts.append(
        '<section class="grid three"><div class="panel"><h2>干部负担分布 Load spread</h2>'
        '<p class="muted">每名在职干部当前结对数 → 干部人数 (pairs per active cadre → cadres)</p>'
        + hbar_chart("干部负担分布", bars, {"household": "家庭 households", "case": "案件 cases"})
        + _table(["职级 · 对象", "干部", "最少", "最多", "差 spread", "结对数→人数"], spread_rows, "num")
        + "</div>"
    )

    # --- open cases, five ones
    gap_rows = [
        [_esc(label), _fig(f"five_ones.{key}", cases["five_ones_gaps"][key])] for key, label in FIVE_ONES
    ]
    listed = "".join(
        f'<li data-case="{_esc(mask_text(c["case_number"]))}">{_esc(mask_text(c["case_number"]))} · '
        f"{_esc(c['town'] or '')}</li>"
        for c in cases["without_county_leader_cases"][:50]
    )
    parts.append(
        '<div class="panel"><h2>重点信访案件 Open key cases</h2>'
        f"<p>在办 open: {_fig('cases.open', cases['open'])} · 五个一齐全 complete: "
        f"{_fig('cases.five_ones_complete', cases['five_ones_complete'])} · 无县级包案领导 without a county-level "
        f"leader: {_fig('cases.without_county_leader_list', cases['without_county_leader'])}</p>"
        + (f'<ul class="cases">{listed}</ul>' if listed else "")
        + "<h3>五个一缺项 Five-ones gaps (open cases missing the item)</h3>"
        + hbar_chart(
            "五个一缺项",
            [(label, [("rejected", cases["five_ones_gaps"][key])]) for key, label in FIVE_ONES],
            {"rejected": "缺 missing"},
        )
        + _table(["项目 item", "缺项案件 cases missing it"], gap_rows, "num")
        + "</div>"
    )

    # --- link review, rejections
    if review["available"]:
        reasons = "".join(
            f"<li>{_esc(REVIEW_REASON_LABELS.get(r, r))}: {_fig(f'link_review.reason.{r}', v)}</li>"
            for r, v in sorted(review["by_reason"].items())
        )
        review_html = (
            f"<p>待复核 pending: {_fig('link_review.backlog_detail', review['backlog'])} · 总数 total "
            f"{_fig('link_review.total', review['total'])}"
            + (
                f" · 已核实待应用 decided, not yet applied: {_fig('link_review.awaiting_apply', review['awaiting_apply'])}"
                if review["awaiting_apply"] is not None
                else ""
            )
            + "</p>"
            + (f"<ul>{reasons}</ul>" if reasons else "")
        )
    else:
        review_html = (
            '<p class="muted" data-figure="link_review.state">n/a — 关联复核表 link_review 尚未建立 '
            "(the table does not exist yet)</p>"
        )
    rej_rows = [
        [
            _esc(dept_label(r["department"])),
            _esc(r["field"]),
            _esc(r["reason_code"]),
            _fig(f"rejections.{r['department']}.{r['field']}.{r['reason_code']}", r["rows"]),
        ]
        for r in data["rejections"]
    ]
    parts.append(
        '<div class="panel"><h2>关联复核 Link-review backlog</h2>'
        + review_html
        + "<h2>本夜主要退回原因 Top rejection reasons tonight</h2>"
        + (
            _table(["部门", "字段 field", "原因 reason", "行 rows"], rej_rows, "num")
            if rej_rows
            else '<p class="muted">本夜无退回行 (no rejected rows tonight)</p>'
        )
        + "</div></section>"
    )

    # --- follow-through (rosterlink.followup.visits): visits, help, opinions against the pairs
    fu = data.get("followup") or {}
    if fu.get("households"):
        cols = (
            ("households", "结对家庭"),
            ("not_visited_in_person", "未入户走访"),
            ("overdue", "超期未走访"),
            ("never_contacted", "从未联系"),
            ("max_days_since_contact", "最长未联系(天)"),
            ("in_person_visits", "入户走访"),
            ("phone_contacts", "电话联系"),
            ("problems_found", "发现问题"),
            ("problems_solved", "解决问题"),
            ("help_value", "帮扶金额(元)"),
            ("help_above_band", "高于标准户"),
            ("help_below_band", "低于标准户"),
            ("public_fund_entries", "公款帮扶"),
            ("carried_over", "换人延续"),
        )
        fu_rows = [
            [_esc(r["town"])] + [_fig(f"followup.{r['town']}.{k}", r[k]) for k, _ in cols]
            for r in fu.get("by_town", [])
        ]
        cards_fu = "".join(
            f'<div class="card{" alert" if alert and fu[k] else ""}"><div class="card-label">{_esc(label)}</div>'
            f'<div class="card-value">{_fig("followup." + k, fu[k])}</div></div>'
            for k, label, alert in (
                ("visited_in_person", "已入户走访户 visited in person", False),
                ("overdue", "超期未入户走访户 overdue first visit", True),
                ("phone_only", "仅电话联系户 phone only", False),
                ("problems_solved", "解决问题 problems solved", False),
                ("public_fund_entries", "公款帮扶记录 help from public funds", True),
                ("opinions", "收集意见建议 opinions heard", False),
            )
        )
        parts.append(
            '<section class="panel wide"><h2>走访帮扶 Follow-through of the pairs</h2>'
            f'<p class="muted">截至 as of {_esc(fu.get("as_of") or "")} · 帮扶高于/低于标准户 households above / '
            f"below the help band: {_fig('followup.help_above_band', fu['help_above_band'])} / "
            f"{_fig('followup.help_below_band', fu['help_below_band'])}</p>"
            f'<div class="cards">{cards_fu}</div>'
            + _table(["镇街 town"] + [label for _, label in cols], fu_rows, "num")
            + "</section>"
        )

    # --- history
    nights = list(reversed(data["nights"]))
    labels = [n["as_of"] or "?" for n in nights]
    chart = column_chart(
        "各夜导入/退回行",
        labels,
        {"loaded": "导入 loaded", "rejected": "退回 rejected"},
        {"loaded": [n["rows_loaded"] for n in nights], "rejected": [n["rows_rejected"] for n in nights]},
    )
    hist_rows = []
    for i, n in enumerate(data["nights"]):
        docs = f'<a href="data-docs/{quote(n["as_of"])}/index.html">Data Docs</a>' if n["data_docs"] else "—"
        hist_rows.append(
            [
                _esc(n["as_of"] or ""),
                f'<span class="status {_esc(n["status"])}">{_esc(n["status"])}</span>',
                _fig(f"nights.{i}.files", n["files"]),
                _fig(f"nights.{i}.rows_read", n["rows_read"]),
                _fig(f"nights.{i}.rows_loaded", n["rows_loaded"]),
                _fig(f"nights.{i}.rows_rejected", n["rows_rejected"]),
                _fig(f"nights.{i}.households_active", n["households_active"]),
                _fig(f"nights.{i}.pairs_current", n["pairs_current"]),
                _fig(f"nights.{i}.pairs_made", n["pairs_made"]),
                _fig(f"nights.{i}.pairs_ended", n["pairs_ended"]),
                _fig(f"nights.{i}.cases_without_leader", n["cases_without_leader"]),
                docs,
            ]
        )
    parts.append(
        '<section class="panel wide"><h2>历次夜间运行 Past nights</h2>'
        + chart
        + _table(
            [
                "日期 night",
                "状态",
                "文件",
                "读取",
                "导入",
                "退回",
                "在册家庭",
                "当前结对",
                "新结对",
                "结束结对",
                "无领导案件",
                "校验报告",
            ],
            hist_rows,
            "num history",
        )
        + '<p class="muted">文件与行数：该夜首次收到的文件 (files first received that night); '
        "家庭与结对：该夜结束时的仓库 (warehouse at the end of that night).</p></section>"
    )
    parts.append("</body></html>")
    return "".join(parts)


_PAGE_CSS = """
:root { color-scheme: light; }
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", system-ui, sans-serif; margin: 0;
       padding: 16px 20px; color: #1f2933; background: #f6f8fa; font-size: 14px; }
h1 { font-size: 20px; margin: 0 0 4px; } h1 small { font-weight: normal; color: #66768a; font-size: 14px; }
h2 { font-size: 15px; margin: 0 0 8px; } h3 { font-size: 13px; margin: 12px 0 6px; }
a { color: #0b5cad; }
.meta { margin: 2px 0; } .muted { color: #66768a; } .empty { color: #66768a; font-style: italic; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; margin: 12px 0; }
.card { background: #fff; border: 1px solid #d9e0e7; border-radius: 6px; padding: 10px 12px; }
.card.alert { border-color: #c8463d; background: #fff5f4; }
.card-label { color: #52606d; font-size: 12px; } .card-value { font-size: 22px; font-weight: 600; margin-top: 4px; }
.grid { display: grid; gap: 12px; margin-bottom: 12px; }
.grid.two { grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); }
.grid.three { grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); }
.panel { background: #fff; border: 1px solid #d9e0e7; border-radius: 6px; padding: 12px 14px; overflow-x: auto; }
.wide { margin-bottom: 12px; }
table { border-collapse: collapse; margin-top: 8px; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e9ee; padding: 3px 8px; text-align: left; white-space: nowrap; }
th { color: #52606d; font-weight: 600; background: #f1f4f7; }
table.num td + td { text-align: right; font-variant-numeric: tabular-nums; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: #3e4c59; } svg .value { fill: #1f2933; font-weight: 600; }
.status { padding: 0 6px; border-radius: 8px; background: #e4e9ee; }
.status.success { background: #d8f0e0; color: #1e6b3a; } .status.failed, .status.refused { background: #fbdcd9; color: #9b2c22; }
.status.running { background: #fff0c2; }
ul.cases { margin: 4px 0; padding-left: 18px; columns: 2; }
"""


# ================================================================================================
# the app


def _airflow_settings() -> Settings:
    """``settings.load()``, with the ``rosterlink_*`` Airflow Variables and the ``rosterlink_warehouse``
    connection on top when Airflow is reachable (the precedence the night's tasks use)."""
    from rosterlink.core import settings

    return settings.load_in_server()


def airflow_reader() -> Callable:
    """FastAPI dependency: the Airflow user behind the request, allowed to read ``rosterlink_nightly``.

    The user comes from Airflow's own ``get_user`` (the UI's ``_token`` JWT cookie, or a bearer
    token from ``POST /auth/token``), validated by the configured auth manager; then the auth
    manager decides ``is_authorized_dag(GET, rosterlink_nightly)``.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import Depends, HTTPException, status

    def require_reader(user: Any = Depends(get_user)) -> Any:  # noqa: B008 - FastAPI's idiom
        if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=DAG_ID), user=user):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
        return user

    return require_reader


def airflow_login_url(next_url: str) -> str | None:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # noqa: BLE001 - no auth manager: plain 401
        return None


_NIGHT = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'none'; frame-ancestors 'self'; "
    "base-uri 'self'; form-action 'none'"
)


def _headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "SAMEORIGIN",
    }


def create_app(
    *,
    authorize: Callable | None = None,
    settings_loader: Callable[[], Settings] | None = None,
    login_url: Callable[[str], str | None] | None = None,
) -> FastAPI:
    """The dashboard app. ``authorize``: a FastAPI dependency that raises 401/403 (default
    :func:`airflow_reader`); ``settings_loader``: where the warehouse and exports are (default: the
    environment and Airflow Variables); ``login_url``: where a browser without a session is sent."""
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import HTTPException as FastAPIHTTPException
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from rosterlink import warehouse
    from rosterlink.cli import warehouse_display
    from rosterlink.core.settings import normalise_url
    from rosterlink.validate import datadocs

    require = authorize or airflow_reader()
    load_settings = settings_loader or _airflow_settings
    to_login = login_url or airflow_login_url

    app = FastAPI(title="rosterlink dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(StarletteHTTPException)
    async def _errors(request: Request, exc: StarletteHTTPException):
        wants_html = "text/html" in request.headers.get("accept", "") and not request.url.path.endswith(
            "/api/figures"
        )
        if exc.status_code == 401 and wants_html and request.method == "GET":
            target = to_login(str(request.url))
            if target:
                return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status_code,
            headers={**(exc.headers or {}), "Cache-Control": "no-store"},
        )

    def _data() -> tuple[dict[str, Any], str]:
        cfg = load_settings()
        eng = warehouse.engine(cfg.warehouse_url)
        return figures(eng, cfg.export_dir), warehouse_display(normalise_url(cfg.warehouse_url))

    @app.get("/", response_class=HTMLResponse)
    def page(_user: Any = Depends(require)) -> HTMLResponse:  # noqa: B008
        data, where = _data()
        body = render_page(data, warehouse=where, generated=dt.datetime.now(dt.UTC))
        return HTMLResponse(body, headers=_headers(PAGE_CSP))

    @app.get("/api/figures")
    def api_figures(_user: Any = Depends(require)) -> JSONResponse:  # noqa: B008
        data, _ = _data()
        return JSONResponse(data, headers=_headers(PAGE_CSP))

    @app.get("/data-docs/{night}/{path:path}")
    def data_docs(night: str, path: str, _user: Any = Depends(require)) -> FileResponse:  # noqa: B008
        if not _NIGHT.match(night):
            raise FastAPIHTTPException(404, "Not found")
        root = datadocs.night_dir(load_settings().export_dir, night)
        try:
            base = root.resolve(strict=True)
            target = (base / (path or "index.html")).resolve(strict=True)
        except (FileNotFoundError, OSError, RuntimeError):
            raise FastAPIHTTPException(404, "Not found") from None
        if not target.is_relative_to(base) or not target.is_file() or target.name.startswith("."):
            raise FastAPIHTTPException(404, "Not found")
        return FileResponse(target, headers=_headers(DOCS_CSP))

    return app


@lru_cache(maxsize=1)
def airflow_app() -> FastAPI:
    """The app the plugin mounts (built once per API server process, on its first request)."""
    return create_app()
