"""The dashboard page: the figures of :mod:`rosterlink.dashboard.data` laid out for the template.

:func:`page_context` turns the figures into what each section shows (labels, table rows, chart
geometry from :mod:`rosterlink.dashboard.charts`), no HTML; :func:`render_page` renders
``templates/dashboard.html`` with Jinja2, autoescape on, so no value from the warehouse reaches
the page unescaped. The stylesheet is ``static/dashboard.css`` (served by the app beside the page).
Every figure is a ``<span data-figure="key">`` (the tests and the browser test read them by key).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from rosterlink.core.masking import mask_text
from rosterlink.core.spec import CATEGORY_LABELS, FIVE_ONES, RANK_LABELS, catalogue
from rosterlink.dashboard.charts import column_chart, hbar_chart

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
STYLESHEET = "dashboard.css"  # in STATIC_DIR, linked from the page as static/dashboard.css

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
CASES_LISTED = 50  # open cases without a county-level leader listed by number
FOLLOWUP_COLUMNS = (
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
FOLLOWUP_CARDS = (  # key, label, shown as an alert when not zero
    ("visited_in_person", "已入户走访户 visited in person", False),
    ("overdue", "超期未入户走访户 overdue first visit", True),
    ("phone_only", "仅电话联系户 phone only", False),
    ("problems_solved", "解决问题 problems solved", False),
    ("public_fund_entries", "公款帮扶记录 help from public funds", True),
    ("opinions", "收集意见建议 opinions heard", False),
)


@dataclass(frozen=True)
class Figure:
    """One number on the page, shown as ``<span data-figure="key">value</span>``."""

    key: str
    value: Any


@dataclass(frozen=True)
class Card:
    label: str
    figures: list[Figure]  # shown joined by " / "
    alert: bool = False


def number(value: Any) -> str:
    """A figure as people read it: thousands separated, ``n/a`` for a figure that does not exist."""
    return "n/a" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def beijing(value: dt.datetime | str | None) -> str:
    """A UTC time (warehouse times are naive UTC) as Beijing time for people."""
    if value is None:
        return "—"
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return f"{moment.astimezone(BEIJING):%Y-%m-%d %H:%M} 北京时间"


def docs_href(as_of: str) -> str:
    """The link to a night's Data Docs, relative to the page."""
    return f"data-docs/{quote(as_of)}/index.html"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The page's Jinja2 environment: autoescape on for every template, undefined names an error."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = number
    return env


def render_page(data: dict[str, Any], *, warehouse: str, generated: dt.datetime) -> str:
    """The page for the figures ``data`` (:func:`rosterlink.dashboard.data.figures`)."""
    return environment().get_template("dashboard.html").render(page_context(data, warehouse, generated))


def page_context(data: dict[str, Any], warehouse: str, generated: dt.datetime) -> dict[str, Any]:
    """What the template shows, section by section."""
    context: dict[str, Any] = {
        "ready": bool(data.get("ready")),
        "stylesheet": f"static/{STYLESHEET}",
        "warehouse": warehouse,
        "generated": beijing(generated),
    }
    if not context["ready"]:
        return context
    cat = catalogue()
    departments = cat.departments
    dept_label = cat.department_label  # ``unsorted`` (a file outside the folders) in Chinese too

    dept_order = sorted(
        set(data["rows"]["all"]), key=lambda d: list(departments).index(d) if d in departments else 99
    )
    return {
        **context,
        "night": _night(data["night"]),
        "cards": _cards(data),
        "files": _files(data),
        "departments": _departments(data, dept_order, dept_label),
        "households": _households(data),
        "towns": _towns(data),
        "load_spread": _load_spread(data),
        "cases": _cases(data),
        "review": _review(data),
        "rejections": [{**r, "department_label": dept_label(r["department"])} for r in data["rejections"]],
        "followup": _followup(data),
        "history": _history(data),
    }


def _night(night: dict[str, Any] | None) -> dict[str, Any] | None:
    if not night:
        return None
    return {
        "as_of": night["as_of"],
        "status": night["status"],
        "status_label": NIGHT_STATUS_LABELS.get(night["status"], ""),
        "finished": beijing(night["finished_at"]),
        "docs_href": docs_href(night["as_of"]) if night["data_docs"] else None,
    }


def _cards(data: dict[str, Any]) -> list[Card]:
    rows_t = data["rows"]["tonight"]
    review = data["link_review"]
    without_leader = data["cases"]["without_county_leader"]
    return [
        Card(
            "本夜文件 files tonight", [Figure("files.tonight.total", sum(data["files"]["tonight"].values()))]
        ),
        Card(
            "本夜读取/导入/退回行 rows read / loaded / rejected",
            [
                Figure(f"rows.tonight.{key}", sum(d[key] for d in rows_t.values()))
                for key in ("read", "loaded", "rejected")
            ],
        ),
        Card(
            "在册家庭 active households",
            [Figure("households.active", data["households_by_status"].get("active", 0))],
        ),
        Card("当前结对 current pairs", [Figure("pairs.total", sum(data["pairs_current"].values()))]),
        Card(
            "无县级包案领导的在办案件 open cases without a county leader",
            [Figure("cases.without_county_leader", without_leader)],
            alert=bool(without_leader),
        ),
        Card(
            "关联待复核 link-review backlog",
            [Figure("link_review.backlog", review["backlog"] if review["available"] else None)],
        ),
    ]


