"""The record store enforces core.domain.TRANSITIONS: every forbidden move is an error raised before
the database is touched, every allowed one is a compare-and-set that works. Embedded SQLite."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from core.domain import TRANSITIONS, Reason, State
from core.errors import IllegalTransition
from storage.migrate import upgrade
from storage.records import RecordStore
from storage.schema import uploads

ALL_PAIRS = list(itertools.product(State, State))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
FORBIDDEN = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    upgrade(url)
    return RecordStore.from_url(url)


def _upload_in(store: RecordStore, state: State) -> str:
    if not store.tenant_exists("acme"):
        store.create_tenant("acme")
        store.create_profile("acme", "bob", "b@example.com", enabled=True)
    profile = store.find_profile_by_username("acme", "bob")
    assert profile is not None
    upload_id = uuid.uuid4().hex
    store.record_upload(
        upload_id=upload_id,
        profile_id=profile.id,
        file_name="pic",
        original_name="pic.png",
        md5="0" * 32,
        sha256="0" * 64,
        size=10,
        declared_type="image/png",
        sniffed_type="image/png",
        staging_key=f"uploads/{upload_id}",
    )
    # Put the row where the test needs it without going through the rule under test.
    with store.transaction() as conn:
        conn.execute(update(uploads).where(uploads.c.id == upload_id).values(state=state))
    return upload_id


@pytest.mark.parametrize(("before", "after"), ALLOWED, ids=[f"{a}-{b}" for a, b in ALLOWED])
def test_an_allowed_move_is_made(store: RecordStore, before: State, after: State) -> None:
    uid = _upload_in(store, before)
    assert store.transition(uid, before, after) is True
    up = store.get_upload(uid)
    assert up is not None and up.state == after and isinstance(up.state, State)
    assert (up.finished_at is not None) == after.terminal


@pytest.mark.parametrize(("before", "after"), FORBIDDEN, ids=[f"{a}-{b}" for a, b in FORBIDDEN])
def test_a_forbidden_move_is_an_error(store: RecordStore, before: State, after: State) -> None:
    uid = _upload_in(store, before)
    with pytest.raises(IllegalTransition, match=f"{before} → {after}"):
        store.transition(uid, before, after)
    up = store.get_upload(uid)
    assert up is not None and up.state == before


def test_the_named_bugs_are_refused(store: RecordStore) -> None:
    infected = _upload_in(store, State.INFECTED)
    with pytest.raises(IllegalTransition):
        store.transition(infected, State.INFECTED, State.ATTACHED)
    attached = _upload_in(store, State.ATTACHED)
    with pytest.raises(IllegalTransition):
        store.transition(attached, State.ATTACHED, State.STAGED)


def test_one_forbidden_pair_among_several_expected_states_refuses_the_call(
    store: RecordStore,
) -> None:
    # scanning → verifying is allowed, staged → verifying is not: the row must not move even
    # though it is in the allowed one.
    uid = _upload_in(store, State.SCANNING)
    with pytest.raises(IllegalTransition, match="staged → verifying"):
        store.transition(uid, (State.STAGED, State.SCANNING), State.VERIFYING)
    assert store.get_upload(uid).state == State.SCANNING  # type: ignore[union-attr]


def test_refused_before_the_database_is_touched(tmp_path: Path) -> None:
    # An engine on a database that cannot be opened: any query would raise ServiceUnavailable.
    unreachable = RecordStore.from_url(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    with pytest.raises(IllegalTransition):
        unreachable.transition("u", State.INFECTED, State.ATTACHED)
    with pytest.raises(IllegalTransition):
        unreachable.transition("u", "staged", "no-such-state")


def test_state_names_as_plain_strings_are_checked_too(store: RecordStore) -> None:
    uid = _upload_in(store, State.STAGED)
    assert store.transition(uid, "staged", "failed", reason="scan gave up (test)")
    with pytest.raises(IllegalTransition):
        store.transition(uid, "failed", "attached")


def test_update_upload_never_moves_the_state(store: RecordStore) -> None:
    uid = _upload_in(store, State.INFECTED)
    with pytest.raises(IllegalTransition):
        store.update_upload(uid, State.INFECTED, state=State.ATTACHED)
    assert store.get_upload(uid).state == State.INFECTED  # type: ignore[union-attr]


def test_reason_code_is_a_plain_value_column(store: RecordStore) -> None:
    uid = _upload_in(store, State.VERIFYING)
    assert store.get_upload(uid).reason_code is None  # type: ignore[union-attr]
    assert store.transition(
        uid, State.VERIFYING, State.REJECTED, reason="truncated", reason_code=Reason.CORRUPT
    )
    up = store.get_upload(uid)
    assert up is not None and up.reason_code is Reason.CORRUPT and up.reason == "truncated"
