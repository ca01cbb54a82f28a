"""Monitoring and profile routes in-process."""

from __future__ import annotations

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
    assert "redis is unavailable" in resp.json["dependencies"]["redis"]["error"]
    assert resp.json["dependencies"]["database"]["status"] == "up"


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
