"""Which stored object a download of an attached version serves: the file, or one of its
renditions (`?size=N`), made at its first request. One service, so every route that serves a
version (the token route, signed links) chooses the same way and refuses the same sizes.

A rendition is the served file scaled to a longest side, in the format the client's `Accept`
names first among the configured ones (AVIF, WebP: what browsers send for `<img>`), else in
the file's own web format; its answer varies on Accept. It is made once: the first request
takes a short lease in Redis, makes it and puts it beside the file (`…@128.webp`, with its
digests in the object's metadata); every later request, in any API process, serves the stored
object. A request that finds the lease taken waits for the object instead of making it again.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import suppress
from dataclasses import dataclass

from api.params import optional_number
from api.ports import Counter, Leases, Objects, Records
from core.domain import State
from core.errors import (
    AttachdError,
    BadRequest,
    NoSuchAttachment,
    ObjectMissing,
    ServiceUnavailable,
)
from core.pictures.pixels import Bounds
from core.pictures.refusal import Unsanitizable
from core.pictures.renditions import EXTENSION, MIME, NEGOTIABLE, PILLOW_FORMAT, WEB_FORMAT, render
from storage.objects import rendition_key
from storage.records import Upload

SIZE_PARAM = "size"
# Renditions are of raster pictures only: an SVG scales itself.
_NO_RENDITIONS = frozenset({"image/svg+xml"})
# Sources that may be animations: a rendition keeps the animation, so it is never negotiated
# into AVIF (Pillow writes AVIF stills here), only WebP.
_ANIMATED = frozenset({"GIF", "WEBP"})
# How long the maker holds its lease, and how long another request waits for its object: well
# above the slowest rendition measured (bench B5, B6: a 6 MP HEIC decodes in about 0.4 s, so a
# 40 MP one in a few seconds).
LEASE_SECONDS = 30.0


@dataclass(frozen=True)
class Selected:
    key: str
    sha256: str  # the ETag
    size: int  # bytes
    px: int | None  # the rendition's longest side, None for the file itself
    content_type: str | None = None  # None: the version's own
    extension: str | None = None  # the rendition's format, for the download's file name
    negotiated: bool = False  # chosen from Accept: the answer says `Vary: Accept`


def file_of(upload: Upload) -> Selected:
    """The version's file; when it is served in another format than received (a HEIC as
    JPEG), with that format's type and extension."""
    assert upload.object_key is not None
    served = upload.served
    if upload.served_type is None:
        return Selected(upload.object_key, served.sha256, served.size, None)
    fmt = PILLOW_FORMAT.get(upload.served_type)
    extension = EXTENSION.get(fmt) if fmt else None
    return Selected(
        upload.object_key, served.sha256, served.size, None, upload.served_type, extension
    )


def negotiate(accept: str | None, source: str, offered: tuple[str, ...]) -> str:
    """The Pillow format of a rendition of a `source`-format picture for a client sending
    `accept`: the first of `offered` (AVIF, WebP) the client lists with q > 0, else the
    source's web format. `image/*` and `*/*` do not count: browsers name the formats they
    decode, and an old client saying `*/*` must still get a format it shows."""
    listed = _accepted(accept or "")
    for fmt in offered:
        if fmt == "AVIF" and source in _ANIMATED:
            continue
        if MIME[fmt] in listed:
            return fmt
    return WEB_FORMAT.get(source, "PNG")


def _accepted(accept: str) -> set[str]:
    types = set()
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            types.add(media.lower())
    return types


