"""The layers the README draws are the ones the code keeps: `lint-imports` checks the contracts
in pyproject.toml (run here so `make test` enforces them, and by `make lint`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "storage", "workers", "api", "attachd")


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _modules() -> list[Path]:
    return [
        p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "migrations" not in p.parts
    ]


def test_core_imports_nothing_of_ours() -> None:
    offenders = []
    for path in (REPO / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in PACKAGES[1:]]
    assert offenders == []


def test_no_import_is_hidden_in_a_function() -> None:
    """Imports inside functions were how the old layout dodged its cycles; none is left."""
    hidden = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if (
                        isinstance(node, ast.ImportFrom)
                        and (node.module or "").split(".")[0] in PACKAGES
                    ):
                        hidden.append(f"{path.relative_to(REPO)}:{node.lineno} {node.module}")
    assert hidden == []


def test_no_module_is_over_500_lines() -> None:
    # The scale test's driver is held to the same rule: it is code a newcomer changes too.
    scale = sorted((REPO / "deploy" / "scale").glob("*.py"))
    assert len(scale) >= 4, "the scale test is start-up, load and faults, checks, and its entry"
    long = {
        str(p.relative_to(REPO)): n
        for p in [*_modules(), *scale]
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert long == {}
