"""Keeping the pipeline moving around its steps: an operator's retry of a failed upload, and the
reconciler (beat, every minute) that re-sends what nobody knows was lost and removes staged
objects no upload owns. Both hand work to the workers through `dispatch` (storage/broker.py's
one publish path), never by calling a step."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.domain import Reason, State
from core.tasks import Dispatch, Lane, Publish, TaskName
from workers.pipeline import Pipeline, next_step


class Upkeep:
    def __init__(self, pipeline: Pipeline, dispatch: Publish) -> None:
        self.pipeline = pipeline
        self.dispatch = dispatch

    def retry(self, upload_id: str) -> bool:
        """Operator retry of a failed upload: back to `staged` and re-sent, if its file is there."""
        p = self.pipeline
        up = p.records.get_upload(upload_id)
        if up is None or up.state != State.FAILED or not up.staging_key:
            return False
        if not p.objects.exists(p.buckets.staging, up.staging_key):
            return False
        if p.move(
            up,
            State.FAILED,
            State.STAGED,
            reason=None,
            finished_at=None,
            scanned_at=None,
            verified_at=None,
            attempts=0,
        ):
            self.dispatch(Dispatch(TaskName.SCAN, upload_id))
            return True
        return False

    def reconcile(self) -> dict[str, int]:
        """Re-send uploads stuck in a non-terminal state (a broker that restarted empty loses
        its messages; the record store does not) and delete staged objects with no upload."""
        p = self.pipeline
        now = p.clock()
        threshold = p.limits.reconcile_after_seconds
        cutoff = now - timedelta(seconds=threshold)
        resent = gave_up = 0
        for up in p.records.stuck_uploads(cutoff, now):
            if up.attempts >= p.limits.max_resends:
                p.give_up(up, f"no progress after {up.attempts} re-sends", Reason.NO_PROGRESS)
                gave_up += 1
                continue
            # Backing off: an upload waiting behind a long queue looks stuck too, and must not
            # be re-sent (or given up) every few seconds. The k-th re-send waits
            # threshold * 2**k, so giving up takes about 1,000 thresholds.
            attempts = up.attempts + 1
            p.records.mark_resent(up.id, attempts, now + timedelta(seconds=threshold * 2**attempts))
            # Behind new uploads: a re-send may be a duplicate of a message still queued.
            self.dispatch(Dispatch(next_step(up), up.id, Lane.BACKLOG))
            resent += 1
        orphans = self.sweep_staging(cutoff)
        return {"resent": resent, "failed": gave_up, "orphans_deleted": orphans}

    def sweep_staging(self, older_than: datetime) -> int:
        p = self.pipeline
        candidates = [
            key
            for key, modified in p.objects.list_keys(p.buckets.staging)
            if modified is None or modified < older_than
        ]
        deleted = 0
        for start in range(0, len(candidates), 500):
            batch = candidates[start : start + 500]
            in_use = p.records.staging_keys_in_use(batch)
            for key in batch:
                if key not in in_use:
                    p.objects.delete(p.buckets.staging, key)
                    deleted += 1
        return deleted
