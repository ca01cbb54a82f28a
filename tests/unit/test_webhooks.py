"""The pieces of webhook delivery that are pure: the Standard Webhooks signature (checked with
the `standardwebhooks` package, an implementation that is not ours), rotation, the retry
schedule, the receiver-address guard."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from core.errors import ConfigError
from core.settings import Settings
from core.webhooks import (
    EventType,
    forbidden_address,
    new_secret,
    parse_events,
    retry_delay,
    signature_header,
)
from storage.webhooks import Subscription


def _headers(msg_id: str, stamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def test_signature_verifies_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = json.dumps({"type": "upload.attached", "data": {"fileName": "x"}}).encode()
    stamp = int(time.time())
    sig = signature_header([secret], "msg_1", stamp, body)
    assert Webhook(secret).verify(body, _headers("msg_1", stamp, sig))["type"] == "upload.attached"
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, _headers("msg_1", stamp, sig))
    with pytest.raises(WebhookVerificationError):  # the id is signed too
        Webhook(secret).verify(body, _headers("msg_2", stamp, sig))


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    now = datetime.now(UTC)
    sub = Subscription("s", "http://x", None, None, new, old, now + timedelta(hours=1), now)
    assert sub.secrets_at(now) == (new, old)
    assert sub.secrets_at(now + timedelta(hours=2)) == (new,)
    body, stamp = b'{"a":1}', int(time.time())
    sig = signature_header(sub.secrets_at(now), "msg_r", stamp, body)
    assert len(sig.split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(body, _headers("msg_r", stamp, sig))


def test_retry_schedule_first_within_base_doubling_capped() -> None:
    rng = random.Random(7)
    firsts = [retry_delay(1, 15, 3600, rng) for _ in range(200)]
    assert all(7.5 <= d <= 15 for d in firsts)
    assert len({round(d, 3) for d in firsts}) > 100  # jittered, not in step
    assert all(60 <= retry_delay(4, 15, 3600, rng) <= 120 for _ in range(50))
    assert all(1800 <= retry_delay(30, 15, 3600, rng) <= 3600 for _ in range(50))
    # With the defaults, the attempts within 24 hours: enough to outlast a day-long outage.
    total, n = 0.0, 0
    while total < 86400:
        n += 1
        total += retry_delay(n, 15, 3600, random.Random(n))
    assert 25 <= n <= 50


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.0.9",
        "172.16.5.5",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
        "::ffff:127.0.0.1",
        "fc00::1",
        "224.0.0.1",
        # Issue 23: shared address space (100.100.100.200 is a cloud's metadata service)
        "100.64.0.1",
        "100.100.100.200",
        # IPv4 inside IPv6: 6to4, NAT64, Teredo (client 10.0.0.1 is the inverted last 32 bits)
        "2002:7f00:1::",
        "2002:a00:1::1",
        "64:ff9b::7f00:1",
        "64:ff9b::6464:64c8",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        # local-use NAT64, IPv4-compatible, site-local, documentation, benchmarking, class E
        "64:ff9b:1::a00:1",
        "::7f00:1",
        "fec0::1",
        "2001:db8::1",
        "192.0.2.1",
        "198.18.0.1",
        "240.0.0.1",
        "ff0e::1",
    ],
)
def test_guard_refuses_internal_addresses(address: str) -> None:
    assert forbidden_address(address) is not None


def test_guard_names_what_a_wrapped_address_carries() -> None:
    assert (
        forbidden_address("2002:7f00:1::") == "a 6to4 loopback address (127.0.0.1 in 2002:7f00:1::)"
    )
    assert "carrier-grade NAT" in (forbidden_address("100.100.100.200") or "")
    # A wrapped global address is as good as the address itself; so is one an operator allowed.
    assert forbidden_address("2002:5db8:d822::1") is None
    assert forbidden_address("64:ff9b::5db8:d822") is None
    assert forbidden_address("64:ff9b::7f00:1", ["127.0.0.0/8"]) is None


def test_guard_lets_public_and_allowed_networks_through() -> None:
    assert forbidden_address("93.184.216.34") is None
    assert forbidden_address("2606:2800:220:1::1") is None
    assert forbidden_address("127.0.0.1", ["127.0.0.0/8"]) is None
    assert forbidden_address("10.0.0.1", ["127.0.0.0/8"]) is not None


def test_event_lists_and_settings() -> None:
    assert parse_events(None) is None
    assert parse_events("upload.attached, attachment.deleted") == (
        EventType.ATTACHED,
        EventType.DELETED,
    )
    with pytest.raises(ValueError, match=r"upload\.nope"):
        parse_events("upload.attached,upload.nope")
    s = Settings.from_env({"ATTACHD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128"})
    assert s.webhook_allowed_networks == ("127.0.0.0/8", "::1/128")
    assert "webhooks=1-4" in Settings.from_env({}).worker_pools
    with pytest.raises(ConfigError, match="ATTACHD_WEBHOOK_ALLOWED_NETWORKS"):
        Settings.from_env({"ATTACHD_WEBHOOK_ALLOWED_NETWORKS": "localhost"})
    with pytest.raises(ConfigError, match="ATTACHD_WEBHOOK_RETRY_MAX_SECONDS"):
        Settings.from_env({"ATTACHD_WEBHOOK_RETRY_MAX_SECONDS": "1"})
