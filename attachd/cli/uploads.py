"""Uploads and the pipeline: what state an upload is in, sending failed ones again, and running
the reconciler or a rescan sweep now rather than at beat's next tick."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from attachd.cli.context import Context, pass_ctx
from core.domain import State

if TYPE_CHECKING:
    from storage.records import Upload

# `rescan` queues this many files per call, until a call queues fewer.
RESCAN_BATCH = 500


@click.group()
def uploads() -> None:
    """Uploads and their pipeline state."""


def _upload_dict(up: Upload) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(up).items()}


@uploads.command("list")
@click.option("--state", required=True)
@click.option("--limit", default=100, show_default=True)
@pass_ctx
def uploads_list(ctx: Context, state: str, limit: int) -> None:
    for up in ctx.records().uploads_in_state(state, limit=limit):
        click.echo(f"{up.id}  {up.state:<10} {up.original_name}  {up.reason or ''}")


@uploads.command("show")
@click.argument("upload_id")
@pass_ctx
def uploads_show(ctx: Context, upload_id: str) -> None:
    up = ctx.records().get_upload(upload_id)
    if up is None:
        raise click.ClickException(f"no upload {upload_id}")
    click.echo(json.dumps(_upload_dict(up), indent=2))


@uploads.command("retry")
@click.argument("upload_id", required=False)
@click.option(
    "--state",
    type=click.Choice([State.FAILED.value]),
    default=None,
    help="Retry every upload in this state.",
)
@pass_ctx
def uploads_retry(ctx: Context, upload_id: str | None, state: str | None) -> None:
    """Send a failed upload through the pipeline again."""
    if bool(upload_id) == bool(state):
        raise click.UsageError("give an upload id or --state failed")
    upkeep = ctx.works().upkeep
    ids = [upload_id] if upload_id else [u.id for u in ctx.records().uploads_in_state(State.FAILED)]
    done = sum(1 for uid in ids if upkeep.retry(uid))
    click.echo(f"{done} of {len(ids)} upload(s) sent again", err=True)
    if upload_id and not done:
        # The count above is the whole message; the exit code tells a script it did not happen.
        sys.exit(1)


@click.command()
@pass_ctx
def reconcile(ctx: Context) -> None:
    """Re-send stuck uploads and webhook deliveries whose message was lost, and delete orphaned
    staged objects, now."""
    from storage.broker import make_celery
    from workers.webhooks import build_courier

    works = ctx.works()
    result = works.upkeep.reconcile()
    courier = build_courier(ctx.settings, make_celery(ctx.settings), works.pipeline.records)
    result["webhooks_resent"] = courier.sweep()
    click.echo(json.dumps(result))


@click.command()
@click.option(
    "--since",
    type=int,
    default=None,
    help="Rescan files scanned with this signature version or older "
    "(default: older than clamd's current version).",
)
@pass_ctx
def rescan(ctx: Context, since: int | None) -> None:
    """Queue attached files for a rescan with the current signatures (throttled by workers)."""
    rescans = ctx.works().rescans
    total = 0
    while True:
        queued = rescans.rescan(since=since, limit=RESCAN_BATCH)
        total += queued
        if queued < RESCAN_BATCH:
            break
    click.echo(f"{total} file(s) queued for rescan", err=True)


COMMANDS: tuple[click.Command, ...] = (uploads, reconcile, rescan)
