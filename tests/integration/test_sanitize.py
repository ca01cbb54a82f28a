"""Pictures safe to publish, on the real stack (gunicorn, Celery worker, MinIO, the store): the
served file is the sanitized one, details report its md5, renditions are served with ?size=N
(made at their first request, in the format Accept negotiates, once across the API's
processes), replaced with a re-upload and deleted with the attachment, leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest
import requests
from PIL import Image

from core.clamd import ClamdClient
from storage.objects import ObjectStore, rendition_key, staging_key
from storage.telemetry import Telemetry
from tests import sanitize_samples as samples
from tests.integration.api_support import (
    SVG,
    Account,
    assert_error,
    get,
    md5,
    new_account,
    upload_attached,
)
from tests.integration.conftest import Stack
from workers.pipeline import Limits, Pipeline
from workers.sanitize import Bounds, Policy, publish


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
    # Never scaled up: a picture no larger than a size keeps its size.
    upload_attached(stack, account, "tiny.png", samples.plain("PNG", (100, 50)))
    for px in ("128", "512"):
        same = get(stack.base_url, account, "/attachment/tiny", params={"size": px})
        assert _image(same.content).size == (100, 50) and _image(same.content).format == "PNG"
    upload_attached(stack, account, "drawing.svg", SVG)
    assert "no renditions" in assert_error(
        get(stack.base_url, account, "/attachment/drawing", params={"size": "128"}), 400
    )


def _key_of(stack: Stack, account: Account, name: str) -> str:
    attachment = stack.records.find_attachment(account.profile_id, name)
    assert attachment is not None
    up = stack.records.latest_upload(attachment.id)
    assert up is not None and up.object_key
    return up.object_key


def test_reupload_replaces_renditions_and_delete_removes_them(stack: Stack) -> None:
    account = new_account(stack.records)
    objects = ObjectStore.from_settings(stack.settings)
    bucket = stack.settings.bucket_attachments
    prefix = f"{account.tenant}/{account.profile_id}/"
    upload_attached(stack, account, "avatar.png", samples.plain("PNG", (800, 800)))
    first = _key_of(stack, account, "avatar")
    # The attach step made none: only the file is stored until a size is asked for.
    assert [k for k, _ in objects.list_keys(bucket, prefix)] == [first]
    for accept in (BROWSER, "image/webp", "image/png"):
        resp = get(
            stack.base_url,
            account,
            "/attachment/avatar",
            params={"size": "128"},
            headers={"Accept": accept},
        )
        assert resp.status_code == 200
    old_keys = [first, *(rendition_key(first, 128, ext) for ext in ("avif", "webp", "png"))]
    assert sorted(k for k, _ in objects.list_keys(bucket, prefix)) == sorted(old_keys)
    upload_attached(stack, account, "avatar.png", samples.plain("PNG", (600, 300)))
    assert not any(objects.exists(bucket, k) for k in old_keys)
    small = get(stack.base_url, account, "/attachment/avatar", params={"size": "128"})
    assert _image(small.content).size == (128, 64)
    assert len(list(objects.list_keys(bucket, prefix))) == 2  # the file and one rendition
    deleted = requests.delete(
        stack.base_url + account.path("/attachment/avatar"),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert deleted.status_code == 204
    for name in (stack.settings.bucket_staging, stack.settings.bucket_quarantine):
        assert not [k for k, _ in objects.list_keys(name) if account.profile_id in k]
    assert list(objects.list_keys(bucket, prefix)) == []


# What Chromium sends for <img>.
BROWSER = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def test_a_jpeg_rendition_is_negotiated_on_accept(stack: Stack) -> None:
    account = new_account(stack.records)
    upload_attached(stack, account, "photo.jpg", samples.plain("JPEG", (1200, 800)))
    seen = {}
    for accept in (BROWSER, "image/webp,*/*", "image/jpeg"):
        resp = get(
            stack.base_url,
            account,
            "/attachment/photo",
            params={"size": "128"},
            headers={"Accept": accept},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["Vary"] == "Accept"
        img = _image(resp.content)
        assert img.size == (128, 85)
        seen[accept] = (img.format, resp.headers["Content-Type"])
    assert seen == {
        BROWSER: ("AVIF", "image/avif"),
        "image/webp,*/*": ("WEBP", "image/webp"),
        "image/jpeg": ("JPEG", "image/jpeg"),
    }
    # A signed link to the rendition negotiates the same way.
    link = get(stack.base_url, account, "/attachment/photo/url", params={"size": "128"}).json()
    signed = requests.get(
        stack.base_url + link["url"], headers={"Accept": "image/webp"}, timeout=30
    )
    assert signed.status_code == 200 and _image(signed.content).format == "WEBP"
    assert signed.headers["Vary"] == "Accept"


def test_concurrent_first_requests_across_api_processes_make_it_once(stack: Stack) -> None:
    account = new_account(stack.records)
    upload_attached(stack, account, "crowd.jpg", samples.plain("JPEG", (2400, 1600)))
    telemetry = Telemetry.from_url(stack.settings.redis_url)

    def made() -> float:
        return telemetry.counters().get("renditions_made", {}).get(("WEBP",), 0)

    before = made()
    start = threading.Barrier(12)

    def first(_: int) -> tuple[int, str]:
        start.wait()
        resp = get(
            stack.base_url,
            account,
            "/attachment/crowd",
            params={"size": "512"},
            headers={"Accept": "image/webp"},
        )
        return resp.status_code, hashlib.sha256(resp.content).hexdigest()

    with ThreadPoolExecutor(12) as pool:
        answers = set(pool.map(first, range(12)))
    assert len(answers) == 1 and next(iter(answers))[0] == 200
    assert made() == before + 1


# --- other policies and limits: the pipeline in this process, on the same services -------------
#
# The session's worker runs the default policy; these run the real steps (clamd, MinIO, the
# store) with another one in this process, then read through the session's real API. No task is
# sent, so the session's worker never sees these uploads.


def _pipeline(stack: Stack, **overrides: Any) -> Pipeline:
    settings = replace(stack.settings, **overrides)
    objects = ObjectStore.from_settings(settings)
    pipeline = Pipeline(
        stack.records,
        objects,
        ClamdClient(settings.clamd_host, settings.clamd_port, settings.clamd_timeout),
        Limits(settings.max_image_pixels, settings.max_svg_size, 300),
        publisher=publish.from_settings(settings, objects, Telemetry.from_url(settings.redis_url)),
    )
    return pipeline


def _through(pipeline: Pipeline, account: Account, name: str, data: bytes, kind: str) -> str:
    upload_id = uuid.uuid4().hex
    key = staging_key(upload_id)
    objects = pipeline.objects
    objects.put_stream(objects.buckets.staging, key, io.BytesIO(data), kind, 5 * 1024 * 1024)
    pipeline.records.record_upload(
        upload_id=upload_id,
        profile_id=account.profile_id,
        file_name=name.rsplit(".", 1)[0],
        original_name=name,
        md5=md5(data),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        declared_type=kind,
        sniffed_type=kind,
        staging_key=key,
    )
    pipeline.scan(upload_id)
    pipeline.verify(upload_id)
    pipeline.attach(upload_id)
    return upload_id


@pytest.mark.parametrize(
    ("name", "kind", "data", "bound"),
    [
        ("still.jpg", "image/jpeg", samples.plain("JPEG", quality=60), 3.0),
        ("still.png", "image/png", samples.plain("PNG", compress_level=1), 0.0),
    ],
)
def test_reencode_changes_the_bytes_and_keeps_the_look(
    stack: Stack, name: str, kind: str, data: bytes, bound: float
) -> None:
    account = new_account(stack.records)
    pipeline = _pipeline(stack, image_sanitize="reencode")
    upload_id = _through(pipeline, account, name, data, kind)
    up = stack.records.get_upload(upload_id)
    assert up is not None and up.state == "attached", (up and up.state, up and up.reason)
    served = get(stack.base_url, account, "/attachment/still").content
    assert served != data
    assert samples.mean_difference(_image(served), _image(data)) <= bound
    assert get(stack.base_url, account, "/attachment/still/details").json()["md5"] == md5(served)
    status = get(stack.base_url, account, "/attachment/still/status").json()
    assert status["sanitizedBy"] == ["reencode"]


def test_off_serves_the_upload_as_it_came(stack: Stack) -> None:
    account = new_account(stack.records)
    data = samples.phone_jpeg(orientation=6)
    _through(_pipeline(stack, image_sanitize="off"), account, "raw.jpg", data, "image/jpeg")
    assert get(stack.base_url, account, "/attachment/raw").content == data
    assert get(stack.base_url, account, "/attachment/raw/status").json()["sanitizedBy"] is None


def test_a_picture_that_cannot_be_sanitized_within_the_limits_is_rejected(stack: Stack) -> None:
    account = new_account(stack.records)
    pipeline = _pipeline(stack)
    # Verify passes it (the session's pixel limit); the sanitizer is held to fewer pixels.
    assert pipeline.publisher is not None
    tight = publish.Options(Policy.STRIP, Bounds(1000, 10, 4000))
    pipeline.publisher = publish.Publisher(pipeline.objects, tight)
    upload_id = _through(pipeline, account, "huge.jpg", samples.phone_jpeg(), "image/jpeg")
    up = stack.records.get_upload(upload_id)
    assert up is not None and up.state == "rejected" and up.reason_code == "unsanitizable"
    assert "over the limit" in (up.reason or "")
    assert_error(get(stack.base_url, account, "/attachment/huge"), 404)
    prefix = f"{account.tenant}/{account.profile_id}/"
    assert list(pipeline.objects.list_keys(stack.settings.bucket_attachments, prefix)) == []
    assert not pipeline.objects.exists(stack.settings.bucket_staging, staging_key(upload_id))


def test_kept_originals_go_to_their_private_bucket_only(stack: Stack) -> None:
    account = new_account(stack.records)
    bucket = f"{stack.settings.bucket_attachments}-orig"
    pipeline = _pipeline(stack, keep_originals_days=3, bucket_originals=bucket)
    data = samples.phone_jpeg()
    upload_id = _through(pipeline, account, "kept.jpg", data, "image/jpeg")
    up = stack.records.get_upload(upload_id)
    assert up is not None and up.object_key is not None
    kept = pipeline.objects.read_range(bucket, up.object_key, 0, len(data))
    assert kept == data  # the original, byte for byte, where nothing serves it
    assert get(stack.base_url, account, "/attachment/kept").content != data
    rules = pipeline.objects.client.get_bucket_lifecycle(bucket)
    assert rules is not None and rules.rules[0].expiration.days == 3
