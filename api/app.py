"""The app factory: builds the services from settings and wires the routes.

Tests build the same app through the same factory, with other settings or services: the
integration tests with the real ones, tests/api with fakes of the ports in api/ports.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from api import errors
from api.auth import Authorizer
from api.context import RequestContext
from api.form import form_handler
from api.intake import UploadReceiver
from api.overview import OpsSources
from api.policy import TenantLimits
from api.ports import Check, Counter, Objects, Records, SendScan
from api.resources import attachments, demo, docs, front, links, monitoring, openapi, profiles
from api.resources import ops as ops_routes
from core.clamd import ClamdClient
from core.errors import ServiceUnavailable
from core.settings import Settings
from core.tasks import ROUTES, TaskName
from storage import redisconn
from storage.broker import make_celery
from storage.objects import ObjectStore
from storage.records import RecordStore
from storage.webhooks import announcer

BASE = "/api/1"


@dataclass
class Services:
    records: Records
    objects: Objects
    enqueue: SendScan
    checks: dict[str, Check]
    # Where the intake's own refusals are counted (the broker's Redis, beside the workers').
    refusals: Counter
    # The dashboard and metrics routes read these; without them (tests/api) they are not mounted.
    ops: OpsSources | None = None


def build_services(settings: Settings) -> Services:
    """The real services. Nothing here connects yet: clients connect on first use."""
    records = RecordStore.from_url(settings.database_url)
    objects = ObjectStore.from_settings(settings)
    celery = make_celery(settings)
    # An attachment delete writes its webhook deliveries; they are sent after its commit.
    records.announce = announcer(celery)
    redis = redisconn.connect(settings.redis_url)
    clamd = ClamdClient(settings.clamd_host, settings.clamd_port, timeout=5)

    def enqueue(upload_id: str) -> None:
        try:
            celery.send_task(
                TaskName.SCAN, args=[upload_id], queue=ROUTES[TaskName.SCAN], ignore_result=True
            )
        except (KombuError, RedisError, OSError) as exc:
            raise ServiceUnavailable("redis", str(exc)) from exc

    def ping_redis() -> None:
        try:
            redis.ping()
        except RedisError as exc:
            raise ServiceUnavailable("redis", str(exc)) from exc

    checks: dict[str, Check] = {
        "database": records.ping,
        "redis": ping_redis,
        "minio": objects.ping,
        "clamd": clamd.ping,
    }
    ops = ops_routes.sources_from_settings(settings, records)
    return Services(
        records=records,
        objects=objects,
        enqueue=enqueue,
        checks=checks,
        refusals=ops.telemetry,
        ops=ops,
    )


class PathNormalizer:
    """Lets Crafter's clients work unchanged: strips the optional URL prefix (Crafter is usually
    deployed at /crafter-profile) and the `.json` suffix its Java client appends to every URL."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        path = req.path
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix) :] or "/"
        if path.endswith(".json") and path.startswith(BASE + "/profile"):
            # `…/attachments/.json` leaves a trailing slash, which Falcon stripped before
            # this middleware ran, so it is stripped again here.
            path = path[: -len(".json")].rstrip("/") or "/"
            # Only Crafter's Java client uses the suffix: some answers follow Crafter there.
            req.context.crafter_json = True
        req.path = path


class NoSniff:
    """No response is ever to be reinterpreted by a browser as another type (an error body
    echoing a file name as HTML, a served file as script)."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")


class NoReferrer:
    """Crafter's contract puts access tokens in URLs: a page or a served file must never hand
    its URL to another site in a Referer header."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        resp.set_header("Referrer-Policy", "no-referrer")


def create_app(settings: Settings | None = None, services: Services | None = None) -> falcon.App:
    settings = settings or Settings.from_env()
    services = services or build_services(settings)
    authorizer = Authorizer(services.records)
    receiver = UploadReceiver(
        settings,
        services.records,
        services.objects,
        authorizer,
        services.enqueue,
        TenantLimits(services.records, settings),
    )

    middleware: list[Any] = [
        PathNormalizer(settings.url_prefix),
        NoSniff(),
        NoReferrer(),
        RequestContext(),
        ops_routes.IntakeRejections(services.refusals),
    ]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    records, objects = services.records, services.objects
    base = BASE + "/profile"
    app.add_route(
        f"{base}/{{profile_id}}/uploadAttachment",
        attachments.UploadResource(receiver, settings, form_handler(settings)),
    )
    app.add_route(
        f"{base}/{{profile_id}}/attachments",
        attachments.ListResource(records, objects, authorizer),
    )
    app.add_route(
        f"{base}/{{profile_id}}/attachment/{{name}}",
        attachments.FileResource(records, objects, authorizer, settings.image_renditions),
    )
    app.add_route(
        f"{base}/{{profile_id}}/attachment/{{name}}/details",
        attachments.DetailsResource(records, objects, authorizer),
    )
    app.add_route(
        f"{base}/{{profile_id}}/attachment/{{name}}/status",
        attachments.StatusResource(records, objects, authorizer),
    )
    links.add_routes(app, base, settings, records, objects, authorizer)
    app.add_route(f"{base}/create", profiles.CreateProfileResource(records, authorizer, settings))
    app.add_route(f"{base}/{{profile_id}}", profiles.ProfileResource(authorizer))
    app.add_route(f"{BASE}/monitoring/status", monitoring.StatusResource(services.checks))
    app.add_route(f"{BASE}/monitoring/version", monitoring.VersionResource())
    if services.ops is not None:
        ops_routes.add_routes(app, settings, services.ops)
    app.add_route(f"{BASE}/openapi.json", openapi.OpenApiResource(settings.url_prefix))
    # Pages for people: what is running and where to go, the API reference, the demo.
    app.add_route("/", front.FrontResource(settings, services.ops))
    docs.add_routes(app, BASE, settings.url_prefix)
    if settings.demo:
        demo.add_routes(app, settings, BASE)
    return app
