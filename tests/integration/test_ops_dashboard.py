"""The dashboard in a real browser: headless Chromium (Debian's `chromium`) renders the page and
the numbers in its DOM are the ones the record store and the broker hold."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from core.settings import Settings
from storage.telemetry import Telemetry
from tests.conftest import png_bytes, png_with_chunk
from tests.integration.ops_support import OPS_PASSWORD, OpsStack
from tests.sanitize_samples import texted_png

pytestmark = pytest.mark.integration

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(
            "chromium is not installed: `make test` installs it "
            "(deploy/scripts/ensure-deps.sh, ATTACHD_TEST_DEPS=1)",
            pytrace=False,
        )
    return found


def browse(url: str, profile: Path, *extra: str) -> str:
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


class Metrics(HTMLParser):
    """Collects the text of every element with a data-metric attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("meta", "link", "br", "img", "input"):
            return
        self._open.append(dict(attrs).get("data-metric"))
        if self._open[-1]:
            self.values[self._open[-1]] = ""

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("meta", "link", "br", "img", "input"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name:
                self.values[name] += data


@pytest.fixture(scope="module")
def ops(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    stack = OpsStack(settings, tmp_path_factory.mktemp("ops-dashboard"))
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()


def test_the_dashboard_shows_what_the_store_and_broker_hold(
    ops: OpsStack, eicar: bytes, tmp_path: Path
) -> None:
    node = ops.start_worker("dash", concurrency=2)
    try:
        for i in range(3):
            # The last carries an address in a text chunk: the sanitize step removes it.
            data = texted_png() if i == 2 else png_bytes(10 + i, 10)
            assert ops.upload(f"d{i}.png", data).status_code == 200
        assert ops.upload("virus.png", png_with_chunk(eicar)).status_code == 200
        for name in ("d0.png", "d1.png", "d2.png", "virus.png"):
            ops.wait(ops.upload_id(name))
        deadline = time.monotonic() + 15
        while not Telemetry.from_url(ops.settings.redis_url).workers():
            assert time.monotonic() < deadline
            time.sleep(0.5)
    finally:
        ops.stop_worker(node)
    # With no worker left, two uploads wait in the scan queue.
    for i in range(2):
        assert ops.upload(f"w{i}.png", png_bytes(8, 8 + i)).status_code == 200

    url = f"http://{ops.settings.ops_user}:{OPS_PASSWORD}@127.0.0.1:{ops.settings.api_port}"
    dom = browse(url + "/ops/dashboard", tmp_path / "profile", "--dump-dom")
    parsed = Metrics()
    parsed.feed(dom)
    shown = parsed.values

    counts = ops.records.count_by_state()
    assert counts["attached"] == 3 and counts["infected"] == 1 and counts["staged"] == 2
    for state, n in counts.items():
        assert shown[f"state:{state}"].strip() == str(n), (state, shown)
    queues = {
        q.name: q
        for q in Telemetry.from_url(ops.settings.redis_url).queues(
            ("scan", "verify", "attach", "maintenance")
        )
    }
    for name, q in queues.items():
        assert shown[f"queue:{name}:depth"].strip() == str(q.depth)
    assert shown["queue:scan:depth"].strip() == "2"
    assert shown["queue:scan:oldest"].strip() not in ("", "—")
    assert shown["scan:infected"].strip() == "1"
    assert int(shown["scan:clean"]) >= 3
    assert int(shown["finished_window"]) == 4
    assert shown["clamd:engine"].startswith("ClamAV")
    # One Redis here: the broker master is its own address (with Sentinel, the one they name).
    redis_port = ops.settings.redis_url.rsplit(":", 1)[1].split("/")[0]
    assert shown["broker:master"].strip() == f"127.0.0.1:{redis_port}"
    assert shown["sanitized:changed"].strip() == "1"
    assert shown["sanitized:unchanged"].strip() == "2"
    assert int(shown["sanitized:bytes"]) > len("Jane Doe, 12 Main Street")
    # The infected upload is listed with its reason among recent problems.
    virus = ops.upload_id("virus.png")
    assert f'data-problem="{virus}"' in dom
    assert "infected:" in dom

    # And the page draws: a screenshot of it is a real image of a real size.
    shot = tmp_path / "dashboard.png"
    browse(
        url + "/ops/dashboard",
        tmp_path / "profile2",
        f"--screenshot={shot}",
        "--window-size=1400,1200",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_dashboard_needs_the_operator(ops: OpsStack) -> None:
    url = ops.base_url + "/ops/dashboard"
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 401 and "Basic" in resp.headers["WWW-Authenticate"]
    assert requests.get(url, auth=(ops.settings.ops_user, "nope"), timeout=10).status_code == 401
    ok = requests.get(url, auth=ops.auth, timeout=10)
    assert ok.status_code == 200 and ok.headers["Content-Type"].startswith("text/html")
    assert 'http-equiv="refresh"' in ok.text
    overview = requests.get(ops.base_url + "/ops/overview", auth=ops.auth, timeout=10).json()
    assert overview["states"] == ops.records.count_by_state()
