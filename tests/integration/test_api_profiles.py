"""The minimal profile API on the real stack: create and get, with Crafter's shapes and errors."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
import requests

from tests.integration.api_support import API, Account, assert_error, get, new_account
from tests.integration.conftest import Stack

PROFILE_FIELDS = {
    "id",
    "username",
    "email",
    "verified",
    "enabled",
    "createdOn",
    "lastModified",
    "tenant",
    "roles",
    "attributes",
}


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def create(stack: Stack, token: str, **form: Any) -> requests.Response:
    """As Crafter's Java client sends it: the token in the query, the rest as a form body."""
    return requests.post(
        stack.base_url + API + "/create",
        params={"accessTokenId": token},
        data=form,
        timeout=30,
    )


def valid(account: Account, **changes: Any) -> dict[str, Any]:
    form = {
        "tenantName": account.tenant,
        "username": "jane",
        "email": "jane@example.com",
        "enabled": "true",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_create_answers_crafters_profile(stack: Stack, account: Account) -> None:
    before = int(time.time() * 1000)
    resp = create(
        stack,
        account.token,
        **valid(
            account,
            password="s3cret",
            role=["ADMIN", "EDITOR"],
            attributes=json.dumps({"theme": "dark", "age": 42}),
        ),
    )
    assert resp.status_code == 200, resp.text
    profile = resp.json()
    assert set(profile) == PROFILE_FIELDS  # no password, nothing Crafter's client does not know
    assert re.fullmatch(r"[0-9a-f]{24}", profile["id"])
    assert (profile["username"], profile["email"], profile["tenant"]) == (
        "jane",
        "jane@example.com",
        account.tenant,
    )
    assert (profile["enabled"], profile["verified"]) == (True, False)
    assert profile["roles"] == ["ADMIN", "EDITOR"]
    assert profile["attributes"] == {"theme": "dark", "age": 42}
    assert before - 1000 <= profile["createdOn"] <= int(time.time() * 1000) + 1000
    assert profile["lastModified"] == profile["createdOn"]
    assert "s3cret" not in resp.text

    fetched = get(stack.base_url, Account(account.tenant, account.token, profile["id"]), "")
    assert (fetched.status_code, fetched.json()) == (200, profile)


def test_create_reads_parameters_from_the_query_too(stack: Stack, account: Account) -> None:
    resp = requests.post(
        stack.base_url + API + "/create",
        params={"accessTokenId": account.token, **valid(account, enabled="false")},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["enabled"] is False
    assert resp.json()["roles"] == [] and resp.json()["attributes"] == {}


@pytest.mark.parametrize("missing", ["tenantName", "username", "email", "enabled"])
def test_a_missing_required_parameter_is_400(stack: Stack, account: Account, missing: str) -> None:
    message = assert_error(create(stack, account.token, **valid(account, **{missing: None})), 400)
    assert missing in message


@pytest.mark.parametrize("email", ["no-at-sign", "two@@example.com", "a b@example.com", "x@y"])
def test_an_invalid_email_is_400_invalid_email_address(
    stack: Stack, account: Account, email: str
) -> None:
    assert_error(
        create(stack, account.token, **valid(account, email=email)), 400, "INVALID_EMAIL_ADDRESS"
    )


@pytest.mark.parametrize("attributes", ["{not json", "[1, 2]", '"text"'])
def test_attributes_that_are_not_a_json_object_are_400(
    stack: Stack, account: Account, attributes: str
) -> None:
    resp = create(stack, account.token, **valid(account, attributes=attributes))
    assert_error(resp, 400, "PARAM_DESERIALIZATION_ERROR")


def test_enabled_must_be_a_boolean(stack: Stack, account: Account) -> None:
    assert_error(create(stack, account.token, **valid(account, enabled="maybe")), 400)


def test_a_username_is_unique_within_its_tenant(stack: Stack, account: Account) -> None:
    assert create(stack, account.token, **valid(account)).status_code == 200
    assert_error(
        create(stack, account.token, **valid(account, email="other@example.com")),
        409,
        "PROFILE_EXISTS",
    )
    elsewhere = new_account(stack.records)
    assert create(stack, elsewhere.token, **valid(elsewhere)).status_code == 200


def test_an_unknown_tenant(stack: Stack, account: Account) -> None:
    everywhere = stack.records.create_token(
        "tests", [{"tenant": "*", "allowedActions": ["MANAGE_PROFILES"]}]
    )
    resp = create(stack, everywhere, **valid(account, tenantName="no-such-tenant"))
    assert "no-such-tenant" in assert_error(resp, 404, "NO_SUCH_TENANT")
    # A token without the tenant learns nothing about it: the permission is checked first.
    resp = create(stack, account.token, **valid(account, tenantName="no-such-tenant"))
    assert_error(resp, 403, "ACTION_DENIED")


def test_get_an_unknown_or_malformed_profile(stack: Stack, account: Account) -> None:
    unknown = Account(account.tenant, account.token, "0123456789abcdef01234567")
    message = assert_error(get(stack.base_url, unknown, ""), 404, "NO_SUCH_PROFILE")
    assert message == 'No profile with ID "0123456789abcdef01234567" found'
    malformed = Account(account.tenant, account.token, "not-an-id")
    assert_error(get(stack.base_url, malformed, ""), 400)
