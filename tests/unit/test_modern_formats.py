"""WebP, AVIF and HEIC/HEIF, made by real encoders (Pillow's libwebp and libavif, pillow-heif's
libheif): verified (libmagic and the name agree, pixel limits from the header, full decode,
truncations, disguises and appended data refused), sanitized (EXIF and XMP gone, upright once,
ICC kept, byte for byte when clean) and scaled into negotiated renditions."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from PIL import Image

from core import filetypes
from core.domain import Reason
from core.pictures.renditions import render
from tests import sanitize_samples as samples
from workers.sanitize import Bounds, HeifServe, Policy, Step, sanitize
from workers.sanitize.segments import webp_strip
from workers.typecheck import Verdict, inspect

BOUNDS = Bounds(10_000_000, 1000, 40_000_000)
KINDS = [("WEBP", "image/webp"), ("AVIF", "image/avif"), ("HEIF", "image/heic")]


def check(data: bytes, claimed: str, **limits: Any) -> Verdict:
    return inspect(io.BytesIO(data), len(data), claimed, **limits)


def refused(data: bytes, claimed: str, code: Reason, **limits: Any) -> str:
    verdict = check(data, claimed, **limits)
    assert not verdict.ok and verdict.code is code, verdict
    assert verdict.reason
    return verdict.reason


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _clean(fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    samples.landscape().save(buf, fmt, icc_profile=samples.icc_profile(), **options)
    return buf.getvalue()


# --- names and libmagic ---------------------------------------------------------------------


def test_names_map_to_the_new_types() -> None:
    assert [filetypes.type_for_name(n) for n in ("a.webp", "b.AVIF", "c.heic", "d.HEIF")] == [
        "image/webp",
        "image/avif",
        "image/heic",
        "image/heif",
    ]


@pytest.mark.parametrize(("fmt", "kind"), KINDS)
def test_libmagic_agrees_with_the_name(fmt: str, kind: str) -> None:
    data = samples.phone_picture(fmt)
    assert filetypes.head_agrees(kind, data[:1024])[0]


def test_heic_and_heif_accept_either_brand_name() -> None:
    data = samples.phone_picture("HEIF")
    for kind in ("image/heic", "image/heif"):
        verdict = check(data, kind)
        assert verdict.ok and verdict.detected_type == kind, verdict


# --- verification ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "kind"), KINDS)
def test_phone_pictures_pass(fmt: str, kind: str) -> None:
    verdict = check(samples.phone_picture(fmt), kind)
    assert verdict.ok and verdict.detected_type == kind, verdict


def test_disguises_are_refused() -> None:
    assert "image/png" in refused(samples.plain("PNG"), "image/webp", Reason.TYPE_MISMATCH)
    assert "image/heic" in refused(samples.phone_picture("HEIF"), "image/png", Reason.TYPE_MISMATCH)
    assert "image/avif" in refused(
        samples.phone_picture("AVIF"), "image/heic", Reason.TYPE_MISMATCH
    )
    assert "image/webp" in refused(
        samples.phone_picture("WEBP"), "image/avif", Reason.TYPE_MISMATCH
    )


@pytest.mark.parametrize(("fmt", "kind"), KINDS)
def test_truncations_are_refused(fmt: str, kind: str) -> None:
    data = samples.phone_picture(fmt)
    for cut in (len(data) - 100, len(data) // 2):
        message = refused(data[:cut], kind, Reason.CORRUPT)
        assert "truncated" in message or "cannot decode" in message, message


@pytest.mark.parametrize(("fmt", "kind"), KINDS)
def test_appended_files_are_refused_and_zero_padding_is_not(fmt: str, kind: str) -> None:
    data = samples.phone_picture(fmt)
    message = refused(data + b"PK\x03\x04\x14\x00" + b"\0" * 60, kind, Reason.POLYGLOT)
    assert "after the end" in message and "ZIP" in message
    assert check(data + b"\0" * 4, kind).ok


def test_a_45_megapixel_webp_of_a_few_kib_is_refused_from_its_header() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (9000, 5000), (250, 250, 250)).save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    assert len(data) < 16 * 1024
    message = refused(data, "image/webp", Reason.TOO_LARGE)
    assert "9000x5000" in message


def _with_ispe(data: bytes, width: int, height: int) -> bytes:
    """The file with every ispe property claiming width x height (the bytes stay the same
    length, so the boxes still add up)."""
    out = bytearray(data)
    at = out.find(b"ispe")
    assert at > 0
    while at > 0:
        out[at + 8 : at + 16] = struct.pack(">II", width, height)
        at = out.find(b"ispe", at + 4)
    return bytes(out)


@pytest.mark.parametrize(("fmt", "kind"), [("AVIF", "image/avif"), ("HEIF", "image/heic")])
def test_a_huge_ispe_is_refused_before_any_decoder_sees_it(fmt: str, kind: str) -> None:
    bomb = _with_ispe(samples.phone_picture(fmt), 60000, 60000)
    assert "60000x60000" in refused(bomb, kind, Reason.TOO_LARGE)


def test_animation_frame_limits_hold_for_webp() -> None:
    frames = [Image.new("RGB", (32, 32), (i * 20, 0, 0)) for i in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=50)
    data = buf.getvalue()
    assert check(data, "image/webp").ok
    assert "frames" in refused(data, "image/webp", Reason.TOO_LARGE, max_frames=5)


def test_markup_in_a_webp_chunk_is_refused() -> None:
    data = _clean("WEBP")
    hidden = b"<script>alert(1)</script>"
    chunk = b"ZZZZ" + struct.pack("<I", len(hidden)) + hidden + b"\0" * (len(hidden) & 1)
    body = data[12:] + chunk
    forged = b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body
    assert "<script" in refused(forged, "image/webp", Reason.POLYGLOT)


# --- sanitize -------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "kind"), KINDS)
def test_phone_pictures_lose_location_and_camera_and_stand_upright_once(
    fmt: str, kind: str
) -> None:
    result = sanitize(samples.phone_picture(fmt), kind, Policy.STRIP, BOUNDS)
    assert result.data is not None
    img = _open(result.data)
    assert img.size == (120, 240)  # turned once: libheif's irot is not repeated from EXIF
    rgb = img.convert("RGB")
    red, green = rgb.getpixel((2, 2)), rgb.getpixel((img.width - 3, 2))
    assert isinstance(red, tuple) and red[0] > 180 and red[1] < 80  # left half's red, on top
    assert isinstance(green, tuple) and green[1] > 150  # the top bar, now on the right
    exif = img.getexif()
    assert not exif.get_ifd(samples.GPS_IFD) and samples.MODEL not in exif
    assert not img.info.get("xmp")
    for secret in (b"Acme", b"Phone 12", b"SN-0042", b"GPSLatitude"):
        assert secret not in result.data
    assert img.info.get("icc_profile") == samples.icc_profile()


def test_heic_is_served_as_jpeg_by_default_and_as_heif_on_request() -> None:
    data = samples.phone_picture("HEIF")
    jpeg = sanitize(data, "image/heic", Policy.STRIP, BOUNDS)
    assert jpeg.served_type == "image/jpeg" and jpeg.steps == (Step.CONVERT,)
    assert jpeg.data is not None and _open(jpeg.data).format == "JPEG"
    # The conversion is how HEIC reaches a browser: it happens even with sanitizing off.
    assert sanitize(data, "image/heic", Policy.OFF, BOUNDS).served_type == "image/jpeg"
    kept = sanitize(data, "image/heif", Policy.STRIP, BOUNDS, HeifServe.ORIGINAL)
    assert kept.served_type is None and kept.data is not None
    assert _open(kept.data).format == "HEIF" and b"Acme" not in kept.data


@pytest.mark.parametrize(("fmt", "kind"), [("WEBP", "image/webp"), ("AVIF", "image/avif")])
def test_a_clean_picture_is_served_byte_for_byte(fmt: str, kind: str) -> None:
    assert sanitize(_clean(fmt), kind, Policy.STRIP, BOUNDS).data is None


def test_webp_metadata_is_cut_out_losslessly() -> None:
    data = samples.phone_picture("WEBP", orientation=1)
    result = sanitize(data, "image/webp", Policy.STRIP, BOUNDS)
    assert result.steps == (Step.STRIP,) and result.data is not None
    img = _open(result.data)
    assert "exif" not in img.info and "xmp" not in img.info
    assert img.info.get("icc_profile") == samples.icc_profile()
    # Only the EXIF and XMP chunks went: the image chunk is the same bytes.
    vp8 = data.find(b"VP8 ")
    length = struct.unpack("<I", data[vp8 + 4 : vp8 + 8])[0]
    assert vp8 > 0 and data[vp8 : vp8 + 8 + length] in result.data
    assert webp_strip(result.data) is None


def test_a_lossless_webp_stays_lossless_when_turned() -> None:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[samples.ORIENTATION] = 6
    samples.landscape().save(buf, "WEBP", lossless=True, exif=exif.tobytes())
    result = sanitize(buf.getvalue(), "image/webp", Policy.STRIP, BOUNDS)
    assert result.data is not None
    turned = samples.landscape().transpose(Image.Transpose.ROTATE_270)
    assert samples.mean_difference(_open(result.data).convert("RGB"), turned) == 0


# --- renditions -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF", "HEIF"])
def test_renditions_of_the_new_formats(fmt: str) -> None:
    source = samples.phone_picture(fmt, orientation=1, width=800, height=400)
    for target in (None, "JPEG", "WEBP", "AVIF"):
        small, made = render(source, 128, target, BOUNDS)
        img = _open(small)
        assert img.size == (128, 64) and img.format == made
        assert made == (target or {"WEBP": "WEBP", "AVIF": "AVIF", "HEIF": "JPEG"}[fmt])
        assert b"Acme" not in small and not img.getexif()
