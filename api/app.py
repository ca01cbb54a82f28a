"""The app factory: builds the services from settings and wires the routes.

Tests build the same app through the same factory, with other settings or services: the
integration tests with the real ones, tests/api with fakes of the ports in api/ports.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import falcon
from redis.exceptions import RedisError

from api import errors, renditions
from api.auth import Authorizer, CachedAccounts
from api.context import RequestContext
from api.form import form_handler
from api.intake import UploadReceiver
from api.overview import OpsSources
from api.policy import TenantLimits
from api.ports import Check, Counter, Leases, Objects, Records, SendScan
from api.resources import attachments, demo, docs, front, links, monitoring, openapi, profiles
from api.resources import ops as ops_routes
from api.resources import tus as tus_routes
from api.tus import Resumables
from api.tus_finish import Finisher
from core.clamd import ClamdClient
from core.errors import ServiceUnavailable
from core.pictures.pixels import Bounds
from core.settings import Settings
from core.tasks import Dispatch, Lane, TaskName
from storage import redisconn
from storage.broker import make_celery
from storage.fairshare import FairShare
from storage.handoffs import dispatcher_for
from storage.locks import LocalLeases, RedisLeases
from storage.objects import ObjectStore
from storage.records import RecordStore
from storage.tus import ResumableObjects, ResumableRecords
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
    # Who makes a rendition at its first request: Redis leases across the API processes.
    leases: Leases = field(default_factory=LocalLeases)
    # The tus routes' stores (api/tus.py); without them (tests/api) the routes are not mounted.
    resumable: tuple[ResumableRecords, ResumableObjects] | None = None


def build_services(settings: Settings) -> Services:
    """The real services. Nothing here connects yet: clients connect on first use."""
    records = RecordStore.from_url(settings.database_url)
    objects = ObjectStore.from_settings(settings)
    celery = make_celery(settings)
    # An attachment delete writes its webhook deliveries; they are sent after its commit.
    records.announce = announcer(celery)
    redis = redisconn.connect(settings.redis_url)
    clamd = ClamdClient(settings.clamd_host, settings.clamd_port, timeout=5)

    ops = ops_routes.sources_from_settings(settings, records)
    fair = FairShare(ops.telemetry, settings.fair_interactive, settings.fair_busy)

    # What the broker cannot take is kept and sent the moment it answers (storage/handoffs.py).
    dispatcher = dispatcher_for(celery, records.engine, record=ops.telemetry.record_outage)

    def enqueue(upload_id: str, tenant: str, /, *, bulk: bool = False) -> None:
        if bulk:
            dispatcher.send(Dispatch(TaskName.SCAN, upload_id, Lane.BULK))
            return
        lane = fair.admit(tenant)
        try:
            dispatcher.send(Dispatch(TaskName.SCAN, upload_id, lane, tenant))
        except ServiceUnavailable:
            fair.release(tenant)  # not in flight now; sent again, it is not counted
            raise

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
    return Services(
        records=records,
        objects=objects,
        enqueue=enqueue,
        checks=checks,
        refusals=ops.telemetry,
        ops=ops,
        leases=RedisLeases(redis),
        resumable=(
            ResumableRecords(records.engine),
            ResumableObjects(objects, settings.bucket_tus, settings.staging_expiry_days),
        ),
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
    # The upload route reads its token and profile through a short cache (api/auth.py); the
    # other routes answer with what the store holds now.
    upload_auth = (
        Authorizer(CachedAccounts(services.records, settings.auth_cache_seconds))
        if settings.auth_cache_seconds > 0
        else authorizer
    )
    receiver = UploadReceiver(
        settings,
        services.records,
        services.objects,
        upload_auth,
        services.enqueue,
        TenantLimits(services.records, settings),
    )

    middleware: list[Any] = [
        PathNormalizer(settings.url_prefix),
        NoSniff(),
        NoReferrer(),
        RequestContext(),
        ops_routes.IntakeRejections(services.refusals),
        tus_routes.TusHeaders(settings.tus_cors_origins),
    ]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)

    records, objects = services.records, services.objects
    made = renditions.Renditions(
        records,
        objects,
        services.leases,
        sizes=settings.image_renditions,
        formats=settings.image_rendition_formats,
        bounds=Bounds.of(settings.max_image_pixels),
        counter=services.refusals,
    )
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
        attachments.FileResource(records, objects, authorizer, made),
    )
    app.add_route(
        f"{base}/{{profile_id}}/attachment/{{name}}/details",
        attachments.DetailsResource(records, objects, authorizer),
    )
    app.add_route(
        f"{base}/{{profile_id}}/attachment/{{name}}/status",
        attachments.StatusResource(records, objects, authorizer, made),
    )
    if services.resumable is not None:
        tus_records, tus_objects = services.resumable
        resumables = Resumables(
            settings,
            tus_records,
            tus_objects,
            authorizer,
            TenantLimits(services.records, settings),
            Finisher(services.records, tus_objects, services.enqueue),
            services.refusals,
        )
        tus_routes.add_routes(app, base, resumables, settings)
    links.add_routes(app, base, settings, records, objects, authorizer, made)
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
