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
from dataclasses import dataclass
from enum import StrEnum

from PIL import Image

from core.pictures.pixels import Bounds, decode, encode, orientation, pillow_errors
from core.pictures.pixels import tiff_has_metadata as _tiff_has_metadata
from core.pictures.refusal import Unsanitizable
from workers.sanitize import segments

__all__ = ["FORMATS", "Bounds", "Policy", "Sanitized", "Unsanitizable", "sanitize"]

# The raster types the step handles, by the format Pillow writes them as.
FORMATS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
_LOSSLESS = {
    "JPEG": segments.jpeg_strip,
    "PNG": segments.png_strip,
    "GIF": segments.gif_strip,
}


class Policy(StrEnum):
    STRIP = "strip"
    REENCODE = "reencode"
    OFF = "off"


class Step(StrEnum):
    """What changed the served file, as the status route reports it."""

    STRIP = "strip"  # metadata removed
    ORIENT = "orient"  # EXIF orientation applied to the pixels
    REENCODE = "reencode"  # decoded and encoded again whole


@dataclass(frozen=True)
class Sanitized:
    data: bytes | None  # None: the upload is served as it is
    steps: tuple[Step, ...] = ()


def sanitize(data: bytes, content_type: str, policy: Policy, bounds: Bounds) -> Sanitized:
    """The bytes to serve, or Unsanitizable. Not a raster type: as is."""
    fmt = FORMATS.get(content_type)
    if fmt is None:
        return Sanitized(None)
    served: bytes | None = None
    steps: tuple[Step, ...] = ()
    if policy != Policy.OFF:
        with pillow_errors(f"cannot read the {fmt}"), Image.open(io.BytesIO(data)) as img:
            turn = orientation(img) if fmt in ("JPEG", "PNG", "TIFF") else 1
            oriented = (Step.ORIENT,) if turn != 1 else ()
            if policy == Policy.REENCODE:
                served, steps = encode(decode(img, bounds)), (Step.REENCODE, *oriented)
            elif oriented or (fmt == "TIFF" and _tiff_has_metadata(img)):
                served, steps = encode(decode(img, bounds)), (Step.STRIP, *oriented)
        if served is None and policy == Policy.STRIP and fmt in _LOSSLESS:
            try:
                served = _LOSSLESS[fmt](data)
            except (ValueError, IndexError) as exc:
                raise Unsanitizable(f"cannot take the {fmt} apart: {exc}") from None
            steps = (Step.STRIP,) if served is not None else ()
    return Sanitized(served, steps)
