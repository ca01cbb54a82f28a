"""`attachd quarantine`: what clamd's verdicts hold back, releasing a false positive with a
recorded reason, and purging old evidence (workers/quarantine.py does the work)."""

from __future__ import annotations

import getpass
import json
import logging
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import click

from attachd.cli.context import Context, pass_ctx
from core.errors import AttachdError

if TYPE_CHECKING:
    from workers.quarantine import QuarantineReview

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 30d, 12h or 90m")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _review(ctx: Context) -> QuarantineReview:
    from storage.telemetry import Telemetry
    from workers.quarantine import QuarantineReview

    works = ctx.works()
    telemetry = Telemetry.from_url(ctx.settings.redis_url)

    def count(action: str) -> None:
        # A Redis that is down costs a count, never the operator's action.
        try:
            telemetry.incr("quarantine_actions", action)
        except (AttachdError, OSError) as exc:
            log.warning("quarantine %s not counted: %s", action, exc)

    pipeline = works.pipeline
    return QuarantineReview(
        pipeline.records, pipeline.objects, works.dispatch, pipeline.observe, count
    )


@click.group()
def quarantine() -> None:
    """Files held in quarantine: review, release, purge."""


@quarantine.command("list")
@click.option("--tenant", default=None, help="Only this tenant's files.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.option("--limit", default=1000, show_default=True)
@pass_ctx
def quarantine_list(ctx: Context, tenant: str | None, as_json: bool, limit: int) -> None:
    held = ctx.records().quarantined(tenant, limit=limit)
    rows = [
        {
            "uploadId": q.upload.id,
            "tenant": q.tenant,
            "profileId": q.profile_id,
            "fileName": q.file_name,
            "originalName": q.upload.original_name,
            "signature": q.upload.signature,
            "quarantinedAt": _iso(q.upload.finished_at),
            "fileSizeBytes": q.upload.size,
        }
        for q in held
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['uploadId']}  {r['tenant']}  {r['profileId']}  {r['originalName']}  "
            f"{r['signature']}  {r['quarantinedAt']}  {r['fileSizeBytes']}"
        )


@quarantine.command("release")
@click.argument("upload_id")
@click.option("--reason", required=True, help="Why the verdict is wrong; recorded.")
@click.option("--by", default=None, help="Who releases it (default: the OS user).")
@pass_ctx
def quarantine_release(ctx: Context, upload_id: str, reason: str, by: str | None) -> None:
    """Override clamd's verdict: skip the scan once; the type check and attach still run."""
    if not reason.strip():
        raise click.BadParameter("must say why", param_hint="--reason")
    _review(ctx).release(upload_id, by or getpass.getuser(), reason.strip())
    click.echo(f"upload {upload_id} released: sent to verify", err=True)


@quarantine.command("purge")
@click.option("--older-than", "older_than", required=True, help="30d, 12h, 90m, 2w.")
@click.option("--by", default=None, help="Who purges (default: the OS user); recorded.")
@pass_ctx
def quarantine_purge(ctx: Context, older_than: str, by: str | None) -> None:
    """Delete quarantined files found infected longer ago than that; records are kept."""
    age = parse_duration(older_than)
    purged = _review(ctx).purge(age, by or getpass.getuser(), f"older than {older_than.strip()}")
    click.echo(f"{purged} quarantined file(s) purged", err=True)


@quarantine.command("audit")
@click.option("--upload", "upload_id", default=None, help="Only this upload's entries.")
@click.option("--tenant", default=None, help="Only this tenant's entries.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@click.option("--limit", default=1000, show_default=True)
@pass_ctx
def quarantine_audit(
    ctx: Context, upload_id: str | None, tenant: str | None, as_json: bool, limit: int
) -> None:
    """Every release and purge, oldest first: who, when, why, and the verdict concerned."""
    entries = ctx.records().quarantine_audit(upload_id, tenant, limit=limit)
    rows = [
        {
            "at": _iso(e.at),
            "action": str(e.action),
            "by": e.actor,
            "reason": e.reason,
            "uploadId": e.upload_id,
            "tenant": e.tenant,
            "profileId": e.profile_id,
            "fileName": e.file_name,
            "signature": e.signature,
            "signatureVersion": e.signature_version,
        }
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['at']}  {r['action']:<8}  {r['by']}  {r['uploadId']}  {r['tenant']}  "
            f"{r['signature']}  {r['reason']}"
        )


COMMANDS: tuple[click.Command, ...] = (quarantine,)
