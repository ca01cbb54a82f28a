"""The `attachd` command: set-up, tenants and access tokens, uploads and pipeline operations.

Output meant for scripts (a new token id) goes alone on stdout; everything else is for people.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from core.errors import AttachdError
from core.settings import Settings


class _Ctx:
    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
            # The CLI logs like the services (JSON by default); its output for people is echoed.
            from core.logs import configure

            configure(self._settings.log_level, self._settings.log_format)
        return self._settings

    def records(self) -> Any:
        from storage.records import RecordStore

        return RecordStore.from_url(self.settings.database_url)

    def objects(self) -> Any:
        from storage.objects import ObjectStore

        s = self.settings
        return ObjectStore.from_settings(s)

    def pipeline(self) -> Any:
        from storage.broker import make_celery
        from workers.tasks import build_pipeline

        return build_pipeline(self.settings, make_celery(self.settings))


pass_ctx = click.make_pass_decorator(_Ctx, ensure=True)


@click.group()
def cli() -> None:
    """attachd: upload pipeline for profile attachments (Crafter Profile compatible)."""


def main() -> None:
    try:
        cli(standalone_mode=True)
    except AttachdError as exc:
        click.echo(f"attachd: {exc}", err=True)
        sys.exit(1)


# --- set-up ---------------------------------------------------------------------------------


@cli.command()
@pass_ctx
def migrate(ctx: _Ctx) -> None:
    """Bring the database schema to the latest version."""
    from storage.migrate import upgrade

    upgrade(ctx.settings.database_url)
    click.echo("database migrated", err=True)


@cli.command("init-storage")
@pass_ctx
def init_storage(ctx: _Ctx) -> None:
    """Create the buckets and the staging lifecycle rule (idempotent)."""
    ctx.objects().ensure_buckets(ctx.settings.staging_expiry_days)
    click.echo("buckets ready", err=True)


@cli.command()
@click.option("--tenant", default="default", show_default=True)
@click.option("--username", default="demo", show_default=True)
@pass_ctx
def demo(ctx: _Ctx, tenant: str, username: str) -> None:
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
    state_file.write_text(json.dumps({"tenant": tenant, "token": token, "profile": profile.id}))
    state_file.chmod(0o600)
    s = ctx.settings
    base = f"http://{s.api_host}:{s.api_port}{s.url_prefix}/api/1/profile/{profile.id}"
    click.echo(f"demo tenant:  {tenant}")
    click.echo(f"access token: {token}")
    click.echo(f"profile id:   {profile.id}")
    click.echo("try:")
    click.echo(f"  curl -F attachment=@picture.png '{base}/uploadAttachment?accessTokenId={token}'")
    click.echo(f"  curl '{base}/attachments?accessTokenId={token}'")


# --- tenants and tokens ---------------------------------------------------------------------


@cli.group()
def tenant() -> None:
    """Tenants."""


@tenant.command("create")
@click.argument("name")
@pass_ctx
def tenant_create(ctx: _Ctx, name: str) -> None:
    ctx.records().create_tenant(name)
    click.echo(f"tenant {name} created", err=True)


@tenant.command("list")
@pass_ctx
def tenant_list(ctx: _Ctx) -> None:
    for name in ctx.records().list_tenants():
        click.echo(name)


@cli.group()
def token() -> None:
    """Access tokens (Crafter's model: per-tenant allowed actions, '*' wildcards, expiry)."""


_ACTIONS = (
    "CREATE_TENANT",
    "READ_TENANT",
    "UPDATE_TENANT",
    "DELETE_TENANT",
    "MANAGE_PROFILES",
    "MANAGE_TICKETS",
    "*",
)


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
    type=click.Choice(_ACTIONS),
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
    ctx: _Ctx,
    application: str,
    tenants: tuple[str, ...],
    actions: tuple[str, ...],
    master: bool,
    expires: datetime | None,
) -> None:
    """Create a token and print only its id on stdout."""
    from datetime import UTC

    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    permissions = [{"tenant": t, "allowedActions": list(actions)} for t in tenants]
    click.echo(
        ctx.records().create_token(application, permissions, master=master, expires_on=expires)
    )


@token.command("list")
@pass_ctx
def token_list(ctx: _Ctx) -> None:
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
def token_revoke(ctx: _Ctx, token_id: str) -> None:
    """Revoke by full id, or by the prefix `token list` shows."""
    ctx.records().revoke_token(token_id)
    click.echo("token revoked", err=True)


# --- uploads and pipeline -------------------------------------------------------------------


@cli.group()
def uploads() -> None:
    """Uploads and their pipeline state."""


def _upload_dict(up: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(up).items()}


@uploads.command("list")
@click.option("--state", required=True)
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def uploads_list(ctx: _Ctx, state: str, limit: int) -> None:
    for up in ctx.records().uploads_in_state(state, limit=limit):
        click.echo(f"{up.id}  {up.state:<10} {up.original_name}  {up.reason or ''}")


@uploads.command("show")
@click.argument("upload_id")
@pass_ctx
def uploads_show(ctx: _Ctx, upload_id: str) -> None:
    up = ctx.records().get_upload(upload_id)
    if up is None:
        raise click.ClickException(f"no upload {upload_id}")
    click.echo(json.dumps(_upload_dict(up), indent=2))


