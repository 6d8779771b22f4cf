"""``/docs`` (Swagger UI) served from the package, not a CDN: it works offline and on
locked-down networks. The assets are the upstream Swagger UI 5 dist files shipped by the
``fastapi-offline`` package (MIT; Swagger UI itself Apache-2.0), version 5 because the
document is OpenAPI 3.1; ``/`` redirects to the docs."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
#: swagger-ui-bundle.js, swagger-ui.css and favicon.png.
ASSETS_DIR = files("fastapi_offline") / "static"


def install_docs(app: FastAPI, title: str) -> None:
    """``GET /docs`` (the page), ``/docs/assets/*`` (its scripts, styles and icons) and
    ``GET /`` (a redirect to the docs)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - API docs",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(DOCS_PATH, status_code=307)
