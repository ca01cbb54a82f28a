from __future__ import annotations

import ast
import io
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.domain import VERIFY_REASONS, Reason
from tests.samples import (
    animated,
    chunk,
    encode,
    jpeg_with_exif_thumbnail,
    noise,
    png_claiming,
    solid,
    zip_archive,
)
from tests.sanitize_samples import phone_picture
from workers import typecheck
from workers.typecheck import Verdict, inspect


def check(data: bytes, claimed: str, **limits: Any) -> Verdict:
    return inspect(io.BytesIO(data), len(data), claimed, **limits)


def refused(data: bytes, claimed: str, code: Reason, **limits: Any) -> str:
    """The message of the refusal, once its typed reason is checked to be `code`."""
    verdict = check(data, claimed, **limits)
    assert not verdict.ok, verdict
    assert verdict.code is code, verdict
    assert verdict.reason
    return verdict.reason


CLEAN_SVG = b"""<?xml version="1.0" encoding="UTF-8"?>
<!-- drawn by hand -->
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="100" height="100" viewBox="0 0 100 100">
  <defs>
    <linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="#f00"/>
      <stop offset="1" stop-color="#00f"/>
    </linearGradient>
    <circle id="c" cx="50" cy="50" r="40"/>
  </defs>
  <style>circle { stroke: #000; } .x { fill: url( '#g' ); }</style>
  <use href="#c" fill="url(#g)"/>
  <use xlink:href="#c" style="opacity: 0.5; fill: url(#g)"/>
  <image width="1" height="1" href="data:image/png;base64,iVBORw0KGgo="/>
  <a href="#c"><text x="10" y="90">hi</text></a>
</svg>
"""


def svg(body: str, attrs: str = "") -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        f' width="10" height="10"{attrs}>{body}</svg>'
    ).encode()


# --- valid content --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        (solid("PNG"), "image/png"),
        (encode(noise((300, 200)), "PNG"), "image/png"),
        (encode(noise((300, 200)).convert("RGBA"), "PNG"), "image/png"),
        (animated("PNG"), "image/png"),  # APNG
        (solid("JPEG"), "image/jpeg"),
        (encode(noise((300, 200)), "JPEG", progressive=True), "image/jpeg"),
        (solid("JPEG"), "image/jpg"),
        (solid("GIF"), "image/gif"),
        (animated("GIF", n=5), "image/gif"),
        (solid("BMP"), "image/bmp"),
        (encode(Image.new("P", (33, 7)), "BMP"), "image/bmp"),
        (solid("TIFF"), "image/tiff"),
        (solid("TIFF", compression="tiff_lzw"), "image/tiff"),
        (animated("TIFF"), "image/tiff"),
        (CLEAN_SVG, "image/svg+xml"),
    ],
)
def test_valid_images_pass(data: bytes, claimed: str) -> None:
    verdict = check(data, claimed)
    assert verdict == Verdict(True, typecheck.filetypes.canonical_type(claimed), None)


def test_mpo_is_a_jpeg() -> None:
    # Pillow opens JPEGs with an MPF index (stereo pairs, Ultra HDR gain maps) as MPO.
    data = animated("MPO", n=2)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "MPO"
    assert check(data, "image/jpeg") == Verdict(True, "image/jpeg", None)
    assert "data after the end of the JPEG image" in refused(
        data + b"junk" * 8, "image/jpeg", Reason.POLYGLOT
    )


def test_jpeg_with_exif_thumbnail_passes() -> None:
    data = jpeg_with_exif_thumbnail()
    # The thumbnail's EOI comes first: stopping at the first FFD9 would see "trailing data".
    assert data.index(b"\xff\xd9") < len(data) - 2
    assert check(data, "image/jpeg") == Verdict(True, "image/jpeg", None)


def test_zero_padding_after_the_image_is_tolerated() -> None:
    assert check(solid("JPEG") + bytes(8), "image/jpeg").ok
    assert check(solid("PNG") + bytes(16), "image/png").ok


