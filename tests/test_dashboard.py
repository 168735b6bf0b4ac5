"""The dashboard's figures, page, auth and the night's Data Docs, on a small hand-made warehouse
(SQLite and PostgreSQL) whose every number is known."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from rosterlink import figures, warehouse
from rosterlink.core import paths, settings
from rosterlink.dashboard import app as dashboard
from rosterlink.dashboard import charts
from rosterlink.dashboard import data as dashboard_data
from rosterlink.dashboard import page as dashboard_page
from rosterlink.validate import datadocs
from rosterlink.warehouse import schema

ID_NUMBER = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")
PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
DASHBOARD_VIEWS = sorted(p.stem for p in (paths.SQL_DIR / "views").glob("dashboard_*.sql"))

# ID numbers and phones that must never reach a page
HEAD_ID = "370406198001011235"
CADRE_ID = "370406197505050017"
PHONE_NO = "13812345678"


def _seed(eng: sa.Engine) -> None:
    """Two nights; see the figures asserted in ``test_figures_match_the_seeded_warehouse``."""
    t0 = dt.datetime(2026, 11, 24, 18, 0)
    files = [
        # file_id, department, name, status, read, loaded, rejected, run
        (1, "civil_affairs", "civil_affairs/a.xlsx", "loaded", 10, 8, 2, "night-a"),
        (2, "organization", "organization/c.xlsx", "loaded", 5, 5, 0, "night-a"),
        (3, "petition", "petition/k.csv", "rejected", 0, 0, 0, "night-a"),
        (4, "civil_affairs", "civil_affairs/a2.xlsx", "loaded", 4, 3, 1, "night-b"),
        (5, "civil_affairs", "civil_affairs/a-copy.xlsx", "duplicate", 0, 0, 0, "night-b"),
    ]
    findings = [
        (1, 3, "head_id_number", "id_bad_checksum"),
        (1, 5, "town", "town_unknown"),
        (1, 5, "phone", "phone_invalid"),
        (4, 2, "head_id_number", "id_bad_length"),
    ]
    households = [
        ("H1", "山城街道", "active"),
        ("H2", "店子镇", "active"),
        ("H3", "店子镇", "exited"),
        ("H4", "西集镇", "active"),
    ]
    categories = [
        ("H1", "hardship", "active"),
        ("H1", "orphan", "active"),
        ("H2", "hardship", "active"),
        ("H3", "hardship", "exited"),
        ("H4", "old_member", "active"),
    ]
    cadres = [
        ("C1", "county", "山城街道", "active"),
        ("C2", "section", "店子镇", "active"),
        ("C3", "ordinary", "西集镇", "active"),
        ("C4", "section", "店子镇", "departed"),
        ("C5", "county", "西集镇", "active"),
    ]
    full = {
        "work_team": "专班",
        "resolution_plan": "方案",
        "responsible_unit": "信访局",
        "stabilisation_measures": "措施",
    }
    cases = [
        ("K1", "XF2026-0001", "山城街道", "open", full),
        ("K2", "XF2026-0002", "店子镇", "open", {"responsible_unit": "民政局"}),
        ("K3", "XF2026-0003", "西集镇", "open", {"work_team": "   "}),
        ("K4", "XF2026-0004", "西集镇", "closed", full),
    ]
    pairs = [
        ("C1", "household", "H1", None),
        ("C2", "household", "H2", None),
        ("C3", "household", "H4", None),
        ("C1", "case", "K1", None),
        ("C2", "case", "K2", None),
        ("C4", "household", "H3", dt.date(2026, 11, 26)),
    ]
    summary_b = {
        "figures": {"households": {"active": 3, "exited": 1}, "pairs_current": {"household": 3, "case": 2}},
        "pairing": {"made_total": 1, "ended_total": 1, "cases_without_leader": 1},
    }
    with eng.begin() as conn:
        conn.execute(
            schema.intake_file.insert(),
            [
                {
                    "file_id": i,
                    "department": d,
                    "file_name": n,
                    "sha256": f"{i:064d}",
                    "size_bytes": 100,
                    "status": s,
                    "rows_read": r,
                    "rows_loaded": lo,
                    "rows_rejected": rj,
                    "received_at": t0,
                    "run_id": run,
                }
                for i, d, n, s, r, lo, rj, run in files
            ],
        )
        conn.execute(
            schema.rejected_row.insert(),
            [
                {
                    "file_id": f,
                    "sheet": "Sheet1",
                    "row_number": row,
                    "field": fld,
                    "reason_code": code,
                    "message": f"身份证号 {HEAD_ID} 有误",
                    "value": HEAD_ID,
                    "created_at": t0,
                }
                for f, row, fld, code in findings
            ],
        )
        conn.execute(
            schema.household.insert(),
            [
                {
                    "household_key": k,
                    "head_name": "张三",
                    "head_id_number": HEAD_ID,
                    "town": town,
                    "village": "一村",
                    "phone": PHONE_NO,
                    "status": st,
                }
                for k, town, st in households
            ],
        )
        conn.execute(
            schema.household_category.insert(),
            [{"household_key": k, "category": c, "status": st} for k, c, st in categories],
        )
        conn.execute(
            schema.cadre.insert(),
            [
                {
                    "cadre_key": k,
                    "name": "李四",
                    "id_number": CADRE_ID,
                    "rank": r,
                    "unit": "某局",
                    "town": town,
                    "phone": PHONE_NO,
                    "status": st,
                }
                for k, r, town, st in cadres
            ],
        )
        conn.execute(
            schema.petition_case.insert(),
            [
                {
                    "case_key": k,
                    "case_number": no,
                    "petitioner_name": "王五",
                    "petitioner_id_number": HEAD_ID,
                    "town": town,
                    "status": st,
                    **dict.fromkeys(full),
                    **extra,
                }
                for k, no, town, st, extra in cases
            ],
        )
        conn.execute(
            schema.pairing.insert(),
            [
                {
                    "cadre_key": c,
                    "target_kind": kind,
                    "target_key": t,
                    "valid_from": dt.date(2026, 11, 25),
                    "valid_to": end,
                    "end_reason": "cadre_departed" if end else None,
                    "made_reason": "new_target",
                }
                for c, kind, t, end in pairs
            ],
        )
        conn.execute(
            schema.night_run.insert(),
            [
                {
                    "run_id": "night-a",
                    "as_of": dt.date(2026, 11, 25),
                    "started_at": t0,
                    "finished_at": t0 + dt.timedelta(minutes=3),
                    "status": "success",
                    "summary": json.dumps(
                        {"figures": {"households": {"active": 4}}, "pairing": {"made_total": 5}}
                    ),
                },
                {
                    "run_id": "night-b",
                    "as_of": dt.date(2026, 11, 26),
                    "started_at": t0 + dt.timedelta(days=1),
                    "finished_at": t0 + dt.timedelta(days=1, minutes=2),
                    "status": "success",
                    "summary": json.dumps(summary_b),
                },
            ],
        )


def _seeded(url: str, tmp_path: Path) -> tuple[str, Path]:
    _seed(warehouse.connect(url))
    exports = tmp_path / "exports"
    docs = datadocs.night_dir(exports, "2026-11-26")
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html><body>docs of 2026-11-26</body></html>", encoding="utf-8")
    return url, exports


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def seeded(request, tmp_path: Path) -> tuple[str, Path]:
    """The seeded warehouse on SQLite and on PostgreSQL, and an export folder with one night's docs."""
    return _seeded(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"), tmp_path)


def test_migration_creates_the_dashboard_views(seeded):
    url, _ = seeded
    views = set(sa.inspect(warehouse.engine(url)).get_view_names())
    assert set(DASHBOARD_VIEWS) <= views
    assert set(DASHBOARD_VIEWS) == set(dashboard_data.VIEW_COLUMNS)


def test_dashboard_views_follow_the_house_sql_style():
    for name in DASHBOARD_VIEWS:
        text = (paths.SQL_DIR / "views" / f"{name}.sql").read_text(encoding="utf-8")
        assert text.startswith("--"), name  # says what it holds
        assert not re.search(r"select\s+\*|\.\*", text, re.IGNORECASE), name
        assert "link_review" not in text, name  # a view must not depend on a table that may be absent


def test_figures_match_the_seeded_warehouse(seeded):
    url, exports = seeded
    f = dashboard_data.figures(warehouse.engine(url), exports)
    assert f["ready"]
    assert f["night"]["run_id"] == "night-b"
    assert f["night"]["as_of"] == "2026-11-26"
    assert f["files"]["tonight"] == {"loaded": 1, "rejected": 0, "duplicate": 1, "pending": 0}
    assert f["files"]["all"] == {"loaded": 3, "rejected": 1, "duplicate": 1, "pending": 0}
    assert f["rows"]["tonight"] == {"civil_affairs": {"files": 2, "read": 4, "loaded": 3, "rejected": 1}}
    assert f["rows"]["all"] == {
        "civil_affairs": {"files": 3, "read": 14, "loaded": 11, "rejected": 3},
        "organization": {"files": 1, "read": 5, "loaded": 5, "rejected": 0},
        "petition": {"files": 1, "read": 0, "loaded": 0, "rejected": 0},
    }
    assert f["households"] == {
        "hardship": {"active": 2, "exited": 1},
        "orphan": {"active": 1},
        "old_member": {"active": 1},
    }
    assert f["households_by_status"] == {"active": 3, "exited": 1}
    assert f["pairs_by_town"] == [
        {"town": "山城街道", "households": 1, "cases": 1, "same_town": 1, "cadres": 1},
        {"town": "店子镇", "households": 1, "cases": 1, "same_town": 1, "cadres": 1},
        {"town": "西集镇", "households": 1, "cases": 0, "same_town": 1, "cadres": 1},
    ]
    spread = f["load_spread"]
    assert spread["household"]["county"] == {
        "loads": {"0": 1, "1": 1},
        "min": 0,
        "max": 1,
        "spread": 1,
        "cadres": 2,
    }
    assert spread["household"]["section"]["loads"] == {"1": 1}  # the departed cadre is not counted
    assert spread["household"]["ordinary"]["loads"] == {"1": 1}
    assert spread["case"] == {
        "county": {"loads": {"0": 1, "1": 1}, "min": 0, "max": 1, "spread": 1, "cadres": 2}
    }
    cases = f["cases"]
    assert cases["open"] == 3
    assert cases["without_county_leader"] == 2  # K2 is led by a section-level cadre, K3 by nobody
    assert cases["without_county_leader_cases"] == [
        {"case_number": "XF2026-0002", "town": "店子镇"},
        {"case_number": "XF2026-0003", "town": "西集镇"},
    ]
    assert cases["five_ones_gaps"] == {
        "leader": 1,
        "work_team": 2,
        "resolution_plan": 2,
        "responsible_unit": 1,
        "stabilisation_measures": 2,
    }
    assert cases["five_ones_complete"] == 1
    assert f["rejections"] == [
        {"department": "civil_affairs", "field": "head_id_number", "reason_code": "id_bad_length", "rows": 1}
    ]
    assert [n["run_id"] for n in f["nights"]] == ["night-b", "night-a"]
    newest = f["nights"][0]
    assert (newest["files"], newest["rows_read"], newest["rows_loaded"], newest["rows_rejected"]) == (
        2,
        4,
        3,
        1,
    )
    assert (
        newest["households_active"],
        newest["pairs_current"],
        newest["pairs_made"],
        newest["pairs_ended"],
        newest["cases_without_leader"],
    ) == (3, 5, 1, 1, 1)
    assert newest["data_docs"] is True
    assert f["nights"][1]["data_docs"] is False


def test_figures_are_the_same_before_the_views_exist(seeded):
    """A warehouse migrated before the views were added is read through the views' own SQL."""
    url, exports = seeded
    eng = warehouse.engine(url)
    with_views = dashboard_data.figures(eng, exports)
    with eng.begin() as conn:
        for name in DASHBOARD_VIEWS:
            conn.exec_driver_sql(f"DROP VIEW {name}")
    assert dashboard_data.figures(eng, exports) == with_views


def test_rejected_rows_per_reason_count_each_row_once(seeded):
    url, _ = seeded
    with warehouse.engine(url).connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT department, field, reason_code, findings, rejected_rows "
            "FROM dashboard_rejections_by_reason "
            "WHERE run_id = 'night-a' ORDER BY field, reason_code"
        ).all()
    assert [tuple(r) for r in rows] == [
        ("civil_affairs", "head_id_number", "id_bad_checksum", 1, 1),
        ("civil_affairs", "phone", "phone_invalid", 1, 1),
        ("civil_affairs", "town", "town_unknown", 1, 1),
    ]


