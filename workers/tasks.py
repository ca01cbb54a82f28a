"""Celery tasks: thin wrappers that give each pipeline step its delivery options.

Every task is late-acked (a worker that dies mid-task hands the message back), retries only
ServiceUnavailable and ScanError — the transient ones — with exponential backoff and a maximum,
and then records `failed` so an operator can retry. Tasks take upload ids, never bytes.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from core.clamd import ClamdClient
from core.errors import ScanError, ServiceUnavailable
from core.settings import Settings
from core.tasks import ROUTES, TaskName
from storage.objects import ObjectStore
from storage.records import RecordStore
from workers.pipeline import Limits, Pipeline

log = logging.getLogger(__name__)

MAX_RETRIES = 8
TRANSIENT = (ServiceUnavailable, ScanError)


def build_pipeline(settings: Settings, app: Celery) -> Pipeline:
    records = RecordStore.from_url(settings.database_url)
    objects = ObjectStore.from_settings(settings)
    scanner = ClamdClient(settings.clamd_host, settings.clamd_port, settings.clamd_timeout)

    def send(task: str, upload_id: str) -> None:
        app.send_task(task, args=[upload_id], queue=ROUTES[task])

    limits = Limits(
        max_image_pixels=settings.max_image_pixels,
        max_svg_size=settings.max_svg_size,
        reconcile_after_seconds=settings.reconcile_after_seconds,
    )
    return Pipeline(records, objects, scanner, send, limits)


def register(app: Celery, settings: Settings) -> None:
    """Bind the tasks to `app`. The pipeline (database engine, HTTP pools) is built lazily in
    each worker process, after the fork, never at import."""
    holder: dict[str, Pipeline] = {}

    def pipeline() -> Pipeline:
        if "p" not in holder:
            holder["p"] = build_pipeline(settings, app)
        return holder["p"]

    def run_step(task: Task, step: str, upload_id: str) -> Any:
        try:
            return getattr(pipeline(), step)(upload_id)
        except TRANSIENT as exc:
            if task.request.retries < MAX_RETRIES:
                countdown = min(2**task.request.retries, 60)
                log.warning("%s %s: %s; retry in %ss", step, upload_id, exc, countdown)
                raise task.retry(exc=exc, countdown=countdown) from exc
            if step == "rescan_file":
                # An attached file stays attached; the next sweep queues it again.
                log.error("rescan of %s gave up: %s", upload_id, exc)
                return None
            pipeline().fail(upload_id, f"{step} gave up after {MAX_RETRIES} retries: {exc}")
            return "failed"

    options: dict[str, Any] = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}

    @app.task(name=TaskName.SCAN, **options)
    def scan(self: Task, upload_id: str) -> Any:
        return run_step(self, "scan", upload_id)

    @app.task(name=TaskName.VERIFY, **options)
    def verify(self: Task, upload_id: str) -> Any:
        return run_step(self, "verify", upload_id)

    @app.task(name=TaskName.ATTACH, **options)
    def attach(self: Task, upload_id: str) -> Any:
        return run_step(self, "attach", upload_id)

    # Throttled: a new signature version must not turn into a scan storm on the fleet.
    @app.task(name=TaskName.RESCAN_FILE, rate_limit=settings.rescan_rate_limit, **options)
    def rescan_file(self: Task, upload_id: str) -> Any:
        return run_step(self, "rescan_file", upload_id)

    @app.task(
        name=TaskName.RECONCILE, bind=True, acks_late=True, time_limit=600, soft_time_limit=540
    )
    def reconcile(self: Task) -> Any:
        result = pipeline().reconcile()
        log.info("reconcile: %s", result)
        return result

    @app.task(name=TaskName.RESCAN, bind=True, acks_late=True, time_limit=600, soft_time_limit=540)
    def rescan(self: Task, since: int | None = None) -> Any:
        try:
            queued = pipeline().rescan(since=since, limit=settings.rescan_batch)
        except TRANSIENT as exc:  # clamd down: the next beat tick tries again
            log.warning("rescan sweep skipped: %s", exc)
            return 0
        log.info("rescan: %d file(s) queued", queued)
        return queued
