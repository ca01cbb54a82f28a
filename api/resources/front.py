"""The front page at `/`: what this attachd is and where to go from here. Public, like the
monitoring routes: it names the version, the kind of store, the buckets, clamd's signatures, the
broker's current master (an address) and how many workers are online, and never a token, a
password or a URL with credentials in it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from api import pages
from api.overview import OpsSources, Probe
from core import package_version
from core.clamd import EngineVersion
from core.settings import Settings

_STORES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def store_kind(database_url: str) -> str:
    """The database's kind only: its URL may hold a password."""
    scheme = database_url.split(":", 1)[0].split("+")[0]
    return _STORES.get(scheme, "unknown")


@dataclass(frozen=True)
class Link:
    title: str
    href: str
    what: str


class FrontResource:
    def __init__(self, settings: Settings, sources: OpsSources | None) -> None:
        self.settings = settings
        self.sources = sources
        self.template = pages.template("front.html")

    def facts(self) -> dict[str, Any]:
        """What is running, read now; a source that is down says so instead of a number."""
        s = self.settings
        facts: dict[str, Any] = {
            "version": package_version(),
            "store": store_kind(s.database_url),
            "buckets": {
                "staging": s.bucket_staging,
                "attachments": s.bucket_attachments,
                "quarantine": s.bucket_quarantine,
            },
            "signatures": None,
            "broker": None,
            "last_outage": None,
            "workers": None,
            "down": {},
        }
        if self.sources is None:
            return facts
        attempt = Probe()
        reply = attempt("clamd", self.sources.clamd.version)
        if reply:
            version = EngineVersion.parse(reply)
            facts["signatures"] = {
                "engine": version.engine,
                "version": version.signatures,
                "published": version.published.strftime("%Y-%m-%d %H:%M")
                if version.published
                else None,
            }
        master = attempt("redis", self.sources.telemetry.master)
        if master is not None:
            # An address, never the URL (it may hold the password).
            facts["broker"] = {"master": master.address, "sentinel": master.sentinel}
        outage = attempt("redis", self.sources.telemetry.last_outage)
        if outage is not None:
            facts["last_outage"] = {
                "stalled_seconds": round(outage.stalled_seconds, 1),
                "handoffs": outage.handoffs,
            }
        workers = attempt("redis", self.sources.telemetry.workers)
        if workers is not None:
            facts["workers"] = len(workers)
        facts["down"] = dict.fromkeys(attempt.errors, True)
        return facts

    def links(self, req: falcon.Request) -> list[Link]:
        root = pages.mount(req, self.settings.url_prefix)
        flower = f"{req.scheme}://{req.host}:{self.settings.flower_port}/"
        links = [
            Link("API reference", f"{root}/api/1/docs", "every route, tried from the browser"),
            Link("Dashboard", f"{root}/ops/dashboard", "uploads, queues, workers (operator login)"),
            Link("Flower", flower, "Celery's own view of tasks and workers (operator login)"),
            Link("Metrics", f"{root}/metrics", "Prometheus (operator login or bearer token)"),
            Link("Health", f"{root}/api/1/monitoring/status", "each dependency, up or down"),
            Link("OpenAPI document", f"{root}/api/1/openapi.json", "the reference as JSON"),
        ]
        if self.settings.demo:
            links.insert(0, Link("Demo", f"{root}/demo", "drop a picture, watch it go through"))
        return links

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = self.template.render(f=self.facts(), links=self.links(req))
        pages.html(resp, body, _CSP)
