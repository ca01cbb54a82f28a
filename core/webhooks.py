"""Verdict events as types: what happened to an upload, how a delivery stands, the Standard
Webhooks signature (standardwebhooks.com), the retry schedule and the receiver-address guard.

Pure functions over values, so the store, the worker and the CLI agree on each of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable, Sequence
from enum import StrEnum

from core.domain import State

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SECRET_BYTES = 32


class EventType(StrEnum):
    ATTACHED = "upload.attached"
    INFECTED = "upload.infected"
    REJECTED = "upload.rejected"
    FAILED = "upload.failed"
    # Emitted by the quarantine release (issue 14) once it lands; defined here so it can.
    RELEASED = "upload.released"
    DELETED = "attachment.deleted"


# The upload states whose arrival is an event. `superseded` is not: the newer version's
# `upload.attached` already says it.
EVENT_FOR_STATE: dict[State, EventType] = {
    State.ATTACHED: EventType.ATTACHED,
    State.INFECTED: EventType.INFECTED,
    State.REJECTED: EventType.REJECTED,
    State.FAILED: EventType.FAILED,
}


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Gave up after the retry window: visible in `attachd webhook deliveries --failed`.
    FAILED = "failed"


def parse_events(text: str | None) -> tuple[EventType, ...] | None:
    """`upload.attached,upload.infected` → the types; None or empty: every type. A name that is
    not an event type raises ValueError naming it."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    try:
        return tuple(EventType(n) for n in names)
    except ValueError:
        bad = [n for n in names if n not in set(EventType)]
        raise ValueError(f"unknown event type(s): {', '.join(bad)}") from None


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, the key being the secret's base64 part.
    Written from the specification; the tests verify it with the `standardwebhooks` package."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per valid secret, space-separated: during a rotation the receiver may
    still hold the old secret, and the specification lets it accept either."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry): base · 2^(attempt-1),
    capped, with jitter drawn from its upper half, so receivers that come back are not hit by
    every sender in the same second, and the first retry still comes within `base` seconds."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


# Never a webhook's receiver unless allowed by ATTACHD_WEBHOOK_ALLOWED_NETWORKS: the machine
# itself, its link (cloud metadata at 169.254.169.254), private networks and what is not unicast.
def forbidden_address(address: str, allowed: Iterable[str] = ()) -> str | None:
    """Why `address` may not receive webhooks, or None when it may."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for net in allowed:
        if ip in ipaddress.ip_network(net, strict=False):
            return None
    for what, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
    ):
        if test:
            return f"a {what} address"
    return None


def check_networks(networks: Sequence[str]) -> tuple[str, ...]:
    """Each entry a CIDR (or a single address); ValueError otherwise."""
    for net in networks:
        ipaddress.ip_network(net, strict=False)
    return tuple(networks)
