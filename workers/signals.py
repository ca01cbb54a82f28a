"""Celery signal handlers and a bootstep: log context, task counters and the worker heartbeat.
Nothing here changes what a task does; a failure here is logged and dropped, never allowed to
fail a task.

- Around each task the request, upload and task ids are bound into the log context (the
  request id comes from the stamp storage/broker.py puts on every published message).
- Retries and failures are Celery's own events, counted in Redis (storage/telemetry.py). What
  a step changed is counted by the task layer itself (workers/metrics.py), not here.
- Each worker writes a heartbeat with the queues it consumes: the one answer to "which
  workers are online" (the dashboard, metrics and `attachd fleet status`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task, bootsteps
from celery.signals import (
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
)

from core import logs
from core.errors import AttachdError
from core.settings import Settings
from core.tasks import PIPELINE_TASKS, TaskName
from storage import broker
from storage.telemetry import (
    PRESENCE_INTERVAL,
    REQUEST_ID_HEADER,
    Presence,
    Telemetry,
)

log = logging.getLogger(__name__)


def short_name(task_name: str) -> str:
    return task_name.rsplit(".", 1)[-1]


class _Observer:
    """Per-process state for the task signals: clients are built on first use, after the
    prefork pool has forked, never at import."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        # The client with the pid that made it: a pool process forked from the main one makes
        # its own, never using a connection it inherited.
        self._telemetry: tuple[int, Telemetry] | None = None
        self.tokens: dict[str, Any] = {}

    @property
    def telemetry(self) -> Telemetry:
        with self._lock:
            if self._telemetry is None or self._telemetry[0] != os.getpid():
                self._telemetry = (os.getpid(), Telemetry.from_url(self.settings.redis_url))
            return self._telemetry[1]

    def quietly(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (AttachdError, OSError) as exc:
            log.warning("metrics: %s skipped: %s", what, exc)
            return None


def install(app: Celery, settings: Settings) -> None:
    """Connect the worker-side handlers and the heartbeat bootstep to `app`."""
    obs = _Observer(settings)

    @setup_logging.connect(weak=False, dispatch_uid="attachd.logging")
    def _logging(**_: Any) -> None:
        # Connected, so Celery leaves the root logger to us: JSON lines, ids and all.
        logs.configure(settings.log_level, settings.log_format)

    @task_prerun.connect(weak=False, dispatch_uid="attachd.prerun")
    def _prerun(task_id: str, task: Task, args: tuple[Any, ...] = (), **_: Any) -> None:
        upload_id = args[0] if task.name in PIPELINE_TASKS and args else None
        obs.tokens[task_id] = logs.bind(
            task_id=task_id,
            task=task.name,
            upload_id=upload_id,
            request_id=task.request.get(REQUEST_ID_HEADER),
        )

    @task_postrun.connect(weak=False, dispatch_uid="attachd.postrun")
    def _postrun(task_id: str, **_: Any) -> None:
        token = obs.tokens.pop(task_id, None)
        if token is not None:
            # ValueError: bound in another context, nothing of ours to undo.
            with contextlib.suppress(ValueError):
                logs.reset(token)

    @task_retry.connect(weak=False, dispatch_uid="attachd.retry")
    def _retry(sender: Task | None = None, **_: Any) -> None:
        name = sender.name if sender is not None else "unknown"

        def count() -> None:
            obs.telemetry.incr("task_retries", short_name(name))
            if name == TaskName.SCAN:
                obs.telemetry.incr("scan_outcomes", "error")

        obs.quietly("retry", count)

    @task_failure.connect(weak=False, dispatch_uid="attachd.failure")
    def _failure(sender: Task | None = None, **_: Any) -> None:
        name = sender.name if sender is not None else "unknown"
        obs.quietly("failure", lambda: obs.telemetry.incr("task_failures", short_name(name)))

    app.steps["consumer"].add(_heartbeat_step(settings))
    app.steps["consumer"].add(ResendOnConnect)


class ResendOnConnect(bootsteps.StartStopStep):
    """Every time this worker's consumer reconnects to the broker, one of the pool's processes
    sends the hand-offs kept while the broker was away (storage/handoffs.py): the first worker
    back sends what the API and the other workers could not. Not at the first start: what a
    dead process left is the reconciler's, within a minute."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.started = False

    def start(self, c: Any) -> None:
        if not self.started:
            self.started = True
            return
        try:
            broker.send(c.app, TaskName.RESEND)
        except AttachdError as exc:
            log.warning("pending hand-offs not asked for: %s", exc)


def _heartbeat_step(settings: Settings) -> type[bootsteps.StartStopStep]:
    class Heartbeat(bootsteps.StartStopStep):
        """Writes this worker's presence (hostname, queues being consumed, pool size) to Redis
        every few seconds, and removes it on a clean stop."""

        requires = {"celery.worker.consumer.tasks:Tasks"}

        def __init__(self, c: Any, **kwargs: Any) -> None:
            super().__init__(c, **kwargs)
            self.telemetry = Telemetry.from_url(settings.redis_url)
            self.started = time.time()
            self.configured: tuple[str, ...] | None = None
            self.tref: Any = None

        def start(self, c: Any) -> None:
            queues = self._queues(c)
            if self.configured is None:
                self.configured = queues
                self._quietly(self.telemetry.forget_stale)
            self.beat(c)
            self.tref = c.timer.call_repeatedly(PRESENCE_INTERVAL, self.beat, (c,), priority=10)

        def stop(self, c: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None
            self._quietly(lambda: self.telemetry.retire(c.hostname))

        shutdown = stop

        @staticmethod
        def _queues(c: Any) -> tuple[str, ...]:
            consumer = getattr(c, "task_consumer", None)
            return tuple(sorted(q.name for q in consumer.queues)) if consumer else ()

        def beat(self, c: Any) -> None:
            configured = self.configured or ()
            presence = Presence(
                hostname=c.hostname,
                queues=self._queues(c),
                configured=configured,
                pool="+".join(configured),
                concurrency=int(getattr(c.pool, "num_processes", 0) or 0),
                pid=os.getpid(),
                started_at=self.started,
                seen_at=time.time(),
            )
            self._quietly(lambda: self.telemetry.announce(presence))

        @staticmethod
        def _quietly(fn: Callable[[], Any]) -> None:
            try:
                fn()
            except (AttachdError, OSError) as exc:
                log.warning("heartbeat skipped: %s", exc)

    return Heartbeat
