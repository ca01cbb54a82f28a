"""A tenant's upload policy, and the effective limits it gives with the installation's.

A tenant's policy can only narrow the installation's (ATTACHD_MAX_UPLOAD_SIZE,
ATTACHD_ALLOWED_TYPES): a larger size or a type the installation does not allow is ignored, so
an operator's settings remain the ceiling whatever a tenant's row says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TenantPolicy:
    """What is stored for a tenant; None means "as the installation"."""

    tenant: str
    max_upload_size: int | None = None
    allowed_types: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Limits:
    """The limits an upload to one tenant is held to."""

    max_upload_size: int
    allowed_types: tuple[str, ...]


def effective(
    policy: TenantPolicy | None, max_upload_size: int, allowed_types: tuple[str, ...]
) -> Limits:
    if policy is None:
        return Limits(max_upload_size, allowed_types)
    size = max_upload_size
    if policy.max_upload_size is not None:
        size = min(size, policy.max_upload_size)
    types = allowed_types
    if policy.allowed_types is not None:
        wanted = set(policy.allowed_types)
        # The installation's order is kept: the first type of an extension shared by two wins.
        types = tuple(t for t in allowed_types if t in wanted)
    return Limits(size, types)
