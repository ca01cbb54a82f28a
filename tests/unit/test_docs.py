"""Keeps the docs true to the tree: every setting is in the README's table and every variable
there is still read; every module is named in docs/ARCHITECTURE.md and every module named there
exists."""

from __future__ import annotations

import re
from dataclasses import fields

from core.settings import Settings
from tests.conftest import REPO

PACKAGES = ("core", "storage", "workers", "api", "attachd")
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
_VARIABLE_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]+)` \|", re.MULTILINE)


def _readme_section(start: str, end: str) -> str:
    readme = (REPO / "README.md").read_text()
    return readme[readme.index(start) : readme.index(end, readme.index(start))]


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(ATTACHD_[A-Z0-9_]+)` \|", readme, re.MULTILINE))
    settings = {"ATTACHD_" + f.name.upper() for f in fields(Settings)}
    missing = settings - documented
    assert not missing, f"settings missing from README.md: {sorted(missing)}"


def test_every_variable_of_the_settings_table_is_a_setting() -> None:
    table = _readme_section("## Settings", "Used by the scripts")
    settings = {"ATTACHD_" + f.name.upper() for f in fields(Settings)}
    stale = set(_VARIABLE_ROW.findall(table)) - settings
    assert not stale, f"README.md's settings table names what is no setting: {sorted(stale)}"


def test_every_variable_of_the_scripts_table_is_read_by_a_script() -> None:
    table = _readme_section("Used by the scripts", "## Development")
    readers = [REPO / "Makefile", REPO / "tests" / "conftest.py"]
    readers += [p for p in (REPO / "deploy" / "scripts").iterdir() if p.is_file()]
    readers += list((REPO / "attachd").rglob("*.py"))
    text = "\n".join(p.read_text() for p in readers)
    variables = _VARIABLE_ROW.findall(table)
    assert len(variables) >= 5
    stale = [v for v in variables if v not in text]
    assert not stale, f"README.md's scripts table names what nothing reads: {stale}"


def _modules() -> set[str]:
    """Each module as the docs name it: its path, a package by its directory, the migrations as
    one directory."""
    names = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            rel = path.relative_to(REPO)
            if "migrations" in rel.parts:
                names.add("storage/migrations/")
            elif path.name == "__init__.py":
                names.add(rel.parent.as_posix() + "/")
            else:
                names.add(rel.as_posix())
    return names


def _named_in_architecture() -> set[str]:
    pattern = r"`((?:" + "|".join(PACKAGES) + r")/[\w./]*)`"
    return set(re.findall(pattern, ARCHITECTURE.read_text()))


def test_every_module_is_named_in_the_architecture_doc() -> None:
    missing = sorted(_modules() - _named_in_architecture())
    assert not missing, f"modules docs/ARCHITECTURE.md does not name: {missing}"


def test_the_architecture_doc_names_no_module_that_is_gone() -> None:
    gone = sorted(name for name in _named_in_architecture() if not (REPO / name).exists())
    assert not gone, f"docs/ARCHITECTURE.md names what is not in the tree: {gone}"


def test_the_readme_layout_links_the_architecture_doc() -> None:
    assert "docs/ARCHITECTURE.md" in _readme_section("## Layout", "## Architecture")
