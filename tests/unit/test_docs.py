"""Keeps the README's settings table true: every setting is documented, nothing stale is."""

from __future__ import annotations

import re
from dataclasses import fields

from core.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(ATTACHD_[A-Z0-9_]+)` \|", readme, re.MULTILINE))
    settings = {"ATTACHD_" + f.name.upper() for f in fields(Settings)}
    missing = settings - documented
    assert not missing, f"settings missing from README.md: {sorted(missing)}"
