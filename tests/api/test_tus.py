"""The tus routes in-process: discovery, the version and token checks before any body is read,
creation's refusals and answer, CORS from configured origins only. The rows live in a SQLite file
of the test's own; nothing here reaches MinIO (the byte path is tests/integration/test_tus_*)."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path

import pytest
from falcon import testing
from minio import Minio

from api.app import Services, create_app
from core.settings import Settings
from storage.engine import make_engine
from storage.objects import Buckets, ObjectStore
from storage.tus import ResumableObjects, ResumableRecords
from storage.tus_schema import resumable_uploads
from tests.api.conftest import API, FakeRecords, RecordingCounter, RecordingSender

TUS = {"Tus-Resumable": "1.0.0"}


class App:
    def __init__(self, tmp: Path, **settings: object) -> None:
        self.settings = replace(Settings(max_upload_size=64 * 1024), **settings)  # type: ignore[arg-type]
        self.records = FakeRecords()
        engine = make_engine(f"sqlite:///{tmp / 'tus.db'}")
        resumable_uploads.metadata.create_all(engine, tables=[resumable_uploads])
        self.rows = ResumableRecords(engine)
        buckets = Buckets("s", "a", "q")
        # Nothing connects to it: these tests never send a byte to store.
        nowhere = ObjectStore(Minio("127.0.0.1:1", "k", "s", secure=False), buckets)
        self.counter = RecordingCounter()
        services = Services(
            records=self.records,
            objects=nowhere,
            enqueue=RecordingSender(),
            checks={},
            refusals=self.counter,
            resumable=(self.rows, ResumableObjects(nowhere, "tus", 1)),
        )
        self.client = testing.TestClient(create_app(self.settings, services))
        self.tenant = "t-tus"
        self.profile_id = self.records.add_profile(self.tenant)
        self.token = self.records.add_token(self.tenant)
        self.endpoint = f"{API}/{self.profile_id}/uploadAttachment/resumable"

    def create(self, name: str, length: int, **headers: str) -> testing.Result:
        meta = f"filename {base64.b64encode(name.encode()).decode()}"
        return self.client.simulate_post(
            self.endpoint,
            headers={
                **TUS,
                "X-Access-Token-Id": self.token,
                "Upload-Length": str(length),
                "Upload-Metadata": meta,
                **headers,
            },
        )


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path)


class Unreadable:
    """A body that fails the test if anything reads it."""

    def read(self, *_: object) -> bytes:
        raise AssertionError("the body was read")

    readline = read

    def readlines(self, *_: object) -> list[bytes]:
        raise AssertionError("the body was read")

    def __iter__(self) -> Unreadable:
        return self

    def __next__(self) -> bytes:
        raise AssertionError("the body was read")


def test_options_discovers_the_server_without_a_token(app: App) -> None:
    resp = app.client.simulate_options(app.endpoint)
    assert resp.status_code == 204
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert set(resp.headers["Tus-Extension"].split(",")) >= {
        "creation",
        "termination",
        "checksum",
        "expiration",
    }
    assert resp.headers["Tus-Max-Size"] == str(64 * 1024)
    assert "sha1" in resp.headers["Tus-Checksum-Algorithm"].split(",")


def test_a_missing_or_other_version_is_412_with_the_version_served(app: App) -> None:
    for headers in ({}, {"Tus-Resumable": "0.2.2"}):
        resp = app.client.simulate_post(
            app.endpoint, headers={"X-Access-Token-Id": app.token, **headers}
        )
        assert resp.status_code == 412
        assert resp.headers["Tus-Version"] == "1.0.0"
        assert resp.headers["Tus-Resumable"] == "1.0.0"
        assert resp.json["errorCode"] == "OTHER"


def test_creation_answers_201_with_location_and_expiry(app: App) -> None:
    resp = app.create("a.png", 1000)
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    assert location.startswith(app.endpoint + "/")
    row = app.rows.get_resumable(location.rsplit("/", 1)[-1])
    assert row is not None
    assert (row.length, row.offset, row.file_name, row.declared_type) == (
        1000,
        0,
        "a.png",
        "image/png",
    )
    assert resp.headers["Upload-Expires"].endswith("GMT")
    head = app.client.simulate_head(location, headers={**TUS, "X-Access-Token-Id": app.token})
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == "1000"
    assert head.headers["Cache-Control"] == "no-store"


def test_the_location_is_under_the_url_prefix(tmp_path: Path) -> None:
    app = App(tmp_path, url_prefix="/crafter-profile")
    resp = app.client.simulate_post(
        "/crafter-profile" + app.endpoint,
        headers={
            **TUS,
            "X-Access-Token-Id": app.token,
            "Upload-Length": "5",
            "Upload-Metadata": "filename YS5wbmc=",
        },
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["Location"].startswith("/crafter-profile" + app.endpoint + "/")


def test_refusals_at_creation(app: App) -> None:
    assert app.create("a.exe", 10).status_code == 415
    assert app.counter.counts  # counted as the multipart route's intake refusals
    assert app.create("a.png", 64 * 1024 + 1).status_code == 413
    assert app.create("a.png", 0).status_code == 400
    assert app.create("a.png", 10, **{"Upload-Metadata": "filename !!"}).status_code == 400
    assert app.create("a.png", 10, **{"Upload-Length": "-1"}).status_code == 400
    assert app.rows.count_resumables() == 0


def test_every_method_but_options_checks_the_token_before_reading_a_byte(app: App) -> None:
    location = app.create("a.png", 100).headers["Location"]
    stranger_tenant = "t-other"
    app.records.add_profile(stranger_tenant)
    stranger = app.records.add_token(stranger_tenant)
    for token in (None, "unknown-token", stranger):
        headers = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
        if token:
            headers["X-Access-Token-Id"] = token
        for method in ("HEAD", "PATCH", "DELETE"):
            resp = app.client.simulate_request(
                method, location, headers=headers, body=b"", extras={"wsgi.input": Unreadable()}
            )
            assert resp.status_code == 403, (method, token, resp.status_code)
    # The query parameter works as the header does.
    ok = app.client.simulate_head(location, headers=TUS, params={"accessTokenId": app.token})
    assert ok.status_code == 200


def test_a_patch_refused_on_its_headers_reads_nothing(app: App) -> None:
    location = app.create("a.png", 100).headers["Location"]
    auth = {**TUS, "X-Access-Token-Id": app.token}
    cases = [
        ({"Content-Type": "text/plain", "Upload-Offset": "0"}, 415),
        ({"Content-Type": "application/offset+octet-stream"}, 400),
        ({"Content-Type": "application/offset+octet-stream", "Upload-Offset": "7"}, 409),
        (
            {
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": "0",
                "Upload-Checksum": "crc32 AAAA",
            },
            400,
        ),
    ]
    for headers, status in cases:
        resp = app.client.simulate_patch(
            location, headers={**auth, **headers}, extras={"wsgi.input": Unreadable()}
        )
        assert resp.status_code == status, (headers, resp.text)
        assert resp.headers["Tus-Resumable"] == "1.0.0"


def test_an_unknown_or_foreign_upload_is_404(app: App) -> None:
    auth = {**TUS, "X-Access-Token-Id": app.token}
    assert app.client.simulate_head(app.endpoint + "/" + "0" * 32, headers=auth).status_code == 404
    assert app.client.simulate_head(app.endpoint + "/not-an-id", headers=auth).status_code == 404
    # Another profile of the same tenant: the upload is not under it.
    location = app.create("a.png", 100).headers["Location"]
    other = app.records.add_profile(app.tenant)
    foreign = location.replace(app.profile_id, other)
    assert app.client.simulate_head(foreign, headers=auth).status_code == 404


def test_cors_is_off_by_default(app: App) -> None:
    resp = app.client.simulate_options(
        app.endpoint,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"},
    )
    assert resp.status_code == 204
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_cors_answers_configured_origins_only(tmp_path: Path) -> None:
    app = App(tmp_path, tus_cors_origins=("https://app.example",))
    preflight = app.client.simulate_options(
        app.endpoint,
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"},
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"]
    assert "Upload-Offset" in allowed and "X-Access-Token-Id" in allowed
    created = app.create("a.png", 10, Origin="https://app.example")
    exposed = created.headers["Access-Control-Expose-Headers"]
    for name in ("Location", "Upload-Offset", "Upload-Length", "Tus-Resumable"):
        assert name in exposed
    other = app.create("a.png", 10, Origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other.headers
    # CORS stays on the tus routes: Crafter's routes are not opened to browsers by it.
    crafter = app.client.simulate_get(
        f"{API}/{app.profile_id}/attachments",
        params={"accessTokenId": app.token},
        headers={"Origin": "https://app.example"},
    )
    assert "Access-Control-Allow-Origin" not in crafter.headers
