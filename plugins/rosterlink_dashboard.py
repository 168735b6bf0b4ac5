"""Airflow plugin: the rosterlink data team's dashboard inside the Airflow UI.

- ``fastapi_apps``: the dashboard (:mod:`rosterlink.dashboard.app`) mounted by the API server at
  ``/rosterlink``. The API server does not protect plugin apps; the dashboard checks every
  request itself against Airflow's auth manager (the JWT the UI holds), see its docstring.
- ``external_views``: a "Rosterlink" entry in the UI's Browse menu that shows the dashboard framed
  in the UI at ``/plugin/rosterlink``. ``href`` is relative (no leading slash) so it follows
  ``[api] base_url`` behind a proxy.

Every Airflow process (scheduler, dag processor, workers) imports this file, so it imports nothing
heavy: the FastAPI app is built on the first request the API server routes to it.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/rosterlink"


class LazyDashboardApp:
    """An ASGI app that builds the real dashboard app on its first call (keeps this import cheap)."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from rosterlink.dashboard.app import airflow_app

                    self._app = airflow_app()
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop
            return
        await self._get()(scope, receive, send)


class RosterlinkDashboardPlugin(AirflowPlugin):
    name = "rosterlink_dashboard"
    fastapi_apps = [  # noqa: RUF012 - AirflowPlugin's interface
        {"app": LazyDashboardApp(), "url_prefix": URL_PREFIX, "name": "rosterlink dashboard"},
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Rosterlink",
            "href": URL_PREFIX.lstrip("/") + "/",
            "url_route": "rosterlink",
            "destination": "nav",
            "category": "browse",
        },
    ]
