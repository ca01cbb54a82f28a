"""Monitoring and profile routes in-process."""

from __future__ import annotations

import logging
import platform
import time

import pytest

from core.errors import ServiceUnavailable
from tests.api.conftest import World


def test_monitoring_status_is_up_when_every_check_passes(world: World) -> None:
    resp = world.client.simulate_get("/api/1/monitoring/status")
    assert resp.status_code == 200
    assert resp.json["status"] == "up"
    assert set(resp.json["dependencies"]) == {"database", "minio"}


def test_a_failing_check_makes_monitoring_status_503(world: World) -> None:
    def redis_down() -> None:
        raise ServiceUnavailable("redis", "connection refused")

    world.checks["redis"] = redis_down
    resp = world.client.simulate_get("/api/1/monitoring/status")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    assert resp.json["status"] == "down"
    assert resp.json["dependencies"]["redis"]["status"] == "down"
    # The exception's text (hosts, ports) is for the log; the client gets one generic word.
    assert resp.json["dependencies"]["redis"]["error"] == "unavailable"
    assert "connection refused" not in resp.text
    assert resp.json["dependencies"]["database"]["status"] == "up"


def test_the_failure_detail_is_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    def redis_down() -> None:
        raise ServiceUnavailable("redis", "connection refused at 10.0.0.7:6379")

    world.checks["redis"] = redis_down
    with caplog.at_level(logging.WARNING, logger="api.resources.monitoring"):
        world.client.simulate_get("/api/1/monitoring/status")
    assert "10.0.0.7:6379" in caplog.text


def test_monitoring_status_probes_once_per_interval(world: World) -> None:
    calls: list[float] = []
    world.checks["counted"] = lambda: calls.append(time.monotonic())
    for _ in range(20):
        assert world.client.simulate_get("/api/1/monitoring/status").status_code == 200
    # Twenty requests inside one cache interval cost one probe round.
    assert len(calls) == 1


def test_the_version_route_shows_no_os_details(world: World) -> None:
    resp = world.client.simulate_get("/api/1/monitoring/version")
    assert resp.status_code == 200
    assert set(resp.json) == {"packageName", "packageVersion"}
    assert platform.release() not in resp.text


@pytest.mark.parametrize(
    "path", ["/api/1/monitoring/version", "/api/1/profile/not-an-id", "/nowhere"]
)
def test_every_response_says_no_referrer(world: World, path: str) -> None:
    resp = world.client.simulate_get(path)
    assert resp.headers["Referrer-Policy"] == "no-referrer"


def test_a_create_form_over_the_cap_is_413_before_it_is_read(world: World) -> None:
    body = b"tenantName=x&username=y&email=z%40example.com&enabled=true&role=" + b"r" * 70_000
    resp = world.client.simulate_post(
        "/api/1/profile/create",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # No token anywhere: the size is refused first, without parsing anything.
    assert (resp.status_code, resp.json["errorCode"]) == (413, "OTHER")


def test_a_profile_is_read_with_a_token_of_its_tenant(world: World) -> None:
    resp = world.get("")
    assert resp.status_code == 200, resp.text
    assert resp.json["id"] == world.profile_id
    assert resp.json["tenant"] == world.tenant
    bad = world.client.simulate_get("/api/1/profile/not-an-id")
    assert bad.status_code == 400  # a syntax check, even without a token


def test_a_profile_is_created_in_a_known_tenant_only(world: World) -> None:
    params = {
        "accessTokenId": world.token,
        "tenantName": world.tenant,
        "username": "alice",
        "email": "alice@example.com",
        "enabled": "true",
    }
    resp = world.client.simulate_post("/api/1/profile/create", params=params)
    assert resp.status_code == 200, resp.text
    assert resp.json["username"] == "alice"
    again = world.client.simulate_post("/api/1/profile/create", params=params)
    assert (again.status_code, again.json["errorCode"]) == (409, "PROFILE_EXISTS")
