"""A task's counts go to the real Redis in one round trip (storage/telemetry.py `batched`):
nothing shows before the end, everything after it, also when the work inside fails, and a
Redis that is gone at the end costs the counts, never the work."""

from __future__ import annotations

import pytest

from core.errors import ServiceUnavailable
from core.settings import Settings
from storage.telemetry import Telemetry

pytestmark = pytest.mark.integration


def _count(tele: Telemetry) -> float:
    return tele.counters()["task_retries"].get(("batch-test",), 0.0)


def test_counts_in_a_batch_arrive_together_at_its_end(settings: Settings) -> None:
    tele = Telemetry.from_url(settings.redis_url)
    before = _count(tele)
    with tele.batched():
        tele.incr("task_retries", "batch-test")
        tele.incr("task_retries", "batch-test")
        tele.observe_latency("attached", 0.5)
        assert _count(tele) == before  # still in the batch
    assert _count(tele) == before + 2


def test_what_was_counted_before_a_failure_still_arrives(settings: Settings) -> None:
    tele = Telemetry.from_url(settings.redis_url)
    before = _count(tele)
    with pytest.raises(ServiceUnavailable, match="clamd"), tele.batched():
        tele.incr("task_retries", "batch-test")
        raise ServiceUnavailable("clamd", "down for the test")
    assert _count(tele) == before + 1


def test_a_redis_gone_at_the_end_costs_only_the_counts() -> None:
    tele = Telemetry.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with tele.batched():
        tele.incr("task_retries", "batch-test")
    # No exception: the work inside was not failed by its counts.
