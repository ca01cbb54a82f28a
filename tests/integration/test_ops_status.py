"""The status route against a dependency that really stops: a private redis-server of this test's
own (the shared test services are never stopped), and a clamd address nothing listens on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from falcon import testing

from api.app import create_app
from api.resources.monitoring import STATUS_CACHE_SECONDS
from core.settings import Settings
from tests.conftest import _free_port
from tests.integration.ops_support import start_redis, stop_process

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    url, proc = start_redis(tmp_path)
    try:
        yield url, proc
    finally:
        stop_process(proc)


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
    # The answer is reused for STATUS_CACHE_SECONDS (anyone may ask): the outage shows once it
    # has passed, and not later.
    stopped = time.monotonic()
    down = client.simulate_get("/api/1/monitoring/status")
    while down.status_code == 200 and time.monotonic() - stopped < STATUS_CACHE_SECONDS + 2:
        time.sleep(0.2)
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
