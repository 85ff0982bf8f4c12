"""Browser pages of the service: the search playground at ``/`` and the API docs (Swagger UI) at ``/docs``.

Everything loads from this server, so the pages work on an offline host: the playground is plain HTML, CSS
and JavaScript in ``static/`` (no build step), and Swagger UI comes from the dist files that the
``fastapi-offline`` package ships (a maintained bundle; we use its files, not its app factory, because
:func:`~rankfunnel.service.app.create_app` builds its own ``FastAPI``). There is no ``/redoc``: Redoc's page
loads its logo from cdn.redoc.ly and has no option to stop it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

#: The playground's own files (index.html, playground.css, playground.js).
STATIC_DIR = Path(__file__).parent / "static"
PLAYGROUND_URL = "/static/playground"
DOCS_ASSETS_URL = "/static/docs"
#: URL prefixes answered without an API key: the pages and their assets hold no data (the page then sends
#: the key the user types with each API call).
PUBLIC_PREFIXES = ("/static/",)
UI_PATHS = frozenset({"/"})

# The playground page loads nothing but its own files and talks only to this server.
_PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def docs_assets_dir() -> Path | None:
    """Folder holding ``swagger-ui-bundle.js`` and ``swagger-ui.css`` (None when absent)."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).parent / "static"
    needed = ("swagger-ui-bundle.js", "swagger-ui.css")
    return folder if all((folder / name).is_file() for name in needed) else None


def mount_ui(app: FastAPI) -> None:
    """Add ``/`` (playground), ``/docs``, ``/docs/oauth2-redirect`` and their static files."""
    app.mount(PLAYGROUND_URL, StaticFiles(directory=STATIC_DIR), name="playground")
    assets = docs_assets_dir()
    if assets is not None:
        app.mount(DOCS_ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")
    else:
        log.warning("API docs pages disabled: fastapi-offline is not installed (pip install 'rankfunnel[server]').")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    missing = (
        "<p>The API docs need the <code>fastapi-offline</code> package: "
        "<code>pip install 'rankfunnel[server]'</code>. The schema is at <a href='openapi.json'>openapi.json</a>.</p>"
    )

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            headers={"Content-Security-Policy": _PLAYGROUND_CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        if assets is None:
            return HTMLResponse(missing, status_code=501)
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            oauth2_redirect_url=f"{root}{oauth2_url}",
            # validatorUrl=None: Swagger UI would otherwise send the schema to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    @app.get(oauth2_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
