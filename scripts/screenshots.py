#!/usr/bin/env python3
"""The README's screenshots, made by the project's own commands.

    make screenshots                      # or: .venv/bin/python scripts/screenshots.py

1. ``rosterlink sample`` writes the sample intake of the reference district (night 1) into a
   scratch folder (``data/screenshots/``, replaced on every run) and ``rosterlink nightly`` runs
   one night through Airflow on a SQLite warehouse there.
2. ``airflow api-server`` starts on a free local port with this project's plugins and one viewer
   account (Airflow's simple auth manager, a random password); headless Chromium signs in through
   Airflow's login page and saves the dashboard (``/rosterlink/``) as ``dashboard.png``.
3. A feedback workbook with rejected rows (``<intake>/<department>/feedback/*.结果.xlsx``) is
   opened with openpyxl and drawn as a spreadsheet in HTML (column widths, fills, bold, wrapped
   text, the frozen header row and its filter buttons, the sheet tabs), which Chromium saves as
   ``feedback.png``. What is drawn is what the workbook holds: ID numbers and phones were masked
   by the export; the page is checked for any full ID number or phone before it is saved.

Needs /usr/bin/chromium and CJK fonts (``scripts/ensure-system-deps.sh``, which ``make
screenshots`` runs first). Nothing is loaded from outside this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import html
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
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
USER = "analyst"
AS_OF = "2026-11-25"
DEPARTMENT_ORDER = ("civil_affairs", "womens_federation", "organization", "petition")
MAX_PNG_BYTES = 500_000
FULL_ID = re.compile(
    r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
    r"[0-9]{3}[0-9Xx](?![0-9])"
)
FULL_PHONE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def say(text: str) -> None:
    print(f"screenshots: {text}", flush=True)


# ================================================================================================
# 1. the night


def run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    """One of the project's commands; its output goes to ``log`` (shown on failure)."""
    with log.open("ab") as sink:
        done = subprocess.run(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.stdout.write(tail(log))
        raise SystemExit(
            f"screenshots: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))} "
            f"failed ({done.returncode}); see {log}"
        )


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]) + "\n"


def sample_night(work: Path, scale: float, env: dict[str, str]) -> None:
    intake = work / "intake"
    cli = str(BIN / "rosterlink")
    say(f"sample intake (night 1, scale {scale}) -> {intake}")
    run(
        [cli, "sample", "--out", str(intake), "--night", "1", "--scale", str(scale)],
        env,
        work / "commands.log",
    )
    say("one night through Airflow (rosterlink nightly) ...")
    run(
        [
            cli,
            "nightly",
            "--intake",
            str(intake),
            "--warehouse",
            env["ROSTERLINK_WAREHOUSE_URL"],
            "--exports",
            str(work / "exports"),
            "--as-of",
            AS_OF,
        ],
        env,
        work / "commands.log",
    )


# ================================================================================================
# 2. the API server and the dashboard


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def api_server(env: dict[str, str], log_path: Path, timeout: float = 180) -> Iterator[str]:
    """``airflow api-server`` on a free port in its own process group; yields its base URL.

    Waits (bounded) for ``/api/v2/monitor/health``; on exit stops the process group it started
    (SIGTERM, then SIGKILL after 20 s)."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                str(BIN / "airflow"),
                "api-server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                sys.stdout.write(tail(log_path))
                raise RuntimeError(f"api-server exited with {proc.returncode}; see {log_path}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                sys.stdout.write(tail(log_path))
                raise RuntimeError(f"api-server not healthy after {timeout:.0f} s; see {log_path}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def server_env(work: Path, env: dict[str, str]) -> tuple[dict[str, str], str]:
    """The API server's environment (this project's plugins, one viewer) and the viewer's random
    password (in a file only the API server reads)."""
    password = secrets.token_urlsafe(18)
    passwords = work / "passwords.json"
    passwords.write_text(json.dumps({USER: password}), encoding="utf-8")
    passwords.chmod(0o600)
    return {
        **env,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
    }, password


def dashboard_png(browser, base: str, password: str, target: Path) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            outside.append(r.url)
            if r.url.startswith(("http:", "https:", "ws:", "wss:")) and not r.url.startswith(base)
            else None
        ),
    )
    page.goto(f"{base}/rosterlink/")
    if "/auth/login" in page.url:
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base}/rosterlink/")
    page.locator('[data-figure="night.as_of"]').wait_for()
    if page.locator('[data-figure="night.as_of"]').inner_text().strip() != AS_OF:
        raise SystemExit("screenshots: the dashboard does not show tonight's night")
    text = page.content()
    if FULL_ID.search(text) or FULL_PHONE.search(text):
        raise SystemExit("screenshots: the dashboard shows a full ID number or phone; nothing saved")
    if outside:
        raise SystemExit(f"screenshots: the dashboard loaded something from outside: {outside[:3]}")
    save_png(page, target, full_page=True)
    page.close()


def save_png(page, target: Path, *, full_page: bool = False, element=None) -> None:
    """A PNG under ``MAX_PNG_BYTES``: at the CSS pixel size, then smaller if it must be."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for scale in (1.0, 0.85, 0.7):
        if scale != 1.0:
            page.evaluate(f"document.body.style.zoom = '{scale}'")
        if element is not None:
            element.screenshot(path=str(target))
        else:
            page.screenshot(path=str(target), full_page=full_page)
        if target.stat().st_size <= MAX_PNG_BYTES:
            break
    say(
        f"{target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} "
        f"({target.stat().st_size // 1024} KB)"
    )


