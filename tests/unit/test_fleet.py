"""Who `attachd fleet` lists comes from the workers' Redis heartbeat alone; Celery's remote
control is asked only about those workers, and a worker that does not reply in time is still
listed, from its heartbeat, with what it holds shown as unknown."""

from __future__ import annotations

from typing import Any

import pytest

from attachd.fleet import Fleet, render
from core.errors import NotFound
from core.tasks import Queue, TaskName
from storage.telemetry import Presence, QueueState


def _presence(host: str, queues: tuple[str, ...], pid: int) -> Presence:
    return Presence(host, queues, queues, "+".join(queues), 2, pid, 0.0, 0.0)


class FakeTelemetry:
    def __init__(self, presences: list[Presence]) -> None:
        self.presences = presences

    def workers(self) -> list[Presence]:
        return sorted(self.presences, key=lambda p: p.hostname)

    def queues(self, names: Any) -> list[QueueState]:
        return [QueueState(n, 0, None, 0) for n in names]


class FakeInspect:
    """Replies only for the workers in `answering` among the destinations asked."""

    def __init__(self, answering: dict[str, dict[str, Any]], destination: list[str]) -> None:
        self.replies = {n: r for n, r in answering.items() if n in destination}

    def _each(self, key: str) -> dict[str, Any]:
        return {n: r[key] for n, r in self.replies.items()}

    def active_queues(self) -> dict[str, Any]:
        return self._each("queues")

    def active(self) -> dict[str, Any]:
        return self._each("active")

    def reserved(self) -> dict[str, Any]:
        return {n: [] for n in self.replies}

    def scheduled(self) -> dict[str, Any]:
        return {n: [] for n in self.replies}

    def stats(self) -> dict[str, Any]:
        return self._each("stats")

    def ping(self) -> dict[str, Any]:
        raise AssertionError("who is online comes from the heartbeat, not a ping broadcast")


class FakeControl:
    def __init__(self, answering: dict[str, dict[str, Any]]) -> None:
        self.answering = answering
        self.asked: list[list[str] | None] = []
        self.calls: list[tuple[str, str, list[str]]] = []

    def inspect(self, destination: list[str] | None = None, timeout: float = 1.0) -> FakeInspect:
        assert destination, "the remote control is asked about named workers only"
        self.asked.append(destination)
        return FakeInspect(self.answering, destination)

    def cancel_consumer(self, queue: str, destination: list[str], **_: Any) -> None:
        self.calls.append(("cancel", queue, destination))

    def add_consumer(self, queue: str, destination: list[str], **_: Any) -> None:
        self.calls.append(("add", queue, destination))


class FakeApp:
    def __init__(self, control: FakeControl) -> None:
        self.control = control


def _reply(queues: list[str], pid: int, active: list[dict[str, Any]] | None = None) -> Any:
    return {
        "queues": [{"name": q} for q in queues],
        "active": active or [],
        "stats": {"pid": pid, "pool": {"processes": [1, 2], "max-concurrency": 4}},
    }


def _fleet(presences: list[Presence], answering: dict[str, Any]) -> tuple[Fleet, FakeControl]:
    control = FakeControl(answering)
    fleet = Fleet(FakeApp(control), FakeTelemetry(presences), timeout=0.1)  # type: ignore[arg-type]
    return fleet, control


def test_status_lists_the_heartbeat_workers_and_asks_control_only_about_them() -> None:
    scan = _presence("scan@h", (Queue.SCAN,), 11)
    slow = _presence("verify@h", (Queue.VERIFY,), 12)
    task = {"id": "t1", "name": TaskName.SCAN, "args": ["u1"], "time_start": 5.0}
    # "ghost@h" answers Celery but has no heartbeat: it is not online.
    answering = {"scan@h": _reply(["scan"], 11, [task]), "ghost@h": _reply(["scan"], 99)}
    fleet, control = _fleet([slow, scan], answering)

    status = fleet.status()

    assert control.asked == [["scan@h", "verify@h"]]
    assert [w.name for w in status.workers] == ["scan@h", "verify@h"]
    answered, silent = status.workers
    assert answered.answered and answered.pid == 11 and answered.max_concurrency == 4
    assert answered.active[0].upload_id == "u1"
    assert (silent.answered, silent.queues, silent.pid, silent.processes) == (
        False,
        ["verify"],
        12,
        2,
    )
    assert [q.name for q in status.queues] == list(Queue)
    assert status.to_dict()["workers"][1]["answered"] is False
    row = next(line for line in render(status).splitlines() if line.startswith("verify@h"))
    assert "?" in row


def test_drain_needs_a_worker_that_is_online_and_answers() -> None:
    fleet, control = _fleet(
        [_presence("scan@h", ("scan",), 1), _presence("mute@h", ("verify",), 2)],
        {"scan@h": _reply(["scan"], 1), "ghost@h": _reply(["scan"], 3)},
    )
    with pytest.raises(NotFound, match="online: mute@h, scan@h"):
        fleet.drain("ghost@h", wait=False)
    with pytest.raises(NotFound, match="did not answer"):
        fleet.drain("mute@h", wait=False)
    stopped, _ = fleet.drain("scan@h", wait=False)
    assert stopped == ["scan"]
    assert control.calls == [("cancel", "scan", ["scan@h"])]


def test_resume_defaults_to_the_queues_the_heartbeat_says_it_started_with() -> None:
    fleet, control = _fleet(
        [_presence("both@h", ("attach", "maintenance"), 1)], {"both@h": _reply([], 1)}
    )
    assert fleet.resume("both@h", []) == ["attach", "maintenance"]
    assert control.calls == [("add", "attach", ["both@h"]), ("add", "maintenance", ["both@h"])]
