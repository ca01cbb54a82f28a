"""Issue 21 on the real stack (gunicorn, Celery worker, clamd, MinIO, the store), with files made
by real encoders: a WebP, an AVIF and a HEIC phone photo with GPS and orientation 6 are attached
and served upright without GPS or camera model, the HEIC as a JPEG; disguises, a truncated AVIF
and a 45-megapixel WebP of a few KiB are refused; renditions of them negotiate on Accept."""

from __future__ import annotations

import io

import pytest
import requests
from PIL import Image

from tests import sanitize_samples as samples
from tests.integration.api_support import (
    assert_error,
    get,
    md5,
    new_account,
    upload,
    upload_attached,
    wait_until_final,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

BROWSER = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def _image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.mark.parametrize(
    ("fmt", "name", "received", "served"),
    [
        ("WEBP", "photo.webp", "image/webp", "image/webp"),
        ("AVIF", "photo.avif", "image/avif", "image/avif"),
        ("HEIF", "photo.heic", "image/heic", "image/jpeg"),
    ],
)
def test_phone_photos_are_served_upright_without_location_or_camera(
    stack: Stack, fmt: str, name: str, received: str, served: str
) -> None:
    account = new_account(stack.records)
    original = samples.phone_picture(fmt, orientation=6)
    answer = upload_attached(stack, account, name, original)
    # The upload's answer reports what was received.
    assert answer["contentType"] == received and answer["md5"] == md5(original)
    resp = get(stack.base_url, account, "/attachment/photo")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == served
    extension = {"image/jpeg": "jpg"}.get(served, name.rsplit(".", 1)[1])
    assert f'filename="photo.{extension}"' in resp.headers["Content-Disposition"]
    img = _image(resp.content)
    assert img.format == served.split("/")[1].upper()
    assert img.size == (120, 240)  # orientation 6, applied once
    exif = img.getexif()
    assert not exif.get_ifd(samples.GPS_IFD) and samples.MODEL not in exif
    for secret in (b"Acme", b"Phone 12", b"GPSLatitude", b"SN-0042"):
        assert secret not in resp.content
    assert img.info.get("icc_profile") == samples.icc_profile()
    # Details, the list and the status describe what is served.
    details = get(stack.base_url, account, "/attachment/photo/details").json()
    assert details["contentType"] == served and details["md5"] == md5(resp.content)
    listed = get(stack.base_url, account, "/attachments").json()
    assert listed[0]["contentType"] == served
    status = get(stack.base_url, account, "/attachment/photo/status").json()
    assert status["declaredType"] == received and status["servedType"] == served
    assert status["md5"] == md5(original)
    # A signed link serves the same bytes, described the same way.
    link = get(stack.base_url, account, "/attachment/photo/url").json()
    signed = requests.get(stack.base_url + link["url"], timeout=30)
    assert signed.content == resp.content and signed.headers["Content-Type"] == served


def test_renditions_of_a_heic_negotiate_on_accept(stack: Stack) -> None:
    account = new_account(stack.records)
    upload_attached(
        stack, account, "big.heic", samples.phone_picture("HEIF", 1, width=800, height=400)
    )
    seen = {}
    for accept in (BROWSER, "image/webp", "image/jpeg"):
        resp = get(
            stack.base_url,
            account,
            "/attachment/big",
            params={"size": "128"},
            headers={"Accept": accept},
        )
        assert resp.status_code == 200 and resp.headers["Vary"] == "Accept"
        img = _image(resp.content)
        assert img.size == (128, 64)
        seen[accept] = img.format
    assert seen == {BROWSER: "AVIF", "image/webp": "WEBP", "image/jpeg": "JPEG"}


def test_disguises_are_refused_at_the_door(stack: Stack) -> None:
    account = new_account(stack.records)
    png_as_webp = upload(stack.base_url, account, "photo.webp", samples.plain("PNG"))
    assert "image/png" in assert_error(png_as_webp, 415)
    heic_as_png = upload(stack.base_url, account, "photo.png", samples.phone_picture("HEIF"))
    assert "image/heic" in assert_error(heic_as_png, 415)


def _bomb_webp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (9000, 5000), (250, 250, 250)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("cut.avif", samples.phone_picture("AVIF")[:900], "corrupt"),
        ("huge.webp", _bomb_webp(), "too_large"),
    ],
)
def test_broken_and_oversized_pictures_are_rejected(
    stack: Stack, name: str, data: bytes, reason: str
) -> None:
    account = new_account(stack.records)
    resp = upload(stack.base_url, account, name, data)
    assert resp.status_code == 200, resp.text  # the head agrees with the name: verified later
    final = wait_until_final(stack, account, name.rsplit(".", 1)[0])
    assert final.state == "rejected" and final.reason_code == reason, (final.state, final.reason)
    assert_error(get(stack.base_url, account, f"/attachment/{name.rsplit('.', 1)[0]}"), 404)