def test_link_review_backlog_is_na_until_the_table_exists_then_counts_pending_items(seeded):
    url, exports = seeded
    eng = warehouse.engine(url)
    with eng.begin() as conn:  # a warehouse from before the link-review queue
        conn.exec_driver_sql("DROP TABLE IF EXISTS link_review")
    assert dashboard_data.figures(eng, exports)["link_review"]["available"] is False
    page = dashboard_page.render_page(
        dashboard_data.figures(eng, exports), warehouse="x", generated=dt.datetime(2026, 1, 1)
    )
    assert '<span data-figure="link_review.backlog">n/a</span>' in page
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE link_review (review_id INTEGER PRIMARY KEY, reason VARCHAR(32) NOT NULL, "
            "status VARCHAR(16) NOT NULL, decision VARCHAR(16), applied_at TIMESTAMP)"
        )
        conn.exec_driver_sql(
            "INSERT INTO link_review (review_id, reason, status, decision, applied_at) VALUES "
            "(1, 'model_uncertain', 'pending', NULL, NULL), (2, 'model_uncertain', 'pending', NULL, NULL), "
            "(3, 'id_name_conflict', 'pending', NULL, NULL), (4, 'cluster_bridge', 'decided', 'same', NULL), "
            "(5, 'model_uncertain', 'decided', 'different', '2026-11-26 02:00:00')"
        )
    review = dashboard_data.figures(eng, exports)["link_review"]
    assert review == {
        "available": True,
        "backlog": 3,
        "total": 5,
        "by_status": {"decided": 2, "pending": 3},
        "by_reason": {"id_name_conflict": 1, "model_uncertain": 2},
        "awaiting_apply": 1,
    }
    page = dashboard_page.render_page(
        dashboard_data.figures(eng, exports), warehouse="x", generated=dt.datetime(2026, 1, 1)
    )
    assert '<span data-figure="link_review.backlog">3</span>' in page


