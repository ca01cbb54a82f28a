"""What the HTML pages for people share (the front page, the API reference, the demo): their
templates, where they are mounted, and a Content-Security-Policy that allows only this server."""

from __future__ import annotations

import falcon
from jinja2 import Environment, PackageLoader, Template, select_autoescape

_env = Environment(loader=PackageLoader("api", "templates"), autoescape=select_autoescape(["html"]))


def template(name: str) -> Template:
    return _env.get_template(name)


def mount(req: falcon.Request, url_prefix: str) -> str:
    """The path the app answers at for this request: with the optional URL prefix when the
    request came through it (api/app.py PathNormalizer strips it before routing), so links on a
    page stay under the prefix the reader used."""
    raw = req.env.get("PATH_INFO", "") or "/"
    behind = bool(url_prefix) and (raw == url_prefix or raw.startswith(url_prefix + "/"))
    return req.root_path + (url_prefix if behind else "")


def html(resp: falcon.Response, body: str, csp: str) -> None:
    resp.content_type = falcon.MEDIA_HTML
    resp.cache_control = ["no-store"]
    resp.set_header("Content-Security-Policy", csp + "; frame-ancestors 'none'")
    resp.text = body
