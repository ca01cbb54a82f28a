"""Fair share between tenants: each tenant's uploads in flight, counted in Redis, choose the lane
(core.tasks.Lane) its next upload waits in.

The API counts an upload in when it sends its scan (`admit`); the worker counts it out when that
scan task ends, whatever its outcome but a retry (`release`). A tenant with a few uploads in
flight (a person's avatar) is in the first lane; one with hundreds (an import, a bot) in a later
one, behind everybody else's first uploads but never stopped. The counts are hints, never the
truth: a count that drifts (a worker killed between its task and the release, a Redis restart)
is forgotten `TTL` seconds after the tenant's last upload, and a Redis that cannot be reached
puts the upload in the first lane (its publish goes through the same Redis anyway).
"""

from __future__ import annotations

import logging

from core.errors import ServiceUnavailable
from core.tasks import Lane, lane_for
from storage.telemetry import Telemetry

log = logging.getLogger(__name__)

_KEY = "attachd:inflight:"
# Seconds a tenant's count outlives its last admitted upload.
TTL = 600


class FairShare:
    def __init__(self, telemetry: Telemetry, interactive: int, busy: int) -> None:
        self.telemetry = telemetry
        self.interactive = interactive
        self.busy = busy

    def admit(self, tenant: str) -> Lane:
        """Count one more upload of `tenant` in flight; the lane it goes in."""

        def write() -> int:
            with self.telemetry.redis.pipeline(transaction=False) as pipe:
                pipe.incr(_KEY + tenant)
                pipe.expire(_KEY + tenant, TTL)
                count, _ = pipe.execute()
            return int(count)

        try:
            in_flight = self.telemetry.call(write)
        except ServiceUnavailable as exc:
            log.warning("fair share: %s; upload sent in the first lane", exc)
            return Lane.INTERACTIVE
        return lane_for(in_flight, self.interactive, self.busy)

    def release(self, tenant: str) -> None:
        """Count one upload of `tenant` out (batched with the task's counts when inside
        Telemetry.batched). A count below zero (it expired meanwhile) is harmless: the next
        admit of a quiet tenant still lands in the first lane."""
        batch = self.telemetry.writer()
        if batch is not None:
            batch.decr(_KEY + tenant)
            return
        try:
            self.telemetry.call(lambda: self.telemetry.redis.decr(_KEY + tenant))
        except ServiceUnavailable as exc:
            log.warning("fair share: %s; count of %s left to expire", exc, tenant)

    def in_flight(self, tenant: str) -> int:
        raw = self.telemetry.call(lambda: self.telemetry.redis.get(_KEY + tenant))
        return max(0, int(raw or 0))
