"""Hand-offs that survive a broker outage (storage/handoffs.py): kept in the record store when
the broker cannot be reached, sent in order once it answers, and a failure mid-way keeps what
was not sent."""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path

import pytest

from core.errors import ServiceUnavailable
from core.tasks import Dispatch, Lane, TaskName
from storage.handoffs import Dispatcher, PendingDispatches
from storage.migrate import upgrade
from storage.records import make_engine


class Broker:
    def __init__(self) -> None:
        self.up = True
        self.fail_after: int | None = None  # goes away after this many more messages
        self.received: list[Dispatch] = []
        self.tried = threading.Event()

    def publish(self, message: Dispatch) -> None:
        self.tried.set()
        if not self.up or self.fail_after == 0:
            raise ServiceUnavailable("redis", "connection refused")
        if self.fail_after is not None:
            self.fail_after -= 1
        self.received.append(message)


@pytest.fixture
def pending(tmp_path: Path) -> PendingDispatches:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    upgrade(url)
    return PendingDispatches(make_engine(url))


def test_a_message_the_broker_cannot_take_is_kept_and_sent_by_the_watcher(
    pending: PendingDispatches,
) -> None:
    broker = Broker()
    broker.up = False
    ticks: list[threading.Event] = []

    def wait(_seconds: float) -> bool:  # the watcher's pause, driven by the test
        tick = threading.Event()
        ticks.append(tick)
        tick.wait(5)
        return False

    dispatcher = Dispatcher(broker.publish, pending, wait=wait)
    with pytest.raises(ServiceUnavailable):
        dispatcher.send(Dispatch(TaskName.SCAN, "u1", Lane.BUSY, tenant="t"))
    assert pending.count() == 1
    broker.up = True
    while not ticks:  # the watcher is waiting for its first try
        threading.Event().wait(0.01)
    ticks[0].set()
    assert dispatcher._watcher is not None
    dispatcher._watcher.join(5)
    assert not dispatcher._watcher.is_alive()  # all sent: the watcher ends
    # Sent again in its lane, no longer counted in the tenant's share.
    assert broker.received == [Dispatch(TaskName.SCAN, "u1", Lane.BUSY)]
    assert pending.count() == 0


def test_a_drain_cut_short_keeps_what_it_did_not_send(pending: PendingDispatches) -> None:
    for i in range(3):
        pending.add(Dispatch(TaskName.VERIFY, f"u{i}"))
    broker = Broker()
    broker.fail_after = 1
    dispatcher = Dispatcher(broker.publish, pending)
    with pytest.raises(ServiceUnavailable):
        dispatcher.drain()
    assert [m.target for m in broker.received] == ["u0"]
    assert [d.target for _, d, _ in pending.oldest()] == ["u1", "u2"]  # in order, for next time
    broker.fail_after = None
    assert dispatcher.drain() == 2 and pending.count() == 0


def test_the_outage_is_recorded_once_everything_kept_is_sent(pending: PendingDispatches) -> None:
    outages: list[tuple[datetime, datetime, int]] = []
    broker = Broker()
    dispatcher = Dispatcher(broker.publish, pending, record=lambda *o: outages.append(o))
    assert dispatcher.drain() == 0 and outages == []  # nothing kept: no outage
    pending.add(Dispatch(TaskName.SCAN, "a"))
    pending.add(Dispatch(TaskName.SCAN, "b"))
    assert dispatcher.drain() == 2
    [(started, ended, handoffs)] = outages
    assert handoffs == 2 and started <= ended