def test_page_shows_the_figures_and_never_an_id_number_or_phone(seeded):
    url, exports = seeded
    data = dashboard_data.figures(warehouse.engine(url), exports)
    page = dashboard_page.render_page(
        data, warehouse="sqlite:///w.db", generated=dt.datetime(2026, 11, 26, 3, 0)
    )
    assert not ID_NUMBER.search(page)
    assert not PHONE.search(page)
    assert not ID_NUMBER.search(json.dumps(data))
    assert not PHONE.search(json.dumps(data))
    assert "<script" not in page.lower()
    assert "http://" not in page
    assert "https://" not in page

    def shown(key: str) -> str:
        found = re.search(rf'data-figure="{re.escape(key)}">([^<]*)<', page)
        assert found, key
        return found.group(1)

    assert shown("night.as_of") == "2026-11-26"
    assert shown("files.tonight.duplicate") == "1"
    assert shown("rows.all.civil_affairs.rejected") == "3"
    assert shown("households.hardship.exited") == "1"
    assert shown("pairs.店子镇.cases") == "1"
    assert shown("cases.without_county_leader") == "2"
    assert shown("five_ones.work_team") == "2"
    assert shown("load.household.county.spread") == "1"
    assert 'href="data-docs/2026-11-26/index.html"' in page
    assert "<svg" in page