@uploads.command("retry")
@click.argument("upload_id", required=False)
@click.option(
    "--state", type=click.Choice(["failed"]), default=None, help="Retry every upload in this state."
)
@pass_ctx
def uploads_retry(ctx: _Ctx, upload_id: str | None, state: str | None) -> None:
    """Send a failed upload through the pipeline again."""
    if bool(upload_id) == bool(state):
        raise click.UsageError("give an upload id or --state failed")
    pipeline = ctx.pipeline()
    ids = [upload_id] if upload_id else [u.id for u in ctx.records().uploads_in_state("failed")]
    done = sum(1 for uid in ids if pipeline.retry(uid))
    click.echo(f"{done} of {len(ids)} upload(s) sent again", err=True)
    if upload_id and not done:
        sys.exit(1)


@cli.command()
@pass_ctx
def reconcile(ctx: _Ctx) -> None:
    """Re-send stuck uploads and delete orphaned staged objects, now."""
    click.echo(json.dumps(ctx.pipeline().reconcile()))


@cli.command()
@click.option(
    "--since",
    type=int,
    default=None,
    help="Rescan files scanned with this signature version or older "
    "(default: older than clamd's current version).",
)
@pass_ctx
def rescan(ctx: _Ctx, since: int | None) -> None:
    """Queue attached files for a rescan with the current signatures (throttled by workers)."""
    pipeline = ctx.pipeline()
    total = 0
    while True:
        queued = pipeline.rescan(since=since, limit=500)
        total += queued
        if queued < 500:
            break
    click.echo(f"{total} file(s) queued for rescan", err=True)


# --- the worker fleet -----------------------------------------------------------------------


def _fleet(ctx: _Ctx, timeout: float) -> Any:
    from attachd.fleet import Fleet
    from core.tasks import Queue
    from storage.broker import make_celery
    from storage.telemetry import Telemetry

    s = ctx.settings
    return Fleet(make_celery(s), Telemetry.from_url(s.redis_url), tuple(Queue), timeout=timeout)


@cli.group()
def fleet() -> None:
    """Workers: what runs where and what each holds; draining one without losing work."""


@fleet.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--timeout", default=1.0, show_default=True, help="Seconds to wait for replies.")
@pass_ctx
def fleet_status(ctx: _Ctx, as_json: bool, timeout: float) -> None:
    """Workers online, their queues, active and reserved tasks; queue depths."""
    from attachd.fleet import render

    status = _fleet(ctx, timeout).status()
    click.echo(json.dumps(status.to_dict(), indent=2) if as_json else render(status))


@fleet.command("drain")
@click.argument("worker")
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Wait until the worker holds no task."
)
@click.option("--timeout", default=1800.0, show_default=True, help="Longest wait, in seconds.")
@click.option("--shutdown", is_flag=True, help="Then shut the worker down (warm).")
@pass_ctx
def fleet_drain(ctx: _Ctx, worker: str, wait: bool, timeout: float, shutdown: bool) -> None:
    """Stop WORKER consuming, and let it finish what it has."""
    fl = _fleet(ctx, 2.0)

    def progress(state: Any) -> None:
        click.echo(
            f"{state.name}: {len(state.active)} running, {len(state.reserved)} reserved, "
            f"{len(state.scheduled)} scheduled",
            err=True,
        )

    stopped, state = fl.drain(worker, wait=wait, timeout=timeout, progress=progress)
    click.echo(f"{worker} stopped consuming {', '.join(stopped) or 'nothing'}", err=True)
    if wait and state.held:
        raise click.ClickException(f"{worker} still holds {state.held} task(s) after {timeout}s")
    if shutdown:
        fl.shutdown(worker)
        click.echo(f"{worker} asked to shut down", err=True)


@fleet.command("resume")
@click.argument("worker")
@click.option("--queue", "queues", multiple=True, help="Default: the queues it started with.")
@pass_ctx
def fleet_resume(ctx: _Ctx, worker: str, queues: tuple[str, ...]) -> None:
    """Undo a drain: WORKER consumes its queues again."""
    resumed = _fleet(ctx, 2.0).resume(worker, list(queues))
    click.echo(f"{worker} consuming {', '.join(resumed)}", err=True)


@cli.command()
@click.option(
    "--pool",
    "pool_name",
    default=None,
    help="Run only this pool of ATTACHD_WORKER_POOLS (e.g. scan); default: all.",
)
@click.option("--name", default="", help="Added to node names, to run two nodes on one host.")
@click.option("--hostname", default=None, help="Celery node name (with --pool only).")
@pass_ctx
def worker(ctx: _Ctx, pool_name: str | None, name: str, hostname: str | None) -> None:
    """Start the Celery workers of this node: one per pool, supervised."""
    import os

    from attachd.launch import check_pools, node_name, supervise, worker_argv
    from core.logs import configure
    from core.tasks import Queue

    s = ctx.settings
    configure(s.log_level, s.log_format)
    pools = s.pools()
    check_pools(pools, tuple(Queue))
    if pool_name is not None:
        chosen = [p for p in pools if p.name == pool_name]
        if not chosen:
            raise click.UsageError(
                f"no pool {pool_name!r} in ATTACHD_WORKER_POOLS "
                f"({', '.join(p.name for p in pools)})"
            )
        argv = worker_argv(s, chosen[0], hostname or node_name(chosen[0], name))
        os.execv(argv[0], argv)  # noqa: S606 - argv from settings, no shell
    if hostname:
        raise click.UsageError("--hostname needs --pool; use --name to tell nodes apart")
    sys.exit(supervise({p.name: worker_argv(s, p, node_name(p, name)) for p in pools}))


@cli.command()
@pass_ctx
def flower(ctx: _Ctx) -> None:
    """Start Flower: persistent, with basic auth from settings."""
    import os

    from attachd.launch import flower_command

    argv, env = flower_command(ctx.settings)
    os.execve(argv[0], argv, env)  # noqa: S606 - argv from settings, no shell


if __name__ == "__main__":
    main()