# ================================================================================================
# 3. a feedback workbook, drawn as a spreadsheet


def feedback_with_rejections(intake: Path) -> Path:
    """A feedback workbook with rejected rows: of the first department (civil affairs first) that
    has one, the workbook with the most."""
    import openpyxl

    found: list[tuple[int, int, str, Path]] = []
    for order, department in enumerate(DEPARTMENT_ORDER):
        for path in sorted((intake / department / "feedback").glob("*.结果.xlsx")):
            wb = openpyxl.load_workbook(path, read_only=True)
            try:
                errors = (
                    sum(
                        1
                        for row in wb["错误明细"].iter_rows(min_row=2, values_only=True)
                        if any(v is not None for v in row)
                    )
                    if "错误明细" in wb.sheetnames
                    else 0
                )
            finally:
                wb.close()
            if errors > 0:
                found.append((order, -errors, path.name, path))
    if not found:
        raise SystemExit(f"screenshots: no feedback workbook with rejected rows under {intake}")
    return min(found)[-1]


def _colour(fill) -> str | None:
    if fill is None or fill.fill_type != "solid":
        return None
    rgb = fill.fgColor.rgb if fill.fgColor is not None and fill.fgColor.type == "rgb" else None
    return f"#{rgb[-6:]}" if isinstance(rgb, str) and len(rgb) >= 6 else None


def _width_px(width: float | None) -> int:
    """Excel column width (characters of the default font) as screen pixels."""
    return int((width if width else 8.43) * 7 + 5)


def _shown(value: object, number_format: str) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M" if "h" in number_format else "%Y-%m-%d")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _column_letter(i: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(i)


def sheet_html(ws, sheet_names: list[str], file_name: str, max_rows: int) -> str:
    """One worksheet as an Excel-like grid: column letters, row numbers, widths, fills, bold,
    wrap, number alignment, the frozen rows (line below them) and filter buttons."""
    e = html.escape
    columns = max(ws.max_column, 1)
    rows = min(ws.max_row, max_rows)
    frozen = 0
    if ws.freeze_panes:
        frozen = int(re.sub(r"[A-Z]+", "", ws.freeze_panes) or 1) - 1
    filtered: set[tuple[int, int]] = set()
    if ws.auto_filter and ws.auto_filter.ref:
        from openpyxl.utils.cell import range_boundaries

        c0, r0, c1, _ = range_boundaries(ws.auto_filter.ref)
        filtered = {(r0, c) for c in range(c0, c1 + 1)}
    widths = [_width_px(ws.column_dimensions[_column_letter(c)].width) for c in range(1, columns + 1)]
    cols = '<col style="width:42px">' + "".join(f'<col style="width:{w}px">' for w in widths)
    head = (
        '<tr class="letters"><th class="corner"></th>'
        + "".join(f"<th>{_column_letter(c)}</th>" for c in range(1, columns + 1))
        + "</tr>"
    )
    body = []
    grid = list(ws.iter_rows(min_row=1, max_row=rows, max_col=columns))
    for r, cells in enumerate(grid, start=1):
        tds = []
        for c, cell in enumerate(cells, start=1):
            text = _shown(cell.value, cell.number_format or "")
            style = []
            colour = _colour(cell.fill)
            if colour:
                style.append(f"background:{colour}")
            if cell.font is not None and cell.font.b:
                style.append("font-weight:bold")
            if cell.font is not None and cell.font.sz and float(cell.font.sz) > 11.5:
                style.append(f"font-size:{float(cell.font.sz) * 4 / 3:.1f}px")
            classes = []
            if cell.alignment is not None and cell.alignment.wrap_text:
                classes.append("wrap")
            elif c < columns and cells[c].value in (None, "") and text:
                classes.append("spill")  # Excel lets text run on over an empty neighbour
            if isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool):
                classes.append("num")
            button = '<span class="filter">▾</span>' if (r, c) in filtered else ""
            cls = f' class="{" ".join(classes)}"' if classes else ""
            css = f' style="{";".join(style)}"' if style else ""
            tds.append(f"<td{cls}{css}><div>{e(text)}</div>{button}</td>")
        row_cls = ' class="frozen-last"' if frozen and r == frozen else ""
        body.append(f'<tr{row_cls}><th class="rownum">{r}</th>{"".join(tds)}</tr>')
    if ws.max_row > rows:
        body.append(
            f'<tr class="more"><th class="rownum">…</th><td colspan="{columns}">'
            f"（共 {ws.max_row} 行，此处显示前 {rows} 行）</td></tr>"
        )
    tabs = "".join(
        f'<span class="tab{" active" if name == ws.title else ""}">{e(name)}</span>' for name in sheet_names
    )
    freeze_note = f"冻结首行 frozen row {frozen}" if frozen else "未冻结 no frozen rows"
    return (
        f'<section class="window" data-sheet="{e(ws.title)}">'
        f'<div class="titlebar"><b>{e(file_name)}</b> — {e(ws.title)}'
        f'<span class="note">{e(freeze_note)}</span></div>'
        f'<table class="grid">{cols}<thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
        f'<div class="tabs">{tabs}</div></section>'
    )


