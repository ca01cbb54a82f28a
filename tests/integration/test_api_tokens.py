"""Access tokens with Crafter's model, on the real stack: where the token may be, what makes it
invalid (403 ACCESS_DENIED) or insufficient (403 ACTION_DENIED), the admin CLI, and the rule that
a token id never appears in a log."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
import requests

from storage.objects import ObjectStore
from storage.records import utcnow
from tests.conftest import png_bytes
from tests.integration.api_support import (
    API,
    Account,
    assert_error,
    get,
    leaves_nothing,
    new_account,
    post_parts,
    upload,
    wait_for,
)
from tests.integration.conftest import Stack


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def token(stack: Stack, permissions: list[dict[str, Any]], **options: Any) -> str:
    return stack.records.create_token("tests", permissions, **options)


# Every route that needs a token, called with `token_id` (None: no token at all).
ROUTES = [
    "upload",
    "list",
    "details",
    "download",
    "head",
    "status",
    "delete",
    "profile",
    "create",
]


def call(stack: Stack, route: str, account: Account, token_id: str | None) -> requests.Response:
    params = {} if token_id is None else {"accessTokenId": token_id}
    url = stack.base_url + account.path()
    if route == "upload":
        files = {"attachment": ("a.png", png_bytes())}
        return requests.post(url + "/uploadAttachment", params=params, files=files, timeout=30)
    if route == "create":
        form = {
            "tenantName": account.tenant,
            "username": "new",
            "email": "n@example.com",
            "enabled": "true",
        }
        return requests.post(stack.base_url + API + "/create", params=params, data=form, timeout=30)
    method, rest = {
        "list": ("GET", "/attachments"),
        "details": ("GET", "/attachment/a/details"),
        "download": ("GET", "/attachment/a"),
        "head": ("HEAD", "/attachment/a"),
        "status": ("GET", "/attachment/a/status"),
        "delete": ("DELETE", "/attachment/a"),
        "profile": ("GET", ""),
    }[route]
    return requests.request(method, url + rest, params=params, timeout=30)


def assert_denied(resp: requests.Response, code: str) -> None:
    if resp.request.method == "HEAD":  # no body to read the code from
        assert resp.status_code == 403
    else:
        assert_error(resp, 403, code)


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_needs_a_token(stack: Stack, account: Account, route: str) -> None:
    assert_denied(call(stack, route, account, None), "ACCESS_DENIED")
    assert_denied(call(stack, route, account, ""), "ACCESS_DENIED")


@pytest.mark.parametrize("route", ROUTES)
def test_an_unknown_token_is_access_denied(stack: Stack, account: Account, route: str) -> None:
    assert_denied(call(stack, route, account, account.token[:-1] + "x"), "ACCESS_DENIED")


@pytest.mark.parametrize("route", ROUTES)
def test_a_token_without_the_tenant_is_action_denied(
    stack: Stack, account: Account, route: str
) -> None:
    other = new_account(stack.records)
    assert_denied(call(stack, route, account, other.token), "ACTION_DENIED")


def test_the_monitoring_routes_need_no_token(stack: Stack) -> None:
    for path in ("/api/1/monitoring/status", "/api/1/monitoring/version"):
        assert requests.get(stack.base_url + path, timeout=30).status_code == 200


def test_the_api_document_and_its_reference_need_no_token(stack: Stack) -> None:
    # Public on purpose (docs/DECISIONS.md): they describe routes, never data.
    for path in ("/api/1/openapi.json", "/api/1/docs", "/"):
        assert requests.get(stack.base_url + path, timeout=30).status_code == 200, path


def test_an_expired_token_is_access_denied(stack: Stack, account: Account) -> None:
    permissions = [{"tenant": account.tenant, "allowedActions": ["MANAGE_PROFILES"]}]
    expired = token(stack, permissions, expires_on=utcnow() - timedelta(seconds=1))
    valid = token(stack, permissions, expires_on=utcnow() + timedelta(hours=1))
    message = assert_error(
        get(stack.base_url, account, "", params={"accessTokenId": expired}), 403, "ACCESS_DENIED"
    )
    assert "expired" in message
    assert get(stack.base_url, account, "", params={"accessTokenId": valid}).status_code == 200


def test_a_revoked_token_is_access_denied(stack: Stack, account: Account) -> None:
    assert get(stack.base_url, account, "").status_code == 200
    stack.records.revoke_token(account.token)
    assert_error(get(stack.base_url, account, ""), 403, "ACCESS_DENIED")


@pytest.mark.parametrize(
    ("entries", "allowed"),
    [
        ([{"tenant": "*", "allowedActions": ["MANAGE_PROFILES"]}], True),
        ([{"tenant": "TENANT", "allowedActions": ["*"]}], True),
        ([{"tenant": "*", "allowedActions": ["*"]}], True),
        ([{"tenant": "TENANT", "allowedActions": ["READ_TENANT", "MANAGE_TICKETS"]}], False),
        ([{"tenant": "TENANT", "allowedActions": []}], False),
        ([{"tenant": "other", "allowedActions": ["*"]}], False),
        # Crafter's rule: the first entry whose tenant matches decides, even if a later one
        # would allow.
        (
            [
                {"tenant": "*", "allowedActions": ["READ_TENANT"]},
                {"tenant": "TENANT", "allowedActions": ["MANAGE_PROFILES"]},
            ],
            False,
        ),
        (
            [
                {"tenant": "other", "allowedActions": ["READ_TENANT"]},
                {"tenant": "TENANT", "allowedActions": ["MANAGE_PROFILES"]},
            ],
            True,
        ),
    ],
    ids=[
        "wildcard-tenant",
        "wildcard-action",
        "both-wildcards",
        "missing-action",
        "no-action",
        "other-tenant",
        "first-match-denies",
        "later-match-allows",
    ],
)
def test_tenant_permissions_and_wildcards(
    stack: Stack, account: Account, entries: list[dict[str, Any]], allowed: bool
) -> None:
    permissions = [
        {**e, "tenant": account.tenant if e["tenant"] == "TENANT" else e["tenant"]} for e in entries
    ]
    token_id = token(stack, permissions)
    listing = get(stack.base_url, account, "/attachments", params={"accessTokenId": token_id})
    uploaded = upload(stack.base_url, account, "perm.png", png_bytes(), token=token_id)
    if allowed:
        assert (listing.status_code, uploaded.status_code) == (200, 200), uploaded.text
    else:
        assert_error(listing, 403, "ACTION_DENIED")
        assert_error(uploaded, 403, "ACTION_DENIED")


def test_the_master_flag_does_not_bypass_tenant_permissions(stack: Stack, account: Account) -> None:
    other_tenant = token(stack, [{"tenant": "elsewhere", "allowedActions": ["*"]}], master=True)
    message = assert_error(
        get(stack.base_url, account, "", params={"accessTokenId": other_tenant}),
        403,
        "ACTION_DENIED",
    )
    assert account.tenant in message
    with_tenant = token(
        stack, [{"tenant": account.tenant, "allowedActions": ["MANAGE_PROFILES"]}], master=True
    )
    assert get(stack.base_url, account, "", params={"accessTokenId": with_tenant}).ok


def test_an_unknown_profile_is_404_even_for_a_token_without_the_action(
    stack: Stack, account: Account
) -> None:
    other = new_account(stack.records)
    missing = Account(account.tenant, other.token, "0123456789abcdef01234567")
    assert_error(get(stack.base_url, missing, ""), 404, "NO_SUCH_PROFILE")


# --- where the token is -------------------------------------------------------------------------


def test_token_as_a_form_field_before_the_file(stack: Stack, account: Account) -> None:
    parts = [("accessTokenId", (None, account.token)), ("attachment", ("f.png", png_bytes()))]
    resp = post_parts(stack.base_url, account, parts)
    assert resp.status_code == 200, resp.text
    assert resp.json()["fileName"] == "f"


def test_token_as_a_form_field_after_the_file_is_refused(
    stack: Stack, account: Account, objects: ObjectStore
) -> None:
    # A stranger must not make us store a file before we know who sends it (issue 17): the
    # token comes first, as Crafter's Java client sends it (test_api_crafter_client.py).
    parts = [("attachment", ("g.png", png_bytes())), ("accessTokenId", (None, account.token))]
    with leaves_nothing(stack, objects, account, "g.png"):
        resp = post_parts(stack.base_url, account, parts)
    assert "before the 'attachment' part" in assert_error(resp, 403, "ACCESS_DENIED")


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("problem", ["unknown", "other-tenant", "empty"])
def test_a_bad_form_field_token_leaves_nothing(
    stack: Stack, account: Account, objects: ObjectStore, where: str, problem: str
) -> None:
    bad = {"unknown": "not-a-token", "other-tenant": new_account(stack.records).token, "empty": ""}[
        problem
    ]
    token_part = ("accessTokenId", (None, bad))
    file_part = ("attachment", ("late.png", png_bytes()))
    parts = [token_part, file_part] if where == "before" else [file_part, token_part]
    with leaves_nothing(stack, objects, account, "late.png"):
        resp = post_parts(stack.base_url, account, parts)
    if where == "after":
        # Refused at the file part, before the token is even read.
        message = assert_error(resp, 403, "ACCESS_DENIED")
        assert "before the 'attachment' part" in message
    else:
        assert_error(resp, 403, "ACTION_DENIED" if problem == "other-tenant" else "ACCESS_DENIED")


def test_the_query_token_comes_before_a_form_field_token(stack: Stack, account: Account) -> None:
    good, bad = ("accessTokenId", (None, account.token)), ("accessTokenId", (None, "bad"))
    file_part = ("attachment", ("q.png", png_bytes()))
    ok = post_parts(stack.base_url, account, [bad, file_part], {"accessTokenId": account.token})
    assert ok.status_code == 200, ok.text
    denied = post_parts(stack.base_url, account, [good, file_part], {"accessTokenId": "bad"})
    assert_error(denied, 403, "ACCESS_DENIED")


def test_a_token_in_a_create_form_body(stack: Stack, account: Account) -> None:
    resp = requests.post(
        stack.base_url + API + "/create",
        data={
            "accessTokenId": account.token,
            "tenantName": account.tenant,
            "username": "body",
            "email": "body@example.com",
            "enabled": "false",
        },
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["enabled"] is False


# --- logs and the CLI ---------------------------------------------------------------------------


def test_no_token_id_reaches_the_access_log(stack: Stack, account: Account) -> None:
    marker = "/attachment/log-marker-" + account.profile_id
    get(stack.base_url, account, marker)
    post_parts(
        stack.base_url,
        account,
        [("accessTokenId", (None, account.token)), ("attachment", ("l.png", png_bytes()))],
    )
    log = stack.log_dir / "api.log"
    wait_for(lambda: marker in log.read_text(), what="the request in the access log")
    text = log.read_text()
    assert account.token not in text
    assert "accessTokenId" not in text


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attachd.cli", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_admin_cli_creates_lists_and_revokes_tokens(stack: Stack) -> None:
    tenant = "cli-" + os.urandom(4).hex()
    assert cli(stack, "tenant", "create", tenant).returncode == 0
    profile = stack.records.create_profile(tenant, "cli", "cli@example.com", enabled=True)
    who = Account(tenant, "", profile.id)

    created = cli(
        stack,
        "token",
        "create",
        "--application",
        "portal",
        "--tenant",
        tenant,
        "--action",
        "MANAGE_PROFILES",
    )
    assert created.returncode == 0, created.stderr
    token_id = created.stdout.strip()
    assert created.stdout == token_id + "\n"  # the id alone: scripts capture it
    assert get(stack.base_url, who, "", params={"accessTokenId": token_id}).status_code == 200

    listed = cli(stack, "token", "list")
    assert token_id[:8] in listed.stdout and "portal" in listed.stdout
    assert token_id not in listed.stdout  # only its prefix: ids are stored as sha256

    assert cli(stack, "token", "revoke", token_id).returncode == 0
    assert_error(
        get(stack.base_url, who, "", params={"accessTokenId": token_id}), 403, "ACCESS_DENIED"
    )


def test_admin_cli_master_and_expiry(stack: Stack, account: Account) -> None:
    expired = cli(
        stack,
        "token",
        "create",
        "--application",
        "old",
        "--tenant",
        account.tenant,
        "--action",
        "MANAGE_PROFILES",
        "--expires",
        "2020-01-01T00:00:00",
    )
    assert expired.returncode == 0, expired.stderr
    message = assert_error(
        get(stack.base_url, account, "", params={"accessTokenId": expired.stdout.strip()}),
        403,
        "ACCESS_DENIED",
    )
    assert "expired" in message
    master = cli(
        stack,
        "token",
        "create",
        "--application",
        "admin",
        "--tenant",
        "other",
        "--action",
        "*",
        "--master",
        "--expires",
        "2999-01-01T00:00:00+00:00",
    )
    assert master.returncode == 0, master.stderr
    found = stack.records.find_token(master.stdout.strip())
    assert found is not None and found.master and found.expires_on is not None
    assert_error(
        get(stack.base_url, account, "", params={"accessTokenId": master.stdout.strip()}),
        403,
        "ACTION_DENIED",
    )
