"""Celery tasks: thin wrappers that give each pipeline step its delivery options.

Every pipeline task is a `PipelineTask`: late-acked (a worker that dies mid-task hands the
message back), retrying only the transient errors — ServiceUnavailable and ScanError — with
Celery's own exponential backoff and jitter, then recording `failed` so an operator can retry.
Tasks take upload ids, never bytes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from core.clamd import ClamdClient
from core.domain import Reason, State
from core.errors import ScanError, ServiceUnavailable
from core.settings import Settings
from core.tasks import PRIORITY_STEPS, Dispatch, Lane, Publish, TaskName
from storage import broker
from storage.fairshare import FairShare
from storage.handoffs import Dispatcher, dispatcher_for
from storage.objects import ObjectStore
from storage.records import RecordStore
from storage.telemetry import Telemetry
from storage.tus import ResumableRecords
from workers import webhooks
from workers.fused import SmallFiles
from workers.metrics import TransitionCounter
from workers.pipeline import Limits, Pipeline, StepResult
from workers.rescan import Rescans
from workers.resumable import Reaper
from workers.sanitize import publish
from workers.upkeep import Upkeep

log = logging.getLogger(__name__)

MAX_RETRIES = 8
TRANSIENT = (ServiceUnavailable, ScanError)


@dataclass(frozen=True)
class Works:
    """Everything a worker process (or the CLI) drives the pipeline with, built once."""

    pipeline: Pipeline
    upkeep: Upkeep
    rescans: Rescans
    # Hands work to the workers; never raises: what the broker cannot take now is kept and
    # sent the moment it answers (storage/handoffs.py).
    dispatch: Publish
    dispatcher: Dispatcher
    fair: FairShare


def build_works(settings: Settings, app: Celery) -> Works:
    pipeline = build_pipeline(settings, app)
    records = pipeline.records
    counter = pipeline.observe
    assert isinstance(counter, TransitionCounter)
    dispatcher = dispatcher_for(app, records.engine, record=counter.telemetry.record_outage)

    def dispatch(message: Dispatch) -> None:
        # A broker that cannot be reached: kept (and logged) by the dispatcher.
        with contextlib.suppress(ServiceUnavailable):
            dispatcher.send(message)

    fair = FairShare(counter.telemetry, settings.fair_interactive, settings.fair_busy)
    return Works(
        pipeline,
        Upkeep(pipeline, dispatch),
        Rescans(pipeline, dispatch),
        dispatch,
        dispatcher,
        fair,
    )


def build_pipeline(settings: Settings, app: Celery) -> Pipeline:
    records = RecordStore.from_url(settings.database_url)
    objects = ObjectStore.from_settings(settings)
    scanner = ClamdClient(settings.clamd_host, settings.clamd_port, settings.clamd_timeout)
    limits = Limits(
        max_image_pixels=settings.max_image_pixels,
        max_svg_size=settings.max_svg_size,
        reconcile_after_seconds=settings.reconcile_after_seconds,
    )
    counter = TransitionCounter(Telemetry.from_url(settings.redis_url))
    # The webhook deliveries a move writes are sent right after its commit.
    records.announce = webhooks.build_courier(settings, app, records).announce
    return Pipeline(
        records,
        objects,
        scanner,
        limits,
        observe=counter,
        publisher=publish.from_settings(settings, objects, counter.telemetry),
    )


class PipelineTask(Task):
    """What every pipeline task shares: delivery options, Celery's retry policy, and giving up."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT
    max_retries = MAX_RETRIES
    retry_backoff = 1  # seconds, doubled per retry ...
    retry_backoff_max = 60  # ... up to a minute,
    retry_jitter = True  # and drawn at random below that, so a fleet does not retry in step.

    def run_step(self, works: Works, upload_id: str, step: Callable[[str], StepResult]) -> Any:
        """Run `step` on the upload, then send the step it says comes next, in this message's
        lane. Counts go to Redis in one round trip, with the release of the tenant's share."""
        pipeline = works.pipeline
        retrying = False
        try:
            with _counts_batched(pipeline):
                try:
                    outcome = step(upload_id)
                except TRANSIENT:
                    retrying = self.request.retries < self.max_retries
                    raise
                finally:
                    if not retrying:
                        self.release_share(works)
        except TRANSIENT as exc:
            if retrying:
                log.warning("%s %s: %s; retrying", self.name, upload_id, exc)
                raise  # autoretry_for: Celery schedules the retry with backoff and jitter
            return self.give_up(pipeline, upload_id, exc)
        if outcome.then is not None:
            # Sent after the move that asked for it committed; if the broker is gone now, it is
            # kept and sent the moment the broker answers (storage/handoffs.py).
            works.dispatch(Dispatch(outcome.then, upload_id, self.lane()))
        return outcome.state

    def lane(self) -> Lane:
        """The lane this message came in (follow-up steps keep it)."""
        priority = (self.request.delivery_info or {}).get("priority")
        if isinstance(priority, int) and priority in PRIORITY_STEPS:
            return Lane(priority)
        return Lane.INTERACTIVE  # none, or not one of ours

    def release_share(self, works: Works) -> None:
        """A scan message counted in its tenant's work in flight (storage/fairshare.py) counts
        out once its task ends, whatever the outcome, but not when it is retried."""
        tenant = self.request.get(broker.TENANT_HEADER)
        if tenant:
            works.fair.release(tenant)

    def give_up(self, pipeline: Pipeline, upload_id: str, exc: Exception) -> Any:
        short = TaskName(self.name).short
        pipeline.fail(
            upload_id, f"{short} gave up after {self.max_retries} retries: {exc}", Reason.GAVE_UP
        )
        return State.FAILED