def test_page_of_an_empty_warehouse_says_no_night_has_run(tmp_path):
    eng = warehouse.engine(f"sqlite:///{tmp_path / 'empty.db'}")
    data = dashboard_data.figures(eng, tmp_path)
    assert data == {"ready": False}
    assert 'data-figure="ready"' in dashboard_page.render_page(
        data, warehouse="x", generated=dt.datetime(2026, 1, 1)
    )


def test_a_warehouse_value_holding_markup_is_escaped_on_the_page(seeded):
    url, exports = seeded
    script = '<script>alert("x")</script>'
    with warehouse.engine(url).begin() as conn:
        conn.execute(sa.text("UPDATE household SET town = :t WHERE household_key = 'H4'"), {"t": script})
        conn.execute(sa.text("UPDATE petition_case SET town = :t WHERE case_key = 'K3'"), {"t": script})
        conn.execute(sa.text("UPDATE rejected_row SET field = :t WHERE file_id = 4"), {"t": script})
    page = dashboard_page.render_page(
        dashboard_data.figures(warehouse.engine(url), exports),
        warehouse=script,
        generated=dt.datetime(2026, 1, 1),
    )
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert page.count(escaped) >= 5  # warehouse, town rows and chart labels, the case's town, the rejection
    assert f'data-figure="pairs.{escaped}.households">1<' in page  # in an attribute too


def test_the_page_links_its_stylesheet_and_inlines_no_style(seeded):
    url, exports = seeded
    page = dashboard_page.render_page(
        dashboard_data.figures(warehouse.engine(url), exports),
        warehouse="x",
        generated=dt.datetime(2026, 1, 1),
    )
    assert '<link rel="stylesheet" href="static/dashboard.css">' in page
    assert "<style" not in page
    assert "style=" not in page  # the page's CSP allows no inline style
    assert ".card-value" in (dashboard_page.STATIC_DIR / dashboard_page.STYLESHEET).read_text(
        encoding="utf-8"
    )


def test_page_numbers_and_times_read_as_people_expect():
    assert dashboard_page.number(1234567) == "1,234,567"
    assert dashboard_page.number(None) == "n/a"
    assert dashboard_page.number("2026-11-26") == "2026-11-26"
    assert dashboard_page.beijing(dt.datetime(2026, 11, 25, 18, 30)) == "2026-11-26 02:30 北京时间"
    assert dashboard_page.beijing("2026-11-25T18:30:00+00:00") == "2026-11-26 02:30 北京时间"
    assert dashboard_page.beijing(None) == "—"