# --- wrong type --------------------------------------------------------------------------------


def test_elf_named_png() -> None:
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(200)
    verdict = check(elf, "image/png")
    assert verdict == Verdict(
        False,
        "application/x-executable",
        "content is an ELF executable, not image/png",
        Reason.TYPE_MISMATCH,
    )


def test_html_named_gif() -> None:
    html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"
    assert (
        refused(html, "image/gif", Reason.TYPE_MISMATCH)
        == "content is an HTML document, not image/gif"
    )


def test_php_named_jpeg() -> None:
    assert "PHP script" in refused(
        b'<?php system($_GET["c"]); ?>', "image/jpeg", Reason.TYPE_MISMATCH
    )


def test_zip_named_png() -> None:
    assert "ZIP archive" in refused(zip_archive(), "image/png", Reason.TYPE_MISMATCH)


def test_jpeg_named_png() -> None:
    verdict = check(solid("JPEG"), "image/png")
    assert not verdict.ok
    assert verdict.code is Reason.TYPE_MISMATCH
    assert verdict.detected_type == "image/jpeg"


def test_empty_and_unsupported() -> None:
    assert refused(b"", "image/png", Reason.EMPTY) == "the file is empty"
    assert "not a type this check can verify" in refused(
        solid("ICO"), "image/vnd.microsoft.icon", Reason.TYPE_MISMATCH
    )


def test_gif_header_followed_by_script() -> None:
    reason = refused(b"GIF89a<script>alert(document.cookie)</script>", "image/gif", Reason.POLYGLOT)
    assert "<script" in reason


# --- decompression bombs and limits --------------------------------------------------------


