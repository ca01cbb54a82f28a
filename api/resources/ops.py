"""Operator routes: the dashboard (HTML, refreshing itself), its data as JSON, and the Prometheus
metrics. All of it is read from the record store, the broker and clamd at request time
(api/overview.py), so it is the same from every API process and survives restarts."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import falcon
from jinja2 import Environment, PackageLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from api import overview as ops
from api.metrics import registry
from api.operator import OperatorAuth
from api.overview import OpsSources
from api.ports import Counter
from core.clamd import ClamdClient
from core.domain import Reason
from core.errors import AttachdError
from core.settings import Settings
from core.tasks import Queue
from storage.records import RecordStore
from storage.stats import StoreStats
from storage.telemetry import Telemetry

REFRESH_SECONDS = 10


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            rest = seconds % size
            sub = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{seconds // size}{unit} {rest // sub[1]}{sub[0]}"
    return f"{seconds}s"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("api", "templates"), autoescape=select_autoescape(["html"])
    )
    env.filters["age"] = _age
    env.filters["seconds"] = _seconds
    return env


class DashboardResource:
    def __init__(self, sources: OpsSources, auth: OperatorAuth) -> None:
        self.sources = sources
        self.auth = auth
        self.template = _environment().get_template("dashboard.html")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.require(req)
        data = ops.snapshot(self.sources)
        peak = max((m["total"] for m in data["throughput"]), default=0)
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-store"]
        # Inline styles only: no script, no frame, nothing fetched from elsewhere.
        resp.set_header(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )
        resp.text = self.template.render(
            s=data, refresh=REFRESH_SECONDS, peak=max(peak, 1), peak_label=peak
        )


class OverviewResource:
    def __init__(self, sources: OpsSources, auth: OperatorAuth) -> None:
        self.sources = sources
        self.auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.auth.require(req)
        resp.cache_control = ["no-store"]
        resp.media = _finite(ops.snapshot(self.sources))


class MetricsResource:
    def __init__(self, registry: CollectorRegistry, auth: OperatorAuth, public: bool) -> None:
        self.registry = registry
        self.auth = auth
        self.public = public

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.public:
            self.auth.require(req, bearer=True)
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self.registry)


def _finite(value: Any) -> Any:
    # JSON has no infinity or NaN.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class IntakeRejections:
    """Counts the API's own type refusals (415 before anything is stored) by the reason the
    error handler put on the request (api/errors.py): with the verifier's, they make the
    type-check rejection metric."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        reason: Reason | None = req.context.get("refusal")
        if reason is None or not req.path.endswith("/uploadAttachment"):
            return
        with contextlib.suppress(AttachdError):  # a metric must never change the answer
            self.counter.incr("typecheck_rejections", "intake", reason)


def sources_from_settings(settings: Settings, records: RecordStore) -> OpsSources:
    """Where the dashboard and the metrics read from: the store, the broker's Redis, clamd."""
    return OpsSources(
        stats=StoreStats(records),
        telemetry=Telemetry.from_url(settings.redis_url),
        clamd=ClamdClient(settings.clamd_host, settings.clamd_port, timeout=2),
        queues=tuple(Queue),
    )


def add_routes(app: falcon.App, settings: Settings, sources: OpsSources) -> None:
    """The operator routes, on an app built by create_app."""
    auth = OperatorAuth.from_settings(settings)
    app.add_route("/ops/dashboard", DashboardResource(sources, auth))
    app.add_route("/ops/overview", OverviewResource(sources, auth))
    app.add_route("/metrics", MetricsResource(registry(sources), auth, settings.metrics_public))
