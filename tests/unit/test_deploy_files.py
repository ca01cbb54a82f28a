"""Docker cannot run here, so this keeps docker-compose.yml and deploy/Procfile from drifting:
every Procfile process must be a compose service running the same entrypoint and arguments."""

from __future__ import annotations

import shlex

import yaml

from tests.conftest import REPO

# Flags whose values legitimately differ between a laptop and a container (addresses, paths,
# ports, per-host names).
_LOCAL_FLAGS = ("--address", "--port", "--db", "--schedule", "--hostname", "--concurrency")


def _normalize(argv: list[str]) -> list[str]:
    return [a for a in argv if not a.startswith(_LOCAL_FLAGS)]


def procfile() -> dict[str, list[str]]:
    procs = {}
    for line in (REPO / "deploy" / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            procs[name.strip()] = shlex.split(command)
    return procs


def test_every_procfile_process_runs_the_same_entrypoint_in_compose() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    procs = procfile()
    assert set(procs) == {"api", "worker", "beat", "flower"}
    for name, argv in procs.items():
        assert name in compose, f"{name} is in the Procfile but not in docker-compose.yml"
        assert _normalize(compose[name]["command"]) == _normalize(argv), name


def test_compose_has_the_backing_services() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {"minio", "redis", "postgres", "clamav"} <= set(compose)
