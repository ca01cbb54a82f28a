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


def test_workers_and_flower_start_from_settings_everywhere() -> None:
    # Pools, limits and Flower's auth and state come from settings through `attachd worker` and
    # `attachd flower`, so a laptop, a container and another machine run them alike.
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    procs = procfile()
    assert procs["worker"] == ["attachd", "worker"]
    assert procs["flower"] == ["attachd", "flower"]
    assert compose["worker"].get("stop_grace_period"), "a warm shutdown needs time to finish"
    assert "ports" not in compose["worker"], "workers are stateless: --scale worker=N"
    flower_env = compose["flower"]["environment"]
    assert flower_env["ATTACHD_FLOWER_HOST"] == "0.0.0.0"  # noqa: S104 - with basic auth
    assert "ATTACHD_FLOWER_PASSWORD" in flower_env
    assert compose["flower"]["volumes"], "Flower's state must outlive its container"
