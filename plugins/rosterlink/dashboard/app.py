"""The data team's dashboard: tonight's and past nights' figures, served inside the Airflow UI.

The Airflow plugin (``plugins/rosterlink_dashboard.py``) mounts :func:`create_app` at
``/rosterlink`` in the API server and adds a nav entry that frames it. Routes:

- ``/`` the page (:mod:`rosterlink.dashboard.page`): server-rendered HTML with inline SVG charts
  (no JavaScript, nothing loaded from outside the API server);
- ``/static/dashboard.css`` its stylesheet;
- ``/api/figures`` the same figures as JSON (:mod:`rosterlink.dashboard.data`, for scripts and BI
  checks);
- ``/data-docs/<YYYY-MM-DD>/...`` the night's Great Expectations Data Docs
  (:mod:`rosterlink.validate.datadocs`), as static files.

Every route needs a user signed in to Airflow who may read the DAG ``rosterlink_nightly``: the
API server does not protect plugin apps, so :func:`airflow_reader` resolves the user from the
same JWT the Airflow UI holds (the ``_token`` cookie, or an ``Authorization: Bearer`` header) with
Airflow's own ``get_user`` dependency and asks the configured auth manager
(``is_authorized_dag(GET, rosterlink_nightly)``). Without a valid token a browser is sent to
Airflow's login page, anything else gets 401; a user without read access to the DAG gets 403.

The warehouse is ``settings.load().warehouse_url``, or the ``rosterlink_warehouse`` Airflow
connection / ``rosterlink_warehouse_url`` Variable (:func:`airflow_settings`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rosterlink.dashboard.data import figures
from rosterlink.dashboard.page import STATIC_DIR, STYLESHEET, render_page

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

    from rosterlink.core.settings import Settings

log = logging.getLogger(__name__)

DAG_ID = "rosterlink_nightly"


def airflow_settings() -> Settings:
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
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'self'; "
    "base-uri 'none'; form-action 'none'"
)
DOCS_CSP = (  # the Data Docs pages: inline CSS and SVG, no script, nothing fetched
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'none'; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
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
    from rosterlink.core.settings import normalise_url
    from rosterlink.validate import datadocs

    require = authorize or airflow_reader()
    load_settings = settings_loader or airflow_settings
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
        return figures(eng, cfg.export_dir), warehouse.display_url(normalise_url(cfg.warehouse_url))

    @app.get("/", response_class=HTMLResponse)
    def page(_user: Any = Depends(require)) -> HTMLResponse:  # noqa: B008
        data, where = _data()
        body = render_page(data, warehouse=where, generated=dt.datetime.now(dt.UTC))
        return HTMLResponse(body, headers=_headers(PAGE_CSP))

    @app.get(f"/static/{STYLESHEET}")
    def stylesheet(_user: Any = Depends(require)) -> FileResponse:  # noqa: B008
        return FileResponse(
            STATIC_DIR / STYLESHEET,
            media_type="text/css",
            headers={**_headers(PAGE_CSP), "Cache-Control": "no-cache"},
        )

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
