"""Helpers for the API's integration tests (tests/integration/test_api_*.py): accounts, uploads,
error assertions, "nothing left behind" checks, and apps or servers with other settings."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import select
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import requests
from falcon import testing

from api.app import Services, build_services, create_app
from bench.soak import leftovers
from bench.target import Target
from core import filetypes
from core.settings import Settings
from storage.objects import ObjectStore
from storage.records import RecordStore, Upload
from tests.conftest import _free_port, png_bytes
from tests.integration.conftest import Stack, _start, _stop, _wait_for_api

API = "/api/1/profile"
MANAGE = ["MANAGE_PROFILES"]
ATTACHMENT_FIELDS = {"md5", "contentType", "fileSize", "fileName", "fileSizeBytes", "id"}
TERMINAL = ("attached", "infected", "rejected", "failed")


@dataclass
class Account:
    """A tenant of its own, a token with MANAGE_PROFILES on it and a profile: tests that use one
    never see each other's attachments."""

    tenant: str
    token: str
    profile_id: str

    def path(self, rest: str = "") -> str:
        return f"{API}/{self.profile_id}{rest}"


def new_account(records: RecordStore, actions: Sequence[str] = MANAGE) -> Account:
    tenant = "t-" + os.urandom(4).hex()
    records.create_tenant(tenant)
    token = records.create_token("tests", [{"tenant": tenant, "allowedActions": list(actions)}])
    profile = records.create_profile(tenant, "user", "user@example.com", enabled=True)
    return Account(tenant=tenant, token=token, profile_id=profile.id)


# --- content ------------------------------------------------------------------------------------


def jpeg_bytes(width: int = 8, height: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


def padded_png(size: int) -> bytes:
    """`size` bytes that start as a PNG: enough for the API's sniff (the verifier, later, would
    refuse the padding; tests using this only look at the API's answer)."""
    head = png_bytes()
    assert size >= len(head)
    return head + b"\0" * (size - len(head))


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
    b'<rect width="4" height="4" fill="red"/></svg>\n'
)
HTML = b"<!DOCTYPE html><html><head><script>alert(1)</script></head><body>hi</body></html>\n" * 4
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + b"\0" * 200


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --- requests -----------------------------------------------------------------------------------


def upload(
    base_url: str,
    account: Account,
    name: str,
    data: bytes,
    *,
    token: str | None = None,
    timeout: float = 30,
) -> requests.Response:
    """The plain upload: token in the query string, one file part named `name`."""
    return requests.post(
        base_url + account.path("/uploadAttachment"),
        params={"accessTokenId": account.token if token is None else token},
        files={"attachment": (name, data, "application/octet-stream")},
        timeout=timeout,
    )


def post_parts(
    base_url: str,
    account: Account,
    parts: list[tuple[str, Any]],
    params: dict[str, str] | None = None,
) -> requests.Response:
    """An upload with exactly these multipart parts, in this order on the wire."""
    return requests.post(
        base_url + account.path("/uploadAttachment"), params=params, files=parts, timeout=30
    )


def multipart_body(name: str, data: bytes) -> tuple[bytes, str]:
    """A one-file multipart body and its Content-Type, for the in-process test client."""
    prepared = requests.Request(
        "POST", "http://x/", files={"attachment": (name, data, "application/octet-stream")}
    ).prepare()
    assert isinstance(prepared.body, bytes)
    return prepared.body, prepared.headers["Content-Type"]


def get(base_url: str, account: Account, rest: str, **kwargs: Any) -> requests.Response:
    params = {"accessTokenId": account.token, **kwargs.pop("params", {})}
    return requests.get(base_url + account.path(rest), params=params, timeout=30, **kwargs)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def send_partial(
    base_url: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    trickle: tuple[bytes, float, int] | None = None,
    timeout: float = 10.0,
) -> RawResponse | None:
    """Send a POST whose body stops short of its Content-Length (a client that stalls), or that
    then sends `trickle` = (bytes, pause, count), and read the answer. Returns None when the
    server closed the connection without one; a server that neither answers nor closes within
    `timeout` fails the test (socket.timeout)."""
    host, port = base_url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + body)
        if trickle is not None:
            piece, pause, count = trickle
            for _ in range(count):
                if select.select([sock], [], [], pause)[0]:
                    break  # the server answered (or closed): read what it said
                try:
                    sock.sendall(piece)
                except OSError:
                    break
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                length = re.search(rb"(?im)^content-length:\s*(\d+)", data[:head_end])
                if length and len(data) >= head_end + 4 + int(length.group(1)):
                    break
    seconds = time.monotonic() - started
    if not data:
        return None
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return RawResponse(
        int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, rest, seconds
    )


