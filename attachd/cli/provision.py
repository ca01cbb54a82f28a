"""Set-up: the database schema, the buckets, and a demo account for `make run`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from attachd.cli.context import Context, pass_ctx


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte: created 0600, never written
    first and chmod'ed after (a reader in between would have the token)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        # A file that existed with a wider mode keeps it through O_CREAT: narrow it first.
        os.fchmod(out.fileno(), 0o600)
        out.write(text)


@click.command()
@pass_ctx
def migrate(ctx: Context) -> None:
    """Bring the database schema to the latest version."""
    from storage.migrate import upgrade

    upgrade(ctx.settings.database_url)
    click.echo("database migrated", err=True)


@click.command("init-storage")
@pass_ctx
def init_storage(ctx: Context) -> None:
    """Create the buckets and the staging lifecycle rule (idempotent)."""
    ctx.objects().ensure_buckets(ctx.settings.staging_expiry_days)
    click.echo("buckets ready", err=True)


@click.command()
@click.option("--tenant", default="default", show_default=True)
@click.option("--username", default="demo", show_default=True)
@pass_ctx
def demo(ctx: Context, tenant: str, username: str) -> None:
    """Create a demo tenant, access token and profile if none exist, and print a curl command.

    The demo token id is kept in var/demo.json (token ids are stored hashed, so this is the only
    way to print it again on the next `make run`)."""
    records = ctx.records()
    state_file = Path(ctx.settings.var_dir) / "demo.json"
    state: dict[str, str] = {}
    if state_file.exists():
        state = json.loads(state_file.read_text())
    if not records.tenant_exists(tenant):
        records.create_tenant(tenant)
    token = state.get("token")
    if not token or records.find_token(token) is None:
        token = records.create_token(
            "demo", [{"tenant": tenant, "allowedActions": ["MANAGE_PROFILES"]}]
        )
    profile = records.find_profile_by_username(tenant, username)
    if profile is None:
        profile = records.create_profile(tenant, username, f"{username}@example.com", enabled=True)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    write_secret(state_file, json.dumps({"tenant": tenant, "token": token, "profile": profile.id}))
    s = ctx.settings
    base = f"http://{s.api_host}:{s.api_port}{s.url_prefix}/api/1/profile/{profile.id}"
    click.echo(f"demo tenant:  {tenant}")
    click.echo(f"access token: {token}")
    click.echo(f"profile id:   {profile.id}")
    click.echo("try:")
    click.echo(f"  curl -F attachment=@picture.png '{base}/uploadAttachment?accessTokenId={token}'")
    click.echo(f"  curl '{base}/attachments?accessTokenId={token}'")


COMMANDS: tuple[click.Command, ...] = (migrate, init_storage, demo)
