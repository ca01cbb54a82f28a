"""The pages for people, in-process: the front page, the API reference and the demo relay.
The browser's view of them (Swagger UI drawing the document, a picture going through the real
pipeline) is tests/integration/test_pages_browser.py."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from falcon import testing

from api.app import Services, create_app
from api.overview import OpsSources
from api.resources.docs import ASSETS, STATIC
from core.clamd import ClamdClient
from core.errors import ConfigError
from core.settings import Settings
from storage.stats import StoreStats
from storage.telemetry import Telemetry
from tests.api.conftest import World, multipart
from tests.conftest import png_bytes

NOWHERE = "127.0.0.1:1"
PREFIX = "/crafter-profile"


def app_with(world: World, ops: OpsSources | None = None, **changes: object) -> testing.TestClient:
    """Another app over the same fakes, with other settings."""
    settings = replace(world.settings, **changes)  # type: ignore[arg-type]
    services = Services(
        records=world.records,
        objects=world.objects,
        enqueue=world.sender,
        checks=world.checks,
        refusals=world.counter,
        ops=ops,
    )
    return testing.TestClient(create_app(settings, services))


def links(html: str) -> dict[str, str]:
    """The front page's links, by title."""
    return {
        title: href for href, title in re.findall(r'<a href="([^"]+)" data-link="([^"]+)"', html)
    }


def test_the_front_page_says_what_runs_and_links_everywhere(world: World) -> None:
    client = app_with(world, database_url="sqlite:////srv/attachd/records.db")
    resp = client.simulate_get("/", host="attachd.example")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in resp.headers["Content-Security-Policy"]  # no script at all
    page = resp.text
    assert re.search(r'data-fact="store">SQLite<', page) and "/srv/attachd" not in page
    for bucket in (
        world.settings.bucket_staging,
        world.settings.bucket_attachments,
        world.settings.bucket_quarantine,
    ):
        assert f"<code>{bucket}</code>" in page
    assert links(page) == {
        "API reference": "/api/1/docs",
        "Dashboard": "/ops/dashboard",
        # Flower is another port of the host the reader came to.
        "Flower": f"http://attachd.example:{world.settings.flower_port}/",
        "Metrics": "/metrics",
        "Health": "/api/1/monitoring/status",
        "OpenAPI document": "/api/1/openapi.json",
    }
    # Every link answers (Flower is another process).
    for title, href in links(page).items():
        if title not in ("Flower", "Dashboard", "Metrics"):  # the last two: tests/integration
            assert client.simulate_get(href).status_code == 200, href


def test_the_front_page_holds_no_secret(world: World, tmp_path: Path) -> None:
    secrets = {
        "token": world.token,
        "s3 secret": "s3-" + "k" * 30,
        "ops password": "ops-" + "p" * 30,
        "database password": "db-" + "w" * 30,
    }
    _demo_file(world, tmp_path)
    client = app_with(
        world,
        s3_secret_key=secrets["s3 secret"],
        ops_password=secrets["ops password"],
        flower_password=secrets["ops password"],
        database_url=f"postgresql+psycopg://attachd:{secrets['database password']}@db/attachd",
        demo=True,
        var_dir=tmp_path,
    )
    page = client.simulate_get("/").text
    assert re.search(r'data-fact="store">PostgreSQL<', page)
    for what, secret in secrets.items():
        assert secret not in page, what
    assert links(page)["Demo"] == "/demo"


def test_a_source_that_is_down_is_said_so_on_the_front_page(world: World) -> None:
    host, port = NOWHERE.split(":")
    ops = OpsSources(
        stats=StoreStats(world.records),  # type: ignore[arg-type]
        telemetry=Telemetry.from_url(f"redis://{NOWHERE}/0"),
        clamd=ClamdClient(host, int(port), timeout=1),
        queues=(),
    )
    page = app_with(world, ops).simulate_get("/").text
    assert "clamd is not answering" in page
    assert "Redis is not answering" in page
    assert re.search(r'data-fact="broker"><span class="down">Redis is not answering<', page)


