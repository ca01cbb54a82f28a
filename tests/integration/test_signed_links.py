"""Signed download links on the real stack: a real headless Chromium shows one in an `<img>` on a
page of another origin, without a token; altered, expired, deleted and replaced links are
refused with Crafter-shaped errors."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from api.signing import Link, Signer
from core.errors import AccessDenied
from tests.conftest import _free_port, png_bytes
from tests.integration.api_support import (
    Account,
    assert_error,
    new_account,
    upload,
    upload_attached,
    wait_until_final,
)
from tests.integration.conftest import Stack
from tests.integration.test_ops_dashboard import browse

pytestmark = pytest.mark.integration


def link(stack: Stack, account: Account, name: str, **params: Any) -> dict[str, Any]:
    resp = requests.get(
        stack.url(account.path(f"/attachment/{name}/url")),
        params={"accessTokenId": account.token, **params},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture
def account(stack: Stack) -> Account:
    return new_account(stack.records)


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static web server on another port (another origin), serving tmp_path."""
    root = tmp_path / "site"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # `localhost` against the API's 127.0.0.1, and another port: another origin twice over.
        yield f"http://localhost:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


_PAGE = """<!doctype html><html><body>
<img id="good" src="{good}"><img id="bad" src="{bad}">
<p id="result">waiting</p>
<script>
const seen = {{}};
function report(id, text) {{
  seen[id] = text;
  if (Object.keys(seen).length == 2)
    document.getElementById("result").textContent = `good=${{seen.good}} bad=${{seen.bad}}`;
}}
for (const id of ["good", "bad"]) {{
  const img = document.getElementById(id);
  const size = () => `${{img.naturalWidth}}x${{img.naturalHeight}}`;
  const done = () => report(id, img.naturalWidth ? size() : "error");
  if (img.complete) done(); else {{ img.onload = done; img.onerror = done; }}
}}
</script></body></html>"""


def test_a_browser_shows_a_signed_link_from_another_origin_without_a_token(
    stack: Stack, account: Account, other_origin: tuple[str, Path], tmp_path: Path
) -> None:
    upload_attached(stack, account, "avatar.png", png_bytes(37, 23))
    url = stack.url(link(stack, account, "avatar")["url"])
    assert "accessTokenId" not in url
    # The same link with one character of its signature changed: the page shows it fails, so
    # a page that showed nothing at all could not pass.
    bad = url[:-1] + ("A" if url[-1] != "A" else "B")
    origin, root = other_origin
    (root / "page.html").write_text(_PAGE.format(good=url, bad=bad))
    dom = browse(
        f"{origin}/page.html", tmp_path / "profile", "--dump-dom", "--virtual-time-budget=10000"
    )
    assert 'id="result">good=37x23 bad=error<' in dom, dom[-2000:]


def test_a_link_answers_get_and_head_like_the_download(stack: Stack, account: Account) -> None:
    data = png_bytes(30, 30)
    upload_attached(stack, account, "pic.png", data)
    url = stack.url(link(stack, account, "pic", expiresIn=600)["url"])
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content == data
    download = requests.get(
        stack.url(account.path("/attachment/pic")),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    for header in ("Content-Type", "ETag", "Last-Modified", "Content-Disposition"):
        assert got.headers[header] == download.headers[header], header
    assert 590 <= int(got.headers["Cache-Control"].removeprefix("private, max-age=")) <= 600
    head = requests.head(url, timeout=30)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
    assert head.headers["ETag"] == got.headers["ETag"]
    part = requests.get(url, headers={"Range": "bytes=0-15"}, timeout=30)
    assert part.status_code == 206 and part.content == data[:16]
    again = requests.get(url, headers={"If-None-Match": got.headers["ETag"]}, timeout=30)
    assert again.status_code == 304


def test_altered_and_expired_links_are_403(stack: Stack, account: Account) -> None:
    upload_attached(stack, account, "pic.png", png_bytes())
    url = stack.url(link(stack, account, "pic")["url"])
    path, query = url.split("?")
    expires = query.split("expires=")[1].split("&")[0]
    tampered = [
        url.replace(f"expires={expires}", f"expires={int(expires) + 60}"),
        url[:-3] + "abc",
        path + "?expires=" + expires,
        path[:-1] + ("0" if path[-1] != "0" else "1") + "?" + query,
    ]
    for bad in tampered:
        assert "not valid" in assert_error(requests.get(bad, timeout=30), 403, "ACCESS_DENIED")
    # A link asked to live one second expires one second after it is made...
    made = int(time.time())
    short = link(stack, account, "pic", expiresIn=1)["url"]
    path, query = short.split("?")
    params = dict(parse_qsl(query))
    expiry = int(params["expires"])
    assert made + 1 <= expiry <= int(time.time()) + 1
    keys = stack.settings.url_secret
    with pytest.raises(AccessDenied, match="expired"):  # the API's verifier, at that second
        Signer(keys, clock=lambda: expiry).verify(path.rsplit("/", 1)[1], *_link_args(params))
    # ...and the API refuses such a link once that second is past: the same link signed with the
    # stack's key, expired a second ago, rather than a sleep until the short one is.
    past = Signer(keys).query(Link(path.rsplit("/", 1)[1], int(time.time()) - 1))
    expired = stack.url(path) + "?" + urlencode(past)
    message = assert_error(requests.get(expired, timeout=30), 403, "ACCESS_DENIED")
    assert "expired" in message
    assert requests.head(expired, timeout=30).status_code == 403


def _link_args(params: dict[str, str]) -> tuple[str | None, str | None, str | None]:
    return params.get("expires"), params.get("size"), params.get("sig")


def test_deleted_or_replaced_versions_are_404(stack: Stack, account: Account) -> None:
    upload_attached(stack, account, "pic.png", png_bytes(10, 10))
    first = stack.url(link(stack, account, "pic")["url"])
    assert requests.get(first, timeout=30).status_code == 200
    assert upload(stack.base_url, account, "pic.png", png_bytes(11, 11)).status_code == 200
    assert wait_until_final(stack, account, "pic").state == "attached"
    assert_error(requests.get(first, timeout=30), 404)
    second = stack.url(link(stack, account, "pic")["url"])
    assert requests.get(second, timeout=30).status_code == 200
    gone = requests.delete(
        stack.url(account.path("/attachment/pic")),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert gone.status_code == 204
    assert_error(requests.get(second, timeout=30), 404)
