"""Deep verification that a stored file really is the image type it claims.

The stream handed to inspect() is, in production, a buffered reader doing HTTP
range reads against MinIO, so every check reads only what it needs: libmagic
gets the first MiB, the markup scan the first and last 64 KiB, Pillow decodes
the image once, and the structure walk that finds where the image ends reads
sequentially in large blocks and seeks over pixel data where the format lets it.

Order of checks: libmagic, then markup anywhere near the ends, then Pillow
(pixel limits from the header before anything is decoded, then a full decode of
every frame), then the structure walk for data hidden after or inside the image.

The modules, one job each: `source` (reading), `markup`, `decode` (Pillow under our
limits), `walkers` (PNG, JPEG, GIF, BMP structure), `polyglot` (what follows or hides
inside an image), `raster` (those in order), `svg`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from core import filetypes
from core.domain import Reason
from workers.typecheck.decode import RASTER_TYPES, Limits
from workers.typecheck.raster import check_raster
from workers.typecheck.refusals import Refused
from workers.typecheck.source import SCAN_BYTES, Source, read_at
from workers.typecheck.svg import SVG, check_svg

__all__ = ["HEAD_BYTES", "SCAN_BYTES", "Verdict", "inspect"]

HEAD_BYTES = 1 << 20  # what libmagic looks at


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detected_type: str | None
    reason: str | None  # the human message, None when ok
    code: Reason | None = None  # one of core.domain.VERIFY_REASONS, None when ok


def inspect(
    stream: BinaryIO,
    size: int,
    claimed: str,
    *,
    max_pixels: int = 40_000_000,
    max_svg_bytes: int = 5 * 1024 * 1024,
    max_frames: int = 1000,
    max_total_pixels: int | None = None,
) -> Verdict:
    """Verify that the `size` bytes of `stream` are a harmless `claimed` file.

    max_total_pixels caps the pixels decoded across all frames of an animation
    or multi-page TIFF; it defaults to four times max_pixels.

    A failure to read the stream propagates (so the task can be retried); it is
    never reported as a refusal.
    """
    claimed = filetypes.canonical_type(claimed)
    detected: str | None = None
    try:
        if claimed != SVG and claimed not in RASTER_TYPES:
            raise Refused(Reason.TYPE_MISMATCH, f"{claimed} is not a type this check can verify")
        if size <= 0:
            raise Refused(Reason.EMPTY, "the file is empty")
        src = Source(stream)
        head = read_at(src, 0, min(size, HEAD_BYTES))
        agrees, sniffed = filetypes.head_agrees(claimed, head)
        if not agrees:
            raise Refused(
                Reason.TYPE_MISMATCH,
                f"content is {filetypes.describe(sniffed)}, not {claimed}",
                sniffed,
            )
        detected = filetypes.canonical_type(sniffed)
        if claimed == SVG:
            check_svg(src, size, max_svg_bytes)
            detected = SVG
        else:
            total = 4 * max_pixels if max_total_pixels is None else max_total_pixels
            limits = Limits(max_pixels, max_frames, total)
            detected = check_raster(src, size, claimed, head, limits)
    except Refused as refusal:
        return Verdict(False, refusal.detected or detected, refusal.message, refusal.code)
    return Verdict(True, detected, None)
