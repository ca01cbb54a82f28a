"""The pipeline steps, free of Celery: scan → verify → attach, plus the reconciler.

Each step begins with "already done?" and moves the upload with a compare-and-set, so a step
delivered twice, or rerun after a crash between two effects, changes the world once. Steps take
upload ids and read everything else from the record store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clamd import ClamdClient, EngineVersion
from core.domain import ACTIVE, TERMINAL, Reason, State, Transition
from core.errors import ObjectMissing, ScanLimitExceeded
from core.tasks import TaskName
from storage.objects import ObjectStore, attachment_key
from storage.records import RecordStore, Upload, utcnow
from workers import typecheck
from workers.sanitize import Unsanitizable
from workers.sanitize.publish import Outcome, Publisher

log = logging.getLogger(__name__)

_STAGED_MISSING = "the staged file is missing from object storage"

Send = Callable[[TaskName, str], None]
# Told of every move a step makes (the task layer counts them): a step knows what it changed, so
# nothing has to read the row again to find out.
Observe = Callable[[Transition], None]


@dataclass(frozen=True)
class Limits:
    max_image_pixels: int
    max_svg_size: int
    reconcile_after_seconds: int
    max_resends: int = 10


class Pipeline:
    def __init__(
        self,
        records: RecordStore,
        objects: ObjectStore,
        scanner: ClamdClient,
        send: Send,
        limits: Limits,
        clock: Callable[[], datetime] = utcnow,
        observe: Observe | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.records = records
        self.objects = objects
        self.scanner = scanner
        self.send = send
        self.limits = limits
        self.clock = clock
        self.observe: Observe = observe or (lambda _: None)
        # Sanitizes raster pictures on their way to the attachments bucket; None: copied as is.
        self.publisher = publisher
        self.buckets = objects.buckets

    # --- scan ---------------------------------------------------------------------------------

    def scan(self, upload_id: str) -> State | None:
        """Stream the staged object through clamd. Returns the state it leaves the upload in."""
        up = self.records.get_upload(upload_id)
        if up is None or up.state not in (State.STAGED, State.SCANNING):
            return up.state if up else None
        if up.state == State.STAGED:
            self._move(up, State.STAGED, State.SCANNING)
        assert up.staging_key is not None
        try:
            result = self.scanner.instream(
                self.objects.iter_range(self.buckets.staging, up.staging_key)
            )
        except ObjectMissing:
            return self._fail(up, _STAGED_MISSING, Reason.OBJECT_MISSING)
        except ScanLimitExceeded as exc:
            # Over clamd's limits: it was not scanned whole, so it can never count as clean.
            return self._refuse(up, State.SCANNING, Reason.SCAN_LIMIT, f"too large to scan ({exc})")
        # ServiceUnavailable and ScanError propagate: the task retries them with backoff.
        now = self.clock()
        if result.infected:
            qkey = self._quarantine(
                self.buckets.staging, up.staging_key, up.id, result.signature, now
            )
            if self._move(
                up,
                State.SCANNING,
                State.INFECTED,
                Reason.INFECTED,
                reason=f"infected: {result.signature}",
                signature=result.signature,
                engine_version=result.engine_version,
                signature_version=EngineVersion.parse(result.engine_version).signatures,
                quarantine_key=qkey,
                staging_key=None,
                scanned_at=now,
            ):
                log.warning("upload %s infected: %s", upload_id, result.signature)
            self.objects.delete(self.buckets.staging, up.staging_key)
            return State.INFECTED
        if self._move(
            up,
            State.SCANNING,
            State.VERIFYING,
            engine_version=result.engine_version,
            signature_version=EngineVersion.parse(result.engine_version).signatures,
            scanned_at=now,
        ):
            log.info(
                "upload %s scanned clean (%s); checking its content next",
                upload_id,
                result.engine_version,
            )
            self.send(TaskName.VERIFY, upload_id)
        return State.VERIFYING

    # --- verify -------------------------------------------------------------------------------

    def verify(self, upload_id: str) -> State | None:
        up = self.records.get_upload(upload_id)
        if up is None or up.state != State.VERIFYING:
            return up.state if up else None
        if up.verified_at is None:
            assert up.staging_key is not None
            try:
                stream = self.objects.open_reader(self.buckets.staging, up.staging_key, up.size)
                with stream:
                    verdict = typecheck.inspect(
                        stream,
                        up.size,
                        up.declared_type,
                        max_pixels=self.limits.max_image_pixels,
                        max_svg_bytes=self.limits.max_svg_size,
                    )
            except ObjectMissing:
                return self._fail(up, _STAGED_MISSING, Reason.OBJECT_MISSING)
            if not verdict.ok:
                assert verdict.code is not None and verdict.reason is not None
                return self._refuse(
                    up,
                    State.VERIFYING,
                    verdict.code,
                    verdict.reason,
                    detected_type=verdict.detected_type,
                )
            if not self.records.update_upload(
                upload_id,
                State.VERIFYING,
                verified_at=self.clock(),
                detected_type=verdict.detected_type,
            ):
                current = self.records.get_upload(upload_id)
                return current.state if current else None
            log.info(
                "upload %s verified: it is %s; attaching next",
                upload_id,
                verdict.detected_type or up.declared_type,
            )
        self.send(TaskName.ATTACH, upload_id)
        return State.VERIFYING

    # --- attach -------------------------------------------------------------------------------

    def attach(self, upload_id: str) -> State | None:
        up = self.records.get_upload(upload_id)
        if up is None or up.state != State.VERIFYING or up.verified_at is None:
            return up.state if up else None
        owner = self.records.owner_of(up.attachment_id)
        assert up.staging_key is not None
        if owner is None:  # deleted while in the pipeline
            self.objects.delete(self.buckets.staging, up.staging_key)
            return None
        key = attachment_key(owner[0], owner[1], up.attachment_id, up.id)
        published: Outcome | None = None
        try:
            if self.publisher is not None and self.publisher.applies(up):
                published = self.publisher.publish(up, key)
                if not self.records.update_upload(upload_id, State.VERIFYING, **published.values):
                    current = self.records.get_upload(upload_id)
                    if current is None:
                        self._delete_served(key)
                    return current.state if current else None
            else:
                self.objects.copy(
                    self.buckets.staging, up.staging_key, self.buckets.attachments, key
                )
        except Unsanitizable as exc:
            reason = f"cannot sanitize: {exc}"
            return self._refuse(up, State.VERIFYING, Reason.UNSANITIZABLE, reason)
        except ObjectMissing:
            if not self.objects.exists(self.buckets.attachments, key):
                return self._fail(up, _STAGED_MISSING, Reason.OBJECT_MISSING)
            # A previous run put it and died before committing: carry on.
        outcome = self.records.attach(upload_id, key)
        if outcome is None:
            current = self.records.get_upload(upload_id)
            if current is None:  # the attachment was deleted meanwhile: leave nothing behind
                self._delete_served(key)
            return current.state if current else None
        self._moved(up, State.VERIFYING, State.ATTACHED)
        if published is not None and self.publisher is not None:
            self.publisher.count(published)
        self.objects.delete(self.buckets.staging, up.staging_key)
        if not outcome.current:
            # A newer upload of the same name was attached first: this one is history already.
            if self.records.supersede(upload_id, "a newer upload of this name was attached first"):
                self._moved(up, State.ATTACHED, State.SUPERSEDED)
            self._delete_served(key)
            return State.SUPERSEDED
        old = outcome.replaced
        if old is not None and old.id != upload_id:
            if self.records.supersede(old.id, f"replaced by upload {upload_id}"):
                self._moved(old, State.ATTACHED, State.SUPERSEDED)
            if old.object_key:
                self.objects.delete_version(self.buckets.attachments, old.object_key)
        log.info("upload %s attached: served from now on", upload_id, extra={"object_key": key})
        return State.ATTACHED

    def _delete_served(self, key: str) -> None:
        """A version's file and every rendition it may have (deleting a missing one is a no-op)."""
        self.objects.delete_version(self.buckets.attachments, key)

    def _quarantine(
        self, bucket: str, key: str, upload_id: str, signature: str | None, when: datetime
    ) -> str:
        """Copy the file into quarantine, tagged with the verdict, before anything else forgets
        it: the evidence outlives the staged or attached copy."""
        qkey = upload_id
        self.objects.copy(
            bucket,
            key,
            self.buckets.quarantine,
            qkey,
            tags={
                "result": "infected",
                "signature": _tag(signature or "unknown"),
                "scanned-at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "upload-id": upload_id,
            },
        )
        return qkey

    # --- rescan -------------------------------------------------------------------------------

    def current_signatures(self) -> int | None:
        return EngineVersion.parse(self.scanner.version()).signatures

    def rescan(self, since: int | None = None, limit: int = 200) -> int:
        """Queue rescans of attached files checked against older signatures: those scanned with
        a version lower than clamd's current one, or with `since` or lower when given. Each file
        is queued once per version, so a throttled sweep can run often."""
        current = self.current_signatures()
        below = since + 1 if since is not None else current
        if below is None:
            log.info("rescan: clamd reports no signature version; nothing to compare against")
            return 0
        batch = self.records.rescan_candidates(below, limit)
        self.records.mark_rescan_queued([u.id for u in batch], below)
        for up in batch:
            self.send(TaskName.RESCAN_FILE, up.id)
        return len(batch)

    def rescan_file(self, upload_id: str) -> State | None:
        """Scan an attached file again. A new detection quarantines it and stops serving it."""
        up = self.records.get_upload(upload_id)
        if up is None or up.state != State.ATTACHED or up.object_key is None:
            return up.state if up else None
        try:
            result = self.scanner.instream(
                self.objects.iter_range(self.buckets.attachments, up.object_key)
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
        now = self.clock()
        version = EngineVersion.parse(result.engine_version).signatures
        if not result.infected:
            self.records.update_upload(
                upload_id,
                State.ATTACHED,
                engine_version=result.engine_version,
                signature_version=version,
                scanned_at=now,
            )
            return State.ATTACHED
        qkey = self._quarantine(
            self.buckets.attachments, up.object_key, up.id, result.signature, now
        )
        if self.records.detach_infected(
            upload_id,
            reason=f"infected on rescan with signatures {version}: {result.signature}",
            reason_code=Reason.INFECTED,
            signature=result.signature,
            engine_version=result.engine_version,
            signature_version=version,
            quarantine_key=qkey,
            scanned_at=now,
        ):
            self._moved(up, State.ATTACHED, State.INFECTED, Reason.INFECTED)
            log.warning("upload %s infected on rescan: %s", upload_id, result.signature)
        # Its renditions are the same picture.
        self.objects.delete_version(self.buckets.attachments, up.object_key)
        return State.INFECTED

    def _fail_attached(
        self, up: Upload, reason: str, code: Reason, state: State = State.FAILED
    ) -> State:
        # Leaving `attached` always means: no longer served.
        self._move(up, State.ATTACHED, state, code, reason=reason)
        attachment = self.records.get_attachment(up.attachment_id)
        if attachment and attachment.current_upload_id == up.id:
            self.records.clear_current(up.attachment_id, up.id)
        return state

    # --- failure ------------------------------------------------------------------------------

    def fail(self, upload_id: str, reason: str, code: Reason) -> None:
        """Give up on an upload after its retries: `failed`, retryable by an operator."""
        up = self.records.get_upload(upload_id)
        if up is not None:
            self._fail(up, reason, code)

    def _fail(self, up: Upload, reason: str, code: Reason) -> State:
        # The staged object is kept: an operator's retry starts again from it.
        if self._move(up, tuple(ACTIVE), State.FAILED, code, reason=reason):
            log.error("upload %s failed: %s", up.id, reason)
        return State.FAILED

    def _refuse(
        self, up: Upload, expected: State, code: Reason, reason: str, **values: object
    ) -> State:
        moved = self._move(
            up, expected, State.REJECTED, code, reason=reason, staging_key=None, **values
        )
        if moved:
            log.warning("upload %s rejected: %s", up.id, reason)
        if up.staging_key:
            self.objects.delete(self.buckets.staging, up.staging_key)
        return State.REJECTED

    # --- moves ----------------------------------------------------------------------------------

    def _move(
        self,
        up: Upload,
        expected: State | tuple[State, ...],
        new: State,
        code: Reason | None = None,
        **values: object,
    ) -> bool:
        """Compare-and-set the upload from `expected` to `new`; report the move if this call
        made it (a redelivered task that finds its work done reports nothing)."""
        if not self.records.transition(up.id, expected, new, reason_code=code, **values):
            return False
        self._moved(up, expected if isinstance(expected, State) else State(up.state), new, code)
        return True

    def _moved(self, up: Upload, before: State, after: State, code: Reason | None = None) -> None:
        latency = (self.clock() - up.created_at).total_seconds() if after in TERMINAL else None
        self.observe(Transition(up.id, before, after, code, latency))

    # --- retry and reconcile ------------------------------------------------------------------

    def retry(self, upload_id: str) -> bool:
        """Operator retry of a failed upload: back to `staged` and re-sent, if its file is there."""
        up = self.records.get_upload(upload_id)
        if up is None or up.state != State.FAILED or not up.staging_key:
            return False
        if not self.objects.exists(self.buckets.staging, up.staging_key):
            return False
        if self._move(
            up,
            State.FAILED,
            State.STAGED,
            reason=None,
            finished_at=None,
            scanned_at=None,
            verified_at=None,
            attempts=0,
        ):
            self.send(TaskName.SCAN, upload_id)
            return True
        return False

    def reconcile(self) -> dict[str, int]:
        """Re-send uploads stuck in a non-terminal state (a broker that restarted empty loses
        its messages; the record store does not) and delete staged objects with no upload."""
        now = self.clock()
        threshold = self.limits.reconcile_after_seconds
        cutoff = now - timedelta(seconds=threshold)
        resent = gave_up = 0
        for up in self.records.stuck_uploads(cutoff, now):
            if up.attempts >= self.limits.max_resends:
                self._fail(up, f"no progress after {up.attempts} re-sends", Reason.NO_PROGRESS)
                gave_up += 1
                continue
            # Backing off: an upload waiting behind a long queue looks stuck too, and must not
            # be re-sent (or given up) every few seconds. The k-th re-send waits
            # threshold * 2**k, so giving up takes about 1,000 thresholds.
            attempts = up.attempts + 1
            self.records.mark_resent(
                up.id, attempts, now + timedelta(seconds=threshold * 2**attempts)
            )
            self.send(next_step(up), up.id)
            resent += 1
        orphans = self.sweep_staging(cutoff)
        return {"resent": resent, "failed": gave_up, "orphans_deleted": orphans}

    def sweep_staging(self, older_than: datetime) -> int:
        candidates = [
            key
            for key, modified in self.objects.list_keys(self.buckets.staging)
            if modified is None or modified < older_than
        ]
        deleted = 0
        for start in range(0, len(candidates), 500):
            batch = candidates[start : start + 500]
            in_use = self.records.staging_keys_in_use(batch)
            for key in batch:
                if key not in in_use:
                    self.objects.delete(self.buckets.staging, key)
                    deleted += 1
        return deleted


def next_step(up: Upload) -> TaskName:
    if up.state in (State.STAGED, State.SCANNING):
        return TaskName.SCAN
    return TaskName.ATTACH if up.verified_at is not None else TaskName.VERIFY


def _tag(value: str) -> str:
    # S3 tag values: at most 256 characters of a restricted set.
    allowed = "".join(ch if ch.isalnum() or ch in " +-=._:/@" else "_" for ch in value)
    return allowed[:256]