@pytest.fixture
def no_image_allocation(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    allocated: list[tuple[int, int]] = []
    new = Image.core.new

    def recording_new(mode: str, size: tuple[int, int]) -> Any:
        allocated.append(size)
        return new(mode, size)

    monkeypatch.setattr(Image.core, "new", recording_new)
    return allocated


def test_allocation_probe_sees_a_real_decode(no_image_allocation: list[tuple[int, int]]) -> None:
    assert check(solid("PNG", (40, 30)), "image/png").ok
    assert (40, 30) in no_image_allocation


def test_png_bomb_refused_without_decoding(no_image_allocation: list[tuple[int, int]]) -> None:
    bomb = png_claiming(30000, 30000)
    start = time.perf_counter()
    reason = refused(bomb, "image/png", Reason.TOO_LARGE)
    assert time.perf_counter() - start < 1
    assert "900000000 pixels" in reason
    assert no_image_allocation == []


def test_png_bomb_refused_by_our_limit_alone(
    monkeypatch: pytest.MonkeyPatch, no_image_allocation: list[tuple[int, int]]
) -> None:
    # Whatever someone did to Pillow's process-wide limit, ours still applies.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    reason = refused(png_claiming(30000, 30000), "image/png", Reason.TOO_LARGE)
    assert reason == "image is 30000x30000 = 900000000 pixels, over the limit of 40000000"
    assert no_image_allocation == []


def test_pixel_limit_is_checked_explicitly() -> None:
    data = solid("PNG", (100, 60))
    assert check(data, "image/png", max_pixels=6000).ok
    assert refused(data, "image/png", Reason.TOO_LARGE, max_pixels=5999) == (
        "image is 100x60 = 6000 pixels, over the limit of 5999"
    )


def test_pillow_bomb_warning_becomes_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    # 80x80 is between Pillow's limit and twice it: Pillow only warns. With pytest turning
    # warnings into errors, a leaked warning would fail this test instead of refusing.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    reason = refused(solid("PNG", (80, 80)), "image/png", Reason.TOO_LARGE)
    assert reason.startswith("image is too large")
    assert "6400 pixels" in reason


def test_animation_total_pixels_capped_before_decoding() -> None:
    data = animated("GIF", n=3, size=(40, 40))
    assert check(data, "image/gif", max_pixels=1600, max_total_pixels=4800).ok
    assert refused(data, "image/gif", Reason.TOO_LARGE, max_pixels=1600, max_total_pixels=4799) == (
        "image has 3 frames of 40x40 = 4800 pixels in total, over the limit of 4799"
    )
    assert (
        refused(data, "image/gif", Reason.TOO_LARGE, max_frames=2)
        == "image has 3 frames, over the limit of 2"
    )


def test_default_total_pixels_is_four_times_max_pixels() -> None:
    data = animated("GIF", n=5, size=(10, 10))
    assert check(data, "image/gif", max_pixels=125).ok
    assert "in total, over the limit of 496" in refused(
        data, "image/gif", Reason.TOO_LARGE, max_pixels=124
    )


def test_tiff_pages_of_different_sizes_are_each_checked() -> None:
    big, small = Image.new("RGB", (100, 100)), Image.new("RGB", (10, 10))
    data = encode(small, "TIFF", save_all=True, append_images=[big])
    # The first page passes every upfront check; the second is refused before decoding.
    reason = refused(
        data, "image/tiff", Reason.TOO_LARGE, max_pixels=5000, max_total_pixels=100_000
    )
    assert reason == "image is 100x100 = 10000 pixels, over the limit of 5000"


# --- truncation -----------------------------------------------------------------------------


def test_truncated_jpeg() -> None:
    data = encode(noise((200, 150)), "JPEG")
    reason = refused(data[: len(data) // 2], "image/jpeg", Reason.CORRUPT)
    assert reason.startswith("truncated JPEG")


def test_jpeg_without_end_of_image_marker() -> None:
    data = encode(noise((200, 150)), "JPEG")
    assert data.endswith(b"\xff\xd9")
    verdict = check(data[:-2], "image/jpeg")
    assert not verdict.ok
    assert verdict.code is Reason.CORRUPT
    assert verdict.reason and "truncated" in verdict.reason


def test_truncated_png() -> None:
    data = encode(noise((200, 150)), "PNG")
    assert refused(data[: len(data) // 2], "image/png", Reason.CORRUPT).startswith("truncated PNG")


def test_png_without_iend() -> None:
    data = solid("PNG")
    assert refused(data[:-12], "image/png", Reason.CORRUPT).startswith("truncated PNG")


def test_truncated_gif() -> None:
    data = encode(noise((100, 100)).convert("P"), "GIF")
    assert "truncated" in refused(data[: len(data) // 2], "image/gif", Reason.CORRUPT)


def test_gif_without_trailer_is_tolerated() -> None:
    # Some old encoders omit the final 0x3b; nothing can hide behind a missing byte.
    data = animated("GIF")
    assert data.endswith(b"\x00;")
    assert check(data[:-1], "image/gif").ok


def test_png_with_bad_header_checksum() -> None:
    data = bytearray(solid("PNG"))
    data[29] ^= 0xFF  # last byte of the IHDR CRC
    assert (
        refused(bytes(data), "image/png", Reason.CORRUPT)
        == "content is not a readable image/png image"
    )


# --- polyglots ----------------------------------------------------------------------------------


def test_png_with_appended_zip() -> None:
    archive = zip_archive()
    assert refused(solid("PNG") + archive, "image/png", Reason.POLYGLOT) == (
        f"data after the end of the PNG image ({len(archive)} bytes): "
        "looks like an appended ZIP archive"
    )


def test_jpeg_with_appended_php() -> None:
    reason = refused(solid("JPEG") + b"<?php system($_GET['c']); ?>", "image/jpeg", Reason.POLYGLOT)
    assert "<?php" in reason


def test_large_jpeg_with_appended_php_after_the_first_64k() -> None:
    data = encode(noise((400, 300)), "JPEG", quality=95)
    assert len(data) > 2 * typecheck.SCAN_BYTES
    assert "<?php" in refused(data + b"<?php system($_GET['c']); ?>", "image/jpeg", Reason.POLYGLOT)


@pytest.mark.parametrize(
    ("trailer", "looks_like"),
    [
        (b"%PDF-1.7\n" + bytes(64), "an appended PDF document"),
        (b"\x7fELF\x02\x01\x01" + bytes(64), "an appended ELF executable"),
        (b"<!-- hidden -->" + bytes(8), "HTML/script markup"),
        (bytes(17), "unidentified data"),
        (b"\x01", "unidentified data"),
    ],
)
def test_trailing_data_is_named(trailer: bytes, looks_like: str) -> None:
    reason = refused(solid("JPEG") + trailer, "image/jpeg", Reason.POLYGLOT)
    assert reason == (
        f"data after the end of the JPEG image ({len(trailer)} bytes): looks like {looks_like}"
    )


def test_gif_with_trailing_data() -> None:
    reason = refused(animated("GIF") + b"PK\x03\x04" + bytes(40), "image/gif", Reason.POLYGLOT)
    assert reason.startswith("data after the end of the GIF image (44 bytes)")


def test_bmp_with_trailing_data_even_if_its_header_covers_it() -> None:
    data = solid("BMP") + b"\x7fELF" + bytes(60)
    assert "data after the end of the BMP image (64 bytes)" in refused(
        data, "image/bmp", Reason.POLYGLOT
    )
    # bfSize rewritten to include the payload: the pixel data still ends where it did.
    patched = data[:2] + struct.pack("<I", len(data)) + data[6:]
    assert "data after the end of the BMP image (64 bytes)" in refused(
        patched, "image/bmp", Reason.POLYGLOT
    )


def test_tiff_with_appended_zip() -> None:
    assert "ZIP" in refused(solid("TIFF") + zip_archive(), "image/tiff", Reason.POLYGLOT)


def test_zip_hidden_inside_a_png_chunk() -> None:
    # The archive sits in a private chunk before IEND; its directory comment covers the rest
    # of the file, so zip tools open it although the PNG has no trailing data.
    png = solid("PNG")
    iend = png[-12:]
    archive = bytearray(zip_archive())
    struct.pack_into("<H", archive, len(archive) - 2, 4 + 12)  # comment length: CRC + IEND
    data = png[:-12] + chunk(b"prVt", bytes(archive)) + iend
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["shell.txt"]
    assert refused(data, "image/png", Reason.POLYGLOT) == (
        "the file is also a ZIP archive (it holds a ZIP directory)"
    )


def test_markup_in_png_metadata_away_from_both_ends() -> None:
    png = encode(noise((300, 300)), "PNG")
    ihdr_end = 8 + 25
    filler = chunk(b"tEXt", b"Comment\x00" + b"x" * 100_000)
    payload = chunk(b"tEXt", b"Comment\x00<?php system($_GET['c']); ?>")
    data = png[:ihdr_end] + filler + payload + png[ihdr_end:]
    assert data.index(b"<?php") > typecheck.SCAN_BYTES
    assert len(data) - data.index(b"<?php") > typecheck.SCAN_BYTES
    assert refused(data, "image/png", Reason.POLYGLOT) == (
        "image contains '<?php' markup in the image's metadata; "
        "markup has no place in a raster image"
    )


def test_jpeg_comment_with_script() -> None:
    data = solid("JPEG")
    comment = b"<script>alert(1)</script>"
    com = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    assert "<script" in refused(data[:2] + com + data[2:], "image/jpeg", Reason.POLYGLOT)


def test_junk_between_jpeg_segments() -> None:
    # Pillow skips bytes between segments; they are a place to hide a payload.
    data = solid("JPEG")
    app0_end = 4 + struct.unpack(">H", data[4:6])[0]
    assert data[app0_end : app0_end + 2] == b"\xff\xdb"
    junk = data[:app0_end] + b"hidden" + data[app0_end:]
    assert (
        refused(junk, "image/jpeg", Reason.CORRUPT)
        == f"corrupt JPEG: expected a marker at offset {app0_end}"
    )


# --- storage errors are not verdicts -----------------------------------------------------


class FailingStream(io.BytesIO):
    """Fails reads in the middle of the file, as a dropped range request would."""

    def read(self, size: int | None = -1, /) -> bytes:
        if typecheck.HEAD_BYTES <= self.tell() < len(self.getbuffer()) - 2 * typecheck.SCAN_BYTES:
            raise ConnectionResetError("connection reset by MinIO")
        return super().read(size)


def test_read_failure_propagates() -> None:
    data = encode(noise((1000, 1000)), "PNG")
    assert len(data) > typecheck.HEAD_BYTES + 2 * typecheck.SCAN_BYTES
    with pytest.raises(ConnectionResetError):
        inspect(FailingStream(data), len(data), "image/png")


# --- SVG ----------------------------------------------------------------------------------------


def test_clean_svg_passes() -> None:
    assert check(CLEAN_SVG, "image/svg+xml") == Verdict(True, "image/svg+xml", None)


def test_svg_without_namespace_passes() -> None:
    assert check(
        b'<svg width="4" height="4"><rect width="4" height="4"/></svg>', "image/svg+xml"
    ).ok


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (svg("<rect/>", ' onload="alert(1)"'), "SVG has an event handler: the onload attribute"),
        (svg('<rect onClick="alert(1)"/>'), "SVG has an event handler: the onClick attribute"),
        (svg("<script>alert(1)</script>"), "SVG contains a <script> element"),
        (
            svg('<x:script xmlns:x="urn:other">alert(1)</x:script>'),
            "SVG contains a <script> element",
        ),
        (svg("<foreignObject><div/></foreignObject>"), "SVG contains a <foreignObject> element"),
        (svg('<a href="javascript:alert(1)"><rect/></a>'), "SVG has a script URL in the href"),
        (svg('<a xlink:href=" java\tscript:alert(1)"><rect/></a>'), "SVG has a script URL"),
        (svg('<a href="&#106;avascript:alert(1)"><rect/></a>'), "SVG has a script URL"),
        (svg('<image href="https://evil.example/t.png"/>'), "SVG references 'https://evil"),
        (svg('<image href="http://evil.example/t.png"/>'), "SVG references 'http://evil"),
        (svg('<use xlink:href="//evil.example/s.svg#a"/>'), "SVG references '//evil"),
        (svg('<image href="file:///etc/passwd"/>'), "SVG references 'file:///etc/passwd'"),
        (svg('<use href="other.svg#a"/>'), "SVG references 'other.svg#a'"),
        (svg('<image href="data:image/svg+xml;base64,PHN2Zz4="/>'), "SVG references 'data:"),
        (svg('<a><set attributeName="href" to="#x"/></a>'), "SVG animates the href attribute"),
        (svg('<rect style="fill: url(https://evil.example/p)"/>'), "SVG references url(https://"),
        (svg('<rect style="fill: url(https://evil.example/p"/>'), "SVG references url(https://"),
        (svg("<rect fill=\"url('//evil.example/p')\"/>"), "SVG references url(//evil"),
        (svg("<style>@import 'https://evil.example/x.css';</style>"), "SVG has '@import'"),
        (svg("<style>rect { fill: u\\72 l(https://evil) }</style>"), "SVG has CSS escapes"),
        (svg('<rect style="width: expression(alert(1))"/>'), "SVG has 'expression('"),
        (svg('<h:div xmlns:h="http://www.w3.org/1999/xhtml"/>'), "SVG contains an HTML element"),
        (
            b'<?xml version="1.0"?>\n<?xml-stylesheet href="https://evil/x.css"?>\n' + svg(""),
            "SVG contains a processing instruction <?xml-stylesheet",
        ),
    ],
)
def test_svg_refused(data: bytes, expected: str) -> None:
    verdict = check(data, "image/svg+xml")
    assert not verdict.ok
    assert verdict.code is Reason.SVG_UNSAFE, verdict
    assert verdict.detected_type == "image/svg+xml"
    assert verdict.reason and verdict.reason.startswith(expected), verdict.reason


@pytest.mark.parametrize(
    ("data", "code", "expected"),
    [
        (svg("<rect>"), Reason.CORRUPT, "SVG is not well-formed XML"),
        (
            b'<svg xmlns="http://www.w3.org/1999/xhtml"><p/></svg>',
            Reason.TYPE_MISMATCH,
            "the root element is <{http",
        ),
    ],
)
def test_svg_that_is_not_svg_is_refused(data: bytes, code: Reason, expected: str) -> None:
    verdict = check(data, "image/svg+xml")
    assert not verdict.ok
    assert verdict.code is code, verdict
    assert verdict.detected_type == "image/svg+xml"
    assert verdict.reason and verdict.reason.startswith(expected), verdict.reason


def test_svg_billion_laughs() -> None:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    data = f'<?xml version="1.0"?>\n<!DOCTYPE svg [{entities}]>\n'.encode() + svg(
        "<text>&lol9;</text>"
    )
    start = time.perf_counter()
    reason = refused(data, "image/svg+xml", Reason.SVG_UNSAFE)
    assert time.perf_counter() - start < 1
    assert reason == "SVG declares entities"


def test_svg_external_entity() -> None:
    data = b'<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + svg("<text>&x;</text>")
    assert "entit" in refused(data, "image/svg+xml", Reason.SVG_UNSAFE)


def test_svg_with_the_standard_svg11_doctype_is_accepted() -> None:
    doctype = (
        b'<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
    )
    body = CLEAN_SVG.split(b"?>", 1)[1]
    verdict = check(doctype + body, "image/svg+xml")
    assert verdict.ok, verdict.reason


def test_svg_size_limit() -> None:
    assert check(CLEAN_SVG, "image/svg+xml", max_svg_bytes=len(CLEAN_SVG)).ok
    assert refused(
        CLEAN_SVG, "image/svg+xml", Reason.TOO_LARGE, max_svg_bytes=len(CLEAN_SVG) - 1
    ) == (f"SVG is {len(CLEAN_SVG)} bytes, over the limit of {len(CLEAN_SVG) - 1}")


def test_html_named_svg() -> None:
    reason = refused(
        b"<html><body><svg><script>alert(1)</script></svg></body></html>",
        "image/svg+xml",
        Reason.TYPE_MISMATCH,
    )
    assert reason == "content is an HTML document, not image/svg+xml"


# --- measured -----------------------------------------------------------------------------


def test_large_jpeg_is_verified_in_reasonable_time() -> None:
    # A photo-sized image; the bound is loose, it only catches accidental quadratic work.
    img = Image.linear_gradient("L").resize((4000, 3000)).convert("RGB")
    data = encode(img, "JPEG", quality=90)
    start = time.perf_counter()
    assert check(data, "image/jpeg").ok
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("fmt", ["GIF", "JPEG"])
def test_zip_archive_in_a_comment_is_refused(fmt: str) -> None:
    """GIFAR and friends: the ZIP's directory sits inside the image, followed by pixel data;
    zip readers still open it."""
    assert "ZIP archive" in refused(
        solid(fmt, comment=zip_archive()), f"image/{fmt.lower()}", Reason.POLYGLOT
    )


def test_data_after_a_tiffs_pixel_data_is_refused_when_it_is_another_file() -> None:
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(120)
    assert "ELF executable" in refused(solid("TIFF") + elf, "image/tiff", Reason.POLYGLOT)
    assert check(solid("TIFF"), "image/tiff").ok


# --- typed reasons ------------------------------------------------------------------------------

ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(200)

# One or more hostile samples per kind of refusal: (id, content, claimed type, limits, reason).
HOSTILE: list[tuple[str, bytes, str, dict[str, int], Reason]] = [
    ("empty", b"", "image/png", {}, Reason.EMPTY),
    ("elf named png", ELF, "image/png", {}, Reason.TYPE_MISMATCH),
    ("jpeg named png", solid("JPEG"), "image/png", {}, Reason.TYPE_MISMATCH),
    ("unverifiable type", solid("ICO"), "image/vnd.microsoft.icon", {}, Reason.TYPE_MISMATCH),
    ("png bomb", png_claiming(30000, 30000), "image/png", {}, Reason.TOO_LARGE),
    ("too many frames", animated("GIF", n=3), "image/gif", {"max_frames": 2}, Reason.TOO_LARGE),
    ("svg over size", CLEAN_SVG, "image/svg+xml", {"max_svg_bytes": 10}, Reason.TOO_LARGE),
    ("half a png", encode(noise((200, 150)), "PNG")[:3000], "image/png", {}, Reason.CORRUPT),
    ("png without iend", solid("PNG")[:-12], "image/png", {}, Reason.CORRUPT),
    ("half a jpeg", encode(noise((200, 150)), "JPEG")[:3000], "image/jpeg", {}, Reason.CORRUPT),
    ("svg not well-formed", svg("<rect>"), "image/svg+xml", {}, Reason.CORRUPT),
    ("png + zip", solid("PNG") + zip_archive(), "image/png", {}, Reason.POLYGLOT),
    # The formats of issue 21, from real encoders: a disguise, a bomb, a truncation, a polyglot.
    ("png named webp", solid("PNG"), "image/webp", {}, Reason.TYPE_MISMATCH),
    ("heic named png", phone_picture("HEIF"), "image/png", {}, Reason.TYPE_MISMATCH),
    ("45 MP webp", solid("WEBP", (9000, 5000)), "image/webp", {}, Reason.TOO_LARGE),
    ("half an avif", phone_picture("AVIF")[:900], "image/avif", {}, Reason.CORRUPT),
    ("heic + zip", phone_picture("HEIF") + zip_archive(), "image/heic", {}, Reason.POLYGLOT),
    (
        "jpeg + php",
        solid("JPEG") + b"<?php system($_GET['c']); ?>",
        "image/jpeg",
        {},
        Reason.POLYGLOT,
    ),
    ("tiff + pdf", solid("TIFF") + b"%PDF-1.7\n" + bytes(64), "image/tiff", {}, Reason.POLYGLOT),
    ("gifar", solid("GIF", comment=zip_archive()), "image/gif", {}, Reason.POLYGLOT),
    ("svg script", svg("<script>alert(1)</script>"), "image/svg+xml", {}, Reason.SVG_UNSAFE),
    ("svg handler", svg("<rect/>", ' onload="alert(1)"'), "image/svg+xml", {}, Reason.SVG_UNSAFE),
    (
        "svg entity",
        b'<!DOCTYPE svg [<!ENTITY x "x">]>' + svg("<text>&x;</text>"),
        "image/svg+xml",
        {},
        Reason.SVG_UNSAFE,
    ),
    (
        "svg remote image",
        svg('<image href="https://evil.example/t.png"/>'),
        "image/svg+xml",
        {},
        Reason.SVG_UNSAFE,
    ),
]


@pytest.mark.parametrize(
    ("data", "claimed", "limits", "code"),
    [case[1:] for case in HOSTILE],
    ids=[case[0] for case in HOSTILE],
)
def test_each_hostile_sample_is_refused_with_its_reason(
    data: bytes, claimed: str, limits: dict[str, int], code: Reason
) -> None:
    refused(data, claimed, code, **limits)


def test_the_checker_produces_exactly_the_verify_reasons() -> None:
    produced = {check(data, claimed, **limits).code for _, data, claimed, limits, _ in HOSTILE}
    assert produced == set(VERIFY_REASONS)


def test_no_reason_outside_verify_reasons_is_written_in_the_checker() -> None:
    # The corpus proves each reason is reachable; this proves no other one is written anywhere
    # in the package, even on a path no sample takes.
    package = Path(typecheck.__file__).parent
    written = {
        node.attr
        for source in package.glob("*.py")
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "Reason"
    }
    assert written == {reason.name for reason in VERIFY_REASONS}


def test_a_passing_verdict_has_no_reason() -> None:
    verdict = check(solid("PNG"), "image/png")
    assert verdict.ok
    assert verdict.reason is None
    assert verdict.code is None
