"""Keeps /api/1/openapi.json true: it is valid OpenAPI 3.1, it lists exactly the routes the app
has, and every status it documents for every operation is produced by a real call here and
answers with a body its schema accepts (and nothing undocumented is produced)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import falcon.inspect
import pytest
import requests
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from api.signing import Link, Signer
from tests.conftest import png_bytes
from tests.integration.api_support import (
    API,
    Account,
    app_client,
    changed,
    multipart_body,
    new_account,
    padded_png,
    upload,
    upload_attached,
)
from tests.integration.conftest import Stack
from tests.integration.tus_openapi import CALLS as TUS_CALLS

# Documented statuses produced elsewhere, because producing them takes another server.
ELSEWHERE = {("post", "/api/1/profile/{profileId}/uploadAttachment", "408"): "test_api_limits"}
NOWHERE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def doc(stack: Stack) -> dict[str, Any]:
    # Public, as an API reference is (docs/DECISIONS.md).
    resp = requests.get(stack.base_url + "/api/1/openapi.json", timeout=30)
    assert resp.status_code == 200
    return dict(resp.json())


def resolve(doc: dict[str, Any], node: Any) -> Any:
    """The node with every local $ref replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = doc
            for key in node["$ref"].removeprefix("#/").split("/"):
                target = target[key]
            return resolve(doc, target)
        return {k: resolve(doc, v) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(doc, v) for v in node]
    return node


def test_it_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_it_lists_exactly_the_routes_of_the_api(stack: Stack, doc: dict[str, Any]) -> None:
    with app_client(stack.settings) as client:
        routes = falcon.inspect.inspect_routes(client.app)
    actual = {
        (method.method.lower(), re.sub(r"\{(profile|upload)_id\}", r"{\1Id}", route.path))
        for route in routes
        # The reference page that draws this document is HTML for people, not part of the API.
        if route.path.startswith("/api/1/") and not route.path.startswith("/api/1/docs")
        for method in route.methods
        if not method.internal
    }
    documented = {(m, path) for path, ops in doc["paths"].items() for m in ops}
    assert documented == actual


