"""What Crafter's own Java client (ProfileServiceRestClient) sends, unchanged: a base URL with a
context path, `.json` appended to every URL, the upload's fields before its file. On the main stack
(no prefix) and on a second gunicorn configured with ATTACHD_URL_PREFIX=/crafter-profile."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.conftest import png_bytes
from tests.integration.api_support import (
    API,
    Account,
    api_server,
    assert_error,
    md5,
    new_account,
    wait_until_final,
)
from tests.integration.conftest import Stack

PREFIX = "/crafter-profile"


@pytest.fixture(scope="module")
def prefixed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with api_server(
        stack, tmp_path_factory.mktemp("prefixed-api"), ATTACHD_URL_PREFIX=PREFIX
    ) as base:
        yield base


@pytest.fixture(params=["root", "prefix"])
def base(request: pytest.FixtureRequest, stack: Stack) -> str:
    """The client's base URL, as configured in Crafter's client (it includes the context path)."""
    if request.param == "root":
        return stack.base_url
    return str(request.getfixturevalue("prefixed")) + PREFIX


def test_the_java_clients_calls_end_to_end(stack: Stack, base: str) -> None:
    account = new_account(stack.records)
    token = {"accessTokenId": account.token}

    created = requests.post(
        base + API + "/create.json",
        params=token,
        data={
            "tenantName": account.tenant,
            "username": "crafter",
            "email": "c@example.com",
            "enabled": "true",
        },
        timeout=30,
    )
    assert created.status_code == 200, created.text
    profile_id = created.json()["id"]
    profile_url = f"{base}{API}/{profile_id}"
    assert requests.get(profile_url + ".json", params=token, timeout=30).json() == created.json()

    data = png_bytes(20, 20)
    uploaded = requests.post(
        profile_url + "/uploadAttachment.json",
        files=[
            ("accessTokenId", (None, account.token)),
            ("filename", (None, "picture1.png")),
            ("attachment", (f"{profile_id}-picture1.png123attachment", data)),
        ],
        timeout=30,
    )
    assert uploaded.status_code == 200, uploaded.text
    attachment = uploaded.json()
    owner = Account(account.tenant, account.token, profile_id)
    assert wait_until_final(stack, owner, "picture1").state == "attached"

    listed = requests.get(profile_url + "/attachments/.json", params=token, timeout=30)
    assert listed.json() == [attachment]
    details = requests.get(
        profile_url + "/attachment/picture1/details.json", params=token, timeout=30
    )
    assert details.json() == attachment
    download = requests.get(profile_url + "/attachment/picture1.json", params=token, timeout=30)
    assert download.status_code == 200
    assert md5(download.content) == attachment["md5"]
    status = requests.get(
        profile_url + "/attachment/picture1/status.json", params=token, timeout=30
    )
    assert status.json()["state"] == "attached"


def test_the_prefix_is_optional_and_errors_keep_crafters_shape(stack: Stack, prefixed: str) -> None:
    account = new_account(stack.records)
    token = {"accessTokenId": account.token}
    for url in (prefixed + PREFIX + API, prefixed + API):
        resp = requests.get(f"{url}/{account.profile_id}", params=token, timeout=30)
        assert resp.status_code == 200, url
    for path in ("/api/1/monitoring/version", PREFIX + "/api/1/monitoring/version"):
        assert requests.get(prefixed + path, timeout=30).status_code == 200
    assert_error(
        requests.get(
            prefixed + PREFIX + API + "/0123456789abcdef01234567", params=token, timeout=30
        ),
        404,
        "NO_SUCH_PROFILE",
    )
    assert_error(requests.get(prefixed + PREFIX + "/nowhere", timeout=30), 404)
    # Another prefix is not this one.
    assert_error(
        requests.get(
            prefixed + "/crafter-profiles" + API + f"/{account.profile_id}",
            params=token,
            timeout=30,
        ),
        404,
    )
