"""Reaping resumable (tus) uploads past their Upload-Expires: every byte of an unfinished one
(its S3 multipart upload, its incomplete parts, a staged object whose record never came) and its
row, so nothing is left in storage or in the record store. A finished one only loses its row:
its file is the pipeline's.

Run by the beat every 5 minutes (storage/broker.py) on the maintenance queue. An upload whose
lease a request still holds is left for the next sweep.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from core import logs
from core.errors import AttachdError, UploadGone, UploadLocked
from core.settings import Settings
from storage.engine import utcnow
from storage.objects import ObjectStore
from storage.telemetry import Telemetry
from storage.tus import ResumableObjects, ResumableRecords

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self,
        records: ResumableRecords,
        objects: ResumableObjects,
        count: Callable[[int], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.records = records
        self.objects = objects
        self.count = count
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, engine_records: ResumableRecords) -> Reaper:
        objects = ResumableObjects(
            ObjectStore.from_settings(settings), settings.bucket_tus, settings.staging_expiry_days
        )
        telemetry = Telemetry.from_url(settings.redis_url)

        def count(n: int) -> None:
            with contextlib.suppress(AttachdError):  # a metric must never stop the sweep
                telemetry.incr("resumable_uploads", "expired", amount=n)

        return cls(engine_records, objects, count)

    def reap(self, batch: int = 200) -> int:
        """Removes the expired uploads found now; returns how many unfinished ones went."""
        now = self.clock()
        reaped = 0
        for row in self.records.expired_resumables(now, batch):
            owner = "reaper-" + uuid.uuid4().hex[:16]
            try:
                leased = self.records.take_lease(row.id, owner, now=now)
            except (UploadLocked, UploadGone):
                continue  # a request is writing it, or it just went: the next sweep decides
            if leased.recorded_at is None:
                self.objects.discard(leased)
                reaped += 1
                with logs.bound(upload_id=leased.id):
                    log.info(
                        "resumable upload %s expired at offset %d of %d: removed",
                        leased.id,
                        leased.offset,
                        leased.length,
                    )
            self.records.delete_resumable(leased.id, owner)
        if reaped and self.count is not None:
            self.count(reaped)
        return reaped
