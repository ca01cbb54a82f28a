"""Migration 0004 on both engines: rows written before reasons were typed get their reason_code
from their text, in batches, and the column goes away again on downgrade."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text

from core.domain import Reason
from storage.engine import make_engine
from storage.migrate import downgrade, upgrade
from storage.schema import attachments, profiles, tenants, uploads
from tests.conftest import postgres_url

pytestmark = pytest.mark.integration

# (state, legacy reason text) → the code 0004 must give it.
LEGACY: list[tuple[str, str | None, str | None]] = [
    ("rejected", "too large to scan (Heuristics.Limits.Exceeded.MaxFileSize)", "scan_limit"),
    ("rejected", "the file is empty", "empty"),
    ("rejected", "image is too large: 20000x20000 pixels", "too_large"),
    ("rejected", "SVG has a <script> element", "svg_unsafe"),
    ("rejected", "SVG is not well-formed: mismatched tag", "corrupt"),
    ("rejected", "data after the end of the PNG stream", "polyglot"),
    ("rejected", "content is image/jpeg, not image/png", "type_mismatch"),
    ("rejected", "truncated PNG: no IEND chunk", "corrupt"),
    ("rejected", "nothing the old classes knew", "other"),
    ("rejected", None, "other"),
    ("infected", "infected: Eicar-Signature", "infected"),
    ("infected", "infected on rescan with signatures 2: Attachd.Test.Marker", "infected"),
    ("failed", "the staged file is missing from object storage", "object_missing"),
    ("failed", "scan gave up after 5 retries: clamd is unavailable", "gave_up"),
    ("failed", "no progress after 10 re-sends", "no_progress"),
    ("failed", "scan gave up (test)", "other"),
    ("attached", None, None),
    ("superseded", "replaced by upload 0123", None),
    ("staged", None, None),
    ("verifying", None, None),
]
# More rows than one batch of the migration's fill (500), so the batching is exercised.
BULK = 1_100


@pytest.fixture(params=["sqlite", "postgresql"])
def url_at_0003(
    request: pytest.FixtureRequest, tmp_path: Path, services_up: object
) -> Iterator[str]:
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
    upgrade(url, "0003")
    yield url
    if request.param == "postgresql":
        downgrade(url, "base")


def _insert_legacy(url: str) -> dict[str, str | None]:
    """Rows as the code before 0004 wrote them; returns upload id → the expected code."""
    now = datetime.now(UTC)
    expected: dict[str, str | None] = {}
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
        rows = [(state, reason, code) for state, reason, code in LEGACY]
        rows += [("rejected", "the file is empty", "empty")] * BULK
        values = []
        for state, reason, code in rows:
            upload_id = uuid.uuid4().hex
            expected[upload_id] = code
            values.append(
                {
                    "id": upload_id,
                    "attachment_id": "a" * 24,
                    "state": state,
                    "reason": reason,
                    "original_name": "pic.png",
                    "md5": "0" * 32,
                    "sha256": "0" * 64,
                    "size": 1,
                    "declared_type": "image/png",
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        conn.execute(insert(uploads), values)
    engine.dispose()
    return expected


def _codes(url: str) -> dict[str, str | None]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(uploads.c.id, uploads.c.reason_code)).all()
    engine.dispose()
    return {upload_id: code for upload_id, code in rows}


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        names = {c["name"] for c in inspect(conn).get_columns("uploads")}
    engine.dispose()
    return names


def test_0004_fills_reason_code_from_the_legacy_text(url_at_0003: str) -> None:
    url = url_at_0003
    assert "reason_code" not in _columns(url)
    expected = _insert_legacy(url)
    upgrade(url)
    assert _codes(url) == expected
    # Every code the migration writes is one the code can read back.
    assert {Reason(c) for c in expected.values() if c is not None} <= set(Reason)


def test_0004_downgrades_and_upgrades_again(url_at_0003: str) -> None:
    url = url_at_0003
    expected = _insert_legacy(url)
    upgrade(url)
    downgrade(url, "0003")
    assert "reason_code" not in _columns(url)
    upgrade(url)
    assert _codes(url) == expected
