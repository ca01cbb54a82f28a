"""Tables of the webhook outbox (migration 0007): who subscribes, what happened, and each
delivery of an event to a subscriber. On the record store's own metadata and engine, so an event
is written in the same transaction as the upload's move that causes it."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer, String, Table, Text

from storage.schema import metadata

# tenant NULL: installation-wide, every tenant's events. events NULL: every event type.
# The secret signs (HMAC), so it must be read back, unlike access tokens (stored hashed): it is
# kept encrypted with ATTACHD_WEBHOOK_SECRET_KEY (storage/secretbox.py, migration 0009).
# `previous_secret` keeps signing beside the new one until `previous_until`, while receivers
# switch over.
webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("url", Text, nullable=False),
    Column("tenant", String(255), nullable=True),
    Column("events", JSON, nullable=True),
    Column("secret", Text, nullable=False),
    Column("previous_secret", Text, nullable=True),
    Column("previous_until", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One row per event that had at least one subscriber; `body` is the exact JSON sent (and
# signed), so every retry sends the same bytes under the same webhook-id.
webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(40), primary_key=True),  # the webhook-id header, msg_…
    Column("type", String(32), nullable=False),  # core.webhooks.EventType
    Column("tenant", String(255), nullable=False),
    Column("upload_id", String(32), nullable=True),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The outbox proper: one row per (event, subscription), pending until a 2xx or the give-up.
# lease_until: a task for it is on its way or running; the reconciler re-sends rows whose lease
# ran out (their message was lost). started_at: when this series of attempts began (the event,
# or an operator's redeliver), which the give-up window counts from.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(24), primary_key=True),
    Column(
        "event_id",
        String(40),
        ForeignKey("webhook_events.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "subscription_id",
        String(24),
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", String(16), nullable=False),  # core.webhooks.DeliveryState
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    # An attempt runs until then: a second message for the same delivery stands back.
    Column("running_until", DateTime(timezone=True), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_subscription", "subscription_id"),
)
