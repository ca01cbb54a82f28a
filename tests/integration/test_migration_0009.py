"""Migration 0009 on both engines: webhook secrets stored in the clear come out sealed (and back
in the clear on downgrade), and the releases and purges made before the audit trail are in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, inspect, select, text

from core.domain import QuarantineAction
from core.webhooks import new_secret
from storage.engine import make_engine
from storage.migrate import downgrade, upgrade
from storage.quarantine import Quarantine
from storage.schema import attachments, profiles, tenants, uploads
from storage.secretbox import SecretBox
from storage.webhook_schema import webhook_subscriptions
from storage.webhooks import Webhooks
from tests.conftest import postgres_url

pytestmark = pytest.mark.integration

KEY = Fernet.generate_key().decode()
HEADS_BEFORE = ("0005", "0006", "0007")


@pytest.fixture(params=["sqlite", "postgresql"])
def url_before(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    services_up: object,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    # Set here, so the key is still there for the downgrade of the teardown.
    monkeypatch.setenv("ATTACHD_WEBHOOK_SECRET_KEY", KEY)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    else:
        url = postgres_url()
        engine = make_engine(url)
        with engine.connect() as conn:
            found = conn.execute(text("select to_regclass('public.alembic_version')")).scalar()
        engine.dispose()
        if found is not None:
            downgrade(url, "base")
    for head in HEADS_BEFORE:
        upgrade(url, head)
    yield url
    if request.param == "postgresql":
        downgrade(url, "base")


def _rows_before(url: str) -> tuple[str, str, dict[str, str]]:
    """A released upload, a purged one and a subscription, as the code before 0009 wrote
    them; returns (released id, purged id, {column: clear secret})."""
    now = datetime.now(UTC)
    released, purged = uuid.uuid4().hex, uuid.uuid4().hex
    secrets = {"secret": new_secret(), "previous_secret": new_secret()}
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(tenants).values(name="legacy", created_at=now))
        conn.execute(
            insert(profiles).values(
                id="p" * 24,
                tenant="legacy",
                username="old",
                email="old@example.com",
                verified=False,
                enabled=True,
                roles=[],
                attributes={},
                created_on=now,
                last_modified=now,
            )
        )
        conn.execute(
            insert(attachments).values(
                id="a" * 24, profile_id="p" * 24, file_name="pic", created_at=now
            )
        )
        common = {
            "attachment_id": "a" * 24,
            "original_name": "pic.png",
            "md5": "0" * 32,
            "sha256": "0" * 64,
            "size": 1,
            "declared_type": "image/png",
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
            "signature": "Eicar-Test-Signature",
            "released_by": None,
            "released_at": None,
            "release_reason": None,
            "purged_at": None,
        }
        conn.execute(
            insert(uploads),
            [
                {
                    **common,
                    "id": released,
                    "state": "attached",
                    "released_by": "alice",
                    "released_at": now - timedelta(days=2),
                    "release_reason": "a false positive",
                },
                {
                    **common,
                    "id": purged,
                    "state": "infected",
                    "purged_at": now - timedelta(days=1),
                },
            ],
        )
        conn.execute(
            insert(webhook_subscriptions).values(
                id="s" * 24,
                url="https://example.com/hooks",
                previous_until=now + timedelta(hours=1),
                created_at=now,
                **secrets,
            )
        )
    engine.dispose()
    return released, purged, secrets


def _stored(url: str) -> dict[str, str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            select(webhook_subscriptions.c.secret, webhook_subscriptions.c.previous_secret)
        ).one()
    engine.dispose()
    return {"secret": row[0], "previous_secret": row[1]}


def test_0009_seals_the_secrets_and_carries_earlier_releases_and_purges(url_before: str) -> None:
    url = url_before
    released, purged, clear = _rows_before(url)
    upgrade(url)

    stored = _stored(url)
    for column, secret in clear.items():
        assert secret not in stored[column] and not stored[column].startswith("whsec_")
        assert Fernet(KEY.encode()).decrypt(stored[column].encode()).decode() == secret
    engine = make_engine(url)
    try:
        [sub] = Webhooks(engine, SecretBox((KEY,))).subscriptions()
        assert (sub.secret, sub.previous_secret) == (clear["secret"], clear["previous_secret"])
        trail = Quarantine(engine).quarantine_audit()
        assert [(e.upload_id, e.action, e.actor) for e in trail] == [
            (released, QuarantineAction.RELEASED, "alice"),
            (purged, QuarantineAction.PURGED, "unknown (before the audit trail)"),
        ]
        assert trail[0].reason == "a false positive"
        assert trail[0].signature == "Eicar-Test-Signature" and trail[0].tenant == "legacy"
    finally:
        engine.dispose()

    downgrade(url, "0007")  # undoes 0009 alone: 0005 and 0006 stay heads
    assert _stored(url) == clear
    engine = make_engine(url)
    with engine.connect() as conn:
        assert "quarantine_audit" not in inspect(conn).get_table_names()
    engine.dispose()
