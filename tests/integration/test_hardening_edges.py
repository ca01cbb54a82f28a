"""Issue 23 on the real stack, the API's own edges: numbers in query strings that are not
numbers."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import png_bytes
from tests.integration.api_support import (
    Account,
    assert_error,
    get,
    new_account,
    upload_attached,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

# '²' and '٣' pass str.isdigit; 4,400 digits pass it too and exceed int()'s limit: all three
# were 500s. The rest are plain malformed numbers.
MALFORMED = ("²", "٣", "9" * 4400, "1" * 13, "-1", "1e3", " 7", "0x10")


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


def test_no_route_answers_500_to_a_malformed_number(stack: Stack, account: Account) -> None:
    upload_attached(stack, account, "pic.png", png_bytes(20, 20))
    good = get(stack.base_url, account, "/attachment/pic/url")
    assert good.status_code == 200, good.text
    parts = urlsplit(good.json()["url"])
    signed_path = parts.path
    real = dict(p.split("=", 1) for p in parts.query.split("&"))
    for bad in MALFORMED:
        for rest, name in (
            ("/attachment/pic/url", "expiresIn"),
            ("/attachment/pic/url", "size"),
            ("/attachment/pic", "size"),
        ):
            message = assert_error(get(stack.base_url, account, rest, params={name: bad}), 400)
            assert name in message and len(message) < 200, (rest, name, message)
        # A signed link is the server's own: an altered number is an altered link (403).
        for params in ({"expires": bad, "sig": "a"}, {**real, "size": bad}):
            resp = requests.get(stack.url(signed_path), params=params, timeout=30)
            assert_error(resp, 403, "ACCESS_DENIED")
    # The well-formed ones still work.
    assert get(stack.base_url, account, "/attachment/pic", params={"size": "128"}).ok