class Recorder:
    """Checks each answer against the document and notes which (operation, status) it was."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, method: str, path: str, status: int, headers: Any, body: bytes) -> None:
        op = self.doc["paths"][path][method]
        key = str(status)
        assert key in op["responses"], f"{method.upper()} {path} answered undocumented {status}"
        self.seen.add((method, path, key))
        response = resolve(self.doc, op["responses"][key])
        content = response.get("content", {})
        if method == "head":
            assert body == b""
        elif "application/json" in content:
            assert headers["Content-Type"].startswith("application/json")
            OAS31Validator(content["application/json"]["schema"]).validate(json.loads(body))
        elif content:
            assert body, f"{method.upper()} {path} {status} documents a body"
        for name in response.get("headers", {}):
            if name != "Content-Disposition" or status in (200, 206):
                assert name in headers, f"{method.upper()} {path} {status} lacks {name}"


@pytest.fixture(scope="module")
def world(stack: Stack) -> dict[str, Any]:
    """An account with an attached file, and one whose token is for another tenant."""
    account = new_account(stack.records)
    upload_attached(stack, account, "doc.png", png_bytes(30, 30))
    return {"account": account, "stranger": new_account(stack.records).token}


Call = Callable[[Stack, dict[str, Any]], Iterator[requests.Response]]
PROFILE = "/api/1/profile/{profileId}"
FILE = PROFILE + "/attachment/{name}"
UNKNOWN = "0123456789abcdef01234567"


def _req(stack: Stack, method: str, path: str, token: str | None, **kwargs: Any) -> Any:
    params = kwargs.pop("params", {})
    if token is not None:
        params["accessTokenId"] = token
    return requests.request(method, stack.base_url + path, params=params, timeout=30, **kwargs)


def _variants(
    stack: Stack, world: dict[str, Any], method: str, rest: str, **kwargs: Any
) -> Iterator[requests.Response]:
    """The common answers of a profile route: ok, malformed id, no token, another tenant's
    token, unknown profile."""
    account: Account = world["account"]
    yield _req(stack, method, account.path(rest), account.token, **kwargs)
    yield _req(stack, method, f"{API}/not-an-id{rest}", account.token, **kwargs)
    yield _req(stack, method, account.path(rest), None, **kwargs)
    yield _req(stack, method, account.path(rest), world["stranger"], **kwargs)
    yield _req(stack, method, f"{API}/{UNKNOWN}{rest}", account.token, **kwargs)


def calls_upload(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    yield from _variants(
        stack, world, "POST", "/uploadAttachment", files={"attachment": ("new.png", png_bytes())}
    )
    yield upload(stack.base_url, account, "notes.txt", b"text")
    too_big = padded_png(stack.settings.max_upload_size + 1)
    yield upload(stack.base_url, account, "big.png", too_big)


def calls_list(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield from _variants(stack, world, "GET", "/attachments")


def calls_download(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    yield from _variants(stack, world, "GET", "/attachment/doc")
    etag = _req(stack, "GET", account.path("/attachment/doc"), account.token).headers["ETag"]
    for headers in ({"Range": "bytes=0-9"}, {"If-None-Match": etag}, {"Range": "bytes=99999-"}):
        yield _req(stack, "GET", account.path("/attachment/doc"), account.token, headers=headers)
    yield _req(stack, "GET", account.path("/attachment/missing"), account.token)


def calls_head(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    yield from _variants(stack, world, "HEAD", "/attachment/doc")
    etag = _req(stack, "GET", account.path("/attachment/doc"), account.token).headers["ETag"]
    yield _req(
        stack,
        "HEAD",
        account.path("/attachment/doc"),
        account.token,
        headers={"If-None-Match": etag},
    )


def calls_delete(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    upload_attached(stack, account, "bin.png", png_bytes())
    yield from _variants(stack, world, "DELETE", "/attachment/bin")
    yield _req(stack, "DELETE", account.path("/attachment/bin"), account.token)  # gone: 404


def calls_details(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield from _variants(stack, world, "GET", "/attachment/doc/details")


def calls_status(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield from _variants(stack, world, "GET", "/attachment/doc/status")


def calls_profile(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield from _variants(stack, world, "GET", "")


def calls_create(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    form = {
        "tenantName": account.tenant,
        "username": "oa",
        "email": "oa@example.com",
        "enabled": "true",
    }
    path = API + "/create"
    yield _req(stack, "POST", path, account.token, data=form)
    yield _req(stack, "POST", path, account.token, data=form)  # 409
    yield _req(stack, "POST", path, account.token, data={**form, "email": "bad"})
    yield _req(stack, "POST", path, None, data=form)
    yield _req(stack, "POST", path, world["stranger"], data=form)
    everywhere = stack.records.create_token("t", [{"tenant": "*", "allowedActions": ["*"]}])
    yield _req(stack, "POST", path, everywhere, data={**form, "tenantName": "nope"})


def calls_monitoring_status(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield _req(stack, "GET", "/api/1/monitoring/status", None)


def calls_version(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield _req(stack, "GET", "/api/1/monitoring/version", None)


def calls_openapi(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    yield _req(stack, "GET", "/api/1/openapi.json", world["account"].token)
    yield _req(stack, "GET", "/api/1/openapi.json", None)


LINK = FILE + "/url"
SIGNED = "/api/1/signed/{uploadId}"


def _link(stack: Stack, account: Account, name: str) -> str:
    resp = _req(stack, "GET", account.path(f"/attachment/{name}/url"), account.token)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["url"])


def calls_link(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
    account: Account = world["account"]
    yield from _variants(stack, world, "GET", "/attachment/doc/url")
    yield _req(stack, "GET", account.path("/attachment/missing/url"), account.token)
    bad = {"expiresIn": "never"}
    yield _req(stack, "GET", account.path("/attachment/doc/url"), account.token, params=bad)


def _signed_calls(method: str) -> Call:
    def calls(stack: Stack, world: dict[str, Any]) -> Iterator[requests.Response]:
        account: Account = world["account"]
        url = _link(stack, account, "doc")
        yield _req(stack, method, url, None)
        etag = _req(stack, "GET", url, None).headers["ETag"]
        yield _req(stack, method, url, None, headers={"If-None-Match": etag})
        yield _req(stack, method, url[:-2] + ("xx" if not url.endswith("xx") else "yy"), None)
        upload_attached(stack, account, "brief.png", png_bytes())
        gone = _link(stack, account, "brief")
        _req(stack, "DELETE", account.path("/attachment/brief"), account.token)
        yield _req(stack, method, gone, None)
        if method == "GET":
            for headers in ({"Range": "bytes=0-9"}, {"Range": "bytes=99999-"}):
                yield _req(stack, method, url, None, headers=headers)
            # A size the installation has no renditions of (ATTACHD_IMAGE_RENDITIONS changed
            # after the link was made).
            upload_id = url.split("?")[0].rsplit("/", 1)[-1]
            query = Signer(stack.settings.url_secret).query(
                Link(upload_id, int(time.time()) + 60, 99)
            )
            yield _req(stack, method, f"/api/1/signed/{upload_id}", None, params=query)

    return calls


CALLS: dict[tuple[str, str], Call] = {
    ("get", LINK): calls_link,
    ("get", SIGNED): _signed_calls("GET"),
    ("head", SIGNED): _signed_calls("HEAD"),
    ("post", PROFILE + "/uploadAttachment"): calls_upload,
    ("get", PROFILE + "/attachments"): calls_list,
    ("get", FILE): calls_download,
    ("head", FILE): calls_head,
    ("delete", FILE): calls_delete,
    ("get", FILE + "/details"): calls_details,
    ("get", FILE + "/status"): calls_status,
    ("get", PROFILE): calls_profile,
    ("post", "/api/1/profile/create"): calls_create,
    ("get", "/api/1/monitoring/status"): calls_monitoring_status,
    ("get", "/api/1/monitoring/version"): calls_version,
    ("get", "/api/1/openapi.json"): calls_openapi,
    **TUS_CALLS,
}


def test_every_documented_answer_is_produced_as_documented(
    stack: Stack, doc: dict[str, Any], world: dict[str, Any]
) -> None:
    recorder = Recorder(doc)
    assert set(CALLS) == {(m, path) for path, ops in doc["paths"].items() for m in ops}
    for (method, path), calls in CALLS.items():
        for resp in calls(stack, world):
            recorder.check(method, path, resp.status_code, resp.headers, resp.content)
    _unreachable_dependencies(stack, doc, world, recorder)
    documented = {
        (method, path, status)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        for status in op["responses"]
    }
    missing = documented - recorder.seen - set(ELSEWHERE)
    assert not missing, sorted(missing)


def _unreachable_dependencies(
    stack: Stack, doc: dict[str, Any], world: dict[str, Any], recorder: Recorder
) -> None:
    """Every operation that documents 503, with its dependencies unreachable."""
    account: Account = world["account"]
    settings = changed(
        stack.settings,
        database_url=f"postgresql+psycopg://u@{NOWHERE}/none",
        s3_endpoint=NOWHERE,
        redis_url=f"redis://{NOWHERE}/0",
    )
    body, content_type = multipart_body("a.png", png_bytes())
    with app_client(settings) as client:
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                if "503" not in op["responses"]:
                    continue
                concrete = path.replace("{profileId}", account.profile_id).replace("{name}", "doc")
                params = {"accessTokenId": account.token}
                if "{uploadId}" in path and "/resumable/" in path:
                    # A resumable upload: the token is checked, against a store that is down.
                    concrete = concrete.replace("{uploadId}", "0" * 32)
                elif "{uploadId}" in path:
                    # A link signed as it should be: what fails is what stands behind it.
                    link = Link(UNKNOWN, int(time.time()) + 60)
                    params = Signer(settings.url_secret).query(link)
                    concrete = path.replace("{uploadId}", UNKNOWN)
                extra: dict[str, Any] = {}
                if method == "post":
                    extra = {"body": body, "headers": {"Content-Type": content_type}}
                # tus routes check the protocol's version first; other routes ignore the header.
                extra.setdefault("headers", {})["Tus-Resumable"] = "1.0.0"
                result = client.simulate_request(method.upper(), concrete, params=params, **extra)
                assert result.status_code == 503, (method, path)
                recorder.check(method, path, result.status_code, result.headers, result.content)