def _counts_batched(pipeline: Pipeline) -> AbstractContextManager[None]:
    """A task's counts go to Redis in one round trip (storage/telemetry.py `batched`)."""
    counter = pipeline.observe
    return counter.telemetry.batched() if isinstance(counter, TransitionCounter) else nullcontext()


class RescanTask(PipelineTask):
    def give_up(self, pipeline: Pipeline, upload_id: str, exc: Exception) -> Any:
        # An attached file stays attached; the next sweep queues it again.
        log.error("rescan of %s gave up: %s", upload_id, exc)
        return None


def register(app: Celery, settings: Settings) -> None:
    """Bind the tasks to `app`. The pipeline (database engine, HTTP pools) is built lazily in
    each worker process, after the fork, never at import."""
    holder: dict[str, Works] = {}
    couriers: dict[str, webhooks.Courier] = {}

    def works() -> Works:
        if "w" not in holder:
            holder["w"] = build_works(settings, app)
        return holder["w"]

    def scan_step() -> Callable[[str], StepResult]:
        if not settings.small_file_size:
            return works().pipeline.scan
        return SmallFiles(works().pipeline, settings.small_file_size).scan

    def courier() -> webhooks.Courier:
        if "c" not in couriers:
            couriers["c"] = webhooks.build_courier(settings, app, works().pipeline.records)
        return couriers["c"]

    webhooks.register(app, courier, settings)

    @app.task(name=TaskName.SCAN, base=PipelineTask, bind=True)
    def scan(self: PipelineTask, upload_id: str) -> Any:
        # A small file's verify and attach run here too (workers/fused.py).
        return self.run_step(works(), upload_id, scan_step())

    @app.task(name=TaskName.VERIFY, base=PipelineTask, bind=True)
    def verify(self: PipelineTask, upload_id: str) -> Any:
        return self.run_step(works(), upload_id, works().pipeline.verify)

    @app.task(name=TaskName.ATTACH, base=PipelineTask, bind=True)
    def attach(self: PipelineTask, upload_id: str) -> Any:
        return self.run_step(works(), upload_id, works().pipeline.attach)

    # Throttled: a new signature version must not turn into a scan storm on the fleet.
    @app.task(
        name=TaskName.RESCAN_FILE, base=RescanTask, bind=True, rate_limit=settings.rescan_rate_limit
    )
    def rescan_file(self: RescanTask, upload_id: str) -> Any:
        return self.run_step(works(), upload_id, works().rescans.rescan_file)

    maintenance: dict[str, Any] = {"acks_late": True, "time_limit": 600, "soft_time_limit": 540}

    @app.task(name=TaskName.RESEND, **maintenance)
    def resend() -> Any:
        try:
            sent = works().dispatcher.drain()
        except ServiceUnavailable as exc:  # away again: the next reconnect or beat tick
            log.warning("pending hand-offs not sent: %s", exc)
            return 0
        return sent

    @app.task(name=TaskName.RECONCILE, **maintenance)
    def reconcile() -> Any:
        result = works().upkeep.reconcile()
        # Hand-offs kept by a process that died before it could send them.
        with contextlib.suppress(ServiceUnavailable):
            result["handoffs_sent"] = works().dispatcher.drain()
        # Outbox rows whose message was lost (Redis restarted empty) or whose wait was too long
        # for a countdown; a database hiccup here must not lose the pipeline's result.
        try:
            result["webhooks_resent"] = courier().sweep()
        except ServiceUnavailable as exc:
            log.warning("webhook sweep skipped: %s", exc)
        log.info("reconcile: %s", result)
        return result

    reapers: dict[str, Reaper] = {}

    @app.task(name=TaskName.REAP_RESUMABLE, **maintenance)
    def reap_resumable() -> Any:
        if "r" not in reapers:
            records = ResumableRecords(works().pipeline.records.engine)
            reapers["r"] = Reaper.from_settings(settings, records)
        try:
            reaped = reapers["r"].reap()
        except ServiceUnavailable as exc:  # MinIO or the database down: the next tick retries
            log.warning("resumable reap skipped: %s", exc)
            return 0
        log.info("reap_resumable: %d expired upload(s) removed", reaped)
        return reaped

    @app.task(name=TaskName.RESCAN, **maintenance)
    def rescan(since: int | None = None) -> Any:
        try:
            queued = works().rescans.rescan(since=since, limit=settings.rescan_batch)
        except TRANSIENT as exc:  # clamd down: the next beat tick tries again
            log.warning("rescan sweep skipped: %s", exc)
            return 0
        log.info("rescan: %d file(s) queued", queued)
        return queued