def test_bar_chart_scales_bars_to_the_longest_row_and_draws_no_zero_part():
    chart = charts.hbar_chart(
        "t",
        [("a", [("loaded", 30), ("rejected", 10)]), ("b", [("loaded", 20), ("rejected", 0)])],
        {"loaded": "L"},
    )
    assert (chart.width, chart.height) == (520, 24 + 2 * 24 + 4)
    a, b = chart.rows
    assert [bar.width for bar in a.bars] == ["255.0", "85.0"]  # 340 px for the longest total, 40
    assert [bar.x for bar in a.bars] == ["120.0", "375.0"]
    assert [bar.width for bar in b.bars] == ["170.0"]  # the zero part is not drawn
    assert (a.total.text, a.total.x, b.total.x) == ("40", "464.0", "294.0")
    assert a.bars[1].colour == charts.PALETTE["rejected"]
    assert a.bars[0].title == "a · L: 30"
    assert [(entry.x, entry.text) for entry in chart.legend] == [(120, "L")]
    assert charts.hbar_chart("t", [], {}).empty


def test_column_chart_stacks_series_and_thins_labels_of_many_nights():
    labels = [f"2026-11-{d:02d}" for d in range(1, 31)]
    chart = charts.column_chart(
        "t", labels, {"loaded": "L", "rejected": "R"}, {"loaded": [10] * 30, "rejected": [0] * 29 + [30]}
    )
    assert chart.peak is not None
    assert chart.peak.text == "40"
    last = chart.columns[-1]
    assert [(bar.y, bar.height) for bar in last.bars] == [("130.0", "36.0"), ("22.0", "108.0")]
    shown = [c.label.text for c in chart.columns if c.label]
    assert shown == [
        "11-01",
        "11-03",
        "11-05",
        "11-07",
        "11-09",
        "11-11",
        "11-13",
        "11-15",
        "11-17",
        "11-19",
        "11-21",
        "11-23",
        "11-25",
        "11-27",
        "11-29",
    ]
    assert charts.column_chart("t", [], {}, {}).empty


def test_headline_figures_count_the_warehouse_once_for_every_reader(seeded):
    url, _ = seeded
    eng = warehouse.engine(url)
    head = figures.headline_figures(eng)
    assert head["files"] == {"loaded": 3, "rejected": 1, "duplicate": 1}
    assert head["rows"] == {"read": 19, "loaded": 16, "already": 0, "rejected": 3}
    assert head["households"] == {"active": 3, "exited": 1}
    assert head["categories_active"] == {"hardship": 2, "orphan": 1, "old_member": 1}
    assert head["cadres"] == {
        "county:active": 2,
        "section:active": 1,
        "section:departed": 1,
        "ordinary:active": 1,
    }
    assert head["cases"] == {"open": 3, "closed": 1}
    assert head["pairs_current"] == {"household": 3, "case": 2}
    assert head["review"]["available"] is True
    assert head["review"]["backlog"] == 0
    night = figures.night_figures(eng)
    assert list(night) == [
        "files",
        "households",
        "categories_active",
        "cadres",
        "cases",
        "pairs_current",
        "link_review",
        "rows",
        "followup",
    ]
    assert night["link_review"] == {}
    assert night["pairs_current"] == head["pairs_current"]
    # the dashboard shows the same counts
    shown = dashboard_data.figures(eng)
    assert shown["households_by_status"] == head["households"]
    assert shown["pairs_current"] == head["pairs_current"]
    assert shown["link_review"] == head["review"]


def test_review_queue_counts_pending_items_by_reason_and_is_absent_without_its_table(seeded):
    url, _ = seeded
    eng = warehouse.engine(url)
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO link_review (entity_kind, reason, record_id_l, record_id_r, display_l, display_r, "
            "evidence, status, created_at) VALUES "
            "('household', 'model_uncertain', 1, 2, '{}', '{}', '', 'pending', '2026-11-26'), "
            "('household', 'model_uncertain', 1, 3, '{}', '{}', '', 'pending', '2026-11-26'), "
            "('household', 'cluster_bridge', 1, 4, '{}', '{}', '', 'decided', '2026-11-26')"
        )
    with eng.connect() as conn:
        queue = figures.review_queue(conn)
    assert (queue["backlog"], queue["total"], queue["by_reason"], queue["awaiting_apply"]) == (
        2,
        3,
        {"model_uncertain": 2},
        1,
    )
    assert figures.night_figures(eng)["link_review"] == {"model_uncertain": 2}
    with eng.begin() as conn:
        conn.exec_driver_sql("DROP TABLE link_review")
    with eng.connect() as conn:
        assert figures.review_queue(conn)["available"] is False
    assert figures.night_figures(eng)["link_review"] == {}


