"""`attachd tenant policy` and `attachd tenant show`: a tenant's own size limit and types, which
can only narrow the installation's (core/policy.py). API processes see a change within
api/policy.py's cache lifetime (5 s)."""

from __future__ import annotations

import re

import click

from attachd.cli.context import Context, pass_ctx
from core.errors import NoSuchTenant
from core.policy import effective

_SIZE = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*(kib|mib|gib|kb|mb|gb|b)?\s*$")
_FACTORS = {"": 1, "b": 1, "kib": 1024, "kb": 1024, "mib": 1024**2, "mb": 1024**2}
_FACTORS |= {"gib": 1024**3, "gb": 1024**3}


def parse_size(text: str) -> int:
    """Bytes, with the settings' suffixes (512KiB, 1MiB, 2GiB)."""
    match = _SIZE.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a size such as 1MiB or 500KiB")
    size = int(float(match.group(1)) * _FACTORS[(match.group(2) or "").lower()])
    if size < 1:
        raise click.BadParameter("must be at least one byte")
    return size


def readable(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


@click.command("policy")
@click.argument("name")
@click.option("--max-size", default=None, help="Largest file for this tenant (1MiB, 500KiB).")
@click.option("--types", default=None, help="Allowed types, comma-separated (image/png,...).")
@click.option("--clear", is_flag=True, help="Drop the tenant's policy first (back to defaults).")
@pass_ctx
def tenant_policy(
    ctx: Context, name: str, max_size: str | None, types: str | None, clear: bool
) -> None:
    """Narrow the installation's limits for one tenant."""
    if max_size is None and types is None and not clear:
        raise click.UsageError("give --max-size, --types or --clear")
    settings = ctx.settings
    size = parse_size(max_size) if max_size is not None else None
    type_list = None
    if types is not None:
        type_list = [t.strip() for t in types.split(",") if t.strip()]
        outside = [t for t in type_list if t not in settings.allowed_types]
        if not type_list or outside:
            raise click.BadParameter(
                f"not allowed by the installation: {', '.join(outside) or '(none given)'}; "
                f"ATTACHD_ALLOWED_TYPES is {','.join(settings.allowed_types)}",
                param_hint="--types",
            )
    if size is not None and size > settings.max_upload_size:
        click.echo(
            f"note: {readable(size)} is above the installation's "
            f"{readable(settings.max_upload_size)}, which stays the limit",
            err=True,
        )
    records = ctx.records()
    if not records.tenant_exists(name):
        raise NoSuchTenant(name)
    if clear:
        records.clear_tenant_policy(name)
    if size is not None or type_list is not None:
        records.set_tenant_policy(name, max_upload_size=size, allowed_types=type_list)
    click.echo(f"tenant {name} policy updated", err=True)


@click.command("show")
@click.argument("name")
@pass_ctx
def tenant_show(ctx: Context, name: str) -> None:
    """The tenant's effective limits, and where each comes from."""
    settings = ctx.settings
    records = ctx.records()
    if not records.tenant_exists(name):
        raise NoSuchTenant(name)
    policy = records.tenant_policy(name)
    limits = effective(policy, settings.max_upload_size, settings.allowed_types)
    own_size = policy is not None and policy.max_upload_size is not None
    own_types = policy is not None and policy.allowed_types is not None
    click.echo(f"tenant: {name}")
    click.echo(
        f"max-size: {limits.max_upload_size} ({readable(limits.max_upload_size)}; "
        f"{'tenant policy' if own_size else 'installation'})"
    )
    click.echo(
        f"types: {','.join(limits.allowed_types) or '(none)'} "
        f"({'tenant policy' if own_types else 'installation'})"
    )
