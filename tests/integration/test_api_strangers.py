"""What a client without a token can make attachd do, on the real stack: nothing. Bodies are
refused from their size before they are read, an upload must show its token before its file, and
the answers tell a stranger nothing about the inside (hosts, buckets, keys, the OS).

The raw-socket tests send the headers and the first 64 KiB of a body of 4 MiB and then wait: the
answer that comes back was given before the rest of the body was sent."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from storage.objects import ObjectStore
from tests.conftest import png_bytes
from tests.integration.api_support import (
    Account,
    api_server,
    assert_error,
    file_part_head,
    get,
    leaves_nothing,
    new_account,
    post_parts,
    send_partial,
    upload_attached,
)
from tests.integration.conftest import Stack

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
BIG = str(4 * 1024 * 1024)  # declared, never sent: within the upload cap, so only order decides
# What is sent of the file before the client waits: the form parser reads the body 64 KiB at a
# time, and a server read returns only once it has what it asked for.
FIRST = b"\0" * (64 * 1024)


@pytest.fixture(scope="module")
def patient(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API that waits 20 s for the next bytes of a body: an answer in under 5 s was not a
    timeout."""
    with api_server(
        stack, tmp_path_factory.mktemp("patient-api"), ATTACHD_UPLOAD_IDLE_TIMEOUT="20"
    ) as base:
        yield base


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def _token_part(boundary: str, token: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="accessTokenId"\r\n\r\n{token}\r\n'
    ).encode()


# --- nothing before the token -------------------------------------------------------------------


def test_a_file_before_any_token_is_403_before_the_body_is_sent(
    stack: Stack, patient: str, account: Account, objects: ObjectStore
) -> None:
    boundary = uuid.uuid4().hex
    with leaves_nothing(stack, objects, account, "first.png"):
        answer = send_partial(
            patient,
            account.path("/uploadAttachment"),
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": BIG},
            file_part_head(boundary, "first.png") + png_bytes() + FIRST,
        )
    assert answer is not None and answer.status == 403, answer
    assert answer.json()["errorCode"] == "ACCESS_DENIED"
    assert "before the 'attachment' part" in answer.json()["message"]
    assert answer.seconds < 5


def test_a_bad_token_field_before_the_file_is_403_before_the_body_is_sent(
    stack: Stack, patient: str, account: Account, objects: ObjectStore
) -> None:
    boundary = uuid.uuid4().hex
    body = _token_part(boundary, "not-a-token") + file_part_head(boundary, "bad.png") + FIRST
    with leaves_nothing(stack, objects, account, "bad.png"):
        answer = send_partial(
            patient,
            account.path("/uploadAttachment"),
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": BIG},
            body,
        )
    assert answer is not None and answer.status == 403, answer
    assert answer.json()["errorCode"] == "ACCESS_DENIED"
    assert answer.seconds < 5


def test_the_token_field_first_as_crafters_client_sends_it_still_works(
    stack: Stack, account: Account
) -> None:
    parts = [("accessTokenId", (None, account.token)), ("attachment", ("ok.png", png_bytes()))]
    resp = post_parts(stack.base_url, account, parts)
    assert resp.status_code == 200, resp.text


def test_a_token_field_after_the_file_is_refused_and_nothing_is_stored(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    parts = [("attachment", ("late.png", png_bytes())), ("accessTokenId", (None, account.token))]
    with leaves_nothing(stack, objects, account, "late.png"):
        resp = post_parts(stack.base_url, account, parts)
    assert "before the 'attachment' part" in assert_error(resp, 403, "ACCESS_DENIED")


def test_a_create_form_declared_too_large_is_413_before_it_is_read(patient: str) -> None:
    answer = send_partial(
        patient,
        "/api/1/profile/create",
        {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": BIG},
        b"tenantName=t&username=u",
    )
    assert answer is not None and answer.status == 413, answer
    assert answer.seconds < 5


def test_a_create_form_that_stalls_is_cut_off_by_the_guard(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with api_server(
        stack,
        tmp_path_factory.mktemp("impatient-api"),
        ATTACHD_UPLOAD_IDLE_TIMEOUT="1",
        ATTACHD_UPLOAD_GRACE_SECONDS="1",
    ) as base:
        answer = send_partial(
            base,
            "/api/1/profile/create",
            {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": "1000"},
            b"tenantName=t&username=u",
            timeout=15,
        )
    # Before, req.get_media() waited as long as the client kept the connection open.
    assert answer is not None and answer.status == 408, answer
    assert answer.seconds < 5


# --- nothing about the inside -------------------------------------------------------------------


def test_a_missing_object_is_404_without_bucket_or_key(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    upload_attached(stack, account, "gone.png", png_bytes())
    attachment = stack.records.find_attachment(account.profile_id, "gone")
    assert attachment is not None and attachment.current_upload_id
    served = stack.records.get_upload(attachment.current_upload_id)
    assert served is not None and served.object_key
    objects.delete(stack.settings.bucket_attachments, served.object_key)
    try:
        resp = get(stack.base_url, account, "/attachment/gone")
        assert_error(resp, 404)
        assert stack.settings.bucket_attachments not in resp.text
        assert served.object_key not in resp.text
    finally:
        # The record of the object this test removed behind the store's back goes too, or the
        # session's "nothing left behind" checks would count it.
        for key in served.served_keys():
            objects.delete(stack.settings.bucket_attachments, key)
        stack.records.delete_attachment(attachment.id)


def test_every_answer_says_no_referrer(stack: Stack, account: Account) -> None:
    for resp in (
        get(stack.base_url, account, "/attachments"),
        requests.get(stack.url("/api/1/monitoring/version"), timeout=10),
        requests.get(stack.url("/nowhere"), timeout=10),
    ):
        assert resp.headers["Referrer-Policy"] == "no-referrer", resp.url


@pytest.mark.parametrize("name", ["a/b", "a b", "", "x" * 65, "t\u00e9", "..\\x"])
def test_a_tenant_name_outside_the_alphabet_is_refused(stack: Stack, name: str) -> None:
    done = subprocess.run(
        [str(BIN / "attachd"), "tenant", "create", name],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "tenant name" in done.stderr
    assert name not in stack.records.list_tenants()


def test_a_tenant_name_in_the_alphabet_is_accepted(stack: Stack) -> None:
    name = f"Ok.name_{uuid.uuid4().hex[:8]}-1"
    done = subprocess.run(
        [str(BIN / "attachd"), "tenant", "create", name],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert stack.records.tenant_exists(name)


# --- no development secrets in production -------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"],
        [str(BIN / "celery"), "-A", "workers.app", "worker", "--concurrency=1"],
        [str(BIN / "celery"), "-A", "workers.app", "beat"],
    ],
    ids=["api", "worker", "beat"],
)
def test_the_processes_refuse_to_start_on_development_secrets(stack: Stack, cmd: list[str]) -> None:
    # The session's stack runs on the development MinIO key with ATTACHD_INSECURE_DEFAULTS=1;
    # without the flag each process stops at start, naming the variable.
    env = {**stack.env, "ATTACHD_INSECURE_DEFAULTS": "0", "ATTACHD_API_PORT": "0"}
    done = subprocess.run(
        cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "ATTACHD_S3_SECRET_KEY is the built-in development key" in done.stdout + done.stderr
