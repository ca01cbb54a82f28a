"""Pictures as phones and editors write them, built with Pillow at run time: location, camera and
orientation in EXIF, an ICC profile, text in PNG chunks, comments in GIFs."""

from __future__ import annotations

import functools
import io
from typing import Any

from PIL import Image, ImageCms, ImageDraw

GPS_IFD = 0x8825
EXIF_IFD = 0x8769
MAKE, MODEL, ORIENTATION, SOFTWARE = 0x010F, 0x0110, 0x0112, 0x0131
BODY_SERIAL = 0xA431


@functools.cache  # one profile per run: it carries the time it was made
def icc_profile() -> bytes:
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def landscape(width: int = 240, height: int = 120) -> Image.Image:
    """Left half red, right half blue, a green bar along the top: which way is up is visible."""
    img = Image.new("RGB", (width, height), (220, 30, 30))
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 2, 0, width, height), fill=(30, 30, 220))
    draw.rectangle((0, 0, width, height // 8), fill=(30, 200, 30))
    return img


def phone_jpeg(orientation: int = 6, width: int = 240, height: int = 120) -> bytes:
    """A JPEG with a GPS position, camera make/model/serial, orientation and an ICC profile."""
    exif = Image.Exif()
    exif[MAKE] = "Acme"
    exif[MODEL] = "Phone 12 Pro"
    exif[SOFTWARE] = "Camera 1.0"
    exif[ORIENTATION] = orientation
    exif.get_ifd(EXIF_IFD)[BODY_SERIAL] = "SN-0042-1337"
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"
    gps[2] = (40.0, 26.0, 46.0)
    gps[3] = "W"
    gps[4] = (79.0, 58.0, 56.0)
    buf = io.BytesIO()
    landscape(width, height).save(
        buf, "JPEG", quality=90, exif=exif, icc_profile=icc_profile(), comment=b"shot at home"
    )
    return buf.getvalue()


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="40,26.7667N" '
    b'xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Model="Phone 12 Pro"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def phone_picture(fmt: str, orientation: int = 6, width: int = 240, height: int = 120) -> bytes:
    """As a phone writes a WEBP, AVIF or HEIF (pillow-heif): the same EXIF as phone_jpeg (GPS,
    camera, serial, orientation), an XMP packet repeating the position and model, and an ICC
    profile. Pillow's AVIF writer and pillow-heif turn the EXIF orientation into the container's
    own irot/imir transform, as phones do."""
    exif = Image.open(io.BytesIO(phone_jpeg(orientation, width, height))).getexif()
    buf = io.BytesIO()
    landscape(width, height).save(
        buf, fmt, exif=exif.tobytes(), xmp=XMP, icc_profile=icc_profile(), quality=90
    )
    return buf.getvalue()


def texted_png(text: str = "Jane Doe, 12 Main Street") -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", text)
    info.add_itxt("Description", text)
    buf = io.BytesIO()
    landscape().save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def plain(fmt: str, size: tuple[int, int] = (240, 120), **options: Any) -> bytes:
    """As Pillow writes it (with no options: no metadata to remove)."""
    buf = io.BytesIO()
    landscape(*size).save(buf, fmt, **options)
    return buf.getvalue()


def animated_gif(frames: int = 3, comment: bytes | None = b"made by jane") -> bytes:
    images = [Image.new("P", (64, 48), i * 3 + 1) for i in range(frames)]
    for i, im in enumerate(images):
        im.putpalette([c for n in range(256) for c in ((n * 7) % 256, (n * 13) % 256, i * 40)])
    buf = io.BytesIO()
    extra = {"comment": comment} if comment else {}
    images[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=images[1:],
        duration=[100, 200, 300][:frames],
        loop=0,
        **extra,
    )
    return buf.getvalue()


def tagged_tiff() -> bytes:
    from PIL import TiffImagePlugin

    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[MAKE] = "Acme"
    info[MODEL] = "Scanner 3000"
    info[315] = "Jane Doe"  # Artist
    buf = io.BytesIO()
    landscape().save(buf, "TIFF", tiffinfo=info, compression="tiff_lzw")
    return buf.getvalue()


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0-255."""
    a, b = a.convert("RGB"), b.convert("RGB")
    assert a.size == b.size
    pa, pb = a.tobytes(), b.tobytes()
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)
