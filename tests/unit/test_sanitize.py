"""The sanitizer on its own, on pictures built in memory: what strip removes and keeps, what
reencode changes, renditions, and the limits."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from core.pictures.renditions import WEB_FORMAT, render
from tests import sanitize_samples as samples
from workers.sanitize import Bounds, Policy, Step, Unsanitizable, sanitize

BOUNDS = Bounds(pixels=40_000_000, frames=1000, total_pixels=160_000_000)


def open_(data: bytes) -> Any:  # an ImageFile of whichever plugin
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_strip_removes_location_camera_and_comment_keeps_icc_and_turns_the_pixels() -> None:
    data = samples.phone_jpeg(orientation=6)
    before = open_(data)
    assert before.getexif().get_ifd(samples.GPS_IFD)  # the sample really carries a position
    result = sanitize(data, "image/jpeg", Policy.STRIP, BOUNDS)
    assert result.data is not None
    assert result.steps == (Step.STRIP, Step.ORIENT)
    after = open_(result.data)
    exif = after.getexif()
    assert not exif.get_ifd(samples.GPS_IFD)
    assert samples.MODEL not in exif and samples.MAKE not in exif
    assert exif.get(samples.ORIENTATION, 1) == 1
    assert b"Acme" not in result.data and b"SN-0042" not in result.data
    assert b"shot at home" not in result.data and "comment" not in after.info
    assert after.info.get("icc_profile") == samples.icc_profile()
    # Orientation 6: the stored 240x120 is shown turned clockwise, 120x240, red (left) on top.
    assert after.size == (120, 240)
    assert after.convert("RGB").getpixel((60, 60))[0] > 180  # red
    assert after.convert("RGB").getpixel((60, 180))[2] > 180  # blue
    # And looks as the original does once its tag is applied.
    from PIL import ImageOps

    expected = ImageOps.exif_transpose(before)
    assert samples.mean_difference(expected, after) < 4


def test_upright_jpeg_is_stripped_losslessly() -> None:
    data = samples.phone_jpeg(orientation=1)
    result = sanitize(data, "image/jpeg", Policy.STRIP, BOUNDS)
    assert result.data is not None and result.steps == (Step.STRIP,)
    assert b"Acme" not in result.data
    # The scan data is untouched: the same pixels, decoded.
    assert open_(result.data).tobytes() == open_(data).tobytes()
    assert open_(result.data).info.get("icc_profile") == samples.icc_profile()


def test_png_text_chunks_are_removed() -> None:
    data = samples.texted_png()
    result = sanitize(data, "image/png", Policy.STRIP, BOUNDS)
    assert result.data is not None
    assert b"Main Street" not in result.data
    assert b"tEXt" not in result.data and b"iTXt" not in result.data
    assert open_(result.data).tobytes() == open_(data).tobytes()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("BMP", "image/bmp")],
)
def test_nothing_to_remove_is_left_byte_for_byte(fmt: str, content_type: str) -> None:
    result = sanitize(samples.plain(fmt), content_type, Policy.STRIP, BOUNDS)
    assert result.data is None and result.steps == ()


def test_gif_comment_removed_frames_kept() -> None:
    data = samples.animated_gif()
    result = sanitize(data, "image/gif", Policy.STRIP, BOUNDS)
    assert result.data is not None and b"made by jane" not in result.data
    img = open_(result.data)
    assert img.n_frames == 3


def test_tiff_tags_are_removed() -> None:
    data = samples.tagged_tiff()
    result = sanitize(data, "image/tiff", Policy.STRIP, BOUNDS)
    assert result.data is not None and b"Jane Doe" not in result.data
    img = open_(result.data)
    assert 272 not in img.tag_v2 and 315 not in img.tag_v2
    assert samples.mean_difference(img, open_(data)) == 0  # LZW is lossless


@pytest.mark.parametrize(
    ("fmt", "content_type", "bound"),
    [("PNG", "image/png", 0), ("JPEG", "image/jpeg", 3), ("BMP", "image/bmp", 0)],
)
def test_reencode_changes_the_bytes_and_keeps_the_look(
    fmt: str, content_type: str, bound: float
) -> None:
    # Written otherwise than the re-encoder writes (another zlib level, another quality).
    options: dict[str, Any] = {"PNG": {"compress_level": 1}, "JPEG": {"quality": 60}}.get(fmt, {})
    data = samples.plain(fmt, **options)
    result = sanitize(data, content_type, Policy.REENCODE, BOUNDS)
    assert result.data is not None and result.steps == (Step.REENCODE,)
    if fmt != "BMP":  # an uncompressed BMP has one way to be written: the same bytes again
        assert result.data != data
    assert samples.mean_difference(open_(result.data), open_(data)) <= bound


def test_reencode_keeps_frames_and_timing() -> None:
    data = samples.animated_gif(comment=None)
    result = sanitize(data, "image/gif", Policy.REENCODE, BOUNDS)
    assert result.data is not None
    img = open_(result.data)
    assert img.n_frames == 3
    durations = []
    for i in range(3):
        img.seek(i)
        durations.append(img.info["duration"])
    assert durations == [100, 200, 300]
    assert img.info.get("loop") == 0


def test_off_serves_as_uploaded() -> None:
    result = sanitize(samples.phone_jpeg(), "image/jpeg", Policy.OFF, BOUNDS)
    assert result.data is None and result.steps == ()


def test_renditions_scale_the_longest_side_never_up() -> None:
    data = samples.plain("PNG", (800, 400))
    (small, fmt), (mid, _), (big, _) = (render(data, n, None, BOUNDS) for n in (128, 512, 1024))
    assert fmt == "PNG" and open_(small).size == (128, 64) and open_(small).format == "PNG"
    assert open_(mid).size == (512, 256)
    assert open_(big).size == (800, 400)  # never scaled up


def test_jpeg_renditions_are_oriented_and_metadata_free() -> None:
    # ATTACHD_IMAGE_SANITIZE=off serves the phone's file as it came: its renditions still
    # stand upright and carry nothing but the colour profile.
    for target in ("JPEG", "WEBP", "AVIF"):
        small, fmt = render(samples.phone_jpeg(width=1200, height=600), 128, target, BOUNDS)
        img = open_(small)
        assert img.size == (64, 128) and img.format == fmt == target
        assert not img.getexif() and b"Acme" not in small
        assert img.info.get("icc_profile") == samples.icc_profile()


def test_over_the_pixel_limit_cannot_be_sanitized() -> None:
    tight = Bounds(pixels=1000, frames=10, total_pixels=4000)
    with pytest.raises(Unsanitizable, match="over the limit"):
        sanitize(samples.phone_jpeg(), "image/jpeg", Policy.STRIP, tight)


def test_a_broken_structure_cannot_be_sanitized() -> None:
    data = samples.texted_png()
    with pytest.raises(Unsanitizable):
        sanitize(data[:-30] + b"\0" * 4, "image/png", Policy.STRIP, BOUNDS)


def test_svg_is_not_touched() -> None:
    assert sanitize(b"<svg/>", "image/svg+xml", Policy.STRIP, BOUNDS).data is None


# --- every kind of picture the verifier accepts comes out whole, in every policy --------------


def _zoo() -> list[tuple[str, str, bytes]]:
    from tests import samples as s

    # A photograph's smoothness with some grain: pure noise is the one picture every JPEG
    # generation visibly changes (mean difference 9 of 255 at 4:2:0).
    rgb = Image.blend(samples.landscape(90, 60), s.noise((90, 60)), 0.2)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    zoo: list[tuple[str, str, Any]] = [
        ("png-rgb", "image/png", s.encode(rgb, "PNG")),
        ("png-rgba", "image/png", s.encode(rgba, "PNG")),
        ("png-l", "image/png", s.encode(rgb.convert("L"), "PNG")),
        ("png-la", "image/png", s.encode(rgba.convert("LA"), "PNG")),
        ("png-p-transparent", "image/png", s.encode(palette, "PNG", transparency=3)),
        ("png-1bit", "image/png", s.encode(rgb.convert("1"), "PNG")),
        ("png-16bit", "image/png", s.encode(rgb.convert("I;16"), "PNG")),
        ("apng", "image/png", s.animated("PNG")),
        ("jpeg-rgb", "image/jpeg", s.encode(rgb, "JPEG")),
        ("jpeg-l", "image/jpeg", s.encode(rgb.convert("L"), "JPEG")),
        ("jpeg-cmyk", "image/jpeg", s.encode(rgb.convert("CMYK"), "JPEG")),
        ("jpeg-progressive", "image/jpeg", s.encode(rgb, "JPEG", progressive=True)),
        ("jpeg-exif-thumbnail", "image/jpeg", s.jpeg_with_exif_thumbnail()),
        ("gif", "image/gif", s.encode(palette, "GIF")),
        ("gif-animated", "image/gif", s.animated("GIF")),
        ("bmp-rgb", "image/bmp", s.encode(rgb, "BMP")),
        ("bmp-p", "image/bmp", s.encode(palette, "BMP")),
        ("bmp-1bit", "image/bmp", s.encode(rgb.convert("1"), "BMP")),
        ("tiff-raw", "image/tiff", s.encode(rgb, "TIFF")),
        ("tiff-lzw", "image/tiff", s.encode(rgb, "TIFF", compression="tiff_lzw")),
        ("tiff-deflate", "image/tiff", s.encode(rgb, "TIFF", compression="tiff_adobe_deflate")),
        ("tiff-cmyk", "image/tiff", s.encode(rgb.convert("CMYK"), "TIFF")),
        ("tiff-g4", "image/tiff", s.encode(rgb.convert("1"), "TIFF", compression="group4")),
        ("tiff-pages", "image/tiff", s.animated("TIFF")),
    ]
    return zoo


ZOO = _zoo()


@pytest.mark.parametrize("policy", [Policy.STRIP, Policy.REENCODE])
@pytest.mark.parametrize(("label", "kind", "data"), ZOO, ids=[z[0] for z in ZOO])
def test_every_picture_comes_out_whole(label: str, kind: str, data: bytes, policy: Policy) -> None:
    result = sanitize(data, kind, policy, BOUNDS)
    out = result.data if result.data is not None else data
    before, after = open_(data), open_(out)
    assert after.format == before.format or {after.format, before.format} == {"JPEG", "MPO"}
    assert after.size == before.size and after.mode == before.mode
    assert getattr(after, "n_frames", 1) == getattr(before, "n_frames", 1)
    lossy = kind == "image/jpeg" or label == "gif-animated"
    # The thumbnail sample's main picture is pure noise (tests/samples.py).
    bound = (10 if label == "jpeg-exif-thumbnail" else 4) if lossy else 0
    assert samples.mean_difference(after, before) <= bound
    small, fmt = render(out, 32, None, BOUNDS)
    rendition = open_(small)
    assert max(rendition.size) == 32 and rendition.format == fmt == WEB_FORMAT[before.format]


def test_private_png_chunks_go_and_apng_animation_chunks_stay() -> None:
    from tests import samples as s

    data = s.animated("PNG")
    iend = data.rindex(b"IEND") - 4
    marked = data[:iend] + s.chunk(b"prVt", b"owner: jane") + data[iend:]
    result = sanitize(marked, "image/png", Policy.STRIP, BOUNDS)
    assert result.data == data  # exactly the chunk removed, nothing else
    assert sanitize(data, "image/png", Policy.STRIP, BOUNDS).data is None
