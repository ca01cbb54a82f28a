"""The attach step's side of sanitizing: read the staged upload, sanitize it, and put what is
to be served in the attachments bucket under the key the version's record derives it from.
Nothing is put before the whole result is ready, so a refusal leaves nothing behind. Renditions
are not made here: each is made at its first request (api/renditions.py), so the hot path does
only what every file needs.

The result is returned as the upload's column values; the pipeline records them before it
attaches, so a version is never served without its digests known.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import AttachdError
from core.settings import Settings
from storage.objects import ObjectStore
from storage.records import Upload
from storage.telemetry import Telemetry
from workers.sanitize import FORMATS, Bounds, HeifServe, Policy, Sanitized, sanitize

log = logging.getLogger(__name__)

# The smallest part S3 accepts; a sanitized file is put with one PUT of its whole size.
_MIN_PART = 5 * 1024 * 1024


@dataclass(frozen=True)
class Options:
    policy: Policy
    bounds: Bounds
    keep_originals_days: int = 0
    originals_bucket: str = ""
    heif: HeifServe = HeifServe.JPEG


@dataclass(frozen=True)
class Outcome:
    """What publishing one version did, for the record and for the counters."""

    values: dict[str, Any]
    fmt: str
    changed: bool
    bytes_removed: int


Count = Callable[[Outcome], None]


class Publisher:
    def __init__(self, objects: ObjectStore, options: Options, count: Count | None = None) -> None:
        self.objects = objects
        self.options = options
        self.count: Count = count or (lambda _: None)
        self._originals_ready = False

    def applies(self, up: Upload) -> bool:
        return _type(up) in FORMATS

    def publish(self, up: Upload, key: str) -> Outcome:
        """Put the served file at `key`; Unsanitizable if it cannot be made safe within the limits
        (nothing is put then). Run again after a crash, it puts the same object again:
        sanitizing is deterministic. The caller counts the outcome once
        the version is attached (`count`), so a rerun is not counted twice."""
        assert up.staging_key is not None
        buckets = self.objects.buckets
        data = self.objects.read_range(buckets.staging, up.staging_key, 0, up.size)
        options = self.options
        result = sanitize(data, _type(up), options.policy, options.bounds, options.heif)
        served = result.data
        if served is None:
            self.objects.copy(buckets.staging, up.staging_key, buckets.attachments, key)
            md5, sha256, size = up.md5, up.sha256, up.size
        else:
            self._put(key, served, result.served_type or up.declared_type)
            md5, sha256, size = _digests(served)
            self._keep_original(up, key)
        values: dict[str, Any] = {
            "served_md5": md5,
            "served_sha256": sha256,
            "served_size": size,
            "sanitize_steps": _steps(result, self.options.policy),
            # What the bytes served are when not what was received (a HEIC served as JPEG).
            "served_type": result.served_type,
        }
        return Outcome(values, FORMATS[_type(up)], served is not None, max(up.size - size, 0))

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects.put_stream(
            self.objects.buckets.attachments,
            key,
            io.BytesIO(data),
            content_type,
            max(_MIN_PART, len(data) + 1),
        )

    def _keep_original(self, up: Upload, key: str) -> None:
        days, bucket = self.options.keep_originals_days, self.options.originals_bucket
        if days <= 0:
            return
        if not self._originals_ready:
            self.objects.ensure_expiring_bucket(bucket, days)
            self._originals_ready = True
        assert up.staging_key is not None
        self.objects.copy(self.objects.buckets.staging, up.staging_key, bucket, key)


def _type(up: Upload) -> str:
    return up.detected_type or up.declared_type


def _digests(data: bytes) -> tuple[str, str, int]:
    return hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data)  # noqa: S324


def _steps(result: Sanitized, policy: Policy) -> str | None:
    if policy == Policy.OFF and not result.steps:
        return None
    return ",".join(result.steps)


class SanitizeCounter:
    """Counts sanitized pictures and the bytes they lost into Redis, as TransitionCounter does
    the moves: a count that cannot be written is logged, never a failed upload."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def __call__(self, outcome: Outcome) -> None:
        try:
            label = "changed" if outcome.changed else "unchanged"
            self.telemetry.incr("images_sanitized", outcome.fmt, label)
            if outcome.bytes_removed:
                self.telemetry.incr(
                    "image_bytes_removed", outcome.fmt, amount=outcome.bytes_removed
                )
        except (AttachdError, OSError) as exc:
            log.warning("metrics: sanitize of a %s not counted: %s", outcome.fmt, exc)


def from_settings(settings: Settings, objects: ObjectStore, telemetry: Telemetry) -> Publisher:
    bounds = Bounds.of(settings.max_image_pixels)
    options = Options(
        Policy(settings.image_sanitize),
        bounds,
        settings.keep_originals_days,
        settings.bucket_originals,
        HeifServe(settings.heif_serve),
    )
    return Publisher(objects, options, SanitizeCounter(telemetry))
