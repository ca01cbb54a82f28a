"""Crafter's answer for an unknown attachment, on the real stack: on the `.json` routes its
Java client uses, an empty attachment and an empty download (200); the plain routes keep 404,
and unknown profiles, tokens and permissions keep their codes everywhere."""

from __future__ import annotations

import pytest
import requests

from tests.integration.api_support import API, assert_error, new_account
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

EMPTY = {
    "md5": None,
    "contentType": None,
    "fileSize": None,
    "fileName": None,
    "fileSizeBytes": 0,
    "id": None,
}
UNKNOWN = "0123456789abcdef01234567"


def test_json_routes_answer_an_unknown_attachment_as_crafter(stack: Stack) -> None:
    account = new_account(stack.records)
    token = {"accessTokenId": account.token}

    def get(path: str, **params: str) -> requests.Response:
        return requests.get(stack.url(path), params=params, timeout=30)

    details = get(account.path("/attachment/avatar/details.json"), **token)
    assert details.status_code == 200 and details.json() == EMPTY
    download = get(account.path("/attachment/avatar.json"), **token)
    assert download.status_code == 200 and download.content == b""
    assert_error(get(account.path("/attachment/avatar/details"), **token), 404)
    assert_error(get(account.path("/attachment/avatar"), **token), 404)

    assert_error(
        get(f"{API}/{UNKNOWN}/attachment/avatar/details.json", **token), 404, "NO_SUCH_PROFILE"
    )
    assert_error(get(account.path("/attachment/avatar/details.json")), 403, "ACCESS_DENIED")
    stranger = new_account(stack.records).token
    denied = get(account.path("/attachment/avatar.json"), accessTokenId=stranger)
    assert_error(denied, 403, "ACTION_DENIED")
