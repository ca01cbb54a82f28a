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

from core.pictures.refusal import Unsanitizable

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
# Encoder qualities of the web formats renditions are negotiated into: about what a JPEG at 85
# looks like (libwebp's and libavif's scales differ).
_WEB_QUALITY = {"WEBP": 80, "AVIF": 60, "HEIF": 60}
# A served file encoded again (its metadata could not be cut out, its orientation applied, a
# HEIC converted): close to the source's look, as the JPEG path's own tables are.
_SERVED_QUALITY = {"WEBP": 90, "AVIF": 80, "HEIF": 90}
_JPEG_SERVED_QUALITY = 90
_AVIF_SPEED = 8


# typecheck.inspect's frame limit, which every picture served has passed.
MAX_FRAMES = 1000


@dataclass(frozen=True)
class Bounds:
    pixels: int
    frames: int
    total_pixels: int

    @classmethod
    def of(cls, max_image_pixels: int) -> Bounds:
        """The verifier's limits: nothing is decoded here that the verify step would not."""
        return cls(max_image_pixels, MAX_FRAMES, 4 * max_image_pixels)


@dataclass(frozen=True)
class Frames:
    """The decoded picture, oriented, as the encoder will be given it."""

    fmt: str  # PNG, JPEG, GIF, BMP, TIFF, WEBP, AVIF or HEIF
    images: list[Image.Image]
    durations: list[int]
    loop: int | None
    icc: bytes | None
    quantization: dict[int, list[int]] | None
    subsampling: int
    compression: str | None
    lossless: bool = False  # a WebP encoded losslessly (VP8L) stays so


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
    """Every frame of an opened image, oriented; a JPEG (or MPO) keeps its first image only, a
    HEIF its primary image (the one pillow-heif opens on; the others are a collection's)."""
    fmt = "JPEG" if img.format == "MPO" else str(img.format)
    frames = 1 if fmt in ("JPEG", "HEIF") else int(getattr(img, "n_frames", 1))
    _check(img.size, frames, bounds)
    # libheif has applied a HEIF's irot/imir already: its EXIF orientation is not applied again.
    turn = 1 if fmt == "HEIF" else orientation(img)
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
            options["quality"] = _JPEG_RENDITION_QUALITY if rendition else _JPEG_SERVED_QUALITY
        if first.mode not in ("RGB", "L", "CMYK"):
            first = first.convert("RGB")
    elif frames.fmt == "TIFF" and frames.compression and frames.compression != "raw":
        options["compression"] = frames.compression
    elif frames.fmt in ("WEBP", "AVIF", "HEIF"):
        options["quality"] = (_WEB_QUALITY if rendition else _SERVED_QUALITY)[frames.fmt]
        if frames.lossless:
            options["lossless"] = True
        if frames.fmt == "AVIF" and rendition:
            # libavif's speed 8 instead of Pillow's 6: a 512 px rendition encodes in about a
            # fifth of the time for about a quarter more bytes (measured: docs/DECISIONS.md),
            # and its first request waits for that encode.
            options["speed"] = _AVIF_SPEED
        if first.mode not in ("RGB", "RGBA"):
            first = first.convert("RGBA" if _has_alpha(first) else "RGB")
            rest = [f.convert(first.mode) for f in rest]
    elif frames.fmt == "PNG" and first.mode == "CMYK":
        first = first.convert("RGB")
    if frames.fmt == "BMP":
        options.pop("icc_profile", None)  # Pillow's BMP writer has no colour profile
    if rest and frames.fmt in ("GIF", "PNG", "TIFF", "WEBP", "AVIF"):
        options["save_all"] = True
        options["append_images"] = rest
        if frames.fmt in ("GIF", "PNG", "WEBP", "AVIF"):
            options["duration"] = frames.durations
            if frames.loop is not None:
                options["loop"] = frames.loop
    if "transparency" in first.info and frames.fmt not in ("WEBP", "AVIF", "HEIF"):
        options["transparency"] = first.info["transparency"]
    with pillow_errors(f"cannot encode the {frames.fmt}"):
        first.save(out, frames.fmt, **options)
    return out.getvalue()


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "La") or "transparency" in img.info
