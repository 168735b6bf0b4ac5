"""The dashboard's figures, read from the warehouse through the ``sql/views/dashboard_*.sql`` views.

:func:`figures` returns every number the page shows as plain JSON-able data (``/api/figures``
serves it as is). A BI tool reading the views sees the same numbers; a warehouse whose views were
not (re)created yet is queried with the views' own SQL inline. Night history comes from
``night_run.summary``; the headline counts (households, current pairs, the link-review queue,
the follow-through) from :mod:`rosterlink.figures`, as the CLI and the night's summary have them.
Only aggregates, plus case numbers of open key cases that lack a county-level leader: no names,
ID numbers or phones.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rosterlink.core.paths import SQL_DIR
from rosterlink.core.spec import FIVE_ONES, district
from rosterlink.figures import headline_figures
from rosterlink.validate.datadocs import nights_with_docs
from rosterlink.warehouse import schema

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


def _view_sql(name: str) -> str:
    return (SQL_DIR / "views" / f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";")


def _rows(conn: sa.Connection, name: str, views: set[str]) -> list[dict[str, Any]]:
    """All rows of a dashboard view (its own SQL inline when the view is not in the database yet)."""
    columns = ", ".join(VIEW_COLUMNS[name])
    source = name if name in views else f"(\n{_view_sql(name)}\n) AS {name}"
    return [dict(r) for r in conn.exec_driver_sql(f"SELECT {columns} FROM {source}").mappings()]


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


def town_key(town: str | None) -> tuple[int, str]:
    """Sort key of a town: the district's order, then unknown towns by name."""
    towns = district().towns
    return (towns.index(town), "") if town in towns else (len(towns), town or "")


def figures(
    eng: sa.Engine, export_dir: Path | str | None = None, history: int = HISTORY_NIGHTS
) -> dict[str, Any]:
    """Every number the page shows, as plain JSON-able data.

    ``night``: the latest night (by start time) or None; ``nights``: up to ``history`` nights, newest
    first; ``files`` / ``rows``: per file status and per department, for the latest night's files
    (``tonight``) and the whole ledger (``all``); ``households``: category -> status -> count;
    ``pairs_by_town``; ``load_spread``: kind -> rank -> {load: cadres} with min/max/spread;
    ``cases``: open key cases, those without a county-level leader and the five-ones gaps;
    ``rejections``: tonight's most frequent rejection reasons; from :mod:`rosterlink.figures`:
    ``households_by_status``, ``pairs_current`` (kind -> pairs), ``link_review`` (the review queue,
    ``available`` False while that table is absent) and the ``followup`` headline (with ``by_town``).
    """
    inspector = sa.inspect(eng)
    if not (inspector.has_table("night_run") and inspector.has_table("intake_file")):
        return {"ready": False}
    views = set(inspector.get_view_names())
    docs = set(nights_with_docs(export_dir)) if export_dir else set()
    n = schema.night_run
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
        followup_towns = (
            [
                {k: (round(float(v or 0)) if k == "help_value" else v) for k, v in r.items()}
                for r in conn.execute(sa.text("SELECT * FROM followup_by_town")).mappings()
            ]
            if "followup_by_town" in views
            else []
        )

    head = headline_figures(eng)
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
        {"town": town, **v} for town, v in sorted(town_rows.items(), key=lambda kv: town_key(kv[0]))
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
        key=lambda c: (town_key(c["town"]), c["case_number"] or ""),
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
        "households_by_status": head["households"],
        "pairs_current": head["pairs_current"],
        "pairs_by_town": pairs_by_town,
        "load_spread": spread,
        "cases": case_figures,
        "link_review": head["review"],
        "rejections": top_rejections,
        "followup": {
            **head["followup"],
            "by_town": sorted(followup_towns, key=lambda r: town_key(r["town"])),
        },
    }
