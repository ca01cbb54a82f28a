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


# The one exception to the rule below: the CLI's commands import what they run where they run it,
# so `attachd --help` and a usage error answer without loading SQLAlchemy, Celery or MinIO's SDK
# (test_cli_speed.py). The layers still hold there: lint-imports reads the imports inside
# functions too, so one that breaks a contract fails test_import_contracts_are_kept.
DEFERRED_IMPORTS_ALLOWED = REPO / "attachd" / "cli"


def test_no_import_is_hidden_in_a_function() -> None:
    """Imports inside functions were how the old layout dodged its cycles; none is left outside
    the CLI's commands."""
    hidden = []
    for path in _modules():
        if path.is_relative_to(DEFERRED_IMPORTS_ALLOWED):
            continue
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


def _imports(path: Path) -> set[str]:
    """Every module an absolute import in `path` may name: `from a.b import c` gives a.b and
    a.b.c (c may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_no_module_imports_its_own_package_back() -> None:
    """A package's __init__ that imports a module of it, imported back by that module
    (attachd/cli/__init__.py and `from attachd.cli import policy` in tokens.py), is a cycle the
    contracts do not see: the module gets a half-initialised package. A sibling is imported by its
    own name (`from attachd.cli.policy import …`)."""
    cycles = []
    for path in _modules():
        if path.name in ("__init__.py", "__main__.py"):
            continue  # `python -m pkg` runs the package it belongs to: that is its job
        parts = path.relative_to(REPO).with_suffix("").parts
        module, package = ".".join(parts), ".".join(parts[:-1])
        init = path.with_name("__init__.py")
        package_imports = _imports(path) & {package}
        if package_imports and init.exists() and module in _imports(init):
            cycles.append(f"{path.relative_to(REPO)} <-> {init.relative_to(REPO)}")
    assert cycles == []


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
