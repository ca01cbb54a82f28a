"""Rescans: when clamd's signatures move on, attached files checked against older ones are
scanned again. The sweep (beat, every five minutes, or `attachd rescan`) queues a bounded batch
in the bulk lane; each file's rescan is a step like the pipeline's, and a new detection
quarantines the file and stops serving it."""

from __future__ import annotations

import logging

from core.clamd import EngineVersion
from core.domain import Reason, State
from core.errors import ObjectMissing, ScanLimitExceeded
from core.tasks import Dispatch, Lane, Publish, TaskName
from storage.records import Upload
from workers.pipeline import Pipeline, StepResult

log = logging.getLogger(__name__)


class Rescans:
    def __init__(self, pipeline: Pipeline, dispatch: Publish) -> None:
        self.pipeline = pipeline
        self.dispatch = dispatch

    def current_signatures(self) -> int | None:
        return EngineVersion.parse(self.pipeline.scanner.version()).signatures

    def rescan(self, since: int | None = None, limit: int = 200) -> int:
        """Queue rescans of attached files checked against older signatures: those scanned with
        a version lower than clamd's current one, or with `since` or lower when given. Each file
        is queued once per version, so a throttled sweep can run often."""
        current = self.current_signatures()
        below = since + 1 if since is not None else current
        if below is None:
            log.info("rescan: clamd reports no signature version; nothing to compare against")
            return 0
        batch = self.pipeline.records.rescan_candidates(below, limit)
        self.pipeline.records.mark_rescan_queued([u.id for u in batch], below)
        for up in batch:
            # Bulk: a new signature version must never hold back anyone's upload.
            self.dispatch(Dispatch(TaskName.RESCAN_FILE, up.id, Lane.BULK))
        return len(batch)

    def rescan_file(self, upload_id: str) -> StepResult:
        """Scan an attached file again. A new detection quarantines it and stops serving it."""
        up = self.pipeline.records.get_upload(upload_id)
        if up is None or up.state != State.ATTACHED or up.object_key is None:
            return StepResult(up.state if up else None)
        try:
            result = self.pipeline.scanner.instream(
                self.pipeline.objects.iter_range(self.pipeline.buckets.attachments, up.object_key)
            )
        except ObjectMissing:
            return self._fail_attached(
                up, "the attached file is missing from object storage", Reason.OBJECT_MISSING
            )
        except ScanLimitExceeded as exc:
            # Under today's limits it cannot be scanned whole: it is no longer known to be clean.
            return self._fail_attached(
                up, f"too large to rescan ({exc})", Reason.SCAN_LIMIT, state=State.REJECTED
            )
        now = self.pipeline.clock()
        version = EngineVersion.parse(result.engine_version).signatures
        if not result.infected:
            self.pipeline.records.update_upload(
                upload_id,
                State.ATTACHED,
                engine_version=result.engine_version,
                signature_version=version,
                scanned_at=now,
            )
            return StepResult(State.ATTACHED)
        qkey = self.pipeline.quarantine(
            self.pipeline.buckets.attachments, up.object_key, up.id, result.signature, now
        )
        if self.pipeline.records.detach_infected(
            upload_id,
            reason=f"infected on rescan with signatures {version}: {result.signature}",
            reason_code=Reason.INFECTED,
            signature=result.signature,
            engine_version=result.engine_version,
            signature_version=version,
            quarantine_key=qkey,
            scanned_at=now,
        ):
            self.pipeline.report(up, State.ATTACHED, State.INFECTED, Reason.INFECTED)
            log.warning("upload %s infected on rescan: %s", upload_id, result.signature)
        # Its renditions are the same picture.
        self.pipeline.objects.delete_version(self.pipeline.buckets.attachments, up.object_key)
        return StepResult(State.INFECTED)

    def _fail_attached(
        self, up: Upload, reason: str, code: Reason, state: State = State.FAILED
    ) -> StepResult:
        # Leaving `attached` always means: no longer served.
        self.pipeline.move(up, State.ATTACHED, state, code, reason=reason)
        attachment = self.pipeline.records.get_attachment(up.attachment_id)
        if attachment and attachment.current_upload_id == up.id:
            self.pipeline.records.clear_current(up.attachment_id, up.id)
        return StepResult(state)
