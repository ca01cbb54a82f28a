"""The API reference in a browser at /api/1/docs: Swagger UI, from the files the swagger-ui-py
package ships (never a CDN: many networks this runs in reach no internet), rendering the
document served at /api/1/openapi.json."""

from __future__ import annotations

import secrets
from pathlib import Path

import falcon
from swagger_ui.utils import SWAGGER_UI_PY_ROOT

from api import pages
from core.errors import NotFound

# Only what the page loads; the package holds more (the editor, source maps).
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
STATIC = Path(SWAGGER_UI_PY_ROOT) / "static"


class DocsResource:
    def __init__(self, url_prefix: str) -> None:
        self.url_prefix = url_prefix
        self.template = pages.template("docs.html")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        root = pages.mount(req, self.url_prefix)
        # The one inline script (Swagger UI's start) runs by its nonce; everything else comes
        # from this server. "Try it out" calls the API itself, hence connect-src 'self'.
        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'"
        )
        pages.html(resp, self.template.render(root=root, nonce=nonce), csp)


class AssetResource:
    """Swagger UI's own files, read once at start-up from the installed package."""

    def __init__(self) -> None:
        self.files = {name: (STATIC / name).read_bytes() for name in ASSETS}

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        data = self.files.get(name)
        if data is None:
            raise NotFound(f"No file '{name}' in the API reference")
        resp.content_type = ASSETS[name]
        # They change only with the package, and the page that loads them is never cached.
        resp.cache_control = ["public", "max-age=86400"]
        resp.data = data


def add_routes(app: falcon.App, base: str, url_prefix: str) -> None:
    app.add_route(f"{base}/docs", DocsResource(url_prefix))
    app.add_route(f"{base}/docs/static/{{name}}", AssetResource())