def _files(data: dict[str, Any]) -> dict[str, Any]:
    tonight, every = data["files"]["tonight"], data["files"]["all"]
    shown = [s for s in every if tonight.get(s, 0)]
    return {
        "rows": [
            {
                "code": s,
                "label": f"{STATUS_LABELS.get(s, s)} {s}",
                "tonight": tonight.get(s, 0),
                "all": every.get(s, 0),
            }
            for s in every
        ],
        "chart": hbar_chart(
            "本夜文件状态",
            [(STATUS_LABELS.get(s, s), [(s, tonight.get(s, 0))]) for s in shown],
            {s: STATUS_LABELS.get(s, s) for s in shown},
        ),
    }


def _departments(data: dict[str, Any], order: list[str], label: Any) -> dict[str, Any]:
    rows_t, rows_a = data["rows"]["tonight"], data["rows"]["all"]
    none = {"files": 0, "read": 0, "loaded": 0, "rejected": 0}
    return {
        "rows": [
            {"code": d, "label": label(d), "tonight": rows_t.get(d, none), "all": rows_a[d]} for d in order
        ],
        "chart": hbar_chart(
            "本夜各部门行数",
            [
                (label(d), [("loaded", rows_t[d]["loaded"]), ("rejected", rows_t[d]["rejected"])])
                for d in order
                if d in rows_t
            ],
            {"loaded": "导入 loaded", "rejected": "退回 rejected"},
        ),
    }


def _households(data: dict[str, Any]) -> dict[str, Any]:
    by_category = data["households"]
    cats = [c for c in CATEGORY_ORDER if c in by_category] + sorted(
        c for c in by_category if c not in CATEGORY_ORDER
    )
    rows = [
        {
            "code": c,
            "label": CATEGORY_LABELS.get(c, c),
            "active": by_category[c].get("active", 0),
            "exited": by_category[c].get("exited", 0),
        }
        for c in cats
    ]
    return {
        "rows": rows,
        "chart": hbar_chart(
            "家庭类别",
            [(r["label"], [("active", r["active"]), ("exited", r["exited"])]) for r in rows],
            {"active": "在册 active", "exited": "已退出 exited"},
        ),
    }


def _towns(data: dict[str, Any]) -> dict[str, Any]:
    towns = data["pairs_by_town"]
    return {
        "rows": [
            {
                **t,
                "same_town_share": f"{(100 * t['same_town'] / t['households']):.0f}%"
                if t["households"]
                else "—",
            }
            for t in towns
        ],
        "chart": hbar_chart(
            "各镇街结对",
            [(t["town"], [("household", t["households"]), ("case", t["cases"])]) for t in towns],
            {"household": "家庭 households", "case": "信访案件 cases"},
        ),
    }


def _load_spread(data: dict[str, Any]) -> dict[str, Any]:
    spread = data["load_spread"]
    rows, bars = [], []
    for kind, kind_label in (("household", "家庭"), ("case", "案件")):
        ranks = spread.get(kind, {})
        for rank in [r for r in RANK_ORDER if r in ranks] + sorted(r for r in ranks if r not in RANK_ORDER):
            s = ranks[rank]
            rows.append(
                {"label": f"{RANK_LABELS.get(rank, rank)} · {kind_label}", "key": f"load.{kind}.{rank}", **s}
            )
            bars += [
                (f"{RANK_LABELS.get(rank, rank)}·{kind_label} {k}", [(kind, v)])
                for k, v in s["loads"].items()
            ]
    return {
        "rows": rows,
        "chart": hbar_chart("干部负担分布", bars, {"household": "家庭 households", "case": "案件 cases"}),
    }


def _cases(data: dict[str, Any]) -> dict[str, Any]:
    cases = data["cases"]
    gaps = [{"key": key, "label": label, "cases": cases["five_ones_gaps"][key]} for key, label in FIVE_ONES]
    return {
        **cases,
        "listed": [
            {"number": mask_text(c["case_number"]), "town": c["town"] or ""}
            for c in cases["without_county_leader_cases"][:CASES_LISTED]
        ],
        "gaps": gaps,
        "chart": hbar_chart(
            "五个一缺项", [(g["label"], [("rejected", g["cases"])]) for g in gaps], {"rejected": "缺 missing"}
        ),
    }


def _review(data: dict[str, Any]) -> dict[str, Any]:
    review = data["link_review"]
    return {
        **review,
        "reasons": [
            {"code": r, "label": REVIEW_REASON_LABELS.get(r, r), "pending": v}
            for r, v in sorted(review["by_reason"].items())
        ],
    }


def _followup(data: dict[str, Any]) -> dict[str, Any] | None:
    fu = data.get("followup") or {}
    if not fu.get("households"):
        return None
    return {
        **fu,
        "as_of": fu.get("as_of") or "",
        "cards": [
            {"key": k, "label": label, "value": fu[k], "alert": alert and bool(fu[k])}
            for k, label, alert in FOLLOWUP_CARDS
        ],
        "columns": FOLLOWUP_COLUMNS,
        "headings": ["镇街 town"] + [label for _, label in FOLLOWUP_COLUMNS],
        "by_town": fu.get("by_town", []),
    }


def _history(data: dict[str, Any]) -> dict[str, Any]:
    oldest_first = list(reversed(data["nights"]))
    return {
        "chart": column_chart(
            "各夜导入/退回行",
            [n["as_of"] or "?" for n in oldest_first],
            {"loaded": "导入 loaded", "rejected": "退回 rejected"},
            {
                "loaded": [n["rows_loaded"] for n in oldest_first],
                "rejected": [n["rows_rejected"] for n in oldest_first],
            },
        ),
        "nights": [
            {**n, "docs_href": docs_href(n["as_of"]) if n["data_docs"] else None} for n in data["nights"]
        ],
    }
