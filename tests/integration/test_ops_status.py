"""The status route against a dependency that really stops: a private redis-server of this test's
own (the shared test services are never stopped), and a clamd address nothing listens on."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from falcon import testing

from api.app import create_app
from attachd.settings import Settings
from tests.conftest import _free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (deploy/scripts/ensure-deps.sh installs it)"
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "private redis-server did not start"
            time.sleep(0.05)
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def test_status_reports_a_stopped_redis_as_down(
    settings: Settings, records: object, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, server = private_redis
    client = testing.TestClient(create_app(replace(settings, redis_url=url)))

    up = client.simulate_get("/api/1/monitoring/status")
    assert up.status_code == 200, up.text
    assert up.json["status"] == "up"
    for name in ("database", "redis", "minio", "clamd"):
        entry = up.json["dependencies"][name]
        assert entry["status"] == "up" and entry["latencyMs"] >= 0

    server.terminate()
    server.wait(timeout=10)
    down = client.simulate_get("/api/1/monitoring/status")
    assert down.status_code == 503
    assert down.headers["Retry-After"]
    deps = down.json["dependencies"]
    assert deps["redis"]["status"] == "down" and deps["redis"]["error"]
    assert all(deps[name]["status"] == "up" for name in ("database", "minio", "clamd"))


def test_status_reports_an_unreachable_clamd_as_down(settings: Settings, records: object) -> None:
    client = testing.TestClient(create_app(replace(settings, clamd_port=_free_port())))
    resp = client.simulate_get("/api/1/monitoring/status")
    assert resp.status_code == 503
    assert resp.json["dependencies"]["clamd"]["status"] == "down"
    assert resp.json["dependencies"]["redis"]["status"] == "up"
