"""Issue 23 on the real stack, the API's own edges: numbers in query strings that are not
numbers, the demo lending its token only to its own page (with the download's safety headers
kept), and clients that never finish their request line, which froze gunicorn facing them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from attachd.stack import Stack as ProcessStack
from attachd.stack import components_of
from core.settings import Settings
from tests.conftest import _free_port, png_bytes
from tests.integration.api_support import (
    Account,
    api_server,
    assert_error,
    get,
    multipart_body,
    new_account,
    padded_png,
    upload,
    upload_attached,
    wait_until_final,
)
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

# '²' and '٣' pass str.isdigit; 4,400 digits pass it too and exceed int()'s limit: all three
# were 500s. The rest are plain malformed numbers.
MALFORMED = ("²", "٣", "9" * 4400, "1" * 13, "-1", "1e3", " 7", "0x10")
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<rect width="10" height="10" fill="red"/></svg>'
)


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
        # A number in a header: a Range that cannot be honoured is ignored (the whole file),
        # one it can is 206, one past the end 416; never a 500.
        if bad.encode("utf-8").decode("latin-1").isprintable():  # what HTTP can carry
            rng = {"Range": f"bytes={bad}-".encode().decode("latin-1")}
            whole = get(stack.base_url, account, "/attachment/pic", headers=rng)
            assert whole.status_code in (200, 206, 416), (bad[:20], whole.status_code)
    # The well-formed ones still work.
    assert get(stack.base_url, account, "/attachment/pic", params={"size": "128"}).ok


# --- the demo -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Account]]:
    """A gunicorn with the demo on, as `make run` starts it, and the demo's account."""
    var = tmp_path_factory.mktemp("demo-var")
    account = new_account(stack.records)
    (var / "demo.json").write_text(
        json.dumps(
            {"tenant": account.tenant, "token": account.token, "profile": account.profile_id}
        )
    )
    logs = tmp_path_factory.mktemp("demo-logs")
    with api_server(stack, logs, ATTACHD_DEMO="true", ATTACHD_VAR_DIR=str(var)) as base:
        yield base, account


def _post_demo(base: str, headers: dict[str, str]) -> requests.Response:
    body, content_type = multipart_body("drop.png", png_bytes(12, 12))
    return requests.post(
        base + "/demo/upload",
        data=body,
        headers={"Content-Type": content_type, **headers},
        timeout=30,
    )


def test_the_demo_lends_its_token_only_to_its_own_page(
    stack: Stack, demo: tuple[str, Account]
) -> None:
    base, account = demo
    own = urlsplit(base).netloc
    for headers in (
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        # DNS rebinding: the attacker's name resolved to us, so the request is "same-origin".
        {"Host": "evil.example", "Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
    ):
        assert_error(_post_demo(base, headers), 403, "ACCESS_DENIED")
    assert stack.records.find_attachment(account.profile_id, "drop") is None

    rebound = {"Host": f"evil.example:{urlsplit(base).port}"}
    for path in ("/demo", "/demo/status/drop", "/demo/file/drop"):
        assert_error(requests.get(base + path, headers=rebound, timeout=30), 403, "ACCESS_DENIED")
    cross = {"Sec-Fetch-Site": "cross-site"}
    for path in ("/demo/status/drop", "/demo/file/drop"):
        assert_error(requests.get(base + path, headers=cross, timeout=30), 403, "ACCESS_DENIED")

    # The page's own calls, as a browser sends them, and a navigation from elsewhere to the page.
    mine = {"Origin": f"http://{own}", "Sec-Fetch-Site": "same-origin"}
    answer = _post_demo(base, mine)
    assert answer.status_code == 200, answer.text
    assert requests.get(base + "/demo", headers=cross, timeout=30).status_code == 200
    status = requests.get(base + "/demo/status/drop", headers=mine, timeout=30)
    assert status.status_code == 200, status.text


def test_the_demo_serves_a_file_with_the_downloads_safety_headers(
    stack: Stack, demo: tuple[str, Account]
) -> None:
    base, account = demo
    upload_attached(stack, account, "shape.svg", SVG)
    direct = get(stack.base_url, account, "/attachment/shape")
    assert direct.status_code == 200
    relayed = requests.get(base + "/demo/file/shape", timeout=30)
    assert relayed.status_code == 200 and relayed.content == direct.content
    assert relayed.headers["Content-Type"].startswith("image/svg+xml")
    for header in ("Content-Security-Policy", "Content-Disposition"):
        assert relayed.headers.get(header) == direct.headers[header], header
    assert "sandbox" in relayed.headers["Content-Security-Policy"]


# --- the front: clients that never finish their request -----------------------------------------


@pytest.fixture(scope="module")
def fronted(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessStack]:
    """The API as `make run` starts it (ATTACHD_API_PROXY): nginx on the public port, gunicorn
    behind it on loopback, with a short header timeout to keep the test quick."""
    env = {
        **stack.env,
        "ATTACHD_API_PROXY": "true",
        "ATTACHD_API_PORT": str(_free_port()),
        "ATTACHD_API_BACKEND_PORT": str(_free_port()),
        "ATTACHD_API_HEADER_TIMEOUT": "3",
        "ATTACHD_VAR_DIR": str(tmp_path_factory.mktemp("front-var")),
    }
    processes = ProcessStack(
        env, components_of(Settings.from_env(env))[:2], log_dir=tmp_path_factory.mktemp("front")
    )
    processes.start()
    try:
        yield processes
    finally:
        processes.stop()


def _one_byte_clients(base: str, n: int) -> list[socket.socket]:
    host, port = urlsplit(base).hostname or "", urlsplit(base).port or 80
    clients = []
    for _ in range(n):
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(b"G")
        clients.append(sock)
    return clients


def test_clients_that_never_finish_their_request_line_do_not_freeze_the_api(
    fronted: ProcessStack,
) -> None:
    assert [c.name for c in fronted.components] == ["api", "proxy"]
    clients = _one_byte_clients(fronted.base_url, 48)
    try:
        started = time.monotonic()
        resp = requests.get(fronted.base_url + "/api/1/monitoring/version", timeout=10)
        assert resp.status_code == 200, resp.text
        assert time.monotonic() - started < 2
        # And the front lets them go after ATTACHD_API_HEADER_TIMEOUT (3 s here).
        deadline = time.monotonic() + 15
        for sock in clients:
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            answer = _until_closed(sock)  # socket.timeout here: still held after 15 s
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:100]
    finally:
        for sock in clients:
            sock.close()


def _until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_the_front_passes_uploads_downloads_and_the_apis_own_refusals(
    stack: Stack, fronted: ProcessStack, account: Account
) -> None:
    """nginx in front changes nothing a client sees: the upload streams through, the download
    comes back byte for byte, an oversized upload is still Crafter's 413."""
    data = png_bytes(30, 30)
    answer = upload(fronted.base_url, account, "front.png", data)
    assert answer.status_code == 200, answer.text
    assert wait_until_final(stack, account, "front").state == "attached"
    got = get(fronted.base_url, account, "/attachment/front")
    assert got.status_code == 200 and got.headers["Content-Type"] == "image/png"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    too_big = upload(
        fronted.base_url, account, "big.png", padded_png(stack.settings.max_upload_size + 1)
    )
    assert_error(too_big, 413)
