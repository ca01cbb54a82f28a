"""The record store on both engines: the embedded SQLite default and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from core.domain import Reason, State
from core.errors import IllegalTransition, NotFound, ProfileExists, TenantExists
from storage.migrate import downgrade, upgrade
from storage.records import RecordStore
from tests.conftest import postgres_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, services_up: object
) -> Iterator[RecordStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
    else:
        url = postgres_url()
        # A clean schema per test: drop everything the migrations made, then migrate again.
        downgrade(url, "base") if _has_schema(url) else None
    upgrade(url)
    records = RecordStore.from_url(url)
    yield records
    records.engine.dispose()
    if request.param == "postgresql":
        downgrade(url, "base")


def _has_schema(url: str) -> bool:
    engine = RecordStore.from_url(url).engine
    with engine.connect() as conn:
        found = conn.execute(text("select to_regclass('public.alembic_version')")).scalar()
    engine.dispose()
    return found is not None


def _profile(store: RecordStore, tenant: str = "acme") -> str:
    if not store.tenant_exists(tenant):
        store.create_tenant(tenant)
    return store.create_profile(
        tenant, "u-" + uuid.uuid4().hex[:6], "u@example.com", enabled=True
    ).id


def _record(store: RecordStore, profile_id: str, name: str = "pic") -> tuple[str, str]:
    upload_id = uuid.uuid4().hex
    att, up = store.record_upload(
        upload_id=upload_id,
        profile_id=profile_id,
        file_name=name,
        original_name=name + ".png",
        md5="0" * 32,
        sha256="0" * 64,
        size=10,
        declared_type="image/png",
        sniffed_type="image/png",
        staging_key=f"uploads/{upload_id}",
    )
    assert up.state == State.STAGED
    return att.id, up.id


def test_same_name_keeps_the_same_attachment_id(store: RecordStore) -> None:
    pid = _profile(store)
    first, _ = _record(store, pid, "pic")
    second, _ = _record(store, pid, "pic")
    other, _ = _record(store, pid, "other")
    assert first == second != other
    assert len(first) == 24 and int(first, 16) >= 0


def test_transitions_are_compare_and_set(store: RecordStore) -> None:
    pid = _profile(store)
    _, uid = _record(store, pid)
    assert store.transition(uid, State.STAGED, State.SCANNING) is True
    assert store.transition(uid, State.STAGED, State.SCANNING) is False  # delivered twice
    assert store.transition(uid, State.SCANNING, State.INFECTED, reason="x") is True
    up = store.get_upload(uid)
    assert up is not None and up.state == State.INFECTED and up.finished_at is not None
    assert store.transition(uid, State.SCANNING, State.VERIFYING) is False


def test_a_forbidden_move_is_refused_and_reason_code_is_stored(store: RecordStore) -> None:
    pid = _profile(store)
    _, uid = _record(store, pid)
    with pytest.raises(IllegalTransition):
        store.transition(uid, State.STAGED, State.ATTACHED)
    assert store.transition(
        uid, State.STAGED, State.REJECTED, reason="truncated", reason_code=Reason.CORRUPT
    )
    up = store.get_upload(uid)
    assert up is not None and up.state == State.REJECTED and up.reason_code is Reason.CORRUPT
    with pytest.raises(IllegalTransition):
        store.transition(uid, State.REJECTED, State.STAGED)


def _verified(store: RecordStore, uid: str) -> None:
    # The way the pipeline gets there: staged → verifying directly is not an allowed move.
    assert store.transition(uid, State.STAGED, State.SCANNING)
    assert store.transition(uid, State.SCANNING, State.VERIFYING)
    assert store.update_upload(uid, State.VERIFYING, verified_at=datetime.now(UTC))


def test_attach_points_the_attachment_at_the_newest_version(store: RecordStore) -> None:
    pid = _profile(store)
    aid, old = _record(store, pid)
    _, new = _record(store, pid)
    _verified(store, old)
    _verified(store, new)
    # The newer upload finishes first; the older one must not replace it afterwards.
    first = store.attach(new, "k-new")
    assert first is not None and first.current and first.replaced is None
    late = store.attach(old, "k-old")
    assert late is not None and late.current is False
    assert store.get_attachment(aid).current_upload_id == new
    assert store.attach(new, "k-new") is None  # a second delivery does nothing


def test_attached_files_lists_only_served_versions(store: RecordStore) -> None:
    pid = _profile(store)
    _, staged_only = _record(store, pid, "pending")
    _, uid = _record(store, pid, "done")
    _verified(store, uid)
    store.attach(uid, "key")
    listed = store.attached_files(pid)
    assert [(a.file_name, u.id) for a, u in listed] == [("done", uid)]
    assert store.get_upload(staged_only).state == State.STAGED


def test_stuck_uploads_and_counts(store: RecordStore) -> None:
    pid = _profile(store)
    _, uid = _record(store, pid)
    assert store.stuck_uploads(datetime.now(UTC) - timedelta(minutes=5)) == []
    stuck = store.stuck_uploads(datetime.now(UTC) + timedelta(seconds=1))
    assert [u.id for u in stuck] == [uid]
    assert store.count_by_state()[State.STAGED] == 1


def test_tokens_are_stored_hashed_and_found_by_id(store: RecordStore) -> None:
    token = store.create_token("app", [{"tenant": "acme", "allowedActions": ["MANAGE_PROFILES"]}])
    found = store.find_token(token)
    assert found is not None and found.application == "app" and found.prefix == token[:8]
    assert store.find_token(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    with store.engine.connect() as conn:
        stored = conn.execute(text("select id_sha256 from access_tokens")).scalars().all()
    assert token not in stored
    assert store.revoke_token(token[:8]) == 1
    assert store.find_token(token) is None
    with pytest.raises(NotFound):
        store.revoke_token(token)


def test_duplicates_are_refused(store: RecordStore) -> None:
    store.create_tenant("dup")
    with pytest.raises(TenantExists):
        store.create_tenant("dup")
    store.create_profile("dup", "bob", "b@example.com", enabled=True)
    with pytest.raises(ProfileExists):
        store.create_profile("dup", "bob", "other@example.com", enabled=True)


def test_delete_attachment_returns_every_upload(store: RecordStore) -> None:
    pid = _profile(store)
    aid, a = _record(store, pid)
    _, b = _record(store, pid)
    removed = store.delete_attachment(aid)
    assert {u.id for u in removed} == {a, b}
    assert store.get_attachment(aid) is None and store.get_upload(a) is None