def test_cli_figures_prints_the_night_figures_as_json(seeded, capsys):
    from rosterlink import cli

    url, _ = seeded
    assert cli.main(["figures", "--warehouse", url]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(figures.night_figures(warehouse.engine(url))))
    assert printed["rows"] == {"read": 19, "loaded": 16, "already": 0, "rejected": 3}


# --- the app and its protection ------------------------------------------------------------------
@pytest.fixture
def app_settings(sqlite_url, tmp_path) -> settings.Settings:
    url, exports = _seeded(sqlite_url, tmp_path)
    return settings.load(warehouse_url=url, export_dir=str(exports))


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def test_app_serves_page_json_and_data_docs_to_an_allowed_user(app_settings):
    client = _client(dashboard.create_app(authorize=lambda: "analyst", settings_loader=lambda: app_settings))
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-figure="cases.open">3<' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "style-src 'self';" in page.headers["content-security-policy"]  # the stylesheet, no inline style
    css = client.get("/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert ".card-value" in css.text
    assert client.get("/api/figures").json()["cases"]["open"] == 3
    docs = client.get("/data-docs/2026-11-26/index.html")
    assert docs.status_code == 200
    assert "docs of 2026-11-26" in docs.text
    assert "connect-src 'none'" in docs.headers["content-security-policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/data-docs/2026-11-26/../../../../etc/passwd",
        "/data-docs/2026-11-26/%2e%2e/%2e%2e/secret.txt",
        "/data-docs/..%2F..%2Fexports/index.html",
        "/data-docs/2026-11-27/index.html",
        "/data-docs/latest/index.html",
    ],
)
def test_data_docs_route_serves_nothing_outside_a_night_folder(app_settings, path):
    (Path(app_settings.export_dir) / "secret.txt").write_text("secret", encoding="utf-8")
    client = _client(dashboard.create_app(authorize=lambda: "analyst", settings_loader=lambda: app_settings))
    response = client.get(path)
    assert response.status_code == 404
    assert "secret" not in response.text
    assert "root:" not in response.text


@pytest.fixture
def airflow_auth(airflow_db, monkeypatch):
    """Airflow's simple auth manager, initialised in-process as the API server does it."""
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "rosterlink-dashboard-unit-test-" + "0" * 48)
    monkeypatch.setenv(
        "AIRFLOW__CORE__AUTH_MANAGER",
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
    )
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "analyst:viewer")
    from airflow.api_fastapi.app import create_auth_manager, purge_cached_app

    purge_cached_app()
    manager = create_auth_manager()
    manager.init()
    yield manager
    purge_cached_app()


