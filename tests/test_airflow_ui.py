"""``make airflow-ui`` as the README says to run it: from the repository, with only what a person
has in their environment (a PATH without the virtualenv, HOME), on a free port. The test waits for
Airflow's health endpoint, signs in as ``admin`` with the password standalone generated and keeps
in its home, and opens the Rosterlink page from the Browse menu in headless Chromium.

Needs the virtualenv ``make install`` builds (``.venv/``) and /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
STARTUP_SECONDS = 420

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def users_environment() -> dict[str, str]:
    """PATH as a person's shell has it (no virtualenv activated) and HOME; nothing else."""
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if ".venv" not in p]
    return {"PATH": os.pathsep.join(path), "HOME": os.environ.get("HOME", "/root")}


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def listening_addresses(pid: int, port: int) -> set[str]:
    """The addresses the process group started by the test listens on at ``port``."""
    group = os.getpgid(pid)
    found = set()
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or conn.laddr.port != port or conn.pid is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(conn.pid) == group:
                found.add(conn.laddr.ip)
    return found


@contextlib.contextmanager
def make_airflow_ui(home: Path, port: int, log_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``make airflow-ui PORT=... AIRFLOW_UI_HOME=...`` in its own process group, until healthy."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["make", "airflow-ui", f"PORT={port}", f"AIRFLOW_UI_HOME={home}"],
            cwd=ROOT,
            env=users_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"make airflow-ui exited with {proc.returncode}:\n{tail(log_path)}")
            if "FileNotFoundError" in log_path.read_text(errors="replace"):
                pytest.fail(f"a component of airflow standalone did not start:\n{tail(log_path)}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"nothing healthy on {base} after {STARTUP_SECONDS} s:\n{tail(log_path)}")
            time.sleep(1)
        yield base, proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_make_airflow_ui_serves_the_rosterlink_page_on_localhost(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run scripts/ensure-system-deps.sh")
    if not (ROOT / ".venv" / "bin" / "airflow").exists():
        pytest.skip("no .venv: run `make install` first")
    playwright_api = pytest.importorskip("playwright.sync_api")

    home, port = tmp_path / "airflow-ui", free_port()
    with (
        make_airflow_ui(home, port, tmp_path / "make-airflow-ui.log") as (base, proc),
        playwright_api.sync_playwright() as pw,
    ):
        # this machine only: not on 0.0.0.0
        assert listening_addresses(proc.pid, port) == {"127.0.0.1"}

        # the admin password standalone generated, where the README says it is kept
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]

        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(f"{base}/")
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{base}/**")

            # Browse -> Rosterlink: the page framed in the UI
            page.get_by_role("button", name="Browse").click()
            page.get_by_role("menuitem", name="Rosterlink").click()
            page.wait_for_url(f"{base}/plugin/rosterlink")
            framed = page.frame_locator('iframe[title="Rosterlink"]')
            assert "rosterlink 夜间数据看板" in framed.locator("h1").first.inner_text()
        finally:
            browser.close()
