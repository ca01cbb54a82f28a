"""Deep verification that a stored file really is the image type it claims.

The stream handed to inspect() is, in production, a buffered reader doing HTTP
range reads against MinIO, so every check reads only what it needs: libmagic
gets the first MiB, the markup scan the first and last 64 KiB, Pillow decodes
the image once, and the structure walk that finds where the image ends reads
sequentially in large blocks and seeks over pixel data where the format lets it.

Order of checks: libmagic, then markup anywhere near the ends, then Pillow
(pixel limits from the header before anything is decoded, then a full decode of
every frame), then the structure walk for data hidden after or inside the image.

Pillow's decompression-bomb limit is process-wide state, so we never change it;
our own limits are checked explicitly and a DecompressionBombWarning/Error is
turned into a refusal. Warnings are captured with warnings.catch_warnings(),
which on Python < 3.14 swaps process-wide state too: fine for Celery's prefork
pool, but with a thread pool a warning raised by another thread meanwhile may
be attributed to us (and cause a spurious refusal) or escape our capture.
"""

from __future__ import annotations

import re
import struct
import warnings
from dataclasses import dataclass
from typing import BinaryIO, cast
from xml.etree.ElementTree import Element, TreeBuilder

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser
from PIL import Image

from core import filetypes

HEAD_BYTES = 1 << 20  # what libmagic looks at
SCAN_BYTES = 64 * 1024
MAX_PADDING = 16  # zero bytes some encoders leave after the image
_BLOCK = 256 * 1024

SVG = "image/svg+xml"
SVG_NS = "http://www.w3.org/2000/svg"
XHTML_NS = "http://www.w3.org/1999/xhtml"

# MPO is what Pillow calls a JPEG carrying extra images via an APP2 "MPF"
# index: stereo pairs, and the gain map of Android's Ultra HDR photos.
_PIL_TYPES: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "DIB": "image/bmp",
    "TIFF": "image/tiff",
}
_PIL_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF")
_RASTER_TYPES = frozenset(_PIL_TYPES.values())

# Short patterns get a following-character constraint: compressed pixel data is
# near-random, and a bare 4-byte "<svg" would turn up by chance in about one
# image in 4000 when scanning 128 KiB.
_MARKUP = re.compile(rb"<script|<\?php\s|<html[\s>]|<svg[\s/>]|javascript:", re.IGNORECASE)
_MARKUP_OVERLAP = 16

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

