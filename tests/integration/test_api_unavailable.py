"""Dependencies that cannot be reached: the real app, built in-process by the same factory, with
a MinIO, database or broker endpoint where nothing listens. What a request needs and cannot reach
is 503 with Retry-After; what it does not need does not fail it; a dead broker never fails an
upload."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from falcon import testing

from api.app import build_services
from storage.objects import ObjectStore, staging_key
from tests.conftest import png_bytes
from tests.integration.api_support import (
    API,
    Account,
    app_client,
    changed,
    latest_upload,
    multipart_body,
    new_account,
    upload_attached,
)
from tests.integration.conftest import Stack

NOWHERE = "127.0.0.1:1"


def multipart(name: str, data: bytes) -> dict[str, Any]:
    body, content_type = multipart_body(name, data)
    return {"body": body, "headers": {"Content-Type": content_type}}


def assert_unavailable(result: testing.Result, service: str) -> None:
    assert result.status_code == 503, result.text
    assert result.headers["Retry-After"].isdigit()
    if result.text:  # HEAD has no body
        assert result.json["errorCode"] == "OTHER"
        assert service in result.json["message"]
        assert set(result.json) == {"errorCode", "message"}


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


@pytest.fixture
def no_minio(stack: Stack) -> Iterator[testing.TestClient]:
    with app_client(changed(stack.settings, s3_endpoint=NOWHERE)) as client:
        yield client


def test_minio_down_an_upload_is_503_and_leaves_no_record(
    stack: Stack, account: Account, no_minio: testing.TestClient
) -> None:
    result = no_minio.simulate_post(
        account.path("/uploadAttachment"),
        params={"accessTokenId": account.token},
        **multipart("a.png", png_bytes()),
    )
    assert_unavailable(result, "minio")
    assert stack.records.find_attachment(account.profile_id, "a") is None


def test_minio_down_download_and_delete_are_503_and_metadata_still_answers(
    stack: Stack, account: Account, no_minio: testing.TestClient
) -> None:
    attached = upload_attached(stack, account, "kept.png", png_bytes())
    token = {"accessTokenId": account.token}
    assert_unavailable(
        no_minio.simulate_get(account.path("/attachment/kept"), params=token), "minio"
    )
    assert_unavailable(
        no_minio.simulate_head(account.path("/attachment/kept"), params=token), "minio"
    )
    assert_unavailable(
        no_minio.simulate_delete(account.path("/attachment/kept"), params=token), "minio"
    )
    assert stack.records.find_attachment(account.profile_id, "kept") is not None
    # What needs only the database does not fail for MinIO.
    assert no_minio.simulate_get(account.path("/attachments"), params=token).json == [attached]
    details = no_minio.simulate_get(account.path("/attachment/kept/details"), params=token)
    assert details.json == attached
    status = no_minio.simulate_get(account.path("/attachment/kept/status"), params=token)
    assert status.json["state"] == "attached"


def test_minio_down_304_needs_no_object(
    stack: Stack, account: Account, no_minio: testing.TestClient
) -> None:
    upload_attached(stack, account, "cached.png", png_bytes())
    up = latest_upload(stack, account, "cached")
    result = no_minio.simulate_get(
        account.path("/attachment/cached"),
        params={"accessTokenId": account.token},
        headers={"If-None-Match": f'"{up.sha256}"'},
    )
    assert result.status_code == 304


ROUTES = [
    ("POST", "/uploadAttachment"),
    ("GET", "/attachments"),
    ("GET", "/attachment/a/details"),
    ("GET", "/attachment/a"),
    ("GET", "/attachment/a/status"),
    ("DELETE", "/attachment/a"),
    ("GET", ""),
]


def test_database_down_every_route_is_503(stack: Stack, account: Account) -> None:
    settings = changed(stack.settings, database_url=f"postgresql+psycopg://u@{NOWHERE}/none")
    with app_client(settings) as client:
        token = {"accessTokenId": account.token}
        for method, rest in ROUTES:
            extra = multipart("a.png", png_bytes()) if method == "POST" else {}
            result = client.simulate_request(method, account.path(rest), params=token, **extra)
            assert_unavailable(result, "database")
        create = client.simulate_post(
            API + "/create",
            params={
                **token,
                "tenantName": account.tenant,
                "username": "x",
                "email": "x@example.com",
                "enabled": "true",
            },
        )
        assert_unavailable(create, "database")
        health = client.simulate_get("/api/1/monitoring/status")
        assert health.status_code == 503
        assert health.json["dependencies"]["database"]["status"] == "down"
        # Need nothing: still answer.
        assert client.simulate_get("/api/1/monitoring/version").status_code == 200
        assert client.simulate_get("/api/1/openapi.json").status_code == 200


def test_broker_down_an_upload_is_still_accepted_and_recoverable(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    with app_client(changed(stack.settings, redis_url=f"redis://{NOWHERE}/0")) as client:
        started = time.monotonic()
        result = client.simulate_post(
            account.path("/uploadAttachment"),
            params={"accessTokenId": account.token},
            **multipart("queued.png", png_bytes()),
        )
        seconds = time.monotonic() - started
    assert result.status_code == 200, result.text
    assert seconds < 3  # the dead broker is noticed fast, not after minutes of retries
    attachment = stack.records.find_attachment(account.profile_id, "queued")
    assert attachment is not None
    up = stack.records.latest_upload(attachment.id)
    assert up is not None and up.state == "staged"
    assert objects.exists(stack.settings.bucket_staging, staging_key(up.id))
    # What the reconciler does later: send it again. It goes through.
    build_services(stack.settings).enqueue(up.id, account.tenant)
    assert stack.wait_for_state(up.id, ("attached", "infected", "rejected", "failed")) == "attached"
