"""Per-tenant limits on the real stack, set with the CLI: a tenant's 1 MiB limit refuses a 2 MiB
upload with 413 before the rest of the body is sent, and nothing is staged."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from storage.objects import ObjectStore
from tests.conftest import png_bytes
from tests.integration.api_support import (
    Account,
    assert_error,
    file_part_head,
    leaves_nothing,
    new_account,
    padded_png,
    send_partial,
    upload,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attachd.cli", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_tenant_limit_refuses_a_larger_upload_before_it_is_stored(
    stack: Stack, objects: ObjectStore
) -> None:
    account: Account = new_account(stack.records)
    done = cli(stack, "tenant", "policy", account.tenant, "--max-size", "1MiB")
    assert done.returncode == 0, done.stderr
    shown = cli(stack, "tenant", "show", account.tenant)
    assert "max-size: 1048576 (1 MiB; tenant policy)" in shown.stdout, shown.stdout
    assert "(installation)" in shown.stdout  # the types are the installation's

    with leaves_nothing(stack, objects, account, "big.png"):
        refused = upload(stack.base_url, account, "big.png", padded_png(2 * MiB))
    assert "1048576 bytes" in assert_error(refused, 413)

    # A 4 MiB body of which only 2.5 MiB are ever sent: the answer comes without the rest (the
    # API reads a body 1 MiB at a time once its first MiB is in, api/bodyguard.py).
    boundary = uuid.uuid4().hex
    body = file_part_head(boundary, "huge.png") + padded_png(4 * MiB)
    closing = f"\r\n--{boundary}--\r\n".encode()
    with leaves_nothing(stack, objects, account, "huge.png"):
        answer = send_partial(
            stack.base_url,
            account.path(f"/uploadAttachment?accessTokenId={account.token}"),
            {
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(body) + len(closing)),
            },
            body[: 2 * MiB + MiB // 2],
        )
    assert answer is not None and answer.status == 413, answer
    assert answer.json()["errorCode"] == "OTHER"
    # Under the limit the same tenant uploads as before.
    assert upload(stack.base_url, account, "small.png", padded_png(MiB // 2)).status_code == 200


def test_a_tenant_type_list_and_clearing_it(stack: Stack) -> None:
    account = new_account(stack.records)
    done = cli(stack, "tenant", "policy", account.tenant, "--types", "image/gif,image/jpeg")
    assert done.returncode == 0, done.stderr
    assert_error(upload(stack.base_url, account, "pic.png", png_bytes()), 415)
    refused = cli(stack, "tenant", "policy", account.tenant, "--types", "text/html")
    assert refused.returncode != 0 and "text/html" in refused.stderr
    assert cli(stack, "tenant", "policy", account.tenant, "--clear").returncode == 0
    shown = cli(stack, "tenant", "show", account.tenant).stdout
    assert "tenant policy" not in shown
    # The API caches a tenant's policy for up to 5 seconds (api/policy.py).
    for _ in range(70):
        resp = upload(stack.base_url, account, "pic.png", png_bytes())
        if resp.status_code == 200:
            break
        assert resp.status_code == 415
        subprocess.run(["sleep", "0.1"], check=True)
    assert resp.status_code == 200, resp.text
    assert cli(stack, "tenant", "show", "no-such-tenant").returncode == 1