WORKBOOK_CSS = """
body { margin: 0; padding: 14px; background: #e7eaee; font-family: "Noto Sans CJK SC", "Noto Sans SC",
       "Microsoft YaHei", sans-serif; font-size: 14px; color: #000; }
.sheets { display: inline-flex; flex-direction: column; gap: 14px; }
.window { background: #fff; border: 1px solid #9aa3ad; box-shadow: 0 1px 3px rgba(0,0,0,.15);
          width: max-content; }
.titlebar { background: #217346; color: #fff; padding: 5px 10px; font-size: 13px; }
.titlebar .note { float: right; margin-left: 24px; opacity: .85; }
table.grid { border-collapse: collapse; table-layout: fixed; width: max-content; }
table.grid th, table.grid td { border: 1px solid #d4d4d4; height: 20px; padding: 0 3px; }
table.grid td { position: relative; vertical-align: bottom; white-space: nowrap; overflow: hidden; }
table.grid td > div { overflow: hidden; }
table.grid td.spill, table.grid td.spill > div { overflow: visible; }
table.grid td.wrap { white-space: pre-wrap; line-height: 1.35; padding: 1px 3px; }
table.grid td.num { text-align: right; }
table.grid thead th, table.grid th.rownum, table.grid th.corner { background: #f3f3f3; color: #444;
       font-weight: normal; font-size: 12px; text-align: center; }
table.grid thead th { border-bottom: 1px solid #ababab; }
table.grid th.rownum { border-right: 1px solid #ababab; }
tr.frozen-last > * { border-bottom: 2px solid #6b6b6b !important; }
tr.more td { color: #666; font-style: italic; }
.filter { position: absolute; right: 2px; bottom: 2px; width: 14px; height: 14px; line-height: 13px;
          font-size: 10px; text-align: center; border: 1px solid #a6a6a6; background: #fff; color: #444; }
.tabs { background: #f3f3f3; border-top: 1px solid #c8c8c8; padding: 0 0 0 42px; font-size: 12px; }
.tab { display: inline-block; padding: 3px 14px; color: #444; border-right: 1px solid #d0d0d0; }
.tab.active { background: #fff; color: #217346; font-weight: bold; border-bottom: 2px solid #217346; }
"""


def workbook_html(path: Path, *, sheets: tuple[str, ...] = ("汇总", "错误明细"), max_rows: int = 24) -> str:
    """The named sheets of a workbook, one window each, as a self-contained HTML page."""
    import openpyxl

    wb = openpyxl.load_workbook(path)  # not read-only: freeze panes, widths and filters are needed
    try:
        names = wb.sheetnames
        parts = [sheet_html(wb[name], names, path.name, max_rows) for name in sheets if name in names]
    finally:
        wb.close()
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(path.name)}</title>"
        f'<style>{WORKBOOK_CSS}</style></head><body><div class="sheets">{"".join(parts)}</div></body></html>'
    )


def feedback_png(browser, workbook: Path, work: Path, target: Path) -> None:
    page_html = workbook_html(workbook)
    if FULL_ID.search(page_html) or FULL_PHONE.search(page_html):
        raise SystemExit(f"screenshots: {workbook.name} holds a full ID number or phone; nothing saved")
    drawn = work / "feedback.html"
    drawn.write_text(page_html, encoding="utf-8")
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(drawn.as_uri())
    save_png(page, target, element=page.locator(".sheets"))
    page.close()


# ================================================================================================


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"), help="where the PNGs go")
    parser.add_argument(
        "--work",
        default=str(ROOT / "data" / "screenshots"),
        help="scratch folder for the sample night (replaced)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="sample size (1.0 = the reference district)")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit("screenshots: no /usr/bin/chromium; run scripts/ensure-system-deps.sh")
    from playwright.sync_api import sync_playwright

    out, work = Path(args.out).resolve(), Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROSTERLINK_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "GX_ANALYTICS_ENABLED": "False",
            "ROSTERLINK_INTAKE_DIR": str(work / "intake"),
            "ROSTERLINK_WAREHOUSE_URL": f"sqlite:///{work / 'warehouse.db'}",
            "ROSTERLINK_EXPORT_DIR": str(work / "exports"),
        }
    )
    sample_night(work, args.scale, env)
    workbook = feedback_with_rejections(work / "intake")
    say(f"feedback workbook: {workbook.relative_to(work)}")
    served, password = server_env(work, env)
    say("starting the Airflow API server with the rosterlink plugin ...")
    with api_server(served, work / "api-server.log") as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            dashboard_png(browser, base, password, out / "dashboard.png")
            feedback_png(browser, workbook, work, out / "feedback.png")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
