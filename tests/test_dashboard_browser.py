"""End to end in a real browser: a sample night through the DAG, the Airflow API server with this
project's plugins, and headless Chromium (Playwright) signing in to Airflow and reading the
dashboard; every figure checked is compared with the warehouse queried here directly.

Needs /usr/bin/chromium (``scripts/ensure-system-deps.sh`` installs it; ``make test`` runs it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from html import escape as html_escape
from pathlib import Path

import pytest

from rosterlink import warehouse
from rosterlink.core import settings
from rosterlink.synthetic import sample
from rosterlink.validate import datadocs

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USER, PASSWORD = "analyst", "rosterlink-test-Pw-7"
AS_OF = "2026-11-25"
ID_NUMBER = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")
PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@contextlib.contextmanager
def api_server(home: Path, env_extra: dict[str, str], log_path: Path, timeout: float = 120) -> Iterator[str]:
    """``airflow api-server`` on a free port (``scripts/screenshots.py``'s, the one ``make
    screenshots`` uses); yields its base URL and stops its process group afterwards."""
    script = _screenshots_script()
    env = {**os.environ, "AIRFLOW_HOME": str(home), **env_extra}
    with contextlib.ExitStack() as stack:
        try:
            base = stack.enter_context(script.api_server(env, log_path, timeout))
        except RuntimeError as exc:  # did not start: show why
            pytest.fail(f"{exc}\n{script.tail(log_path, 60)}")
        yield base


def _q(url: str, sql: str) -> list[tuple]:
    with warehouse.engine(url).connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


def _one(url: str, sql: str) -> int:
    return int(_q(url, sql)[0][0] or 0)


def test_dashboard_in_the_airflow_ui_shows_the_warehouse_figures(tmp_path, run_night, airflow_db):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run scripts/ensure-system-deps.sh")
    playwright_api = pytest.importorskip("playwright.sync_api")

    # --- a night: the sample district at a tenth of its size, through the real DAG -----------------
    intake, exports = tmp_path / "intake", tmp_path / "exports"
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    sample.generate(intake, night=1, scale=0.1)
    assert run_night(intake, url, exports, as_of=AS_OF) == "success"
    cfg = settings.load(intake_dir=str(intake), warehouse_url=url, export_dir=str(exports))
    (run_id,) = _q(url, "SELECT run_id FROM night_run")[0]
    site = datadocs.night_dir(cfg.export_dir, AS_OF)
    assert (site / "index.html").is_file()  # written by the night's document_validation task

    # --- the API server with this project's plugins and two users ----------------------------------
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}), encoding="utf-8")
    env = {
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "rosterlink-browser-test-" + "x" * 48,
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "ROSTERLINK_WAREHOUSE_URL": url,
        "ROSTERLINK_EXPORT_DIR": str(exports),
    }
    outside: list[str] = []
    with (
        api_server(airflow_db, env, tmp_path / "api-server.log") as base,
        playwright_api.sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.on(
                "request",
                lambda r: (
                    outside.append(r.url)
                    if r.url.startswith(("http:", "https:", "ws:", "wss:")) and not r.url.startswith(base)
                    else None
                ),
            )

            # not signed in: the dashboard sends the browser to Airflow's login page, the API says 401
            assert page.request.get(f"{base}/rosterlink/api/figures").status == 401
            page.goto(f"{base}/rosterlink/")
            assert "/auth/login" in page.url
            page.get_by_label("Username").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/rosterlink/")

            def shown(key: str) -> str:
                return page.locator(f'[data-figure="{key}"]').first.inner_text().strip()

            def number(key: str) -> int:
                return int(shown(key).replace(",", ""))

            # --- every figure against the warehouse ---------------------------------------------
            assert shown("night.as_of") == AS_OF
            assert shown("night.status") == "success"
            tonight = f"run_id = '{run_id}'"
            for status in ("loaded", "rejected", "duplicate"):
                assert number(f"files.tonight.{status}") == _one(
                    url, f"SELECT COUNT(*) FROM intake_file WHERE {tonight} AND status = '{status}'"
                ), status
            for key, col in (("read", "rows_read"), ("loaded", "rows_loaded"), ("rejected", "rows_rejected")):
                assert number(f"rows.tonight.{key}") == _one(
                    url, f"SELECT SUM({col}) FROM intake_file WHERE {tonight}"
                )
            for dept, loaded, rejected in _q(
                url,
                "SELECT department, SUM(rows_loaded), SUM(rows_rejected) "
                "FROM intake_file GROUP BY department",
            ):
                assert (number(f"rows.all.{dept}.loaded"), number(f"rows.all.{dept}.rejected")) == (
                    loaded,
                    rejected,
                )
            assert number("households.active") == _one(
                url, "SELECT COUNT(*) FROM household WHERE status = 'active'"
            )
            for category, n in _q(
                url,
                "SELECT category, COUNT(*) FROM household_category WHERE status = 'active' GROUP BY category",
            ):
                assert number(f"households.{category}.active") == n, category
            town_pairs = _q(
                url,
                "SELECT h.town, COUNT(*) FROM pairing p JOIN household h ON h.household_key = "
                "p.target_key WHERE p.target_kind = 'household' AND p.valid_to IS NULL GROUP BY h.town",
            )
            assert town_pairs
            for town, n in town_pairs:
                assert number(f"pairs.{town}.households") == n, town
            assert number("pairs.total") == _one(url, "SELECT COUNT(*) FROM pairing WHERE valid_to IS NULL")
            assert number("cases.open") == _one(
                url, "SELECT COUNT(*) FROM petition_case WHERE status = 'open'"
            )
            assert number("cases.without_county_leader") == _one(
                url,
                """
                SELECT COUNT(*) FROM petition_case k WHERE k.status = 'open' AND NOT EXISTS (
                    SELECT 1 FROM pairing p JOIN cadre c ON c.cadre_key = p.cadre_key
                    WHERE p.target_kind = 'case' AND p.target_key = k.case_key AND p.valid_to IS NULL
                      AND c.rank = 'county' AND c.status = 'active')""",
            )
            for item in ("work_team", "resolution_plan", "responsible_unit", "stabilisation_measures"):
                assert number(f"five_ones.{item}") == _one(
                    url,
                    f"SELECT COUNT(*) FROM petition_case WHERE status = 'open' "
                    f"AND TRIM(COALESCE({item}, '')) = ''",
                ), item
            assert number("five_ones.leader") == _one(
                url,
                """
                SELECT COUNT(*) FROM petition_case k WHERE k.status = 'open' AND NOT EXISTS (
                    SELECT 1 FROM pairing p WHERE p.target_kind = 'case' AND p.target_key = k.case_key
                    AND p.valid_to IS NULL)""",
            )
            loads = _q(
                url,
                """SELECT c.rank, COUNT(p.pairing_id) FROM cadre c LEFT JOIN pairing p
                   ON p.cadre_key = c.cadre_key AND p.target_kind = 'household' AND p.valid_to IS NULL
                   WHERE c.status = 'active' GROUP BY c.cadre_key, c.rank""",
            )
            for rank in {r for r, _ in loads}:
                mine = [n for r, n in loads if r == rank]
                assert (number(f"load.household.{rank}.min"), number(f"load.household.{rank}.max")) == (
                    min(mine),
                    max(mine),
                ), rank
            pending = (
                _q(url, "SELECT COUNT(*) FROM link_review WHERE status = 'pending'")
                if "link_review"
                in {t for (t,) in _q(url, "SELECT name FROM sqlite_master WHERE type = 'table'")}
                else None
            )
            assert shown("link_review.backlog") == ("n/a" if pending is None else str(pending[0][0]))
            assert number("nights.0.rows_loaded") == _one(
                url, f"SELECT SUM(rows_loaded) FROM intake_file WHERE {tonight}"
            )
            html = page.content()
            assert not ID_NUMBER.search(html)
            assert not PHONE.search(html)
            assert page.locator("svg.chart").count() >= 6
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # --- the same page framed in the Airflow UI through the nav entry -------------------------
            active = shown("households.active")
            page.goto(f"{base}/plugin/rosterlink")
            framed = page.frame_locator('iframe[title="Rosterlink"]')
            assert framed.locator('[data-figure="households.active"]').inner_text() == active

            # --- the night's Data Docs, linked from the page ---------------------------------------
            page.goto(f"{base}/rosterlink/")
            with page.expect_navigation():
                page.locator('a[data-link="data-docs"]').click()
            assert page.url == f"{base}/rosterlink/data-docs/{AS_OF}/index.html"
            rejected = dict(
                _q(
                    url,
                    f"SELECT file_id, rows_rejected FROM intake_file WHERE {tonight} AND status = 'loaded'",
                )
            )
            per_file: dict[int, int] = {}
            for tr in page.locator("tr[data-file-id]").all():
                file_id = int(tr.get_attribute("data-file-id"))
                per_file[file_id] = per_file.get(file_id, 0) + int(
                    tr.locator('[data-figure="error_rows"]').inner_text()
                )
            assert per_file == rejected
            with page.expect_navigation():
                page.get_by_role("link", name="结果页").first.click()
            assert "Expectation Validation Result" in page.content()
            assert not ID_NUMBER.search(page.content())
            assert not PHONE.search(page.content())
            assert (site / "index.html").is_file()
        finally:
            browser.close()
    assert outside == [], f"the pages loaded something from outside the API server: {outside[:5]}"


def _screenshots_script():
    """``scripts/screenshots.py`` (``make screenshots``), loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_screenshots", ROOT / "scripts" / "screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_feedback_workbook_drawn_for_the_readme_shows_what_the_clerk_sees(tmp_path):
    """The README's feedback screenshot: the workbook drawn with its widths, fills, frozen header
    and filter, every rejected row as the workbook holds it (masked), then saved by Chromium."""
    import openpyxl

    from rosterlink import export, tasks

    shots = _screenshots_script()
    intake = tmp_path / "intake"
    sample.generate(intake, night=1, scale=0.05)
    cfg = settings.load(
        intake_dir=str(intake),
        warehouse_url=f"sqlite:///{tmp_path / 'w.db'}",
        export_dir=str(tmp_path / "exports"),
    )
    items = [tasks.validate_file(cfg, tasks.read_file(cfg, i)) for i in tasks.scan(cfg, "night-1")]
    tasks.load(cfg, items)
    export.write_feedback(warehouse.connect(cfg.warehouse_url), cfg, [i["file_id"] for i in items])
    workbook = shots.feedback_with_rejections(intake)
    assert workbook.parent == intake / "civil_affairs" / "feedback"

    page = shots.workbook_html(workbook, max_rows=200)
    wb = openpyxl.load_workbook(workbook)
    errors = wb["错误明细"]
    rejected = [
        row for row in errors.iter_rows(min_row=2, values_only=True) if any(v is not None for v in row)
    ]
    assert rejected
    assert errors.freeze_panes == "A2"
    section = page[page.index('data-sheet="错误明细"') :]
    section = section[: section.index("</section>")]
    # every rejected row, as the workbook holds it, on the red fill; widths from the workbook
    for _sheet, row_number, header, value, _ in rejected:
        assert f"<div>{row_number}</div>" in section
        assert html_escape(header) in section
        if value:
            assert f"<div>{html_escape(str(value))}</div>" in section
    assert section.count("background:#FFC7CE") == 5 * len(rejected)
    widths = [shots._width_px(errors.column_dimensions[c].width) for c in "ABCDE"]  # noqa: SLF001
    assert all(f'<col style="width:{w}px">' in section for w in widths)
    # the frozen header: the line under row 1, with a filter button on each of its five cells
    assert section.count('class="frozen-last"') == 1
    assert section.count('class="filter"') == 5
    assert all(f'">{name}</span>' in page for name in wb.sheetnames)  # the sheet tabs
    assert not ID_NUMBER.search(page)
    assert not PHONE.search(page)

    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run scripts/ensure-system-deps.sh")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            shots.feedback_png(browser, workbook, tmp_path, tmp_path / "feedback.png")
        finally:
            browser.close()
    png = (tmp_path / "feedback.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) <= shots.MAX_PNG_BYTES
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 1000
    assert height > 400


def _hardship_book(path: Path, rows: list[tuple[str, str]]) -> None:
    """A civil affairs roster as a clerk saves it: a title row, the header, one row per (name, ID)."""
    import openpyxl

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "特困家庭"
    ws.append(["山亭区特困家庭花名册"])
    ws.append(["户主姓名", "身份证号码", "镇街", "村(居)", "家庭人口"])
    for name, id_number in rows:
        ws.append([name, id_number, "店子镇", "东村", "3"])
    wb.save(path)


def test_data_docs_show_statuses_and_a_working_filter_in_chromium_with_the_network_blocked(tmp_path):
    """Issue 13's check: the night's validation pages, opened from disk in headless Chromium with
    every request that is not a file aborted, show each sheet's status and filter to failed only."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run scripts/ensure-system-deps.sh")
    playwright_api = pytest.importorskip("playwright.sync_api")
    from rosterlink import tasks
    from rosterlink.core import idnumber

    def an_id(seq: int) -> str:
        return idnumber.make("370406", dt.date(1975, 3, 4), seq)

    intake = tmp_path / "intake"
    _hardship_book(intake / "civil_affairs" / "店子镇特困.xlsx", [("张一", an_id(1)), ("张二", an_id(2))])
    _hardship_book(intake / "civil_affairs" / "东村特困.xlsx", [("李一", an_id(3)), ("李二", "")])
    cfg = settings.load(
        intake_dir=str(intake),
        warehouse_url=f"sqlite:///{tmp_path / 'w.db'}",
        export_dir=str(tmp_path / "exports"),
    )
    items = [tasks.validate_file(cfg, tasks.read_file(cfg, i)) for i in tasks.scan(cfg, "night-1")]
    result = datadocs.build_night(cfg, items, as_of=dt.date.fromisoformat(AS_OF), run_id="night-1")
    site = datadocs.night_dir(cfg.export_dir, AS_OF)
    assert result["sheets"] == 2

    blocked: list[str] = []

    def only_files(route) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
            context.route("**/*", only_files)
            page = context.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((site / "index.html").as_uri())

            ok, bad = page.locator("#sheets tr.ok"), page.locator("#sheets tr.bad")
            assert ok.count() == 1
            assert bad.count() == 1
            assert ok.locator(".status").inner_text().strip() == "通过"
            assert bad.locator(".status").inner_text().strip() == "未通过"
            mark = bad.locator(".status svg").bounding_box()
            assert mark
            assert mark["width"] > 0
            assert "东村特困.xlsx" in bad.inner_text()
            assert bad.locator('[data-figure="error_rows"]').inner_text() == "1"
            # the filter: failed only, then everything again
            page.get_by_label("只看未全部通过的工作表").check()
            assert not ok.is_visible()
            assert bad.is_visible()
            page.get_by_label("只看未全部通过的工作表").uncheck()
            assert ok.is_visible()

            # the failing sheet's page: its rules on the clerk's columns, with the same filter
            with page.expect_navigation():
                bad.get_by_role("link", name="结果页").click()
            unmet = page.locator("#checks tr.bad")
            assert unmet.count() >= 1
            assert "身份证号码" in unmet.first.inner_text()
            assert unmet.first.locator(".status").inner_text().strip() == "不满足"
            met = page.locator("#checks tr.ok")
            assert met.first.is_visible()
            page.get_by_label("只看未满足的规则").check()
            assert not met.first.is_visible()
            assert unmet.first.is_visible()
            assert not ID_NUMBER.search(page.content())
            page.screenshot(path=str(tmp_path / "data-docs-sheet.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
    assert blocked == [], f"the pages asked for something outside the site: {blocked[:5]}"