def test_under_the_url_prefix_the_links_stay_under_it(world: World) -> None:
    client = app_with(world, url_prefix=PREFIX)
    behind = links(client.simulate_get(PREFIX + "/").text)
    assert behind["API reference"] == PREFIX + "/api/1/docs"
    assert behind["Health"] == PREFIX + "/api/1/monitoring/status"
    assert client.simulate_get(PREFIX).status_code == 200
    direct = links(client.simulate_get("/").text)
    assert direct["API reference"] == "/api/1/docs"
    docs = client.simulate_get(PREFIX + "/api/1/docs").text
    assert f'"{PREFIX}/api/1/openapi.json"' in docs
    assert f'src="{PREFIX}/api/1/docs/static/swagger-ui-bundle.js"' in docs
    bundle = client.simulate_get(PREFIX + "/api/1/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200


def test_the_api_reference_is_swagger_ui_from_the_package_never_a_cdn(world: World) -> None:
    resp = world.client.simulate_get("/api/1/docs")
    assert resp.status_code == 200
    page = resp.text
    csp = resp.headers["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f'<script nonce="{nonce.group(1)}">' in page
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    # Nothing is fetched from elsewhere: every URL on the page is this server's.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert '"/api/1/openapi.json"' in page
    # A fresh nonce per response.
    assert world.client.simulate_get("/api/1/docs").headers["Content-Security-Policy"] != csp
    for name, content_type in ASSETS.items():
        asset = world.client.simulate_get(f"/api/1/docs/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["Content-Type"] == content_type
        assert asset.content == (STATIC / name).read_bytes()
    missing = world.client.simulate_get("/api/1/docs/static/swagger-editor-bundle.js")
    assert missing.status_code == 404
    assert set(missing.json) == {"errorCode", "message"}


def test_the_openapi_document_is_public(world: World) -> None:
    resp = world.client.simulate_get("/api/1/openapi.json")
    assert resp.status_code == 200
    doc = resp.json
    assert doc["paths"]["/api/1/openapi.json"]["get"]["security"] == []
    # A token, even a wrong one, changes nothing: the document holds no data.
    again = world.client.simulate_get("/api/1/openapi.json", params={"accessTokenId": "nope"})
    assert again.status_code == 200 and again.json == doc


# --- the demo ---------------------------------------------------------------------------------


def _demo_file(world: World, var_dir: Path) -> None:
    """What `attachd demo` writes, for the world's account."""
    (var_dir / "demo.json").write_text(
        json.dumps({"tenant": world.tenant, "token": world.token, "profile": world.profile_id})
    )


@pytest.fixture
def demo(world: World, tmp_path: Path) -> testing.TestClient:
    _demo_file(world, tmp_path)
    # Falcon's test client sends Host: falconframework.org; the demo answers only names it knows.
    return app_with(world, demo=True, var_dir=tmp_path, demo_hosts=("falconframework.org",))


def test_the_demo_is_off_unless_asked_for(world: World) -> None:
    assert Settings.from_env({}).demo is False
    assert Settings.from_env({"ATTACHD_DEMO": "true"}).demo is True
    for path in ("/demo", "/demo/status/x", "/demo/file/x"):
        resp = world.client.simulate_get(path)
        assert resp.status_code == 404 and set(resp.json) == {"errorCode", "message"}
    assert world.client.simulate_post("/demo/upload").status_code == 404
    assert "/demo" not in world.client.simulate_get("/").text


def test_the_demo_refuses_to_start_without_its_account(world: World, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ATTACHD_DEMO.*attachd demo"):
        app_with(world, demo=True, var_dir=tmp_path)


def test_the_demo_page_holds_no_token(world: World, demo: testing.TestClient) -> None:
    resp = demo.simulate_get("/demo")
    assert resp.status_code == 200
    assert world.token not in resp.text
    assert world.profile_id in resp.text  # whose attachments these become
    csp = resp.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in csp and "img-src 'self'" in csp


def test_the_demo_relays_to_the_real_routes_with_the_token_added(
    world: World, demo: testing.TestClient
) -> None:
    data = png_bytes(9, 9)
    body, content_type = multipart([("attachment", "dropped.png", data)])
    answer = demo.simulate_post(
        "/demo/upload", body=body, headers={"Content-Type": content_type, "X-Request-ID": "demo1"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Request-ID"] == "demo1"
    crafter = answer.json
    assert crafter["fileName"] == "dropped" and crafter["fileSizeBytes"] == len(data)
    upload_id = world.sender.sent[-1]
    upload = world.records.uploads[upload_id]
    assert world.records.attachments[upload.attachment_id].profile_id == world.profile_id

    status = demo.simulate_get(f"/demo/status/{crafter['id']}")
    assert status.status_code == 200
    assert status.json["state"] == "staged" and status.json["uploadId"] == upload_id
    # Not attached yet: the real route serves nothing, so neither does the demo.
    assert demo.simulate_get(f"/demo/file/{crafter['id']}").status_code == 404

    staged = upload.staging_key
    assert staged is not None
    key = f"{world.tenant}/{upload_id}"
    world.objects.data[(world.settings.bucket_attachments, key)] = world.objects.data.pop(
        (world.settings.bucket_staging, staged)
    )
    world.records.mark_attached(upload_id, key)
    picture = demo.simulate_get(f"/demo/file/{crafter['id']}")
    assert picture.status_code == 200
    assert picture.content == data and picture.headers["Content-Type"] == "image/png"
    assert demo.simulate_get("/demo/status/dropped").json["state"] == "attached"


def test_a_refusal_comes_back_as_the_real_route_gives_it(demo: testing.TestClient) -> None:
    body, content_type = multipart([("attachment", "tool.exe", b"MZ" + b"\0" * 64)])
    resp = demo.simulate_post("/demo/upload", body=body, headers={"Content-Type": content_type})
    assert resp.status_code == 415
    assert set(resp.json) == {"errorCode", "message"}
    unknown = demo.simulate_get("/demo/status/never-uploaded")
    assert unknown.status_code == 404 and set(unknown.json) == {"errorCode", "message"}
