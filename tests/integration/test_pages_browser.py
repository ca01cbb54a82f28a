"""The first ten minutes, in headless Chromium against the real stack: the front page says what
runs and its links lead on, Swagger UI draws every operation of the served document from this
server's own files, and on the demo page a dropped picture goes through the real pipeline — a
clean PNG ends attached and shown, the EICAR test string ends infected and is never shown.
Screenshots are kept in var/test/artifacts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from attachd.stack import Stack as ProcessStack
from attachd.stack import StackError
from tests.conftest import _free_port, png_bytes, png_with_chunk
from tests.integration.browser import Page, browser
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@dataclass
class DemoApi:
    base_url: str
    profile: str
    log_dir: Path


@pytest.fixture(scope="module")
def demo_api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoApi]:
    """A second API with ATTACHD_DEMO on, as `make run` starts it: `attachd demo` made its
    account; the session's worker runs the pipeline behind it."""
    var_dir = tmp_path_factory.mktemp("demo-var")
    env = {**stack.env, "ATTACHD_VAR_DIR": str(var_dir)}
    tenant = "demo-" + os.urandom(3).hex()
    made = subprocess.run(
        [str(BIN / "attachd"), "demo", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    profile = next(
        line.split()[-1] for line in made.stdout.splitlines() if line.startswith("profile id:")
    )
    env.update(ATTACHD_DEMO="true", ATTACHD_API_PORT=str(_free_port()))
    log_dir = var_dir / "log"
    api = ProcessStack(env, ("api",), log_dir=log_dir, start_timeout=30, stop_timeout=20)
    try:
        api.start()
    except StackError as exc:
        pytest.fail(str(exc))
    try:
        yield DemoApi(api.base_url, profile, log_dir)
    finally:
        api.stop()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    with browser(tmp_path / "chromium") as tab:
        yield tab


def _only_this_server(page: Page, base_url: str) -> None:
    foreign = [u for u in page.requested() if not u.startswith((base_url, "data:"))]
    assert not foreign, foreign


def test_the_front_page_says_what_runs_and_leads_on(demo_api: DemoApi, page: Page) -> None:
    page.open(demo_api.base_url + "/")
    fact = "document.querySelector('[data-fact=\"{}\"]').textContent.trim()"
    assert page.eval(fact.format("store")) == "SQLite"
    # The session's worker is online, and clamd answers with the test signatures' version.
    assert int(page.eval(fact.format("workers"))) >= 1
    signatures = page.eval(fact.format("signatures"))
    assert signatures.split()[0].isdigit() and "ClamAV" in signatures, signatures
    shown_links = page.eval(
        "Object.fromEntries([...document.querySelectorAll('a[data-link]')]"
        ".map(a => [a.dataset.link, a.href]))"
    )
    assert set(shown_links) >= {"Demo", "API reference", "Dashboard", "Flower", "Metrics", "Health"}
    page.screenshot("front-page")
    _only_this_server(page, demo_api.base_url)
    page.eval("document.querySelector('a[data-link=\"API reference\"]').click()")
    page.wait_for("location.pathname === '/api/1/docs'")
    health = requests.get(shown_links["Health"], timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "up"


def test_the_api_reference_draws_every_operation_from_local_files(
    demo_api: DemoApi, page: Page
) -> None:
    doc = requests.get(demo_api.base_url + "/api/1/openapi.json", timeout=30).json()
    operations = sum(len(ops) for ops in doc["paths"].values())
    page.open(demo_api.base_url + "/api/1/docs")
    drawn = page.wait_for(
        f"document.querySelectorAll('.opblock').length >= {operations} && "
        "document.querySelectorAll('.opblock').length"
    )
    assert drawn == operations
    assert "Crafter Profile" in page.eval("document.querySelector('.info').textContent")
    page.screenshot("api-reference")
    _only_this_server(page, demo_api.base_url)


def _drop(page: Page, demo_api: DemoApi, path: Path) -> str:
    page.open(demo_api.base_url + "/demo")
    page.choose_file("#file", path)
    final: str = page.wait_for("document.body.dataset.final", timeout=90)
    return final


def test_a_clean_picture_ends_attached_and_shown(
    demo_api: DemoApi, stack: Stack, page: Page, tmp_path: Path
) -> None:
    picture = tmp_path / "sunset.png"
    picture.write_bytes(png_bytes(64, 48, (250, 160, 40)))
    assert _drop(page, demo_api, picture) == "attached"
    # The picture, as the real file route served it.
    page.wait_for("document.querySelector('#picture img')?.complete")
    size = page.eval(
        "[document.querySelector('#picture img').naturalWidth, "
        "document.querySelector('#picture img').naturalHeight]"
    )
    assert size == [64, 48]
    answer = page.eval("JSON.parse(document.getElementById('answer').textContent)")
    assert answer["fileName"] == "sunset" and answer["contentType"] == "image/png"
    steps = page.eval("[...document.querySelectorAll('#steps li')].map(li => li.className)")
    assert steps == ["done", "done", "done", "done"]
    assert page.eval("document.getElementById('seen').textContent").endswith("attached")
    page.screenshot("demo-attached")
    _only_this_server(page, demo_api.base_url)
    # What the page says is what the store holds, for the demo profile.
    attachment = stack.records.find_attachment(demo_api.profile, answer["id"])
    assert attachment is not None and attachment.current_upload_id
    upload = stack.records.get_upload(attachment.current_upload_id)
    assert upload is not None and upload.state == "attached"


def test_the_eicar_test_string_ends_infected_and_is_never_shown(
    demo_api: DemoApi, stack: Stack, page: Page, tmp_path: Path, eicar: bytes
) -> None:
    virus = tmp_path / "holiday.png"
    virus.write_bytes(png_with_chunk(eicar))
    assert _drop(page, demo_api, virus) == "infected"
    verdict = page.eval("document.getElementById('verdict').textContent")
    assert verdict.startswith("Infected (") and "never served" in verdict
    assert page.eval("document.querySelector('#picture img')") is None
    assert not [u for u in page.requested() if "/demo/file/" in u]
    steps = page.eval("[...document.querySelectorAll('#steps li')].map(li => li.className)")
    assert steps == ["done", "bad", "", ""]
    page.screenshot("demo-infected")
    answer = page.eval("JSON.parse(document.getElementById('answer').textContent)")
    served = requests.get(f"{demo_api.base_url}/demo/file/{answer['id']}", timeout=30)
    assert served.status_code == 404
