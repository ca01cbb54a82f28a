"""Webhook subscriptions and their deliveries: who is told of verdicts, what was sent, what
failed, and sending it again.

`add` and `rotate` print the secret once, on stdout alone (or as JSON): it is what the receiver
verifies signatures with, and nothing shows it again.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import click

from attachd.cli.context import Context, pass_ctx
from core.settings import Settings
from core.webhooks import DeliveryState, EventType, parse_events

if TYPE_CHECKING:
    from storage.webhooks import Delivery, Subscription, Webhooks


@click.group()
def webhook() -> None:
    """Webhooks: signed verdict events (Standard Webhooks), delivered at least once."""


def _store(ctx: Context) -> Webhooks:
    from storage.secretbox import SecretBox
    from storage.webhooks import Webhooks

    return Webhooks(ctx.records().engine, SecretBox(ctx.settings.webhook_secret_key))


def check_url(url: str, settings: Settings) -> None:
    """http(s) with a host, and not resolving to an address the delivery guard refuses."""
    import urllib3

    from workers.webhooks import Refused, resolve_checked

    try:
        parts = urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError as exc:
        raise click.BadParameter(str(exc), param_hint="--url") from None
    if parts.scheme not in ("http", "https") or not parts.host:
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        resolve_checked(parts.host, port, settings.webhook_allowed_networks)
    except Refused as exc:
        raise click.BadParameter(
            f"{exc} (ATTACHD_WEBHOOK_ALLOWED_NETWORKS lets such receivers in)",
            param_hint="--url",
        ) from None
    except OSError as exc:
        # A receiver not deployed yet is allowed; every delivery checks the address again.
        click.echo(f"warning: {exc}", err=True)


def _sub_dict(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": sub.url,
        "tenant": sub.tenant,
        "events": list(sub.events) if sub.events else None,
        "rotating_until": sub.previous_until.isoformat() if sub.previous_until else None,
        "created_at": sub.created_at.isoformat(),
    }


def _delivery_dict(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "type": d.event_type,
        "subscription_id": d.subscription_id,
        "url": d.url,
        "state": str(d.state),
        "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at.isoformat(),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat(),
        "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
    }


@webhook.command("add")
@click.option("--url", required=True, help="The receiver (http or https).")
@click.option("--tenant", default=None, help="Only this tenant's events (default: every tenant's).")
@click.option(
    "--events",
    default=None,
    help="Comma-separated event types (default: all): " + ", ".join(EventType),
)
@click.option("--json", "as_json", is_flag=True, help='Print {"id": …, "secret": …}.')
@pass_ctx
def webhook_add(
    ctx: Context, url: str, tenant: str | None, events: str | None, as_json: bool
) -> None:
    """Subscribe a receiver; prints its id and its signing secret."""
    try:
        types = parse_events(events)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--events") from None
    check_url(url, ctx.settings)
    if tenant is not None and not ctx.records().tenant_exists(tenant):
        raise click.BadParameter(f"no tenant {tenant}", param_hint="--tenant")
    sub = _store(ctx).add_subscription(url, tenant, [str(t) for t in types] if types else None)
    if as_json:
        click.echo(json.dumps({"id": sub.id, "secret": sub.secret}))
    else:
        click.echo(f"{sub.id} {sub.secret}")


@webhook.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def webhook_list(ctx: Context, as_json: bool) -> None:
    subs = _store(ctx).subscriptions()
    if as_json:
        click.echo(json.dumps([_sub_dict(s) for s in subs], indent=2))
        return
    for s in subs:
        events = ",".join(s.events) if s.events else "all events"
        click.echo(f"{s.id}  {s.url}  tenant={s.tenant or '*'}  {events}")


@webhook.command("remove")
@click.argument("subscription_id")
@pass_ctx
def webhook_remove(ctx: Context, subscription_id: str) -> None:
    """Unsubscribe; its pending deliveries are not sent any more."""
    if not _store(ctx).remove_subscription(subscription_id):
        raise click.ClickException(f"no webhook {subscription_id}")
    click.echo(f"webhook {subscription_id} removed", err=True)


@webhook.command("rotate")
@click.argument("subscription_id")
@click.option(
    "--keep-hours",
    default=24.0,
    show_default=True,
    help="The old secret keeps signing beside the new one this long.",
)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def webhook_rotate(ctx: Context, subscription_id: str, keep_hours: float, as_json: bool) -> None:
    """A new secret; until the old one lapses, every message carries both signatures."""
    secret = _store(ctx).rotate_secret(subscription_id, timedelta(hours=keep_hours))
    if secret is None:
        raise click.ClickException(f"no webhook {subscription_id}")
    click.echo(json.dumps({"id": subscription_id, "secret": secret}) if as_json else secret)


@webhook.command("reseal")
@pass_ctx
def webhook_reseal(ctx: Context) -> None:
    """Re-encrypt every stored secret under the first key of ATTACHD_WEBHOOK_SECRET_KEY: after
    putting a new key first, and before removing the old one (docs/OPERATIONS.md)."""
    count = _store(ctx).reseal_secrets()
    click.echo(f"{count} subscription(s) resealed under the first key", err=True)


@webhook.command("deliveries")
@click.option("--failed", is_flag=True, help="Only deliveries given up on.")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def webhook_deliveries(ctx: Context, failed: bool, limit: int, as_json: bool) -> None:
    """Newest first: each event sent to each subscription, its state and last answer."""
    rows = _store(ctx).deliveries(DeliveryState.FAILED if failed else None, limit=limit)
    if as_json:
        click.echo(json.dumps([_delivery_dict(d) for d in rows], indent=2))
        return
    for d in rows:
        answer = d.last_error or (f"HTTP {d.last_status}" if d.last_status else "")
        click.echo(
            f"{d.id}  {d.state:<9} {d.event_type:<19} {d.event_id}  "
            f"attempts={d.attempts}  {d.url}  {answer}"
        )


@webhook.command("redeliver")
@click.argument("delivery_id")
@pass_ctx
def webhook_redeliver(ctx: Context, delivery_id: str) -> None:
    """Send a delivery again now (failed, or delivered and lost by the receiver), with a fresh
    retry window and the same webhook-id."""
    from storage.broker import make_celery
    from storage.webhooks import announcer

    if not _store(ctx).redeliver(delivery_id):
        raise click.ClickException(f"no delivery {delivery_id}")
    celery = make_celery(ctx.settings)
    try:
        announcer(celery)([delivery_id])
    finally:
        celery.close()
    click.echo(f"delivery {delivery_id} sent again", err=True)


COMMANDS: tuple[click.Command, ...] = (webhook,)