_TRAILER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "an appended ZIP archive"),
    (b"%PDF", "an appended PDF document"),
    (b"\x7fELF", "an appended ELF executable"),
    (b"MZ", "an appended Windows executable"),
    (b"Rar!", "an appended RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "an appended 7-Zip archive"),
    (b"\x1f\x8b", "appended gzip data"),
    (b"\x89PNG", "another PNG image"),
    (b"\xff\xd8\xff", "another JPEG image"),
    (b"GIF8", "another GIF image"),
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detected_type: str | None
    reason: str | None


class _Refused(Exception):
    def __init__(self, reason: str, detected: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detected = detected


class _Truncated(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(f"the file ends at byte {offset}, inside the image structure")


class _Corrupt(Exception):
    pass


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
        if claimed != SVG and claimed not in _RASTER_TYPES:
            raise _Refused(f"{claimed} is not a type this check can verify")
        if size <= 0:
            raise _Refused("the file is empty")
        src = _Source(stream)
        head = _read_at(src, 0, min(size, HEAD_BYTES))
        agrees, sniffed = filetypes.head_agrees(claimed, head)
        if not agrees:
            raise _Refused(f"content is {filetypes.describe(sniffed)}, not {claimed}", sniffed)
        detected = filetypes.canonical_type(sniffed)
        if claimed == SVG:
            _check_svg(src, size, max_svg_bytes)
            detected = SVG
        else:
            total = 4 * max_pixels if max_total_pixels is None else max_total_pixels
            limits = _Limits(max_pixels, max_frames, total)
            detected = _check_raster(src, size, claimed, head, limits)
    except _Refused as refusal:
        return Verdict(False, refusal.detected or detected, refusal.reason)
    return Verdict(True, detected, None)


# --- reading -----------------------------------------------------------------


class _Source:
    """Wraps the caller's stream and remembers whether it failed.

    Pillow reports bad data and failed reads alike as OSError; knowing which one
    happened keeps a storage hiccup from becoming a permanent refusal.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read(n)
        except BaseException as exc:
            self.error = exc
            raise

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._stream.seek(offset, whence)
        except BaseException as exc:
            self.error = exc
            raise

    def tell(self) -> int:
        return self._stream.tell()


def _read_at(src: _Source, offset: int, n: int) -> bytes:
    src.seek(offset)
    parts: list[bytes] = []
    while n > 0:
        chunk = src.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


class _Reader:
    """Sequential reads in large blocks, so that walking a file's structure
    costs a few range requests rather than one per chunk or segment."""

    def __init__(self, src: _Source, offset: int = 0) -> None:
        self._src = src
        self._buf = b""
        self._start = offset  # file offset of _buf[0]
        self._i = 0

    @property
    def pos(self) -> int:
        return self._start + self._i

    def peek(self, n: int) -> bytes:
        """Up to n bytes at the current position; fewer only at end of file."""
        if len(self._buf) - self._i < n:
            self._buf = self._buf[self._i :]
            self._start += self._i
            self._i = 0
            self._buf += _read_at(
                self._src, self._start + len(self._buf), max(n - len(self._buf), _BLOCK)
            )
        return self._buf[self._i : self._i + n]

    def read(self, n: int) -> bytes:
        data = self.peek(n)
        if len(data) < n:
            raise _Truncated(self.pos + len(data))
        self._i += n
        return data

    def byte(self) -> int:
        return self.read(1)[0]

    def skip(self, n: int) -> None:
        if n <= len(self._buf) - self._i:
            self._i += n
        else:  # past the buffer: let the next read start there
            self._start, self._buf, self._i = self.pos + n, b"", 0

    def scan(self, n: int) -> None:
        """Consume n bytes of metadata, refusing markup found in them."""
        carry = b""
        while n > 0:
            piece = self.read(min(n, SCAN_BYTES))
            n -= len(piece)
            _refuse_markup(carry + piece, "in the image's metadata")
            carry = piece[-_MARKUP_OVERLAP:]


# --- raster images -----------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    pixels: int
    frames: int
    total_pixels: int


def _refuse_markup(data: bytes, where: str) -> None:
    found = _MARKUP.search(data)
    if found:
        text = found.group().decode("latin-1").rstrip()
        raise _Refused(
            f"image contains {text!r} markup {where}; markup has no place in a raster image"
        )


def _check_raster(src: _Source, size: int, claimed: str, head: bytes, limits: _Limits) -> str:
    tail_len = min(size, SCAN_BYTES + 22)  # 22: a ZIP end record behind a 64 KiB comment
    tail = head[-tail_len:] if size <= len(head) else _read_at(src, size - tail_len, tail_len)
    _refuse_markup(head[:SCAN_BYTES], "in its first 64 KiB")
    _refuse_markup(tail[-SCAN_BYTES:], "in its last 64 KiB")

    fmt, mp_entries, pixel_data_end = _decode(src, claimed, limits)
    name = "JPEG" if fmt == "MPO" else fmt
    try:
        if fmt in ("PNG", "JPEG", "MPO", "GIF"):
            reader = _Reader(src)
            if fmt == "PNG":
                end = _png_end(reader)
            elif fmt == "GIF":
                end = _gif_end(reader)
            else:
                end = _jpeg_frames_end(src, reader, mp_entries)
            _check_after(src, size, end, name)
        elif fmt in ("BMP", "DIB"):
            _check_after(src, size, _bmp_end(head), name)
        elif fmt == "TIFF":
            _check_tiff_tail(src, size, pixel_data_end)
    except _Truncated as exc:
        raise _Refused(f"truncated {name}: {exc}", claimed) from None
    except (_Corrupt, struct.error) as exc:
        raise _Refused(f"corrupt {name}: {exc}", claimed) from None
    _refuse_zip_end(src, tail, size)
    return _PIL_TYPES[fmt]


def _decode(src: _Source, claimed: str, limits: _Limits) -> tuple[str, list[dict[str, int]], int]:
    """Open and fully decode every frame; return Pillow's format, for MPO the MP index entries
    (DataOffset/Size of each embedded image), and for TIFF where the last strip or tile of
    pixel data ends."""
    fmt = "image"
    pixel_data_end = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def no_warnings() -> None:
            if caught:
                warning = caught[0]
                bomb = issubclass(warning.category, Image.DecompressionBombWarning)
                what = "image is too large" if bomb else "Pillow warned"
                raise _Refused(f"{what}: {warning.message}", claimed)

        try:
            with Image.open(cast(BinaryIO, src), formats=_PIL_FORMATS) as img:
                fmt = img.format or "unknown"
                detected = _PIL_TYPES.get(fmt)
                if detected != claimed:
                    raise _Refused(f"content is a {fmt} image, not {claimed}", detected)
                _check_pixels(img.size, 1, limits)
                frames: int = getattr(img, "n_frames", 1)
                _check_pixels(img.size, frames, limits)
                no_warnings()
                total = 0
                for frame in range(frames):
                    if frame:
                        img.seek(frame)
                    width, height = img.size  # frames may differ in size
                    total += width * height
                    _check_pixels(img.size, 1, limits)
                    if total > limits.total_pixels:
                        raise _Refused(
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
            raise _Refused(f"image is too large: {exc}", claimed) from None
        except Image.UnidentifiedImageError:
            if src.error is not None:
                raise src.error from None
            raise _Refused(f"content is not a readable {claimed} image", claimed) from None
        except _PIL_ERRORS as exc:
            if src.error is not None:
                raise src.error from exc
            label = fmt if fmt != "image" else claimed
            if "truncated" in str(exc):
                raise _Refused(f"truncated {label}: {exc}", claimed) from None
            raise _Refused(f"cannot decode {label}: {exc}", claimed) from None
    return fmt, mp_entries, pixel_data_end


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


def _check_pixels(dims: tuple[int, int], frames: int, limits: _Limits) -> None:
    width, height = dims
    pixels = width * height
    if pixels > limits.pixels:
        raise _Refused(
            f"image is {width}x{height} = {pixels} pixels, over the limit of {limits.pixels}"
        )
    if frames > limits.frames:
        raise _Refused(f"image has {frames} frames, over the limit of {limits.frames}")
    if frames * pixels > limits.total_pixels:
        raise _Refused(
            f"image has {frames} frames of {width}x{height} = {frames * pixels} pixels "
            f"in total, over the limit of {limits.total_pixels}"
        )


def _check_after(src: _Source, size: int, end: int, name: str) -> None:
    trailing = size - end
    if trailing < 0:
        raise _Refused(f"truncated {name}: the image needs {end} bytes, the file has {size}")
    if trailing == 0:
        return
    sample = _read_at(src, end, min(trailing, 4096))
    if trailing <= MAX_PADDING and not sample.strip(b"\0"):
        return
    raise _Refused(
        f"data after the end of the {name} image ({trailing} bytes): "
        f"looks like {_describe_data(sample)}"
    )


def _check_tiff_tail(src: _Source, size: int, pixel_data_end: int) -> None:
    """A TIFF has no end marker: IFDs and tag values may legitimately follow the pixel data
    (libtiff writes the IFD last), so what follows the last strip or tile is not refused as
    such. It must not carry another file, though: executables, archives and documents are
    recognised by their signatures (4 bytes or more, so pixel data cannot fake them here —
    this region holds only directory entries and tag values)."""
    start = max(pixel_data_end, size - SCAN_BYTES)
    if start >= size:
        return
    region = _read_at(src, start, size - start)
    for signature, description in _TRAILER_SIGNATURES:
        if len(signature) >= 4 and signature in region:
            raise _Refused(f"data after the TIFF image's pixel data looks like {description}")


def _describe_data(data: bytes) -> str:
    stripped = data.lstrip(b"\0 \t\r\n")
    for signature, description in _TRAILER_SIGNATURES:
        if stripped.startswith(signature):
            return description
    if b"<?php" in data.lower():
        return "PHP code"
    if stripped.startswith(b"<") or _MARKUP.search(data):
        return "HTML/script markup"
    if b"PK\x03\x04" in data:
        return "an appended ZIP archive"
    return "unidentified data"


def _refuse_zip_end(src: _Source, tail: bytes, size: int) -> None:
    # Zip readers look for the end-of-central-directory record anywhere in the
    # last 64 KiB, so an archive can be smuggled *inside* an image (a PNG chunk,
    # a JPEG or GIF comment: GIFAR) and still open with unzip or Python's
    # zipfile. A record counts when it is consistent the way those readers need
    # it: its central directory ends right where the record starts and begins
    # with a directory entry. Four bytes turning up by chance in compressed
    # data do not pass that.
    base = size - len(tail)
    at = tail.find(b"PK\x05\x06")
    while at != -1:
        if at + 22 <= len(tail):
            _, disk, cd_disk, on_disk, total, cd_size, _cd_offset, _comment = struct.unpack_from(
                "<4s4H2LH", tail, at
            )
            cd_start = base + at - cd_size
            if (
                disk == cd_disk == 0
                and on_disk == total > 0
                and cd_size >= 46 * total
                and cd_start >= 0
                and _read_at(src, cd_start, 4) == b"PK\x01\x02"
            ):
                raise _Refused("the file is also a ZIP archive (it holds a ZIP directory)")
        at = tail.find(b"PK\x05\x06", at + 1)


def _png_end(r: _Reader) -> int:
    if r.read(8) != b"\x89PNG\r\n\x1a\n":
        raise _Corrupt("bad signature")
    while True:
        length, kind = struct.unpack(">I4s", r.read(8))
        if length > 0x7FFFFFFF:
            raise _Corrupt(f"chunk length {length} at offset {r.pos - 8}")
        if kind == b"IEND":
            r.skip(length)
            r.read(4)  # CRC
            return r.pos
        if kind in (b"IDAT", b"fdAT"):
            r.skip(length + 4)
        else:
            r.scan(length)
            r.skip(4)


def _jpeg_frames_end(src: _Source, r: _Reader, mp_entries: list[dict[str, int]]) -> int:
    end, mp_base = _jpeg_end(r)
    if not mp_entries:
        return end
    if mp_base is None:
        raise _Corrupt("MPO without an MPF index")
    # Entry 0 is the primary image; the others are addressed relative to the
    # MPF header and should follow it back to back.
    for entry in sorted(mp_entries[1:], key=lambda e: e["DataOffset"]):
        start = mp_base + entry["DataOffset"]
        if start < end:
            raise _Corrupt(f"embedded image at offset {start} overlaps the previous one")
        _check_after(src, start, end, "JPEG")
        end, _ = _jpeg_end(_Reader(src, start))
    return end


def _jpeg_end(r: _Reader) -> tuple[int, int | None]:
    """Offset just past the EOI marker of the image starting at r.pos, and the
    offset of its MPF index if it has one.

    Segments are skipped by their length, so an EXIF thumbnail's own SOI..EOI
    inside APP1 is never mistaken for the end of the image.
    """
    if r.read(2) != b"\xff\xd8":
        raise _Corrupt(f"no start-of-image marker at offset {r.pos - 2}")
    mp_base: int | None = None
    while True:
        if r.byte() != 0xFF:
            raise _Corrupt(f"expected a marker at offset {r.pos - 1}")
        marker = r.byte()
        while marker == 0xFF:  # fill bytes
            marker = r.byte()
        if marker == 0xD9:  # EOI
            return r.pos, mp_base
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no payload
            continue
        if marker in (0x00, 0xD8):
            raise _Corrupt(f"unexpected marker 0xff{marker:02x} at offset {r.pos - 2}")
        (length,) = struct.unpack(">H", r.read(2))
        if length < 2:
            raise _Corrupt(f"segment length {length} at offset {r.pos - 2}")
        if marker == 0xE2 and r.peek(4) == b"MPF\x00":
            mp_base = r.pos + 4
        r.scan(length - 2)
        if marker == 0xDA:  # SOS: entropy-coded data follows
            _skip_entropy_data(r)


def _skip_entropy_data(r: _Reader) -> None:
    """Advance to the next marker: an 0xff not followed by 00 (a stuffed data
    byte), d0-d7 (restart markers belong to the data) or another ff (fill)."""
    while True:
        buf = r.peek(_BLOCK)
        if len(buf) < 2:
            raise _Truncated(r.pos + len(buf))
        i = buf.find(b"\xff")
        while i != -1 and i + 1 < len(buf):
            following = buf[i + 1]
            if following == 0xFF:
                i += 1
            elif following == 0 or 0xD0 <= following <= 0xD7:
                i = buf.find(b"\xff", i + 2)
            else:
                r.skip(i)
                return
        r.skip(len(buf) if i == -1 else i)  # keep a final 0xff for the next round


def _gif_end(r: _Reader) -> int:
    header = r.read(13)
    if header[:6] not in (b"GIF87a", b"GIF89a"):
        raise _Corrupt("bad signature")
    if header[10] & 0x80:
        r.skip(3 << ((header[10] & 7) + 1))  # global colour table
    while True:
        if not r.peek(1):  # a missing trailer hides nothing; old encoders omit it
            return r.pos
        block = r.byte()
        if block == 0x3B:  # trailer
            return r.pos
        if block == 0x21:  # extension: label, then data sub-blocks
            r.byte()
            _gif_sub_blocks(r, scan=True)
        elif block == 0x2C:  # image descriptor
            descriptor = r.read(9)
            if descriptor[8] & 0x80:
                r.skip(3 << ((descriptor[8] & 7) + 1))  # local colour table
            r.byte()  # LZW minimum code size
            _gif_sub_blocks(r, scan=False)
        else:
            raise _Corrupt(f"unexpected byte 0x{block:02x} at offset {r.pos - 1}")


def _gif_sub_blocks(r: _Reader, *, scan: bool) -> None:
    while length := r.byte():
        if scan:
            r.scan(length)
        else:
            r.skip(length)


def _bmp_end(head: bytes) -> int:
    """End of the pixel data (or of an ICC profile stored after it).

    Computed from the dimensions rather than taken from the header's file
    size field, which a polyglot can simply set to cover the appended data.
    """
    if head[:2] == b"BM":
        offset, header_size = struct.unpack_from("<I I", head, 10)
        info = 14
    else:  # DIB: no file header
        offset, header_size, info = 0, struct.unpack_from("<I", head)[0], 0
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bpp = struct.unpack_from("<HHHH", head, info + 4)
        compression = image_size = 0
    else:
        width, height, _, bpp, compression, image_size = struct.unpack_from(
            "<iiHHII", head, info + 4
        )
    if compression in (0, 3, 6):  # uncompressed / bit fields
        end = offset + ((abs(width) * bpp + 31) // 32) * 4 * abs(height)
    else:  # RLE: only the header knows
        end = offset + image_size
    if header_size >= 124:
        (cs_type,) = struct.unpack_from("<I", head, info + 56)
        if cs_type == 0x4D424544:  # PROFILE_EMBEDDED ('MBED')
            profile_offset, profile_size = struct.unpack_from("<II", head, info + 112)
            end = max(end, info + profile_offset + profile_size)
    return end


# --- SVG ---------------------------------------------------------------------

_URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "base"})
_LOCAL_REF = re.compile(r"#.*|data:image/(?:png|jpeg|gif)[;,].*", re.IGNORECASE | re.DOTALL)
_SCRIPT_SCHEME = re.compile(r"(?:java|vb|live)script:", re.IGNORECASE)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20]+")
# No closing parenthesis needed: CSS ends an unterminated url( at end of input.
_CSS_URL = re.compile(r"url\(([^)]*)", re.IGNORECASE)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_CSS_FORBIDDEN = re.compile(
    r"@import|expression\s*\(|-moz-binding|behavior\s*:|image-set\s*\(", re.IGNORECASE
)


class _TreeBuilder(TreeBuilder):
    """Records processing instructions, which ElementTree otherwise drops."""

    def __init__(self) -> None:
        super().__init__()
        self.pi_targets: list[str] = []

    def pi(self, target: str, text: str | None = None) -> Element:
        self.pi_targets.append(target)
        return super().pi(target, text)


def _check_svg(src: _Source, size: int, max_bytes: int) -> None:
    data = b"" if size > max_bytes else _read_at(src, 0, max_bytes + 1)
    if size > max_bytes or len(data) > max_bytes:
        raise _Refused(f"SVG is {max(size, len(data))} bytes, over the limit of {max_bytes}", SVG)
    builder = _TreeBuilder()
    # A plain DOCTYPE (Illustrator and Inkscape write the SVG 1.1 one) is harmless and common;
    # what makes a DTD dangerous is entities and external references, and those are refused.
    parser = DefusedXMLParser(
        target=builder, forbid_dtd=False, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(data)
        root = parser.close()
    except DTDForbidden:
        raise _Refused("SVG contains a DOCTYPE declaration; DTDs are not allowed", SVG) from None
    except EntitiesForbidden:
        raise _Refused("SVG declares entities", SVG) from None
    except ExternalReferenceForbidden:
        raise _Refused("SVG references external entities", SVG) from None
    except (SyntaxError, ValueError) as exc:
        raise _Refused(f"SVG is not well-formed XML: {exc}", SVG) from None
    if builder.pi_targets:
        raise _Refused(
            f"SVG contains a processing instruction <?{builder.pi_targets[0]} ...?>", SVG
        )
    try:
        _check_svg_tree(root)
    except _Refused as refusal:
        raise _Refused(refusal.reason, SVG) from None


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        namespace, _, local = name[1:].partition("}")
        return namespace, local
    return "", name


def _check_svg_tree(root: Element) -> None:
    namespace, local = _split(root.tag)
    if local != "svg" or namespace not in (SVG_NS, ""):
        raise _Refused(f"the root element is <{root.tag}>, not <svg>")
    for element in root.iter():
        namespace, tag = _split(element.tag)
        lowered = tag.lower()
        if lowered in ("script", "handler"):
            raise _Refused(f"SVG contains a <{tag}> element")
        if lowered == "foreignobject":
            raise _Refused("SVG contains a <foreignObject> element")
        if namespace == XHTML_NS:
            raise _Refused(f"SVG contains an HTML element <{tag}>")
        if lowered == "style":
            _check_css("".join(element.itertext()), "a <style> element")
        if lowered in ("set", "animate"):
            target = element.get("attributeName", "").rpartition(":")[2].lower()
            if target in _URL_ATTRIBUTES or target.startswith("on"):
                raise _Refused(f"SVG animates the {target} attribute in <{tag}>")
        for name, value in element.attrib.items():
            _check_attribute(tag, _split(name)[1], value)


def _check_attribute(tag: str, name: str, value: str) -> None:
    lowered = name.lower()
    where = f"the {name} attribute of <{tag}>"
    if lowered.startswith("on"):
        raise _Refused(f"SVG has an event handler: {where}")
    if _SCRIPT_SCHEME.search(_CONTROL_OR_SPACE.sub("", value)):
        raise _Refused(f"SVG has a script URL in {where}")
    if lowered in _URL_ATTRIBUTES and not _LOCAL_REF.fullmatch(value.strip()):
        raise _Refused(f"SVG references {value.strip()!r} in {where}; only #fragments are allowed")
    if lowered == "style":
        _check_css(value, f"the style attribute of <{tag}>")
    else:  # presentation attributes such as fill="url(#gradient)"
        _check_css_urls(value, where)


def _check_css(css: str, where: str) -> None:
    css = _CSS_COMMENT.sub("", css)
    # Escapes can spell anything ("\75 rl(" is url(); "<" could close a <style>
    # when the SVG is inlined into HTML: neither is needed for drawing.
    if "\\" in css or "<" in css:
        raise _Refused(f"SVG has CSS escapes or markup in {where}")
    found = _CSS_FORBIDDEN.search(css)
    if found:
        raise _Refused(f"SVG has {found.group()!r} in {where}")
    _check_css_urls(css, where)


def _check_css_urls(text: str, where: str) -> None:
    for match in _CSS_URL.finditer(text):
        target = match.group(1).strip().strip("\"'").strip()
        if not _LOCAL_REF.fullmatch(target):
            raise _Refused(f"SVG references url({target}) in {where}; only #fragments are allowed")
