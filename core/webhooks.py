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


# Never a webhook's receiver unless allowed by ATTACHD_WEBHOOK_ALLOWED_NETWORKS: anything that
# is not a global unicast address (the machine itself, its link with cloud metadata at
# 169.254.169.254, private and carrier-grade NAT networks with metadata at 100.100.100.200,
# documentation and benchmark ranges, multicast), including when it is wrapped in an IPv6
# address that a router unwraps on the way: IPv4-mapped, 6to4, Teredo and NAT64.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Not global, yet `is_global` says so on some Python versions: shared address space (RFC 6598),
# local-use NAT64 (RFC 8215, where the IPv4 address sits depends on the local prefix length) and
# the deprecated IPv4-compatible addresses (::a.b.c.d), which some stacks still route as IPv4.
_NOT_GLOBAL = (
    ("carrier-grade NAT", ipaddress.IPv4Network("100.64.0.0/10")),
    ("local-use NAT64", ipaddress.IPv6Network("64:ff9b:1::/48")),
    ("IPv4-compatible", ipaddress.IPv6Network("::/96")),
)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _unwrapped(ip: Address) -> list[tuple[str, Address]]:
    """`ip` and every IPv4 address it carries, with what carries it."""
    found: list[tuple[str, Address]] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            found.append(("IPv4-mapped ", ip.ipv4_mapped))
        if ip.sixtofour is not None:
            found.append(("6to4 ", ip.sixtofour))
        if ip.teredo is not None:
            server, client = ip.teredo
            found += [("Teredo ", server), ("Teredo ", client)]
        if ip in _NAT64:
            # A translator's address stands for the IPv4 one in its last 32 bits, and only
            # that one decides (an IPv6-only host with DNS64 reaches every receiver this way).
            return [("NAT64 ", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))]
    # The carried addresses first: their reason is the one worth reading.
    return [*found, ("", ip)]


def _what(ip: Address) -> str | None:
    """What kind of non-global address `ip` is, or None when it is a global unicast one."""
    for what, net in _NOT_GLOBAL:
        if ip.version == net.version and ip in net:
            return what
    for what, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("non-global", not ip.is_global),
    ):
        if test:
            return what
    return None


def forbidden_address(address: str, allowed: Iterable[str] = ()) -> str | None:
    """Why `address` may not receive webhooks, or None when it may."""
    ip = ipaddress.ip_address(address)
    carried = _unwrapped(ip)
    networks = [ipaddress.ip_network(net, strict=False) for net in allowed]
    # An allowed network may name the address as written or the IPv4 address it carries.
    if any(addr in net for _, addr in carried for net in networks if addr.version == net.version):
        return None
    for how, addr in carried:
        what = _what(addr)
        if what is not None:
            inside = f" ({addr} in {ip})" if addr != ip else ""
            article = "an" if (how or what)[0] in "AEIOUaeiou" else "a"
            return f"{article} {how}{what} address{inside}"
    return None


def check_networks(networks: Sequence[str]) -> tuple[str, ...]:
    """Each entry a CIDR (or a single address); ValueError otherwise."""
    for net in networks:
        ipaddress.ip_network(net, strict=False)
    return tuple(networks)
