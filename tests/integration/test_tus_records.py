"""The resumable uploads' rows on SQLite and PostgreSQL: one lease at a time, the offset moved
only by compare-and-set by the lease's holder, expired rows found for the reaper."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from core.errors import OffsetMismatch, UploadGone, UploadLocked
from storage.engine import make_engine, utcnow
from storage.migrate import downgrade, upgrade
from storage.tus import LEASE_SECONDS, Progress, ResumableRecords, StoredPart
from tests.conftest import postgres_url

pytestmark = pytest.mark.integration


def _has_schema(url: str) -> bool:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = conn.execute(text("select to_regclass('public.alembic_version')")).scalar()
    engine.dispose()
    return found is not None


@pytest.fixture(params=["sqlite", "postgresql"])
def rows(
    request: pytest.FixtureRequest, tmp_path: Path, services_up: object
) -> Iterator[ResumableRecords]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
    else:
        url = postgres_url()
        if _has_schema(url):
            downgrade(url, "base")
    upgrade(url)
    store = ResumableRecords(make_engine(url))
    yield store
    store.engine.dispose()
    if request.param == "postgresql":
        downgrade(url, "base")


def _create(rows: ResumableRecords, upload_id: str = "a" * 32, expires_in: float = 3600) -> str:
    rows.create_resumable(
        upload_id=upload_id,
        tenant="acme",
        profile_id="b" * 24,
        length=100,
        file_name="a.png",
        declared_type="image/png",
        metadata="filename YS5wbmc=",
        staging_key=f"uploads/{upload_id}",
        expires_at=utcnow() + timedelta(seconds=expires_in),
    )
    return upload_id


def test_one_lease_at_a_time_and_the_offset_by_compare_and_set(rows: ResumableRecords) -> None:
    upload = _create(rows)
    leased = rows.take_lease(upload, "one", 0)
    assert leased.lease_owner == "one"
    with pytest.raises(UploadLocked):
        rows.take_lease(upload, "two", 0)
    with pytest.raises(OffsetMismatch):
        rows.take_lease(upload, "two", 7)
    progress = Progress("mp-1", [StoredPart(1, "etag", 60)], "key-1", 10)
    with pytest.raises(UploadLocked):  # not the holder: nothing moves
        rows.commit_offset(upload, "two", 0, progress)
    rows.commit_offset(upload, "one", 0, progress)
    with pytest.raises(UploadLocked):  # the offset moved: a second commit from 0 fails
        rows.commit_offset(upload, "one", 0, progress)
    row = rows.get_resumable(upload)
    assert row is not None
    assert (row.offset, row.multipart_id, row.incomplete_key, row.incomplete_size) == (
        70,
        "mp-1",
        "key-1",
        10,
    )
    assert row.parts == (StoredPart(1, "etag", 60),)
    rows.release_lease(upload, "one")
    assert rows.take_lease(upload, "two", 70).lease_owner == "two"


def test_a_lapsed_lease_can_be_taken_over(rows: ResumableRecords) -> None:
    upload = _create(rows)
    rows.take_lease(upload, "dead", 0)
    later = utcnow() + timedelta(seconds=LEASE_SECONDS + 1)
    assert rows.take_lease(upload, "alive", 0, now=later).lease_owner == "alive"
    with pytest.raises(UploadLocked):
        rows.renew_lease(upload, "dead")


def test_expired_rows_are_found_and_deleted_by_their_holder(rows: ResumableRecords) -> None:
    old = _create(rows, "c" * 32, expires_in=-1)
    _create(rows, "d" * 32)
    assert [r.id for r in rows.expired_resumables(utcnow())] == [old]
    rows.take_lease(old, "reaper")
    assert not rows.delete_resumable(old, "someone-else")
    assert rows.delete_resumable(old, "reaper")
    with pytest.raises(UploadGone):
        rows.take_lease(old, "late")
