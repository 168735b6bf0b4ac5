"""Where the project's files are: the project root and its ``sql/``, ``expectations/``, ``dags/``
and ``plugins/`` folders, the package's own ``config/``, and the default data folder.

No imports from the rest of the package: every layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PROJECT_ROOT = PACKAGE_DIR.parents[1]
PACKAGE_CONFIG = PACKAGE_DIR / "config"
SQL_DIR = PROJECT_ROOT / "sql"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DAGS_DIR = PROJECT_ROOT / "dags"
PLUGINS_DIR = PROJECT_ROOT / "plugins"
DATA_DIR = Path(os.environ.get("ROSTERLINK_DATA_DIR") or PROJECT_ROOT / "data")
