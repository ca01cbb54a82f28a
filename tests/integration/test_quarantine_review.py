"""Quarantine review on the real stack, through the CLI: list what is held, release a false
positive (it skips the scan once, is verified and attached, and says who released it and why),
purge old evidence (the object goes, the record stays), and the counts in Redis."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import requests

from core.domain import State
from storage.objects import ObjectStore
from storage.records import utcnow
from storage.telemetry import Telemetry
from tests.conftest import png_with_chunk
from tests.integration.api_support import Account, latest_upload, new_account, upload
from tests.integration.conftest import Stack
from tests.integration.test_tenant_policy import cli

pytestmark = pytest.mark.integration


def infected(stack: Stack, account: Account, name: str, eicar: bytes) -> str:
    assert upload(stack.base_url, account, f"{name}.png", png_with_chunk(eicar)).ok
    upload_id = latest_upload(stack, account, name).id
    assert stack.wait_for_state(upload_id, ("infected", "attached", "rejected")) == "infected"
    return upload_id


def counts(stack: Stack) -> dict[tuple[str, ...], float]:
    return Telemetry.from_url(stack.settings.redis_url).counters()["quarantine_actions"]


def test_a_released_file_is_verified_attached_and_says_why(
    stack: Stack, objects: ObjectStore, eicar: bytes
) -> None:
    account = new_account(stack.records)
    upload_id = infected(stack, account, "fp", eicar)
    held = stack.records.get_upload(upload_id)
    assert held is not None and held.quarantine_key
    listed = cli(stack, "quarantine", "list", "--json", "--tenant", account.tenant)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["uploadId"] == upload_id and row["profileId"] == account.profile_id
    assert row["fileName"] == "fp" and row["signature"] and row["fileSizeBytes"] == held.size
    before = counts(stack).get(("release",), 0.0)

    done = cli(
        stack, "quarantine", "release", upload_id, "--reason", "test signature", "--by", "alice"
    )
    assert done.returncode == 0, done.stderr
    assert stack.wait_for_state(upload_id, ("attached", "rejected", "failed")) == "attached"
    status = requests.get(
        stack.url(account.path("/attachment/fp/status")),
        params={"accessTokenId": account.token},
        timeout=30,
    ).json()
    assert status["state"] == "attached" and status["served"] is True
    # The tenant sees that it was released, when and why; not who (issue 23).
    assert status["releaseReason"] == "test signature" and status["releasedAt"]
    assert "releasedBy" not in status and "alice" not in json.dumps(status)
    shown = json.loads(cli(stack, "uploads", "show", upload_id).stdout)
    assert shown["released_by"] == "alice" and shown["release_reason"] == "test signature"
    download = requests.get(
        stack.url(account.path("/attachment/fp")),
        params={"accessTokenId": account.token},
        timeout=30,
    )
    assert download.status_code == 200
    # Out of quarantine: the evidence went with the release, and the list no longer shows it.
    assert not objects.exists(stack.settings.bucket_quarantine, held.quarantine_key)
    again = cli(stack, "quarantine", "list", "--json", "--tenant", account.tenant)
    assert json.loads(again.stdout) == []
    assert counts(stack).get(("release",), 0.0) == before + 1
    # Releasing what is not in quarantine is refused.
    twice = cli(stack, "quarantine", "release", upload_id, "--reason", "again")
    assert twice.returncode == 1 and "not held in quarantine" in twice.stderr


def _audit(stack: Stack, *args: str) -> list[dict[str, object]]:
    done = cli(stack, "quarantine", "audit", "--json", *args)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_every_release_stays_in_the_audit_trail(
    stack: Stack, objects: ObjectStore, eicar: bytes
) -> None:
    """Issue 23: a second release overwrote the first; the trail keeps both, with the verdict."""
    account = new_account(stack.records)
    upload_id = infected(stack, account, "twice", eicar)
    first = stack.records.get_upload(upload_id)
    assert first is not None and first.quarantine_key and first.signature
    done = cli(stack, "quarantine", "release", upload_id, "--reason", "first", "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert stack.wait_for_state(upload_id, ("attached", "rejected", "failed")) == "attached"
    # A rescan with newer signatures finds it again: back in quarantine, as the pipeline puts it.
    # The evidence is the file as uploaded (the attached copy is sanitized: another md5).
    original = png_with_chunk(eicar)
    objects.put_stream(
        stack.settings.bucket_quarantine, upload_id, io.BytesIO(original), "image/png", 5 << 20
    )
    assert stack.records.transition(
        upload_id,
        State.ATTACHED,
        State.INFECTED,
        quarantine_key=upload_id,
        signature="Attachd.Test.Rescan",
    )
    done = cli(stack, "quarantine", "release", upload_id, "--reason", "second", "--by", "bob")
    assert done.returncode == 0, done.stderr
    assert stack.wait_for_state(upload_id, ("attached", "rejected", "failed")) == "attached"

    trail = _audit(stack, "--upload", upload_id)
    assert [(e["action"], e["by"], e["reason"], e["signature"]) for e in trail] == [
        ("released", "alice", "first", first.signature),
        ("released", "bob", "second", "Attachd.Test.Rescan"),
    ]
    assert all(e["tenant"] == account.tenant and e["fileName"] == "twice" for e in trail)
    assert _audit(stack, "--tenant", account.tenant) == trail


def test_purge_removes_old_evidence_and_keeps_the_record(
    stack: Stack, objects: ObjectStore, eicar: bytes
) -> None:
    account = new_account(stack.records)
    old = infected(stack, account, "old", eicar)
    recent = infected(stack, account, "recent", eicar)
    # Found infected 40 days ago: other tests' quarantined files stay younger than the cut.
    assert stack.records.update_upload(
        old, State.INFECTED, finished_at=utcnow() - timedelta(days=40)
    )
    before = counts(stack).get(("purge",), 0.0)
    done = cli(stack, "quarantine", "purge", "--older-than", "30d", "--by", "carol")
    assert done.returncode == 0, done.stderr
    assert "1 quarantined file(s) purged" in done.stderr
    [entry] = _audit(stack, "--upload", old)
    assert (entry["action"], entry["by"], entry["reason"]) == ("purged", "carol", "older than 30d")
    assert entry["signature"] and entry["at"]
    purged, kept = stack.records.get_upload(old), stack.records.get_upload(recent)
    assert purged is not None and kept is not None
    assert purged.state == "infected" and purged.quarantine_key is None and purged.purged_at
    assert purged.signature  # the record keeps what was found
    assert not objects.exists(stack.settings.bucket_quarantine, old)
    assert kept.quarantine_key and objects.exists(
        stack.settings.bucket_quarantine, kept.quarantine_key
    )
    assert counts(stack).get(("purge",), 0.0) == before + 1
    assert cli(stack, "quarantine", "purge", "--older-than", "soon").returncode == 2
