"""Helpers of the tus tests: the endpoint, a tuspy client for an account, raw tus requests, and
what "nothing left" means for a resumable upload (row, staged object, incomplete parts)."""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import requests
from PIL import Image
from tusclient.client import TusClient

from storage.objects import ObjectStore
from storage.tus import ResumableRecords
from tests.integration.api_support import Account
from tests.integration.conftest import Stack

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = {"Content-Type": "application/offset+octet-stream"}


def endpoint(base_url: str, account: Account) -> str:
    return base_url + account.path("/uploadAttachment/resumable")


def client(base_url: str, account: Account) -> TusClient:
    # As tus clients send it: the token once, as a header of every request.
    return TusClient(endpoint(base_url, account), headers={"X-Access-Token-Id": account.token})


def auth(account: Account) -> dict[str, str]:
    return {**TUS, "X-Access-Token-Id": account.token}


def metadata(**fields: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def create(
    base_url: str, account: Account, name: str, length: int, **headers: str
) -> requests.Response:
    return requests.post(
        endpoint(base_url, account),
        headers={
            **auth(account),
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(filename=name),
            **headers,
        },
        timeout=30,
    )


def created_url(base_url: str, account: Account, name: str, length: int) -> str:
    resp = create(base_url, account, name, length)
    assert resp.status_code == 201, resp.text
    return requests.compat.urljoin(endpoint(base_url, account), resp.headers["Location"])


def patch(url: str, account: Account, offset: int, data: Any, **headers: str) -> requests.Response:
    return requests.patch(
        url,
        data=data,
        headers={**auth(account), **OFFSET_TYPE, "Upload-Offset": str(offset), **headers},
        timeout=60,
    )


def head(url: str, account: Account) -> requests.Response:
    return requests.head(url, headers=auth(account), timeout=30)


def upload_id(url: str) -> str:
    return url.rsplit("/", 1)[-1].split("?", 1)[0]


def noise_png(size: int) -> bytes:
    """A PNG of random pixels of about `size` bytes (noise does not compress) and no metadata,
    so the sanitize step serves it byte for byte."""
    side = int((size / 3) ** 0.5) + 2
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buf = io.BytesIO()
    image.save(buf, "PNG", compress_level=0)
    return buf.getvalue()


def tus_leftovers(stack: Stack, objects: ObjectStore, upload: str) -> list[str]:
    """What is left of a resumable upload that should be gone: its row, its staged object, its
    multipart uploads in staging, its incomplete parts."""
    found = []
    if ResumableRecords(stack.records.engine).get_resumable(upload) is not None:
        found.append("row")
    staged = f"uploads/{upload}"
    if objects.exists(stack.settings.bucket_staging, staged):
        found.append("staged object")
    pending = objects.client._list_multipart_uploads(stack.settings.bucket_staging, prefix=staged)
    if list(pending.uploads):
        found.append("multipart upload")
    bucket = stack.settings.bucket_tus
    if objects.client.bucket_exists(bucket):
        found += [key for key, _ in objects.list_keys(bucket, prefix=f"{upload}/")]
    return found
