"""The pipeline steps, free of Celery: scan → verify → attach.

Each step begins with "already done?" and moves the upload with a compare-and-set, so a step
delivered twice, or rerun after a crash between two effects, changes the world once. Steps take
upload ids and read everything else from the record store. A step sends nothing: it returns the
state it leaves the upload in and the step to run next (`StepResult`), and its caller decides how
that next step runs (the task layer publishes it, in the same lane; the small-file task runs it
in place, workers/fused.py). The sweeps around the steps are workers/upkeep.py (reconcile,
retry) and workers/rescan.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.clamd import ClamdClient, EngineVersion
from core.domain import ACTIVE, TERMINAL, Reason, State, Transition
from core.errors import ObjectMissing, ScanLimitExceeded
from core.tasks import TaskName
from storage.objects import ObjectStore, attachment_key
from storage.records import RecordStore, Upload, utcnow
from workers import typecheck
from workers.sanitize import Unsanitizable
from workers.sanitize.publish import Outcome as Published
from workers.sanitize.publish import Publisher

log = logging.getLogger(__name__)

_STAGED_MISSING = "the staged file is missing from object storage"

# Told of every move a step makes (the task layer counts them): a step knows what it changed, so
# nothing has to read the row again to find out.
Observe = Callable[[Transition], None]


@dataclass(frozen=True)
class StepResult:
    """What a step did: the state it leaves the upload in (None: the upload is gone), and the
    step this upload needs next (None: nothing more, for now or for good)."""

    state: State | None
    then: TaskName | None = None


def _as_found(up: Upload | None) -> StepResult:
    """A step that finds its work done, or not its to do: the state as it stands."""
    return StepResult(up.state if up else None)


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
        limits: Limits,
        clock: Callable[[], datetime] = utcnow,
        observe: Observe | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.records = records
        self.objects = objects
        self.scanner = scanner
        self.limits = limits
        self.clock = clock
        self.observe: Observe = observe or (lambda _: None)
        # Sanitizes raster pictures on their way to the attachments bucket; None: copied as is.
        self.publisher = publisher
        self.buckets = objects.buckets

    # --- scan ---------------------------------------------------------------------------------

    def scan(self, upload_id: str) -> StepResult:
        """Stream the staged object through clamd; clean, it needs verifying next."""
        up = self.records.get_upload(upload_id)
        if up is None or up.state not in (State.STAGED, State.SCANNING):
            return _as_found(up)
        if up.state == State.STAGED:
            self.move(up, State.STAGED, State.SCANNING)
        assert up.staging_key is not None
        try:
            result = self.scanner.instream(
                self.objects.iter_range(self.buckets.staging, up.staging_key)
            )
        except ObjectMissing:
            return self.give_up(up, _STAGED_MISSING, Reason.OBJECT_MISSING)
        except ScanLimitExceeded as exc:
            # Over clamd's limits: it was not scanned whole, so it can never count as clean.
            return self._refuse(up, State.SCANNING, Reason.SCAN_LIMIT, f"too large to scan ({exc})")
        # ServiceUnavailable and ScanError propagate: the task retries them with backoff.
        now = self.clock()
        if result.infected:
            qkey = self.quarantine(
                self.buckets.staging, up.staging_key, up.id, result.signature, now
            )
            if self.move(
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
            return StepResult(State.INFECTED)
        if self.move(
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
            return StepResult(State.VERIFYING, TaskName.VERIFY)
        # Moved by someone else meanwhile (a redelivered message): theirs to carry on.
        return _as_found(self.records.get_upload(upload_id))

    # --- verify -------------------------------------------------------------------------------

    def verify(self, upload_id: str) -> StepResult:
        """The deep type check of the staged file; passed, it needs attaching next."""
        up = self.records.get_upload(upload_id)
        if up is None or up.state != State.VERIFYING:
            return _as_found(up)
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
                return self.give_up(up, _STAGED_MISSING, Reason.OBJECT_MISSING)
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
                return _as_found(self.records.get_upload(upload_id))
            log.info(
                "upload %s verified: it is %s; attaching next",
                upload_id,
                verdict.detected_type or up.declared_type,
            )
        return StepResult(State.VERIFYING, TaskName.ATTACH)

    # --- attach -------------------------------------------------------------------------------

    def attach(self, upload_id: str) -> StepResult:
        """Publish the verified file (sanitized where the policy says) and make it the served
        version of its attachment."""
        up = self.records.get_upload(upload_id)
        if up is None or up.state != State.VERIFYING or up.verified_at is None:
            return _as_found(up)
        owner = self.records.owner_of(up.attachment_id)
        assert up.staging_key is not None
        if owner is None:  # deleted while in the pipeline
            self.objects.delete(self.buckets.staging, up.staging_key)
            return StepResult(None)
        key = attachment_key(owner[0], owner[1], up.attachment_id, up.id)
        published: Published | None = None
        try:
            if self.publisher is not None and self.publisher.applies(up):
                published = self.publisher.publish(up, key)
                if not self.records.update_upload(upload_id, State.VERIFYING, **published.values):
                    current = self.records.get_upload(upload_id)
                    if current is None:
                        self.delete_served(key)
                    return _as_found(current)
            else:
                self.objects.copy(
                    self.buckets.staging, up.staging_key, self.buckets.attachments, key
                )
        except Unsanitizable as exc:
            reason = f"cannot sanitize: {exc}"
            return self._refuse(up, State.VERIFYING, Reason.UNSANITIZABLE, reason)
        except ObjectMissing:
            if not self.objects.exists(self.buckets.attachments, key):
                return self.give_up(up, _STAGED_MISSING, Reason.OBJECT_MISSING)
            # A previous run put it and died before committing: carry on.
        outcome = self.records.attach(upload_id, key)
        if outcome is None:
            current = self.records.get_upload(upload_id)
            if current is None:  # the attachment was deleted meanwhile: leave nothing behind
                self.delete_served(key)
            return _as_found(current)
        self.report(up, State.VERIFYING, State.ATTACHED)
        if published is not None and self.publisher is not None:
            self.publisher.count(published)
        self.objects.delete(self.buckets.staging, up.staging_key)
        if not outcome.current:
            # A newer upload of the same name was attached first: the store made this one
            # history in the same transaction; it was never served.
            self.report(up, State.ATTACHED, State.SUPERSEDED)
            self.delete_served(key)
            return StepResult(State.SUPERSEDED)
        old = outcome.replaced
        if old is not None and old.id != upload_id:
            # Superseded in the attach's own transaction: only its objects are left to delete.
            if old.state == State.ATTACHED:
                self.report(old, State.ATTACHED, State.SUPERSEDED)
            if old.object_key:
                self.objects.delete_version(self.buckets.attachments, old.object_key)
        log.info("upload %s attached: served from now on", upload_id, extra={"object_key": key})
        return StepResult(State.ATTACHED)

    def delete_served(self, key: str) -> None:
        """A version's file and every rendition it may have (deleting a missing one is a no-op)."""
        self.objects.delete_version(self.buckets.attachments, key)

    def quarantine(
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

    # --- failure ------------------------------------------------------------------------------

    def fail(self, upload_id: str, reason: str, code: Reason) -> None:
        """Give up on an upload after its retries: `failed`, retryable by an operator."""
        up = self.records.get_upload(upload_id)
        if up is not None:
            self.give_up(up, reason, code)

    def give_up(self, up: Upload, reason: str, code: Reason) -> StepResult:
        """`failed` from whichever active state it is in. The staged object is kept: an
        operator's retry starts again from it."""
        if self.move(up, tuple(ACTIVE), State.FAILED, code, reason=reason):
            log.error("upload %s failed: %s", up.id, reason)
        return StepResult(State.FAILED)

    def _refuse(
        self, up: Upload, expected: State, code: Reason, reason: str, **values: object
    ) -> StepResult:
        moved = self.move(
            up, expected, State.REJECTED, code, reason=reason, staging_key=None, **values
        )
        if moved:
            log.warning("upload %s rejected: %s", up.id, reason)
        if up.staging_key:
            self.objects.delete(self.buckets.staging, up.staging_key)
        return StepResult(State.REJECTED)

    # --- moves ----------------------------------------------------------------------------------

    def move(
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
        self.report(up, expected if isinstance(expected, State) else State(up.state), new, code)
        return True

    def report(self, up: Upload, before: State, after: State, code: Reason | None = None) -> None:
        """Tell the observer of a move this process made (the task layer counts it)."""
        latency = (self.clock() - up.created_at).total_seconds() if after in TERMINAL else None
        self.observe(Transition(up.id, before, after, code, latency))


def next_step(up: Upload) -> TaskName:
    if up.state in (State.STAGED, State.SCANNING):
        return TaskName.SCAN
    return TaskName.ATTACH if up.verified_at is not None else TaskName.VERIFY


def _tag(value: str) -> str:
    # S3 tag values: at most 256 characters of a restricted set.
    allowed = "".join(ch if ch.isalnum() or ch in " +-=._:/@" else "_" for ch in value)
    return allowed[:256]
