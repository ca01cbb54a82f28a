"""The fast loop (`make test-fast`: `-m "not integration"`) runs no test that needs services,
including those in integration files that carry no marker of their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Carries no `pytestmark` of its own: only tests/conftest.py's collection hook marks it.
UNMARKED = "tests/integration/test_minio_user.py"


def test_integration_tests_without_a_marker_of_their_own_are_deselected() -> None:
    assert "pytestmark" not in (REPO / UNMARKED).read_text()
    pytest = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [*pytest, "-m", "not integration", UNMARKED],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Exit code 5: nothing left to run once the integration tests are deselected.
    assert done.returncode == 5, done.stdout[-2000:] + done.stderr[-2000:]
    assert " deselected" in done.stdout and "0 selected" not in done.stdout
