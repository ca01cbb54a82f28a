"""Renditions: a served picture scaled to a longest side and encoded in the format a client
negotiated. Made by the API at a rendition's first request (api/renditions.py), from the served
file, which the attach step has already stripped; whatever else it carried, a rendition is
encoded from the pixels alone (core/pictures/pixels.py keeps only the ICC profile)."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import BinaryIO

from PIL import Image

from core.pictures.pixels import Bounds, decode, encode, pillow_errors

# A served picture's own format → the format its renditions take when the client asked for no
# other: what every browser shows (a BMP or a TIFF is scaled into a PNG; HEIF, served as JPEG
# by default, into a JPEG).
WEB_FORMAT: dict[str, str] = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "BMP": "PNG",
    "TIFF": "PNG",
    "WEBP": "WEBP",
    "AVIF": "AVIF",
    "HEIF": "JPEG",
}
# A served file's media type → the Pillow format it is.
PILLOW_FORMAT: dict[str, str] = {
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
MIME: dict[str, str] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
}
EXTENSION: dict[str, str] = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "AVIF": "avif",
}
# Formats a rendition may be negotiated into (api/renditions.py reads the client's Accept).
NEGOTIABLE = ("AVIF", "WEBP")


def render(
    source: bytes | BinaryIO, longest: int, target: str | None, bounds: Bounds
) -> tuple[bytes, str]:
    """The picture in `source` (its bytes, or a seekable file: Pillow reads what it needs)
    with its longest side at most `longest` pixels (never scaled up), encoded as `target` (a
    Pillow format name; None: the source's web format). Returns the
    bytes and their format. An animation stays one where the target can hold one (GIF, WebP);
    an AVIF target takes the first frame. Raises Unsanitizable when it cannot be decoded within
    `bounds`."""
    with (
        pillow_errors(f"cannot make the {longest}px rendition"),
        Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img,
    ):
        found = "JPEG" if img.format == "MPO" else str(img.format)
        fmt = target or WEB_FORMAT.get(found, "PNG")
        if found == "JPEG":
            # Decode at the smallest DCT scale that still covers the target: 1/2 to 1/8 of the
            # work and memory of a full decode.
            img.draft(img.mode, (longest, longest))
        frames = decode(img, bounds)
    images = []
    for frame in frames.images:
        keep = dict(frame.info)
        if max(frame.size) > longest:
            frame = frame.copy()
            frame.thumbnail((longest, longest), Image.Resampling.LANCZOS)
            frame.info = keep
        images.append(frame)
    if fmt not in ("GIF", "WEBP", "PNG"):
        images = images[:1]  # a still of an animation (AVIF, JPEG), a page of a TIFF
    same = fmt == frames.fmt
    out = replace(
        frames,
        fmt=fmt,
        images=images,
        # The source's JPEG tables are kept only by a JPEG → JPEG rendition that is not scaled.
        quantization=frames.quantization if same else None,
        compression=frames.compression if same else None,
    )
    return encode(out, rendition=True), fmt
