"""Verdict events on the real stack: each event type reaches a real HTTP receiver once, signed so
that the `standardwebhooks` package verifies it, and never reaches another tenant's receiver."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from sqlalchemy import select

from core.errors import ConfigError
from core.webhooks import EventType
from storage.engine import make_engine
from storage.migrate import upgrade
from storage.secretbox import SecretBox
from storage.webhook_schema import webhook_subscriptions
from storage.webhooks import Webhooks
from tests.conftest import EICAR, REPO, png_bytes, png_with_chunk
from tests.integration.api_support import Account, new_account, padded_png, upload
from tests.integration.conftest import Stack
from tests.integration.webhook_support import Receiver, cli, subscribe, verified, wait_settled

pytestmark = pytest.mark.integration

TERMINAL = ("attached", "infected", "rejected", "failed")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def wide() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def _upload_and_wait(stack: Stack, account: Account, name: str, data: bytes) -> str:
    resp = upload(stack.base_url, account, name, data)
    assert resp.status_code == 200, resp.text
    latest = stack.records.latest_upload(resp.json()["id"])  # the attachment's id
    assert latest is not None
    return stack.wait_for_state(latest.id, TERMINAL)


def test_each_event_arrives_once_signed_and_only_to_its_tenant(
    stack: Stack, receiver: Receiver, wide: Receiver
) -> None:
    mine = new_account(stack.records)
    other = new_account(stack.records)
    sub_id, secret = subscribe(stack.env, receiver.url, "--tenant", mine.tenant)
    wide_id, wide_secret = subscribe(
        stack.env, wide.url, "--events", "upload.attached,attachment.deleted"
    )
    try:
        assert _upload_and_wait(stack, mine, "pic.png", png_bytes(9, 9)) == "attached"
        assert _upload_and_wait(stack, mine, "bad.png", png_with_chunk(EICAR)) == "infected"
        assert _upload_and_wait(stack, mine, "odd.png", padded_png(4096)) == "rejected"
        resp = requests.delete(
            stack.base_url + mine.path("/attachment/pic"),
            params={"accessTokenId": mine.token},
            timeout=10,
        )
        assert resp.status_code == 204
        # The other tenant's upload: an event (the installation-wide receiver gets it), but
        # never one for `mine`'s subscription.
        assert _upload_and_wait(stack, other, "theirs.png", png_bytes(7, 7)) == "attached"

        expected = {"upload.attached", "upload.infected", "upload.rejected", "attachment.deleted"}
        receiver.wait_for(lambda got: {r.event["type"] for r in got} >= expected)
        wide.wait_for(lambda got: len(got) >= 3)
        # Until the outbox says every delivery is done: a duplicate would have arrived by then.
        hooks = Webhooks(stack.records.engine)
        wait_settled(hooks, sub_id, len(expected))
        wait_settled(hooks, wide_id, 3)

        got = receiver.received()
        assert sorted(r.event["type"] for r in got) == sorted(expected)
        assert all(n == 1 for n in receiver.ids().values())
        for r in got:
            event = verified(secret, r)
            assert event["data"]["tenant"] == mine.tenant
            assert event["data"]["profileId"] == mine.profile_id
            assert r.headers["content-type"] == "application/json"
        by_type = {r.event["type"]: r.event["data"] for r in got}
        attached = by_type["upload.attached"]
        assert attached["fileName"] == "pic" and attached["state"] == "attached"
        assert attached["contentType"] == "image/png" and attached["fileSizeBytes"] > 0
        assert len(attached["md5"]) == 32 and attached["uploadId"]
        infected = by_type["upload.infected"]
        assert infected["reason"] == "infected" and "EICAR" in infected["signature"].upper()
        assert by_type["upload.rejected"]["reason"] == "polyglot"
        assert by_type["attachment.deleted"]["attachmentId"] == attached["attachmentId"]

        # Installation-wide, filtered by type: both tenants' attached, the delete, no verdicts.
        wide_types = sorted(
            (verified(wide_secret, r)["type"], r.event["data"]["tenant"]) for r in wide.received()
        )
        assert wide_types == sorted(
            [
                ("attachment.deleted", mine.tenant),
                ("upload.attached", mine.tenant),
                ("upload.attached", other.tenant),
            ]
        )
        # The same event reaches two subscriptions under one webhook-id.
        mine_attached = receiver.of_type("upload.attached")[0].id
        assert mine_attached in {r.id for r in wide.received()}

        listed = json.loads(cli(stack.env, "webhook", "deliveries", "--json", "--limit", "500"))
        states = {d["state"] for d in listed if d["subscription_id"] == sub_id}
        assert states == {"delivered"}
    finally:
        cli(stack.env, "webhook", "remove", sub_id)
        cli(stack.env, "webhook", "remove", wide_id)


def test_add_refuses_receivers_the_guard_refuses(stack: Stack) -> None:
    env = {**stack.env, "ATTACHD_WEBHOOK_ALLOWED_NETWORKS": ""}
    for url in (
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest",
        "ftp://example.com/",
        # Issue 23: carrier-grade NAT (a cloud's metadata service), loopback inside 6to4 and
        # NAT64, a private address inside Teredo.
        "http://100.100.100.200/latest/meta-data",
        "http://[2002:7f00:1::]/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/x",
    ):
        done = subprocess.run(
            [str(REPO / ".venv/bin/attachd"), "webhook", "add", "--url", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0, url
        assert "--url" in done.stderr
    assert EventType.RELEASED.value == "upload.released"


def test_a_quarantine_release_sends_upload_released_then_attached(
    stack: Stack, receiver: Receiver
) -> None:
    mine = new_account(stack.records)
    sub_id, secret = subscribe(
        stack.env,
        receiver.url,
        "--tenant",
        mine.tenant,
        "--events",
        "upload.released,upload.attached",
    )
    try:
        resp = upload(stack.base_url, mine, "fp.png", png_with_chunk(EICAR))
        assert resp.status_code == 200, resp.text
        held = stack.records.latest_upload(resp.json()["id"])
        assert held is not None
        assert stack.wait_for_state(held.id, TERMINAL) == "infected"
        cli(stack.env, "quarantine", "release", held.id, "--reason", "false positive", "--by", "bo")
        assert stack.wait_for_state(held.id, TERMINAL) == "attached"
        receiver.wait_for(lambda got: {r.event["type"] for r in got} >= set(_RELEASE_EVENTS))
        wait_settled(Webhooks(stack.records.engine), sub_id, len(_RELEASE_EVENTS))
        got = {verified(secret, r)["type"]: r.event["data"] for r in receiver.received()}
        assert sorted(got) == sorted(_RELEASE_EVENTS) and len(receiver.received()) == 2
        released = got[EventType.RELEASED.value]
        assert released["uploadId"] == held.id and released["tenant"] == mine.tenant
        assert got["upload.attached"]["uploadId"] == held.id
    finally:
        cli(stack.env, "webhook", "remove", sub_id)


_RELEASE_EVENTS = (EventType.RELEASED.value, "upload.attached")


def _stored_secret(stack: Stack, sub_id: str) -> str:
    with stack.records.engine.connect() as conn:
        return str(
            conn.execute(
                select(webhook_subscriptions.c.secret).where(webhook_subscriptions.c.id == sub_id)
            ).scalar_one()
        )


def test_secrets_are_stored_encrypted(stack: Stack) -> None:
    """Issue 23: a database backup held every whsec_ key as it is, enough to forge events."""
    receiver = Receiver()
    sub_id, secret = subscribe(stack.env, receiver.url)
    try:
        stored = _stored_secret(stack, sub_id)
        assert secret not in stored and not stored.startswith("whsec_")
        key = stack.env["ATTACHD_WEBHOOK_SECRET_KEY"]
        assert Fernet(key.encode()).decrypt(stored.encode()).decode() == secret
        # Resealed (a rotation's second step): new ciphertext, the same secret.
        cli(stack.env, "webhook", "reseal")
        again = _stored_secret(stack, sub_id)
        assert again != stored
        assert Fernet(key.encode()).decrypt(again.encode()).decode() == secret
        # Without the key, nothing is read or added.
        env = {**stack.env, "ATTACHD_WEBHOOK_SECRET_KEY": ""}
        done = subprocess.run(
            [str(REPO / ".venv/bin/attachd"), "webhook", "add", "--url", receiver.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and "ATTACHD_WEBHOOK_SECRET_KEY" in done.stderr
    finally:
        cli(stack.env, "webhook", "remove", sub_id)


def test_a_key_rotation_reseals_every_secret_under_the_new_key(tmp_path: Path) -> None:
    """New key first, `reseal`, then the old key can go (docs/OPERATIONS.md)."""
    url = f"sqlite:///{tmp_path / 'rotation.db'}"
    upgrade(url)
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    engine = make_engine(url)
    try:
        sub = Webhooks(engine, SecretBox((old,))).add_subscription("https://x.example/", None, None)
        rotated = Webhooks(engine, SecretBox((new, old)))
        secret_before = rotated.subscriptions()[0].secret
        assert rotated.rotate_secret(sub.id, timedelta(hours=1))  # a previous_secret too
        assert rotated.reseal_secrets() == 1
        [after] = Webhooks(engine, SecretBox((new,))).subscriptions()
        assert after.previous_secret == secret_before == sub.secret
        with pytest.raises(ConfigError, match="does not decrypt"):
            Webhooks(engine, SecretBox((old,))).subscriptions()
    finally:
        engine.dispose()