class Renditions:
    def __init__(
        self,
        records: Records,
        objects: Objects,
        leases: Leases,
        *,
        sizes: tuple[int, ...],
        formats: tuple[str, ...],
        bounds: Bounds,
        counter: Counter | None = None,
    ) -> None:
        self.records = records
        self.objects = objects
        self.leases = leases
        self.sizes = sizes  # the configured sizes `?size=` may ask for
        self.formats = tuple(f.upper() for f in formats if f.upper() in NEGOTIABLE)
        self.bounds = bounds
        self.counter = counter

    def offered(self, upload: Upload) -> tuple[int, ...]:
        """The sizes `?size=` serves for this version."""
        return () if upload.declared_type in _NO_RENDITIONS else self.sizes

    def check(self, upload: Upload, size: str | None) -> int | None:
        """The `?size=` asked for as pixels (None: the file). A size that is not configured, or
        asked of an SVG, is a 400 naming the sizes there are."""
        if not size:
            return None
        sizes = ", ".join(str(n) for n in self.sizes) or "none"
        if upload.declared_type in _NO_RENDITIONS:
            raise BadRequest(
                f"{upload.declared_type} has no renditions (configured sizes: {sizes})"
            )
        px = optional_number(size, SIZE_PARAM)
        if px is None or px not in self.sizes:
            raise BadRequest(f"size must be one of the configured rendition sizes: {sizes}")
        return px

    def select(self, upload: Upload, size: str | None, accept: str | None) -> Selected:
        """The object to serve for `?size=` (None or "": the file), made now if it is the
        first request for it."""
        px = self.check(upload, size)
        if px is None:
            return file_of(upload)
        assert upload.object_key is not None
        source = PILLOW_FORMAT.get(upload.served_as, "PNG")
        fmt = negotiate(accept, source, self.formats)
        legacy = upload.rendition(px)
        if legacy is not None and fmt == WEB_FORMAT.get(source):
            # Made eagerly at attach, before renditions were made on demand.
            return Selected(legacy.key, legacy.sha256, legacy.size, px, negotiated=True)
        key = rendition_key(upload.object_key, px, EXTENSION[fmt])
        return self._stored(key, px, fmt) or self._make_once(upload, px, fmt, key)

    def _stored(self, key: str, px: int, fmt: str) -> Selected | None:
        try:
            info = self.objects.stat(self.objects.buckets.attachments, key)
        except ObjectMissing:
            return None
        sha256 = info.metadata.get("sha256") or info.etag.strip('"')
        return Selected(key, sha256, info.size, px, MIME[fmt], EXTENSION[fmt], True)

    def _make_once(self, upload: Upload, px: int, fmt: str, key: str) -> Selected:
        """Single flight: the request holding the lease makes it; the others wait for the
        object it puts, and make it themselves only if the lease lapses without one."""
        deadline = time.monotonic() + LEASE_SECONDS
        pause = 0.01
        while True:
            token = self.leases.acquire(f"rendition:{key}", LEASE_SECONDS)
            if token is not None:
                try:
                    return self._stored(key, px, fmt) or self._make(upload, px, fmt, key)
                finally:
                    self.leases.release(f"rendition:{key}", token)
            found = self._stored(key, px, fmt)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise ServiceUnavailable("renditions", f"the {px}px rendition is still being made")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _make(self, upload: Upload, px: int, fmt: str, key: str) -> Selected:
        assert upload.object_key is not None
        objects = self.objects
        bucket = objects.buckets.attachments
        # Read as Pillow asks: one GET for a small file, ranged GETs for a large one, never the
        # whole of a large file held beside its decoded pixels.
        source = objects.open_reader(bucket, upload.object_key, upload.served.size)
        try:
            made, fmt = render(source, px, fmt, self.bounds)
        except Unsanitizable as exc:
            # It was decoded within the same limits when it was verified: a bug, not the
            # client's doing.
            raise AttachdError(f"cannot make the {px}px rendition: {exc}") from None
        sha256 = hashlib.sha256(made).hexdigest()
        md5 = hashlib.md5(made).hexdigest()  # noqa: S324 - a digest for clients, not security
        objects.put_bytes(bucket, key, made, MIME[fmt], {"sha256": sha256, "md5": md5})
        if self.counter is not None:
            with suppress(AttachdError, OSError):  # a count is never a failed download
                self.counter.incr("renditions_made", fmt)
        # Deleted or replaced while it was being made: the delete listed the version's objects
        # before this one existed, so it is this request's to remove.
        current = self.records.get_upload(upload.id)
        if current is None or current.state != State.ATTACHED:
            objects.delete(bucket, key)
            raise NoSuchAttachment("The version was deleted or replaced")
        return Selected(key, sha256, len(made), px, MIME[fmt], EXTENSION[fmt], True)
