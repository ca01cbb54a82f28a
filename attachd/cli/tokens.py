"""Tenants and access tokens (Crafter's model: per-tenant allowed actions, '*' wildcards,
expiry; ids stored hashed)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from attachd.cli.context import Context, pass_ctx
from attachd.cli.policy import tenant_policy, tenant_show

ACTIONS = (
    "CREATE_TENANT",
    "READ_TENANT",
    "UPDATE_TENANT",
    "DELETE_TENANT",
    "MANAGE_PROFILES",
    "MANAGE_TICKETS",
    "*",
)


@click.group()
def tenant() -> None:
    """Tenants."""


@tenant.command("create")
@click.argument("name")
@pass_ctx
def tenant_create(ctx: Context, name: str) -> None:
    ctx.records().create_tenant(name)
    click.echo(f"tenant {name} created", err=True)


@tenant.command("list")
@pass_ctx
def tenant_list(ctx: Context) -> None:
    for name in ctx.records().list_tenants():
        click.echo(name)


@click.group()
def token() -> None:
    """Access tokens (Crafter's model: per-tenant allowed actions, '*' wildcards, expiry)."""


@token.command("create")
@click.option("--application", required=True)
@click.option(
    "--tenant",
    "tenants",
    multiple=True,
    required=True,
    help="Tenant name or '*'; repeat for several tenants (same actions for each).",
)
@click.option(
    "--action",
    "actions",
    multiple=True,
    required=True,
    type=click.Choice(ACTIONS),
    help="Allowed action; repeatable.",
)
@click.option("--master", is_flag=True, help="May administer access tokens.")
@click.option(
    "--expires",
    type=click.DateTime(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M"]
    ),
    default=None,
    help="ISO-8601 expiry (UTC when no offset is given).",
)
@pass_ctx
def token_create(
    ctx: Context,
    application: str,
    tenants: tuple[str, ...],
    actions: tuple[str, ...],
    master: bool,
    expires: datetime | None,
) -> None:
    """Create a token and print only its id on stdout."""
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    permissions = [{"tenant": t, "allowedActions": list(actions)} for t in tenants]
    click.echo(
        ctx.records().create_token(application, permissions, master=master, expires_on=expires)
    )


@token.command("list")
@pass_ctx
def token_list(ctx: Context) -> None:
    """Tokens by prefix (ids are stored hashed and cannot be shown again)."""
    for t in ctx.records().list_tokens():
        perms = "; ".join(
            f"{p['tenant']}:{','.join(p['allowedActions'])}" for p in t.tenant_permissions
        )
        expiry = t.expires_on.isoformat() if t.expires_on else "never"
        click.echo(f"{t.prefix}…  {t.application}  master={t.master}  expires={expiry}  {perms}")


@token.command("revoke")
@click.argument("token_id")
@pass_ctx
def token_revoke(ctx: Context, token_id: str) -> None:
    """Revoke by full id, or by the prefix `token list` shows."""
    ctx.records().revoke_token(token_id)
    click.echo("token revoked", err=True)


tenant.add_command(tenant_policy)
tenant.add_command(tenant_show)

COMMANDS: tuple[click.Command, ...] = (tenant, token)
