"""Quarantine review: an operator releases a false positive or purges old evidence.

A release puts the file back in staging and the upload in `verifying`: it skips the scan that
quarantined it, once, and goes through the type check and attach like any other file (a rescan
with newer signatures may quarantine it again). A purge deletes quarantined objects and keeps
their records. Both are counted (`attachd_quarantine_actions_total`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from core.domain import State, Transition
from core.errors import Conflict, NotFound
from core.tasks import Dispatch, Publish, TaskName
from storage.objects import ObjectStore, staging_key
from storage.records import RecordStore, utcnow

log = logging.getLogger(__name__)

Observe = Callable[[Transition], None]
# (counter, label): storage.telemetry's "quarantine_actions" in production.
Count = Callable[[str], None]


class QuarantineReview:
    def __init__(
        self,
        records: RecordStore,
        objects: ObjectStore,
        dispatch: Publish,
        observe: Observe,
        count: Count,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.records = records
        self.objects = objects
        self.dispatch = dispatch
        self.observe = observe
        self.count = count
        self.clock = clock
        self.buckets = objects.buckets

    def release(self, upload_id: str, by: str, reason: str) -> None:
        """Raises NotFound (no such upload) or Conflict (not in quarantine, or released by
        someone else meanwhile)."""
        up = self.records.get_upload(upload_id)
        if up is None:
            raise NotFound(f"no upload {upload_id}")
        if up.state != State.INFECTED or up.quarantine_key is None:
            raise Conflict(f"upload {upload_id} is {up.state}, not held in quarantine")
        # Its own staging key: a release run twice copies to the same place.
        key = staging_key(up.id)
        # Fresh tags: the staged copy must not carry the verdict the release overrides.
        self.objects.copy(
            self.buckets.quarantine,
            up.quarantine_key,
            self.buckets.staging,
            key,
            tags={"released": "true"},
        )
        if not self.records.release(upload_id, key, by, reason):
            self.objects.delete(self.buckets.staging, key)
            raise Conflict(f"upload {upload_id} left quarantine meanwhile")
        # The evidence goes with the release: the file is on its way to being served, and the
        # record keeps the signature, who released it and why.
        self.objects.delete(self.buckets.quarantine, up.quarantine_key)
        self.observe(Transition(up.id, State.INFECTED, State.VERIFYING))
        self.count("release")
        log.warning("upload %s released from quarantine by %s: %s", upload_id, by, reason)
        self.dispatch(Dispatch(TaskName.VERIFY, upload_id))

    def purge(self, older_than: timedelta, by: str, reason: str, batch: int = 500) -> int:
        """Delete the quarantined objects of uploads found infected more than `older_than`
        ago; their rows stay, stamped `purged_at`. Returns how many were purged."""
        cutoff = self.clock() - older_than
        purged = 0
        while True:
            found = self.records.purgeable(cutoff, limit=batch)
            for up in found:
                assert up.quarantine_key is not None
                # Object first: a crash between the two leaves a row the next purge finishes,
                # never an object no row names.
                self.objects.delete(self.buckets.quarantine, up.quarantine_key)
                if self.records.mark_purged(up.id, up.quarantine_key, by, reason):
                    purged += 1
                    self.count("purge")
            if len(found) < batch:
                return purged
