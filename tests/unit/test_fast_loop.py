"""The fast loop (`make test-fast`: `-m "not integration"`) runs no test that needs services:
tests/conftest.py's collection hook marks every test under tests/integration, including those
in files that carry no marker of their own."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import INTEGRATION, REPO, pytest_collection_modifyitems


@dataclass
class Item:
    """What the hook reads and does of a collected test."""

    path: Path
    marks: list[str] = field(default_factory=list)

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark.name)


def test_every_test_under_tests_integration_is_marked_and_no_other() -> None:
    # test_minio_user.py carries no `pytestmark` of its own: only the hook marks it.
    unmarked = INTEGRATION / "test_minio_user.py"
    assert unmarked.exists() and "pytestmark" not in unmarked.read_text()
    items = [
        Item(unmarked),
        Item(INTEGRATION / "test_webhooks.py"),
        Item(REPO / "tests" / "unit" / "test_settings.py"),
        Item(REPO / "tests" / "api" / "test_upload.py"),
    ]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [item.marks for item in items] == [["integration"], ["integration"], [], []]
