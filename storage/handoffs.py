"""Hand-offs to the workers that survive a broker outage, and are sent the moment it returns.

Every message to the workers goes through `Dispatcher.send`. When the broker cannot be reached,
the message is written to the record store (`pending_dispatches`) and a watcher in this process
tries again every `interval` seconds; the first attempt that reaches the broker sends every
pending hand-off, whichever process wrote it. Workers also send them when their consumer
reconnects (workers/signals.py), and the reconciler sends what is left each minute, so a process
that died with hand-offs pending delays them by a minute, not by ATTACHD_RECONCILE_AFTER_SECONDS.
The reconciler stays the safety net for what nobody knew was lost (a broker that came back
empty).

A hand-off sent twice (two processes draining at once) is harmless: every step begins with
"already done?" and moves its upload with a compare-and-set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from celery import Celery
from sqlalchemy import Engine, delete, func, insert, select

from core.errors import ServiceUnavailable
from core.tasks import Dispatch, Lane, Publish, TaskName
from storage.broker import publish
from storage.engine import EngineBound, as_utc, utcnow
from storage.schema import pending_dispatches

log = logging.getLogger(__name__)

_pd = pending_dispatches

# (the oldest kept hand-off's time, when the last was sent, how many): one outage, over.
Record = Callable[[datetime, datetime, int], None]


class PendingDispatches(EngineBound):
    """The durable list of hand-offs not yet sent."""

    def add(self, dispatch: Dispatch) -> None:
        with self.transaction() as conn:
            conn.execute(
                insert(_pd).values(
                    task=dispatch.task.value,
                    target=dispatch.target,
                    lane=int(dispatch.lane),
                    created_at=utcnow(),
                )
            )

    def oldest(self, limit: int = 500) -> list[tuple[int, Dispatch, datetime]]:
        """(row id, the hand-off, when it was kept), oldest first."""
        with self.reading() as conn:
            rows = conn.execute(select(_pd).order_by(_pd.c.id).limit(limit)).all()
        # Not counted in a tenant's share: its count was given back when the first try failed.
        return [
            (
                r.id,
                Dispatch(TaskName(r.task), r.target, Lane(r.lane)),
                as_utc(r.created_at) or utcnow(),
            )
            for r in rows
        ]

    def remove(self, ids: list[int]) -> None:
        if ids:
            with self.transaction() as conn:
                conn.execute(delete(_pd).where(_pd.c.id.in_(ids)))

    def count(self) -> int:
        with self.reading() as conn:
            return int(conn.execute(select(func.count()).select_from(_pd)).scalar_one())


class Dispatcher:
    def __init__(
        self,
        publish: Publish,
        pending: PendingDispatches,
        interval: float = 0.5,
        wait: Callable[[float], bool] | None = None,
        record: Record | None = None,
    ) -> None:
        self._publish = publish
        self.pending = pending
        # Told of each outage once its hand-offs are all sent (the dashboard shows the last).
        self._record = record
        self.interval = interval
        # How the watcher waits between tries (an Event's wait: tests and shutdown end it).
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def send(self, dispatch: Dispatch) -> None:
        """Publish now; if the broker cannot be reached, keep it for the moment it can, and
        raise ServiceUnavailable so the caller can say so (nothing is lost either way, unless
        the record store is unreachable too: then the reconciler finds the upload)."""
        try:
            self._publish(dispatch)
        except ServiceUnavailable:
            self._keep(dispatch)
            raise

    def _keep(self, dispatch: Dispatch) -> None:
        try:
            self.pending.add(dispatch)
        except ServiceUnavailable as exc:
            log.warning(
                "hand-off %s %s not kept (%s); the reconciler will find it", *_d(dispatch), exc
            )
            return
        log.warning("broker unreachable: %s %s kept, sent the moment it answers", *_d(dispatch))
        self._watch()

    def _watch(self) -> None:
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._watcher = threading.Thread(target=self._run, name="handoffs", daemon=True)
            self._watcher.start()

    def _run(self) -> None:
        while not self._wait(self.interval):
            try:
                self.drain()
            except ServiceUnavailable as exc:  # the broker or the store, still away
                log.debug("hand-offs still pending: %s", exc)
            else:
                return

    def drain(self) -> int:
        """Send every pending hand-off (oldest first); stops at the first that cannot be sent.
        Returns how many were sent. Raises ServiceUnavailable when the store or the broker is
        still unreachable."""
        sent = 0
        since: datetime | None = None
        while True:
            batch = self.pending.oldest()
            if not batch:
                if sent and since is not None and self._record is not None:
                    self._record(since, utcnow(), sent)
                return sent
            done: list[int] = []
            try:
                for row_id, dispatch, kept_at in batch:
                    self._publish(dispatch)
                    done.append(row_id)
                    since = kept_at if since is None else min(since, kept_at)
            finally:
                self.pending.remove(done)
                sent += len(done)
                if done:
                    log.info("broker back: %d pending hand-off(s) sent", len(done))

    def close(self) -> None:
        self._stop.set()


def _d(dispatch: Dispatch) -> tuple[str, str]:
    return dispatch.task.short, dispatch.target


def dispatcher_for(app: Celery, engine: Engine, record: Record | None = None) -> Dispatcher:
    """The dispatcher of a process (API, worker, CLI): publishing through `app`, keeping what
    the broker refuses in the record store on `engine`."""
    return Dispatcher(
        lambda message: publish(app, message), PendingDispatches(engine), record=record
    )
