"""Pictures made safe to publish, between verify and attach: metadata removed (location,
camera, serials, thumbnails, text), orientation applied to the pixels, optionally decoded and
encoded again whole. Renditions are not made here: the API makes each at its first request
(api/renditions.py, core/pictures/renditions.py).

`strip` changes only what it must: a file whose structure holds no metadata and whose
orientation is upright is served byte for byte (a Crafter client comparing md5s sees no
change); metadata is cut out of the structure losslessly (JPEG segments, PNG chunks, GIF
extensions); only an orientation tag, or metadata inside a TIFF's directory, needs the decoder
and an encode with the source's own JPEG tables. `reencode` always decodes and encodes
("content disarm and reconstruction": whatever hides in the structure is gone). `off` serves
the upload as it came. SVG is served as verified.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from enum import StrEnum

from PIL import Image

from core.pictures.pixels import Bounds, decode, encode, orientation, pillow_errors
from core.pictures.pixels import tiff_has_metadata as _tiff_has_metadata
from core.pictures.refusal import Unsanitizable
from core.pictures.renditions import MIME
from workers.sanitize import segments

__all__ = ["FORMATS", "Bounds", "HeifServe", "Policy", "Sanitized", "Unsanitizable", "sanitize"]

# The raster types the step handles, by the format Pillow writes them as.
FORMATS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/webp": "WEBP",
    "image/avif": "AVIF",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
}
_LOSSLESS = {
    "JPEG": segments.jpeg_strip,
    "PNG": segments.png_strip,
    "GIF": segments.gif_strip,
    "WEBP": segments.webp_strip,
}
# Whose orientation is an EXIF tag to apply. A HEIF's is the container's irot/imir, which
# libheif applies as it decodes (pillow-heif then reports orientation 1): applying the EXIF tag
# as well would turn it twice. Pillow's AVIF reader reports irot/imir as the EXIF orientation
# and leaves the pixels as stored, so for AVIF it is applied here, once.
_ORIENTED_BY_EXIF = frozenset({"JPEG", "PNG", "TIFF", "WEBP", "AVIF"})
# Containers whose metadata (Exif and XMP items) cannot be cut out without rewriting their item
# locations: a file carrying any is decoded and encoded again; one without is served as is.
_REENCODED_TO_STRIP = frozenset({"AVIF", "HEIF"})


class HeifServe(StrEnum):
    """ATTACHD_HEIF_SERVE: what a HEIC/HEIF upload is served as."""

    JPEG = "jpeg"  # every browser shows it
    ORIGINAL = "original"  # the HEIF container, stripped: for native apps


class Policy(StrEnum):
    STRIP = "strip"
    REENCODE = "reencode"
    OFF = "off"


class Step(StrEnum):
    """What changed the served file, as the status route reports it."""

    STRIP = "strip"  # metadata removed
    ORIENT = "orient"  # EXIF orientation applied to the pixels
    REENCODE = "reencode"  # decoded and encoded again whole
    CONVERT = "convert"  # served in another format (a HEIC as JPEG), encoded from the pixels


@dataclass(frozen=True)
class Sanitized:
    data: bytes | None  # None: the upload is served as it is
    steps: tuple[Step, ...] = ()
    # The served bytes' type when it is not the upload's (a HEIC served as JPEG); None: the same.
    served_type: str | None = None


def sanitize(
    data: bytes,
    content_type: str,
    policy: Policy,
    bounds: Bounds,
    heif: HeifServe = HeifServe.JPEG,
) -> Sanitized:
    """The bytes to serve, or Unsanitizable. Not a raster type: as is. A HEIF is served as
    JPEG with `heif=jpeg` whatever the policy (browsers do not show HEIF), stripped by the
    encode."""
    fmt = FORMATS.get(content_type)
    if fmt is None:
        return Sanitized(None)
    if fmt == "HEIF" and heif == HeifServe.JPEG:
        return _convert(data, "JPEG", bounds)
    served: bytes | None = None
    steps: tuple[Step, ...] = ()
    if policy != Policy.OFF:
        with pillow_errors(f"cannot read the {fmt}"), Image.open(io.BytesIO(data)) as img:
            turn = orientation(img) if fmt in _ORIENTED_BY_EXIF else 1
            oriented = (Step.ORIENT,) if turn != 1 else ()
            if policy == Policy.REENCODE:
                served, steps = _encode(img, data, bounds), (Step.REENCODE, *oriented)
            elif (
                oriented
                or (fmt == "TIFF" and _tiff_has_metadata(img))
                or (fmt in _REENCODED_TO_STRIP and _has_metadata(img))
            ):
                served, steps = _encode(img, data, bounds), (Step.STRIP, *oriented)
        if served is None and policy == Policy.STRIP and fmt in _LOSSLESS:
            try:
                served = _LOSSLESS[fmt](data)
            except (ValueError, IndexError) as exc:
                raise Unsanitizable(f"cannot take the {fmt} apart: {exc}") from None
            steps = (Step.STRIP,) if served is not None else ()
    return Sanitized(served, steps)


def _convert(data: bytes, target: str, bounds: Bounds) -> Sanitized:
    """The primary image, upright, encoded as `target` from its pixels and colour profile."""
    with pillow_errors("cannot read the HEIF"), Image.open(io.BytesIO(data)) as img:
        frames = decode(img, bounds)
    served = encode(replace(frames, fmt=target, images=frames.images[:1]))
    return Sanitized(served, (Step.CONVERT,), MIME[target])


def _encode(img: Image.Image, data: bytes, bounds: Bounds) -> bytes:
    frames = decode(img, bounds)
    # A lossless WebP (VP8L) stays lossless; a lossy one is encoded at the served quality.
    return encode(replace(frames, lossless=frames.fmt == "WEBP" and b"VP8L" in data))


def _has_metadata(img: Image.Image) -> bool:
    return bool(img.info.get("exif") or img.info.get("xmp"))
