"""The worker fleet: who is online, what each consumes and holds, and draining a worker without
losing work.

Who is online is the workers' heartbeat in Redis (storage/telemetry.py, written by the bootstep
in workers/signals.py), the same answer the dashboard and /metrics give: it needs no broadcast
and does not miss a busy worker that is slow to reply. Celery's remote control is asked only what
it alone knows, and only of the workers the heartbeat lists: what each consumes this instant
(a drain shows at once, not at the next beat), what it runs, holds and waits to retry, and its
pool; and it is the channel that drains (cancel_consumer), resumes (add_consumer) and shuts down.

Draining cancels the worker's consumers (it takes nothing new) and waits until it holds nothing:
no task running, none reserved, none waiting for a retry's countdown. What it held either
finishes there or, if it is shut down warm meanwhile, goes back to the queue: tasks are acked
late, and the Redis transport restores unacknowledged messages when a consumer closes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import Celery

from core.errors import NotFound
from core.tasks import PIPELINE_TASKS, Queue
from storage.telemetry import Presence, QueueState, Telemetry


@dataclass(frozen=True)
class TaskRef:
    id: str
    name: str
    upload_id: str | None
    started: float | None = None
    eta: str | None = None

    @classmethod
    def of(cls, entry: dict[str, Any], eta: str | None = None) -> TaskRef:
        args = entry.get("args") or []
        upload = args[0] if entry.get("name") in PIPELINE_TASKS and args else None
        return cls(
            entry.get("id", "?"), entry.get("name", "?"), upload, entry.get("time_start"), eta
        )


@dataclass(frozen=True)
class WorkerState:
    name: str
    queues: list[str]
    active: list[TaskRef]
    reserved: list[TaskRef]
    scheduled: list[TaskRef]
    processes: int
    max_concurrency: int | None
    pid: int | None
    # False: online by its heartbeat, but no reply to the remote control within the timeout, so
    # its queues, pool size and pid are the heartbeat's and what it holds is unknown (not none).
    answered: bool = True

    @property
    def held(self) -> int:
        return len(self.active) + len(self.reserved) + len(self.scheduled)


@dataclass
class FleetStatus:
    workers: list[WorkerState]
    queues: list[QueueState] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers": [{**asdict(w), "held": w.held} for w in self.workers],
            "queues": [asdict(q) for q in self.queues],
        }


class Fleet:
    def __init__(
        self,
        app: Celery,
        telemetry: Telemetry,
        queues: Sequence[str] = tuple(Queue),
        timeout: float = 1.0,
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.queues = tuple(queues)
        self.timeout = timeout

    def online(self) -> list[str]:
        """Node names of the workers whose heartbeat is fresh, sorted."""
        return [p.hostname for p in self.telemetry.workers()]

    def workers(self, names: list[str] | None = None) -> list[WorkerState]:
        """The online workers (those of `names` only, when given), each as its reply to the
        remote control shows it, or as its heartbeat does if it did not reply in time."""
        presences = {p.hostname: p for p in self.telemetry.workers()}
        if names is not None:
            presences = {n: presences[n] for n in names if n in presences}
        if not presences:
            return []
        # With explicit destinations each call returns as soon as every worker has answered.
        inspect = self.app.control.inspect(destination=list(presences), timeout=self.timeout)
        queues = inspect.active_queues() or {}
        active = inspect.active() or {}
        reserved = inspect.reserved() or {}
        scheduled = inspect.scheduled() or {}
        stats = inspect.stats() or {}
        out = []
        for name, presence in presences.items():
            if name not in queues and name not in stats:
                out.append(_unanswered(presence))
                continue
            pool = (stats.get(name) or {}).get("pool") or {}
            out.append(
                WorkerState(
                    name=name,
                    queues=sorted(q["name"] for q in queues.get(name) or []),
                    active=[TaskRef.of(t) for t in active.get(name) or []],
                    reserved=[TaskRef.of(t) for t in reserved.get(name) or []],
                    scheduled=[
                        TaskRef.of(s.get("request") or {}, s.get("eta"))
                        for s in scheduled.get(name) or []
                    ],
                    processes=len(pool.get("processes") or []),
                    max_concurrency=pool.get("max-concurrency"),
                    pid=(stats.get(name) or {}).get("pid"),
                )
            )
        return out

    def status(self) -> FleetStatus:
        return FleetStatus(self.workers(), self.telemetry.queues(self.queues))

    def _one(self, worker: str) -> WorkerState:
        """`worker`, which must be online and answer: draining or resuming a worker whose state
        is unknown would report a drain it cannot confirm."""
        found = self.workers([worker])
        if not found:
            online = ", ".join(self.online()) or "none"
            raise NotFound(f"worker {worker!r} did not answer (online: {online})")
        if not found[0].answered:
            raise NotFound(f"worker {worker!r} is online but did not answer in {self.timeout}s")
        return found[0]

    def drain(
        self,
        worker: str,
        *,
        wait: bool = True,
        timeout: float = 1800.0,
        poll: float = 1.0,
        progress: Callable[[WorkerState], None] | None = None,
    ) -> tuple[list[str], WorkerState]:
        """Stop `worker` consuming every queue; with `wait`, return once it holds nothing or
        `timeout` passes. Returns the queues it stopped consuming and its last state."""
        state = self._one(worker)
        stopped = state.queues
        for queue in stopped:
            self.app.control.cancel_consumer(
                queue, destination=[worker], reply=True, timeout=self.timeout
            )
        deadline = time.monotonic() + timeout
        while True:
            state = self._one(worker)
            if progress is not None:
                progress(state)
            if not wait or state.held == 0 or time.monotonic() >= deadline:
                return stopped, state
            time.sleep(poll)

    def resume(self, worker: str, queues: list[str]) -> list[str]:
        """Start `worker` consuming `queues` again (by default what it started with)."""
        self._one(worker)
        if not queues:
            known = {p.hostname: p for p in self.telemetry.workers()}
            presence = known.get(worker)
            queues = list(presence.configured) if presence and presence.configured else []
        if not queues:
            raise NotFound(f"no queues known for {worker!r}: name them with --queue")
        for queue in queues:
            self.app.control.add_consumer(
                queue, destination=[worker], reply=True, timeout=self.timeout
            )
        return queues

    def shutdown(self, worker: str) -> None:
        """Warm shutdown: finish what runs, hand back what is held, exit."""
        self.app.control.shutdown(destination=[worker])


def _unanswered(presence: Presence) -> WorkerState:
    return WorkerState(
        name=presence.hostname,
        queues=sorted(presence.queues),
        active=[],
        reserved=[],
        scheduled=[],
        processes=presence.concurrency,
        max_concurrency=None,
        pid=presence.pid,
        answered=False,
    )


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def render(status: FleetStatus, now: float | None = None) -> str:
    """The human table for `attachd fleet status`."""
    now = time.time() if now is None else now
    lines = [f"{'QUEUE':<14}{'WAITING':>8}{'OLDEST':>8}{'HELD':>6}"]
    for q in status.queues:
        lines.append(f"{q.name:<14}{q.depth:>8}{_age(q.oldest_age_seconds):>8}{q.unacked:>6}")
    lines.append("")
    if not status.workers:
        lines.append("no worker answered")
    else:
        lines.append(
            f"{'WORKER':<36}{'QUEUES':<28}{'ACTIVE':>7}{'RESERVED':>9}{'SCHEDULED':>10}{'PROCS':>6}"
        )
    for w in status.workers:
        queues = ",".join(w.queues) or "(draining)"
        if w.answered:
            held = f"{len(w.active):>7}{len(w.reserved):>9}{len(w.scheduled):>10}"
        else:
            held = f"{'?':>7}{'?':>9}{'?':>10}"
        lines.append(f"{w.name:<36}{queues:<28}{held}{w.processes:>6}")
        for t in w.active:
            ran = _age(now - t.started) if t.started else "-"
            lines.append(f"    running {t.name} {t.id} upload={t.upload_id or '-'} for {ran}")
        for t in w.scheduled:
            lines.append(f"    waiting {t.name} {t.id} upload={t.upload_id or '-'} until {t.eta}")
    return "\n".join(lines)
