"""The demo page (only with ATTACHD_DEMO, which `make run` sets): a person drops a picture and
watches it go through the pipeline.

The page never sees a token. Its three calls are relayed, in the same process, to the real
Crafter routes — upload, status, file — with `attachd demo`'s token added on the server side:
the upload goes through exactly the code a Crafter client's does (middleware, limits, refusals,
error shapes), and only what the real routes answer comes back.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import falcon

from api import pages
from core import filetypes
from core.errors import AccessDenied, ConfigError
from core.settings import Settings

# Headers of the relayed answer that describe the answer itself, and the download's own safety
# headers (its sandboxing CSP, attachment-or-inline): without them an SVG would render as a page
# of this origin. The rest (nosniff, request id) the outer response sets on its own.
_RELAYED = {
    "content-type",
    "content-length",
    "etag",
    "last-modified",
    "retry-after",
    "content-security-policy",
    "content-disposition",
}
# Loopback names: `make run` serves the demo on 127.0.0.1.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
# Sec-Fetch-Site values of requests made by the demo's own page (or typed into the address bar).
_OWN_SITE = frozenset({"same-origin", "none"})
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class DemoAccount:
    tenant: str
    token: str
    profile: str

    @classmethod
    def load(cls, var_dir: Path) -> DemoAccount:
        """`attachd demo` keeps its token here (token ids are stored hashed: the only copy)."""
        path = var_dir / "demo.json"
        try:
            data = json.loads(path.read_text())
            return cls(tenant=data["tenant"], token=data["token"], profile=data["profile"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"ATTACHD_DEMO is on but {path} is not readable ({exc}): run `attachd demo` "
                "first (make run does), or unset ATTACHD_DEMO"
            ) from None


class Gate:
    """The demo lends its token to whoever reaches it, so only its own page may use it: the
    `Host` must be one of ours (a DNS-rebinding page reaches us under its own name), and a relayed
    call must come from our own origin (a cross-site multipart POST needs no CORS preflight)."""

    def __init__(self, settings: Settings) -> None:
        self.hosts = (
            _LOOPBACK | {settings.api_host.lower()} | {host.lower() for host in settings.demo_hosts}
        )

    def host(self, req: falcon.Request) -> None:
        if req.host.lower() not in self.hosts:
            raise AccessDenied(f"The demo does not answer to the host name '{req.host[:100]}'")

    def same_origin(self, req: falcon.Request) -> None:
        self.host(req)
        site = req.get_header("Sec-Fetch-Site")
        if site is not None and site.lower() not in _OWN_SITE:
            raise AccessDenied("The demo answers only its own page, not another site's")
        origin = req.get_header("Origin")
        # Browsers send Origin with every POST; "null" is a sandboxed or opaque origin. The
        # scheme is not compared: behind a TLS proxy the API sees http for an https page.
        if (
            origin is not None
            and urlsplit(origin).netloc.lower() != (req.get_header("Host") or "").lower()
        ):
            raise AccessDenied("The demo answers only its own page, not another site's")


class Relay:
    """Calls a route of `app` within this request, as the client's request plus the token."""

    def __init__(self, app: WsgiApp, account: DemoAccount, base: str, gate: Gate) -> None:
        self.app = app
        self.account = account
        self.profile_path = f"{base}/profile/{account.profile}"
        self.gate = gate

    def __call__(self, req: falcon.Request, resp: falcon.Response, method: str, rest: str) -> None:
        self.gate.same_origin(req)
        env = dict(req.env)
        # A plain iterable back, so the answer can be relayed whatever its body is.
        env.pop("wsgi.file_wrapper", None)
        env["REQUEST_METHOD"] = method
        env["SCRIPT_NAME"] = ""
        # WSGI's PATH_INFO is the path's bytes as latin-1, as a server puts it there.
        env["PATH_INFO"] = (self.profile_path + rest).encode().decode("latin-1")
        env["QUERY_STRING"] = urlencode({"accessTokenId": self.account.token})
        # The same request id: the relayed call's log lines are this request's.
        env["HTTP_X_REQUEST_ID"] = req.context.get("request_id") or ""
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            answer["status"], answer["headers"] = status, headers
            return lambda data: None  # nothing of ours writes through it

        body = self.app(env, start_response)
        resp.status = answer["status"]
        for name, value in answer["headers"]:
            if name.lower() in _RELAYED:
                resp.set_header(name, value)
        resp.cache_control = ["no-store"]
        resp.stream = _closing(body)


def _closing(body: Iterable[bytes]) -> Iterable[bytes]:
    try:
        yield from body
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


class PageResource:
    def __init__(self, settings: Settings, account: DemoAccount, gate: Gate) -> None:
        self.settings = settings
        self.account = account
        self.template = pages.template("demo.html")
        self.gate = gate

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # A link from another site may open the page (a navigation); only the Host is checked.
        self.gate.host(req)
        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
            "img-src 'self'; connect-src 'self'"
        )
        body = self.template.render(
            root=pages.mount(req, self.settings.url_prefix),
            nonce=nonce,
            profile=self.account.profile,
            tenant=self.account.tenant,
            max_size=self.settings.max_upload_size,
            types=", ".join(self.settings.allowed_types),
            accept=accept_attribute(self.settings.allowed_types),
        )
        pages.html(resp, body, csp)


def accept_attribute(types: tuple[str, ...]) -> str:
    """The file picker's `accept`: the allowed types, and their extensions too, since pickers
    on systems that do not know image/heic by name hide .heic files otherwise."""
    extensions = sorted({f".{ext}" for ext, kind in filetypes.EXTENSIONS.items() if kind in types})
    return ",".join([*types, *extensions])


class UploadRelay:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.relay(req, resp, "POST", "/uploadAttachment")


class StatusRelay:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        self.relay(req, resp, "GET", f"/attachment/{name}/status")


class FileRelay:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        # Only an attached version is ever served by the real route: nothing else reaches here.
        self.relay(req, resp, "GET", f"/attachment/{name}")


def add_routes(app: falcon.App, settings: Settings, base: str) -> None:
    account = DemoAccount.load(Path(settings.var_dir))
    gate = Gate(settings)
    relay = Relay(app, account, base, gate)
    app.add_route("/demo", PageResource(settings, account, gate))
    app.add_route("/demo/upload", UploadRelay(relay))
    app.add_route("/demo/status/{name}", StatusRelay(relay))
    app.add_route("/demo/file/{name}", FileRelay(relay))
