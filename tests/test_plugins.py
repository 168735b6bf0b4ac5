"""Airflow's plugin loader sees only the plugin, never the library beside it.

The loader walks the plugins folder and runs every ``.py`` file it finds as a top-level module named
by its file stem; it does so in every scheduler, API server, DAG processor and worker. The
``rosterlink`` package lives in the same folder (installed from there by pyproject.toml), so without
``plugins/.airflowignore`` every library module would be imported a second time under a bare name
(``settings``, ``tasks``, ``link`` ...), pandas with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rosterlink.core import paths

# run in a fresh interpreter, as an Airflow process starts: only what the loader imports is there
_LOAD_AS_AIRFLOW_DOES = """
import json, sys
from pathlib import Path
from airflow import plugins_manager

library = Path(sys.argv[1]).resolve()
plugins_manager.ensure_plugins_loaded()
bare = sorted(
    name for name, module in list(sys.modules.items())
    if not name.startswith("rosterlink.") and name != "rosterlink"
    and getattr(module, "__file__", None) and Path(module.__file__).resolve().is_relative_to(library)
)
plugins = sorted(p.name for p in plugins_manager._get_plugins()[0])
print(json.dumps({"bare": bare, "pandas": "pandas" in sys.modules, "plugins": plugins,
                  "library": sorted(n for n in sys.modules if n.startswith("rosterlink."))}))
"""


def _load_plugins(tmp_path) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.PLUGINS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_AS_AIRFLOW_DOES, str(paths.PACKAGE_DIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_airflow_loads_the_dashboard_plugin_and_no_library_module_under_a_bare_name(tmp_path):
    loaded = _load_plugins(tmp_path)
    assert loaded["plugins"] == ["rosterlink_dashboard"]
    assert loaded["bare"] == []  # e.g. "settings", "tasks", "link" run as top-level modules
    assert not loaded["pandas"]  # every Airflow process pays for what the loader imports
    # the plugin file itself imports nothing of the library: the dashboard is built on first request
    assert loaded["library"] == []
