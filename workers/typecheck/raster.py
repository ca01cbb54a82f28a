"""The raster check, in order: markup at either end, the full decode, then the structure walk
that finds where the image ends and what follows it, then a ZIP directory hidden inside."""

from __future__ import annotations

import struct

from core.domain import Reason
from workers.typecheck.containers import Layout, isobmff_layout, webp_layout
from workers.typecheck.decode import Limits, check_pixels, decode, detected_type
from workers.typecheck.markup import refuse_markup
from workers.typecheck.polyglot import check_after, check_tiff_tail, refuse_zip_end
from workers.typecheck.refusals import Corrupt, Refused, Truncated
from workers.typecheck.source import SCAN_BYTES, Reader, Source, read_at
from workers.typecheck.walkers import bmp_end, gif_end, jpeg_frames_end, png_end

# 22: the size of a ZIP end record, which may sit behind a comment of up to 64 KiB.
_TAIL_BYTES = SCAN_BYTES + 22
_CONTAINER_NAMES = {
    "image/webp": "WEBP",
    "image/avif": "AVIF",
    "image/heic": "HEIF",
    "image/heif": "HEIF",
}


def check_raster(src: Source, size: int, claimed: str, head: bytes, limits: Limits) -> str:
    """The type the content really is (`claimed`, canonical), or Refused."""
    tail_len = min(size, _TAIL_BYTES)
    tail = head[-tail_len:] if size <= len(head) else read_at(src, size - tail_len, tail_len)
    refuse_markup(head[:SCAN_BYTES], "in its first 64 KiB")
    refuse_markup(tail[-SCAN_BYTES:], "in its last 64 KiB")

    # WebP and the ISOBMFF family: the canvas from the header, held to the pixel limit before
    # a decoder sees the file (libwebp, libavif and libheif allocate for the declared size).
    layout = _layout(src, size, claimed)
    if layout is not None:
        check_pixels((layout.width, layout.height), 1, limits)
    decoded = decode(src, claimed, limits)
    fmt = decoded.format
    name = "JPEG" if fmt == "MPO" else fmt
    try:
        if fmt in ("PNG", "JPEG", "MPO", "GIF"):
            reader = Reader(src)
            if fmt == "PNG":
                end = png_end(reader)
            elif fmt == "GIF":
                end = gif_end(reader)
            else:
                end = jpeg_frames_end(src, reader, decoded.mp_entries)
            check_after(src, size, end, name)
        elif fmt in ("BMP", "DIB"):
            check_after(src, size, bmp_end(head), name)
        elif fmt == "TIFF":
            check_tiff_tail(src, size, decoded.pixel_data_end)
        elif layout is not None:
            check_after(src, size, layout.end, name)
    except Truncated as exc:
        raise Refused(Reason.CORRUPT, f"truncated {name}: {exc}", claimed) from None
    except (Corrupt, struct.error) as exc:
        raise Refused(Reason.CORRUPT, f"corrupt {name}: {exc}", claimed) from None
    refuse_zip_end(src, tail, size)
    detected = detected_type(fmt, claimed)
    assert detected is not None  # decode() refused any other
    return detected


def _layout(src: Source, size: int, claimed: str) -> Layout | None:
    name = _CONTAINER_NAMES.get(claimed)
    if name is None:
        return None
    try:
        return webp_layout(src) if claimed == "image/webp" else isobmff_layout(src, size)
    except Truncated as exc:
        raise Refused(Reason.CORRUPT, f"truncated {name}: {exc}", claimed) from None
    except (Corrupt, struct.error) as exc:
        raise Refused(Reason.CORRUPT, f"corrupt {name}: {exc}", claimed) from None
