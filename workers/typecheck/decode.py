"""Pillow decodes every frame of the image once, under our own pixel and frame limits.

The limits are checked from the header before anything is decoded, then frame by frame.
Pillow's decompression-bomb limit is process-wide state, so we never change it;
our own limits are checked explicitly and a DecompressionBombWarning/Error is
turned into a refusal. Warnings are captured with warnings.catch_warnings(),
which on Python < 3.14 swaps process-wide state too: fine for Celery's prefork
pool, but with a thread pool a warning raised by another thread meanwhile may
be attributed to us (and cause a spurious refusal) or escape our capture.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO, cast

from PIL import Image

import core.pictures  # noqa: F401 - registers pillow-heif's HEIF opener with Pillow
from core.domain import Reason
from workers.typecheck.refusals import Refused
from workers.typecheck.source import Source

# MPO is what Pillow calls a JPEG carrying extra images via an APP2 "MPF"
# index: stereo pairs, and the gain map of Android's Ultra HDR photos.
PIL_TYPES: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "DIB": "image/bmp",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    # pillow-heif reads both: HEIC is HEIF with HEVC pictures, `mif1` files as well.
    "HEIF": "image/heic",
}
HEIF_TYPES = frozenset({"image/heic", "image/heif"})
RASTER_TYPES = frozenset(PIL_TYPES.values()) | HEIF_TYPES
_PIL_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "HEIF")

# Errors Pillow raises for content it cannot handle; anything else is a bug.
_PIL_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
    ZeroDivisionError,
    MemoryError,
)


@dataclass(frozen=True)
class Limits:
    pixels: int
    frames: int
    total_pixels: int


@dataclass(frozen=True)
class Decoded:
    """What the structure walks need from the decode."""

    format: str  # Pillow's name for it: PNG, JPEG, MPO, GIF, BMP, DIB, TIFF, WEBP, AVIF, HEIF
    # For MPO, the MP index entries (DataOffset/Size of each embedded image).
    mp_entries: list[dict[str, int]]
    # For TIFF, where the last strip or tile of pixel data ends.
    pixel_data_end: int


def decode(src: Source, claimed: str, limits: Limits) -> Decoded:
    """Open and fully decode every frame, refusing what Pillow cannot read or warns about."""
    fmt = "image"
    pixel_data_end = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def no_warnings() -> None:
            if caught:
                warning = caught[0]
                if issubclass(warning.category, Image.DecompressionBombWarning):
                    raise Refused(
                        Reason.TOO_LARGE, f"image is too large: {warning.message}", claimed
                    )
                raise Refused(Reason.CORRUPT, f"Pillow warned: {warning.message}", claimed)

        try:
            with Image.open(cast(BinaryIO, src), formats=_PIL_FORMATS) as img:
                fmt = img.format or "unknown"
                detected = detected_type(fmt, claimed)
                if detected != claimed:
                    raise Refused(
                        Reason.TYPE_MISMATCH, f"content is a {fmt} image, not {claimed}", detected
                    )
                check_pixels(img.size, 1, limits)
                frames: int = getattr(img, "n_frames", 1)
                check_pixels(img.size, frames, limits)
                no_warnings()
                total = 0
                for frame in range(frames):
                    if frame:
                        img.seek(frame)
                    width, height = img.size  # frames may differ in size
                    total += width * height
                    check_pixels(img.size, 1, limits)
                    if total > limits.total_pixels:
                        raise Refused(
                            Reason.TOO_LARGE,
                            f"decoding the first {frame + 1} of {frames} frames takes {total} "
                            f"pixels, over the limit of {limits.total_pixels}",
                            claimed,
                        )
                    no_warnings()
                    img.load()
                    no_warnings()
                    if fmt == "TIFF":
                        pixel_data_end = max(pixel_data_end, _tiff_pixel_data_end(img))
                mpinfo = getattr(img, "mpinfo", None) if fmt == "MPO" else None
                mp_entries: list[dict[str, int]] = list(mpinfo[0xB002]) if mpinfo else []
        except Image.DecompressionBombError as exc:
            raise Refused(Reason.TOO_LARGE, f"image is too large: {exc}", claimed) from None
        except Image.UnidentifiedImageError:
            if src.error is not None:
                raise src.error from None
            # libmagic took it for `claimed` and no decoder can open it: a broken file.
            raise Refused(
                Reason.CORRUPT, f"content is not a readable {claimed} image", claimed
            ) from None
        except _PIL_ERRORS as exc:
            if src.error is not None:
                raise src.error from exc
            label = fmt if fmt != "image" else claimed
            if "truncated" in str(exc):
                raise Refused(Reason.CORRUPT, f"truncated {label}: {exc}", claimed) from None
            raise Refused(Reason.CORRUPT, f"cannot decode {label}: {exc}", claimed) from None
    return Decoded(fmt, mp_entries, pixel_data_end)


def detected_type(fmt: str, claimed: str) -> str | None:
    """The type Pillow's format name says the content is; a HEIF is whichever of image/heic and
    image/heif was claimed (one container, libmagic names it by brand)."""
    if fmt == "HEIF" and claimed in HEIF_TYPES:
        return claimed
    return PIL_TYPES.get(fmt)


def _tiff_pixel_data_end(img: Image.Image) -> int:
    tags = getattr(img, "tag_v2", {})
    end = 0
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):  # strips, tiles
        offsets, counts = tags.get(offsets_tag) or (), tags.get(counts_tag) or ()
        if isinstance(offsets, int):
            offsets, counts = (offsets,), (counts,)
        for offset, count in zip(offsets, counts, strict=False):
            end = max(end, int(offset) + int(count))
    return end


def check_pixels(dims: tuple[int, int], frames: int, limits: Limits) -> None:
    width, height = dims
    pixels = width * height
    if pixels > limits.pixels:
        raise Refused(
            Reason.TOO_LARGE,
            f"image is {width}x{height} = {pixels} pixels, over the limit of {limits.pixels}",
        )
    if frames > limits.frames:
        raise Refused(
            Reason.TOO_LARGE, f"image has {frames} frames, over the limit of {limits.frames}"
        )
    if frames * pixels > limits.total_pixels:
        raise Refused(
            Reason.TOO_LARGE,
            f"image has {frames} frames of {width}x{height} = {frames * pixels} pixels "
            f"in total, over the limit of {limits.total_pixels}",
        )
