"""Crafter's monitoring routes, which need no token: dependency status and version."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import falcon

from api.ports import Check
from core import package_version
from core.errors import AttachdError

log = logging.getLogger(__name__)

# Anyone may ask, and each answer costs four probes of the backends: an answer is reused for
# this long, so a flood of requests costs the backends one probe round per interval.
STATUS_CACHE_SECONDS = 3.0


class StatusResource:
    def __init__(self, checks: dict[str, Check], cache_seconds: float = STATUS_CACHE_SECONDS):
        self.checks = checks
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._cached: tuple[float, bool, dict[str, Any]] | None = None

    def _probe(self) -> tuple[bool, dict[str, Any]]:
        report: dict[str, Any] = {}
        healthy = True
        for name, check in self.checks.items():
            started = time.perf_counter()
            entry: dict[str, object]
            try:
                check()
                entry = {"status": "up"}
            except (AttachdError, OSError) as exc:
                healthy = False
                # The exception names internal hosts and ports: the log has it, the client a word.
                log.warning("monitoring: %s is down: %s", name, exc)
                entry = {"status": "down", "error": "unavailable"}
            entry["latencyMs"] = round((time.perf_counter() - started) * 1000, 2)
            report[name] = entry
        return healthy, report

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        # One probe round at a time: concurrent requests wait for it and share its answer.
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_seconds:
                self._cached = (now, *self._probe())
            _, healthy, report = self._cached
        resp.media = {"status": "up" if healthy else "down", "dependencies": report}
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
        if not healthy:
            resp.set_header("Retry-After", "5")


class VersionResource:
    # Crafter's route; the OS and runtime versions it also shows are left out: they help an
    # attacker pick an exploit and no client needs them.
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"packageName": "attachd", "packageVersion": package_version()}
