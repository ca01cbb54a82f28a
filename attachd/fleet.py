"""The worker fleet through Celery's remote control: who is online, what each consumes and holds,
and draining a worker without losing work.

Draining cancels the worker's consumers (it takes nothing new) and waits until it holds nothing:
no task running, none reserved, none waiting for a retry's countdown. What it held either
finishes there or, if it is shut down warm meanwhile, goes back to the queue: tasks are acked
late, and the Redis transport restores unacknowledged messages when a consumer closes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import Celery

from core.errors import NotFound
from storage.telemetry import QueueState, Telemetry

PIPELINE_TASKS = ("attachd.scan", "attachd.verify", "attachd.attach", "attachd.rescan_file")


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
        self, app: Celery, telemetry: Telemetry, queues: tuple[str, ...], timeout: float = 1.0
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.queues = queues
        self.timeout = timeout

    def online(self) -> list[str]:
        replies = self.app.control.inspect(timeout=self.timeout).ping() or {}
        return sorted(replies)

    def workers(self, names: list[str] | None = None) -> list[WorkerState]:
        names = self.online() if names is None else names
        if not names:
            return []
        # With explicit destinations each call returns as soon as every worker has answered.
        inspect = self.app.control.inspect(destination=names, timeout=self.timeout)
        queues = inspect.active_queues() or {}
        active = inspect.active() or {}
        reserved = inspect.reserved() or {}
        scheduled = inspect.scheduled() or {}
        stats = inspect.stats() or {}
        out = []
        for name in names:
            if name not in queues and name not in stats:
                continue  # left between the ping and now
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
        found = self.workers([worker])
        if not found:
            online = ", ".join(self.online()) or "none"
            raise NotFound(f"worker {worker!r} did not answer (online: {online})")
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
        lines.append(
            f"{w.name:<36}{queues:<28}{len(w.active):>7}{len(w.reserved):>9}"
            f"{len(w.scheduled):>10}{w.processes:>6}"
        )
        for t in w.active:
            ran = _age(now - t.started) if t.started else "-"
            lines.append(f"    running {t.name} {t.id} upload={t.upload_id or '-'} for {ran}")
        for t in w.scheduled:
            lines.append(f"    waiting {t.name} {t.id} upload={t.upload_id or '-'} until {t.eta}")
    return "\n".join(lines)