def file_part_head(boundary: str, name: str, field: str = "attachment") -> bytes:
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()


def assert_error(resp: requests.Response, status: int, code: str = "OTHER") -> str:
    """Crafter's error shape, exactly, with the status and errorCode expected; returns the
    message (which never carries a stack trace)."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"errorCode", "message"}, body
    assert body["errorCode"] == code, body
    assert "Traceback" not in body["message"]
    assert resp.headers["Content-Type"].startswith("application/json")
    return str(body["message"])


# --- pipeline and stores ------------------------------------------------------------------------


def latest_upload(stack: Stack, account: Account, name: str) -> Upload:
    attachment = stack.records.find_attachment(account.profile_id, name)
    assert attachment is not None, f"no attachment {name}"
    upload_ = stack.records.latest_upload(attachment.id)
    assert upload_ is not None
    return upload_


def wait_until_final(stack: Stack, account: Account, name: str) -> Upload:
    up = latest_upload(stack, account, name)
    stack.wait_for_state(up.id, TERMINAL)
    final = stack.records.get_upload(up.id)
    assert final is not None
    return final


def upload_attached(stack: Stack, account: Account, name: str, data: bytes) -> dict[str, Any]:
    """Upload and wait until the worker attached it; returns the upload's answer."""
    resp = upload(stack.base_url, account, name, data)
    assert resp.status_code == 200, resp.text
    final = wait_until_final(stack, account, filetypes.base_name(name))
    assert final.state == "attached", (final.state, final.reason)
    return dict(resp.json())


def staging_keys(objects: ObjectStore, settings: Settings) -> set[str]:
    return {key for key, _ in objects.list_keys(settings.bucket_staging)}


def settled_leftovers(stack: Stack, objects: ObjectStore, timeout: float = 60.0) -> dict[str, int]:
    """The soak's count of what was left behind (bench/soak.py: objects without their record,
    records without their object, uploads still in the pipeline) over the session's buckets and
    record store, once the pipeline has settled: an upload between two steps briefly holds an
    object its record does not name yet, so only a count that stays above zero is returned."""
    # leftovers() reads nothing of its target but these two stores.
    stores = cast(Target, SimpleNamespace(records=stack.records, objects=objects))
    deadline = time.monotonic() + timeout
    while True:
        found = leftovers(stores, stack.settings)
        if not any(found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@contextmanager
def leaves_nothing(
    stack: Stack, objects: ObjectStore, account: Account, name: str
) -> Iterator[None]:
    """The request inside refuses the upload: no new object in staging, no record of the name."""
    before = staging_keys(objects, stack.settings)
    yield
    assert staging_keys(objects, stack.settings) - before == set()
    assert stack.records.find_attachment(account.profile_id, filetypes.base_name(name)) is None


# --- other configurations -----------------------------------------------------------------------


@contextmanager
def app_client(
    settings: Settings, services: Services | None = None
) -> Iterator[testing.TestClient]:
    """The real app in-process, built by the same factory with these settings (real services
    behind them, reachable or not)."""
    services = services or build_services(settings)
    try:
        yield testing.TestClient(create_app(settings, services))
    finally:
        services.records.engine.dispose()


@contextmanager
def api_server(stack: Stack, log_dir: Path, **env: str) -> Iterator[str]:
    """A second gunicorn on the session's stores, with some settings changed (ATTACHD_* names),
    logging to log_dir/api.log; yields its base URL."""
    port = _free_port()
    full_env = {**stack.env, **env, "ATTACHD_API_PORT": str(port)}
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    cmd = [gunicorn, "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"]
    proc = _start(cmd, full_env, log_dir / "api.log")
    base = f"http://{stack.settings.api_host}:{port}"
    try:
        _wait_for_api(proc, base, log_dir)
        yield base
    finally:
        _stop(proc)


def changed(settings: Settings, **values: Any) -> Settings:
    return replace(settings, **values)


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