def test_real_airflow_auth_refuses_requests_without_a_valid_airflow_token(airflow_auth, app_settings):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = _client(dashboard.create_app(settings_loader=lambda: app_settings))
    assert client.get("/api/figures").status_code == 401
    assert client.get("/data-docs/2026-11-26/index.html").status_code == 401
    assert client.get("/static/dashboard.css").status_code == 401
    browser = client.get("/", headers={"accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303
    assert browser.headers["location"].startswith("/auth/login?next=")
    client.cookies.set("_token", "not-a-jwt")
    assert client.get("/api/figures").status_code == 403
    token = airflow_auth.generate_jwt(SimpleAuthManagerUser(username="analyst", role="viewer"))
    client.cookies.set("_token", token)
    assert client.get("/api/figures").status_code == 200  # the cookie the Airflow UI holds
    client.cookies.clear()
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200  # an API client


def test_real_airflow_auth_refuses_a_user_who_may_not_read_the_dag(airflow_auth, app_settings, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    asked = []

    def is_authorized_dag(**kwargs):
        asked.append((kwargs["method"], kwargs["details"].id))
        return False

    monkeypatch.setattr(airflow_auth, "is_authorized_dag", is_authorized_dag)
    client = _client(dashboard.create_app(settings_loader=lambda: app_settings))
    client.cookies.set(
        "_token", airflow_auth.generate_jwt(SimpleAuthManagerUser(username="analyst", role="viewer"))
    )
    assert client.get("/").status_code == 403
    assert asked == [("GET", "rosterlink_nightly")]


def test_plugin_registers_the_app_and_a_nav_entry_without_importing_the_dashboard():
    import importlib.util
    import sys

    sys.modules.pop("rosterlink.dashboard.app", None)
    spec = importlib.util.spec_from_file_location(
        "rosterlink_dashboard_plugin", paths.PLUGINS_DIR / "rosterlink_dashboard.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (
        "rosterlink.dashboard.app" not in sys.modules
    )  # every Airflow process imports the plugin: keep it cheap
    plugin = module.RosterlinkDashboardPlugin
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/rosterlink"
    (view,) = plugin.external_views
    assert view["url_route"] == "rosterlink"
    assert view["href"] == "rosterlink/"
    assert view["destination"] == "nav"


# --- the night's Data Docs -----------------------------------------------------------------------
@pytest.mark.slow
def test_data_docs_document_every_sheet_the_night_validated(tmp_path):
    from rosterlink import tasks
    from rosterlink.synthetic import sample

    intake = tmp_path / "intake"
    sample.generate(intake, night=1, scale=0.05)
    cfg = settings.load(
        intake_dir=str(intake),
        warehouse_url=f"sqlite:///{tmp_path / 'w.db'}",
        export_dir=str(tmp_path / "exports"),
    )
    items = [tasks.validate_file(cfg, tasks.read_file(cfg, item)) for item in tasks.scan(cfg, "night-1")]
    result = datadocs.build_night(cfg, items, as_of=dt.date(2026, 11, 25), run_id="night-1")
    site = datadocs.night_dir(cfg.export_dir, "2026-11-25")
    assert result == {"data_docs": str(site), "sheets": result["sheets"]}
    assert result["sheets"] >= len(items)
    assert datadocs.nights_with_docs(cfg.export_dir) == ["2026-11-25"]
    # per file, the rows failing an error expectation are exactly the rows the night rejects
    sheets = json.loads((site / "results.json").read_text(encoding="utf-8"))["sheets"]
    errors: dict[int, int] = {}
    for s in sheets:
        errors[s["file_id"]] = errors.get(s["file_id"], 0) + s["error_rows"]
        assert s["page"]
        assert (site / s["page"]).is_file()
    assert errors == {i["file_id"]: i["rows_rejected"] for i in items}
    pages = list(site.rglob("*.html"))
    assert len(pages) > len(sheets)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not ID_NUMBER.search(text), page.name
        assert not PHONE.search(text), page.name
        assert not re.search(r"""<(script|link|img)\b[^>]*(src|href)=["']https?://""", text, re.I), page.name
    index = (site / "index.html").read_text(encoding="utf-8")
    assert index.count("<tr class=") == len(sheets)
    # a second build of the same night replaces the site whole
    again = datadocs.build_night(cfg, items, as_of=dt.date(2026, 11, 25), run_id="night-1")
    assert again["data_docs"] == str(site)
    # (beside the night's site only the validate tasks' kept results, no half-built folder)
    assert sorted(p.name for p in site.parent.iterdir()) == [datadocs.RESULTS_DIR, "2026-11-25"]


def test_data_docs_failure_never_fails_the_night(tmp_path):
    cfg = settings.load(
        warehouse_url="postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
        export_dir=str(tmp_path),
    )
    result = datadocs.build_night(
        cfg, [{"file_id": 1, "status": "validated"}], as_of=dt.date(2026, 11, 25), run_id="r"
    )
    assert result["data_docs"] is None
    assert result["error"]


def _night_figures(url: str) -> dict[int, int]:
    with warehouse.engine(url).connect() as conn:
        return dict(
            conn.exec_driver_sql(
                "SELECT file_id, rows_rejected FROM intake_file WHERE status = 'loaded'"
            ).all()
        )


@pytest.mark.slow
def test_a_night_through_the_dag_writes_its_data_docs_and_the_page_links_them(tmp_path, run_night):
    from rosterlink.synthetic import sample

    intake, exports, url = tmp_path / "intake", tmp_path / "exports", f"sqlite:///{tmp_path / 'w.db'}"
    sample.generate(intake, night=1, scale=0.05)
    assert run_night(intake, url, exports, as_of="2026-11-25") == "success"
    site = datadocs.night_dir(exports, "2026-11-25")
    assert (site / "index.html").is_file()
    # the pages document exactly the night's files: per file, the rows failing an error expectation
    # are the rows the night rejected
    sheets = json.loads((site / "results.json").read_text(encoding="utf-8"))["sheets"]
    per_file: dict[int, int] = {}
    for sheet in sheets:
        per_file[sheet["file_id"]] = per_file.get(sheet["file_id"], 0) + sheet["error_rows"]
        assert (site / sheet["page"]).is_file()
    rejected = _night_figures(url)
    assert per_file == rejected
    assert sum(rejected.values()) > 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not ID_NUMBER.search(text), page.name
        assert not PHONE.search(text), page.name

    cfg = settings.load(warehouse_url=url, export_dir=str(exports))
    client = _client(dashboard.create_app(authorize=lambda: "analyst", settings_loader=lambda: cfg))
    page = client.get("/").text
    link = re.search(r'<a href="([^"]+)" data-link="data-docs">', page)
    assert link
    assert link.group(1) == "data-docs/2026-11-25/index.html"
    docs = client.get("/" + link.group(1))
    assert docs.status_code == 200
    assert "Data Docs · 2026-11-25" in docs.text
    assert docs.text.count("<tr class=") == len(sheets)

    # a second run of the same night, nothing new to read: the night's pages stay as they were
    before = (site / "results.json").read_text(encoding="utf-8")
    assert run_night(intake, url, exports, as_of="2026-11-25") == "success"
    assert (site / "results.json").read_text(encoding="utf-8") == before
    # the next night has no file: no Data Docs for it, the first night's are still linked in the history
    assert run_night(intake, url, exports, as_of="2026-11-26") == "success"
    assert not datadocs.night_dir(exports, "2026-11-26").exists()
    page = client.get("/").text
    assert "本夜无 Data Docs" in page
    assert 'href="data-docs/2026-11-25/index.html"' in page


@pytest.mark.slow
def test_a_night_whose_data_docs_cannot_be_written_still_succeeds(tmp_path, run_night):
    from rosterlink.synthetic import sample

    intake, exports, url = tmp_path / "intake", tmp_path / "exports", f"sqlite:///{tmp_path / 'w.db'}"
    sample.generate(intake, night=1, scale=0.05)
    exports.mkdir()
    (exports / datadocs.DOCS_DIR).write_text("not a folder", encoding="utf-8")  # the docs cannot go there
    assert run_night(intake, url, exports, as_of="2026-11-25") == "success"
    assert datadocs.nights_with_docs(exports) == []
    rejected = _night_figures(url)
    assert rejected
    assert sum(rejected.values()) > 0
    assert list((exports).glob("*.xlsx"))  # and the exports written


def test_dashboard_reads_the_warehouse_named_by_the_airflow_connection(monkeypatch):
    from rosterlink.dashboard import app as dashboard

    monkeypatch.setenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE", "postgres://reporter@db.example:5432/rosterlink")
    assert (
        dashboard.airflow_settings().warehouse_url
        == "postgresql+psycopg://reporter@db.example:5432/rosterlink"
    )
    monkeypatch.delenv("AIRFLOW_CONN_ROSTERLINK_WAREHOUSE")
    assert dashboard.airflow_settings().warehouse_url.startswith("sqlite:///")


def test_files_found_outside_the_department_folders_show_a_chinese_label_not_their_code(seeded):
    url, exports = seeded
    eng = warehouse.engine(url)
    with eng.begin() as conn:
        # a roster a clerk dropped at the intake root: recorded under department "unsorted"
        conn.execute(
            schema.intake_file.insert().values(
                file_id=6,
                department="unsorted",
                file_name="困难家庭名册.xlsx",
                sha256=f"{6:064d}",
                size_bytes=100,
                status="rejected",
                rows_read=2,
                rows_loaded=0,
                rows_rejected=2,
                received_at=dt.datetime(2026, 11, 25, 18, 0),
                run_id="night-b",
            )
        )
        conn.execute(
            schema.rejected_row.insert().values(
                file_id=6,
                sheet="Sheet1",
                row_number=3,
                field="head_id_number",
                reason_code="file_wrong_department",
                message="放错文件夹",
                created_at=dt.datetime(2026, 11, 25, 18, 0),
            )
        )
    data = dashboard_data.figures(eng, exports)
    page = dashboard_page.render_page(
        data, warehouse="sqlite:///w.db", generated=dt.datetime(2026, 11, 26, 3)
    )
    visible = re.sub(r"<[^>]*>", " ", page)  # the text people read, without attributes
    assert "未归类（放错文件夹）" in visible
    assert "unsorted" not in visible
    context = dashboard_page.page_context(data, "sqlite:///w.db", dt.datetime(2026, 11, 26, 3))
    assert {d["code"]: d["label"] for d in context["departments"]["rows"]}[
        "unsorted"
    ] == "未归类（放错文件夹）"
    assert {r["department_label"] for r in context["rejections"] if r["department"] == "unsorted"} == {
        "未归类（放错文件夹）"
    }
