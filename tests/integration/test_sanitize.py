"""Pictures safe to publish, on the real stack (gunicorn, Celery worker, MinIO, the store): the
served file is the sanitized one, details report its md5, renditions are served with ?size=N,
replaced with a re-upload and deleted with the attachment, leaving nothing behind."""

from __future__ import annotations

import io

import requests
from PIL import Image

from storage.objects import ObjectStore, rendition_key
from tests import sanitize_samples as samples
from tests.integration.api_support import (
    SVG,
    assert_error,
    get,
    md5,
    new_account,
    upload_attached,
)
from tests.integration.conftest import Stack


def _image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_phone_jpeg_is_served_without_location_or_camera_rotated_icc_kept(stack: Stack) -> None:
    account = new_account(stack.records)
    original = samples.phone_jpeg(orientation=6)
    answer = upload_attached(stack, account, "phone.jpg", original)
    assert answer["md5"] == md5(original)  # the upload's answer: what was received
    served = get(stack.base_url, account, "/attachment/phone").content
    img = _image(served)
    exif = img.getexif()
    assert not exif.get_ifd(samples.GPS_IFD)
    assert samples.MAKE not in exif and samples.MODEL not in exif
    assert b"Acme" not in served and b"SN-0042" not in served
    assert img.size == (120, 240)  # orientation 6 applied to the pixels
    assert img.info.get("icc_profile") == samples.icc_profile()
    details = get(stack.base_url, account, "/attachment/phone/details").json()
    assert details["md5"] == md5(served) != md5(original)
    assert details["fileSizeBytes"] == len(served)
    listed = get(stack.base_url, account, "/attachments").json()
    assert listed[0]["md5"] == md5(served)
    status = get(stack.base_url, account, "/attachment/phone/status").json()
    assert status["md5"] == md5(original) and status["fileSizeBytes"] == len(original)
    assert status["servedMd5"] == md5(served)
    assert status["sanitizedBy"] == ["strip", "orient"]
    assert status["renditions"] == [128, 512]


def test_png_text_removed_and_a_clean_file_served_byte_for_byte(stack: Stack) -> None:
    account = new_account(stack.records)
    upload_attached(stack, account, "note.png", samples.texted_png())
    served = get(stack.base_url, account, "/attachment/note").content
    assert b"Main Street" not in served and b"tEXt" not in served
    clean = samples.plain("PNG")
    answer = upload_attached(stack, account, "clean.png", clean)
    assert get(stack.base_url, account, "/attachment/clean").content == clean
    details = get(stack.base_url, account, "/attachment/clean/details").json()
    assert details["md5"] == answer["md5"] == md5(clean)
    status = get(stack.base_url, account, "/attachment/clean/status").json()
    assert status["sanitizedBy"] == []


def test_renditions_at_each_configured_size_and_400_otherwise(stack: Stack) -> None:
    account = new_account(stack.records)
    upload_attached(stack, account, "big.png", samples.plain("PNG", (1000, 500)))
    for px, size in ((128, (128, 64)), (512, (512, 256))):
        resp = get(stack.base_url, account, "/attachment/big", params={"size": str(px)})
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"] == "image/png"
        assert _image(resp.content).size == size
        etag = resp.headers["ETag"]
        # The same rules as the file: Range and conditional GET.
        part = get(
            stack.base_url,
            account,
            "/attachment/big",
            params={"size": str(px)},
            headers={"Range": "bytes=0-9"},
        )
        assert part.status_code == 206 and part.content == resp.content[:10]
        again = get(
            stack.base_url,
            account,
            "/attachment/big",
            params={"size": str(px)},
            headers={"If-None-Match": etag},
        )
        assert again.status_code == 304
    whole = get(stack.base_url, account, "/attachment/big")
    assert whole.headers["ETag"] != etag and _image(whole.content).size == (1000, 500)
    message = assert_error(
        get(stack.base_url, account, "/attachment/big", params={"size": "64"}), 400
    )
    assert "128, 512" in message
    upload_attached(stack, account, "drawing.svg", SVG)
    assert "no renditions" in assert_error(
        get(stack.base_url, account, "/attachment/drawing", params={"size": "128"}), 400
    )


def test_reupload_replaces_renditions_and_delete_removes_them(stack: Stack) -> None:
    account = new_account(stack.records)
    objects = ObjectStore.from_settings(stack.settings)
    bucket = stack.settings.bucket_attachments
    upload_attached(stack, account, "avatar.png", samples.plain("PNG", (800, 800)))
    first = stack.records.latest_upload(
        stack.records.find_attachment(account.profile_id, "avatar").id  # type: ignore[union-attr]
    )
    assert first is not None and first.object_key
    old_keys = first.served_keys()
    assert old_keys == [first.object_key, *(rendition_key(first.object_key, n) for n in (128, 512))]
    assert all(objects.exists(bucket, k) for k in old_keys)
    upload_attached(stack, account, "avatar.png", samples.plain("PNG", (600, 300)))
    assert not any(objects.exists(bucket, k) for k in old_keys)
    small = get(stack.base_url, account, "/attachment/avatar", params={"size": "128"})
    assert _image(small.content).size == (128, 64)
    prefix = f"{account.tenant}/{account.profile_id}/"
    assert len(list(objects.list_keys(bucket, prefix))) == 3  # the file and two renditions
    deleted = requests.delete(
        stack.base_url + account.path("/attachment/avatar"),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert deleted.status_code == 204
    # As the soak checks: no object in any bucket that no record wants (here: none at all).
    ids = {first.id}
    for name in (stack.settings.bucket_staging, stack.settings.bucket_quarantine):
        assert not [k for k, _ in objects.list_keys(name) if any(i in k for i in ids)]
    assert list(objects.list_keys(bucket, prefix)) == []
