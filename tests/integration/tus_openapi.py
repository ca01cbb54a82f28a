"""The calls that produce every documented answer of the tus routes, for
test_api_openapi.py's check that the document and the code agree (api/openapi_tus.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import update

from api.openapi_tus import CREATION, UPLOAD
from storage.engine import utcnow
from storage.tus_schema import resumable_uploads
from tests.integration.api_support import API, Account, padded_png
from tests.integration.conftest import Stack
from tests.integration.tus_support import TUS, auth, create, created_url, endpoint, head, patch

UNKNOWN_PROFILE = "0123456789abcdef01234567"
UNKNOWN_UPLOAD = "0" * 32
Call = Callable[[Stack, dict[str, Any]], Iterator[requests.Response]]


def _set(stack: Stack, url: str, **values: Any) -> None:
    with stack.records.engine.begin() as conn:
        conn.execute(
            update(resumable_uploads)
            .where(resumable_uploads.c.id == url.rsplit("/", 1)[-1])
            .values(**values)
        )


def _expired(stack: Stack, account: Account) -> str:
    url = created_url(stack.base_url, account, "late.png", 10)
    _set(stack, url, expires_at=utcnow() - timedelta(seconds=1))
    return url


def _locked(stack: Stack, account: Account) -> str:
    url = created_url(stack.base_url, account, "busy.png", 10)
    _set(stack, url, lease_owner="another", lease_until=utcnow() + timedelta(seconds=60))
    return url


def _common(
    stack: Stack, world: dict[str, Any], method: str, **kwargs: Any
) -> Iterator[requests.Response]:
    """No version, ok, malformed profile id, no token, a stranger's token, an unknown upload."""
    account: Account = world["account"]
    url = created_url(stack.base_url, account, "common.png", 10)
    rest = url.split(account.path(), 1)[1]
    headers = kwargs.pop("headers", {})
    yield requests.request(
        method, url, headers={**headers, "X-Access-Token-Id": account.token}, timeout=30, **kwargs
    )
    yield requests.request(method, url, headers={**headers, **auth(account)}, timeout=30, **kwargs)
    yield requests.request(
        method,
        stack.base_url + f"{API}/not-an-id{rest}",
        headers={**headers, **auth(account)},
        timeout=30,
        **kwargs,
    )
    yield requests.request(method, url, headers={**headers, **TUS}, timeout=30, **kwargs)
    yield requests.request(
        method,
        url,
        headers={**headers, **TUS, "X-Access-Token-Id": world["stranger"]},
        timeout=30,
        **kwargs,
    )
    yield requests.request(
        method,
        url.rsplit("/", 1)[0] + "/" + UNKNOWN_UPLOAD,
        headers={**headers, **auth(account)},
        timeout=30,
        **kwargs,
    )


def calls_options(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield requests.options(endpoint(stack.base_url, world["account"]), timeout=30)


def calls_options_upload(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    url = created_url(stack.base_url, world["account"], "o.png", 10)
    yield requests.options(url, timeout=30)


def calls_create(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    base = stack.base_url
    yield create(base, account, "c.png", 10)
    yield create(base, account, "c.png", 0)
    yield create(base, account, "c.png", 10, **{"Tus-Resumable": "0.2.2"})
    yield create(base, account, "c.png", stack.settings.max_upload_size + 1)
    yield create(base, account, "c.txt", 10)
    yield requests.post(endpoint(base, account), headers={**TUS, "Upload-Length": "1"}, timeout=30)
    unknown = Account(account.tenant, account.token, UNKNOWN_PROFILE)
    yield create(base, unknown, "c.png", 10)


def calls_head(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield from _common(stack, world, "HEAD")
    yield head(_expired(stack, world["account"]), world["account"])


def calls_patch(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    body = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    yield from _common(stack, world, "PATCH", headers=body, data=b"x")
    data = padded_png(1000)
    url = created_url(stack.base_url, account, "p.png", len(data))
    yield patch(url, account, 0, data[:100])
    yield patch(url, account, 0, data[:100])  # 409: the offset moved
    yield patch(url, account, 100, data[100:] + b"more")  # 413
    yield patch(url, account, 100, b"x", **{"Upload-Checksum": "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA="})
    yield requests.patch(
        url,
        data=b"x",
        headers={**auth(account), "Upload-Offset": "100", "Content-Type": "text/plain"},
        timeout=30,
    )
    yield requests.patch(
        url,
        data=b"x",
        headers={**auth(account), "Content-Type": "application/offset+octet-stream"},
        timeout=30,
    )
    yield patch(_expired(stack, account), account, 0, b"x")
    yield patch(_locked(stack, account), account, 0, b"x")


def calls_delete(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield from _common(stack, world, "DELETE")
    account: Account = world["account"]
    yield requests.delete(_locked(stack, account), headers=auth(account), timeout=30)


CALLS: dict[tuple[str, str], Call] = {
    ("options", CREATION): calls_options,
    ("post", CREATION): calls_create,
    ("options", UPLOAD): calls_options_upload,
    ("head", UPLOAD): calls_head,
    ("patch", UPLOAD): calls_patch,
    ("delete", UPLOAD): calls_delete,
}
