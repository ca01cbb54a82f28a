"""The decoder's side of sanitizing: decode under the pixel and frame limits, apply EXIF
orientation, encode again in the same format with only what the picture needs to look the same
(the ICC profile, transparency, frame timing), and scale renditions.

Every image is handled as a plain `Image.copy()` with an info dict rebuilt from nothing but the
kept keys: Pillow's encoders copy some metadata from the image they are given (a GIF's comment,
a TIFF's IPTC, Photoshop and XMP tags, a JPEG's XMP), and a copy carries none of the source's
tags.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from PIL import Image, JpegImagePlugin

from workers.sanitize.refusal import Unsanitizable

_ORIENTATION = 0x0112
# TIFF tags that say who, where, with what and when, rather than how the pixels look.
TIFF_PRIVATE_TAGS = frozenset(
    {
        270,  # ImageDescription
        271,  # Make
        272,  # Model
        305,  # Software
        306,  # DateTime
        315,  # Artist
        316,  # HostComputer
        700,  # XMP
        33432,  # Copyright
        33723,  # IPTC
        34377,  # Photoshop
        34665,  # EXIF IFD
        34853,  # GPS IFD
        37724,  # ImageSourceData (Photoshop layers)
        42016,  # ImageUniqueID
        50341,  # PrintIM
    }
)
_JPEG_RENDITION_QUALITY = 85


@dataclass(frozen=True)
class Bounds:
    pixels: int
    frames: int
    total_pixels: int


@dataclass(frozen=True)
class Frames:
    """The decoded picture, oriented, as the encoder will be given it."""

    fmt: str  # PNG, JPEG, GIF, BMP or TIFF
    images: list[Image.Image]
    durations: list[int]
    loop: int | None
    icc: bytes | None
    quantization: dict[int, list[int]] | None
    subsampling: int
    compression: str | None


_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, MemoryError)


@contextmanager
def pillow_errors(what: str) -> Iterator[None]:
    try:
        yield
    except Unsanitizable:
        raise
    except Image.DecompressionBombError as exc:
        raise Unsanitizable(f"{what}: image is too large: {exc}") from None
    except _ERRORS as exc:
        raise Unsanitizable(f"{what}: {type(exc).__name__}: {exc}") from None


def orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION, 1)
    except _ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def tiff_has_metadata(img: Image.Image) -> bool:
    frames: int = getattr(img, "n_frames", 1)
    for index in range(frames):
        img.seek(index)
        tags = getattr(img, "tag_v2", {})
        if any(tag in tags for tag in TIFF_PRIVATE_TAGS) or orientation(img) != 1:
            return True
    img.seek(0)
    return False


def _check(size: tuple[int, int], frames: int, bounds: Bounds) -> None:
    width, height = size
    if width * height > bounds.pixels:
        raise Unsanitizable(f"{width}x{height} pixels, over the limit of {bounds.pixels}")
    if frames > bounds.frames:
        raise Unsanitizable(f"{frames} frames, over the limit of {bounds.frames}")


def decode(img: Image.Image, bounds: Bounds) -> Frames:
    """Every frame of an opened image, oriented; a JPEG (or MPO) keeps its first image only."""
    fmt = "JPEG" if img.format == "MPO" else str(img.format)
    frames = 1 if fmt == "JPEG" else int(getattr(img, "n_frames", 1))
    _check(img.size, frames, bounds)
    turn = orientation(img)
    icc = img.info.get("icc_profile") or None
    loop = img.info.get("loop")
    quantization = getattr(img, "quantization", None) if fmt == "JPEG" else None
    subsampling = JpegImagePlugin.get_sampling(img) if fmt == "JPEG" else -1
    compression = img.info.get("compression") if fmt == "TIFF" else None
    images: list[Image.Image] = []
    durations: list[int] = []
    total = 0
    for index in range(frames):
        if index:
            img.seek(index)
        _check(img.size, 1, bounds)
        total += img.size[0] * img.size[1]
        if total > bounds.total_pixels:
            raise Unsanitizable(f"{total} pixels in all frames, over {bounds.total_pixels}")
        frame = img.copy()
        keep: dict[str | tuple[int, int], Any] = {
            k: img.info[k] for k in ("transparency", "background") if k in img.info
        }
        durations.append(int(img.info.get("duration", 0) or 0))
        frame.info = keep
        if turn != 1:
            frame = _orient(frame, turn)
            frame.info = keep
        images.append(frame)
    return Frames(fmt, images, durations, loop, icc, quantization, subsampling, compression)


def _orient(frame: Image.Image, turn: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[turn]
    return frame.transpose(method)


def encode(frames: Frames, *, rendition: bool = False) -> bytes:
    """The frames in their format again, with nothing but what the picture needs."""
    out = io.BytesIO()
    first, rest = frames.images[0], frames.images[1:]
    options: dict[str, object] = {}
    if frames.icc:
        options["icc_profile"] = frames.icc
    if frames.fmt == "JPEG":
        if frames.quantization and not rendition:
            # The source's own tables and chroma subsampling: the look of the original, not a
            # generic quality setting's.
            options["qtables"] = frames.quantization
            options["subsampling"] = frames.subsampling
        else:
            options["quality"] = _JPEG_RENDITION_QUALITY
        if first.mode not in ("RGB", "L", "CMYK"):
            first = first.convert("RGB")
    elif frames.fmt == "TIFF" and frames.compression and frames.compression != "raw":
        options["compression"] = frames.compression
    if frames.fmt == "BMP":
        options.pop("icc_profile", None)  # Pillow's BMP writer has no colour profile
    if rest and frames.fmt in ("GIF", "PNG", "TIFF"):
        options["save_all"] = True
        options["append_images"] = rest
        if frames.fmt in ("GIF", "PNG"):
            options["duration"] = frames.durations
            if frames.loop is not None:
                options["loop"] = frames.loop
    if "transparency" in first.info:
        options["transparency"] = first.info["transparency"]
    with pillow_errors(f"cannot encode the {frames.fmt}"):
        first.save(out, frames.fmt, **options)
    return out.getvalue()


def scaled(data: bytes, fmt: str, longest: int, bounds: Bounds) -> bytes | None:
    """A rendition whose longest side is `longest` pixels, aspect kept; None when the picture is
    no larger than that already (never scaled up: the served file is the rendition)."""
    with (
        pillow_errors(f"cannot make the {longest}px rendition"),
        Image.open(io.BytesIO(data)) as img,
    ):
        if max(img.size) <= longest and orientation(img) == 1:
            return None
        if img.format in ("JPEG", "MPO"):
            # Decode at the smallest DCT scale that still covers the target: 1/2 to 1/8 of the
            # work and memory of a full decode.
            img.draft(img.mode, (longest, longest))
        frames = decode(img, bounds)
    if max(frames.images[0].size) <= longest:
        return None
    resized = []
    for frame in frames.images:
        keep = dict(frame.info)
        frame = frame.copy()
        frame.thumbnail((longest, longest), Image.Resampling.LANCZOS)
        frame.info = keep
        resized.append(frame)
    if frames.fmt == "TIFF":
        resized = resized[:1]  # a page, not a document
    return encode(
        Frames(
            frames.fmt,
            resized,
            frames.durations,
            frames.loop,
            frames.icc,
            frames.quantization,
            frames.subsampling,
            frames.compression,
        ),
        rendition=True,
    )
