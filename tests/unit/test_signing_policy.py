"""The link signature, the effective tenant limits, and the policy cache's lifetime."""

from __future__ import annotations

import pytest

from api.policy import TenantLimits
from api.signing import Link, Signer
from core.errors import AccessDenied, ConfigError, NotConfigured
from core.policy import Limits, TenantPolicy, effective
from core.settings import Settings

KEY = "k" * 32
OTHER = "o" * 32


def test_a_signed_link_verifies_and_every_field_is_covered() -> None:
    signer = Signer((KEY,), clock=lambda: 1000.0)
    query = signer.query(Link("u1", 2000, 128))
    assert signer.verify("u1", query["expires"], query["size"], query["sig"]) == Link(
        "u1", 2000, 128
    )
    for upload_id, expires, size in (
        ("u2", "2000", "128"),
        ("u1", "2001", "128"),
        ("u1", "2000", None),
    ):
        with pytest.raises(AccessDenied, match="signature"):
            signer.verify(upload_id, expires, size, query["sig"])


def test_expiry_is_checked_after_the_signature() -> None:
    query = Signer((KEY,)).query(Link("u1", 1500))
    late = Signer((KEY,), clock=lambda: 1500.0)
    with pytest.raises(AccessDenied, match="expired"):
        late.verify("u1", query["expires"], None, query["sig"])
    with pytest.raises(AccessDenied, match="signature"):
        Signer((OTHER,), clock=lambda: 1500.0).verify("u1", query["expires"], None, query["sig"])


def test_no_key_means_not_configured() -> None:
    with pytest.raises(NotConfigured, match="ATTACHD_URL_SECRET"):
        Signer(()).sign(Link("u", 1))


def test_short_keys_stop_start_up() -> None:
    with pytest.raises(ConfigError, match="ATTACHD_URL_SECRET"):
        Settings.from_env({"ATTACHD_URL_SECRET": "short"})
    settings = Settings.from_env({"ATTACHD_URL_SECRET": f"{KEY}, {OTHER}"})
    assert settings.url_secret == (KEY, OTHER)


def test_a_tenant_policy_only_narrows() -> None:
    types = ("image/png", "image/jpeg", "image/gif")
    assert effective(None, 100, types) == Limits(100, types)
    policy = TenantPolicy("t", max_upload_size=50, allowed_types=("image/gif", "image/png", "x/y"))
    assert effective(policy, 100, types) == Limits(50, ("image/png", "image/gif"))
    assert effective(TenantPolicy("t", max_upload_size=500), 100, types).max_upload_size == 100
    assert effective(TenantPolicy("t", allowed_types=("x/y",)), 100, types).allowed_types == ()


class CountingReads:
    def __init__(self) -> None:
        self.reads = 0
        self.policy: TenantPolicy | None = None

    def tenant_policy(self, tenant: str) -> TenantPolicy | None:
        self.reads += 1
        return self.policy


def test_the_policy_cache_lives_ttl_seconds() -> None:
    now = [0.0]
    reads = CountingReads()
    limits = TenantLimits(reads, Settings(max_upload_size=100), ttl=5.0, clock=lambda: now[0])
    assert limits("t").max_upload_size == 100
    reads.policy = TenantPolicy("t", max_upload_size=10)
    now[0] = 4.9
    assert limits("t").max_upload_size == 100
    assert reads.reads == 1
    now[0] = 5.0
    assert limits("t").max_upload_size == 10
    assert reads.reads == 2
    limits("other")
    assert reads.reads == 3
