"""Each tenant's effective upload limits, as the intake reads them on every upload.

Read from the record store at most once per tenant every TTL seconds in each API process: an
upload costs no extra query while its tenant's answer is fresh, and `attachd tenant policy`
reaches every process within TTL seconds (docs/OPERATIONS.md). A store that cannot be read
fails the upload (503) rather than letting it in under the wider installation limits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from core.policy import Limits, TenantPolicy, effective
from core.settings import Settings

TTL_SECONDS = 5.0


class PolicyReads(Protocol):
    def tenant_policy(self, tenant: str) -> TenantPolicy | None: ...


class TenantLimits:
    def __init__(
        self,
        records: PolicyReads,
        settings: Settings,
        ttl: float = TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._records = records
        self._max_size = settings.max_upload_size
        self._types = settings.allowed_types
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Limits]] = {}

    def __call__(self, tenant: str) -> Limits:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        limits = effective(self._records.tenant_policy(tenant), self._max_size, self._types)
        with self._lock:
            self._cache[tenant] = (now, limits)
        return limits
