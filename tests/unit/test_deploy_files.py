"""Docker cannot run here, so this keeps docker-compose.yml and deploy/Procfile from drifting:
every Procfile process must be a compose service running the same entrypoint and arguments."""

from __future__ import annotations

import re
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


def replicas(compose: dict[str, dict], name: str) -> list[str]:
    """The compose services running Procfile process `name`: itself, or its replicas name-1..N
    (the topology of deploy/scale/topology.toml, tests/unit/test_scale_topology_files.py)."""
    return [s for s in compose if s == name or re.fullmatch(rf"{name}-\d+", s)]


def test_every_procfile_process_runs_the_same_entrypoint_in_compose() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    procs = procfile()
    assert set(procs) == {"api", "worker", "beat", "flower"}
    for name, argv in procs.items():
        assert replicas(compose, name), f"{name} is in the Procfile but not in docker-compose.yml"
        for svc in replicas(compose, name):
            assert _normalize(compose[svc]["command"]) == _normalize(argv), svc


def test_compose_has_the_backing_services() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert {"redis", "postgres"} <= set(compose)
    assert replicas(compose, "s3") and replicas(compose, "clamav")


def test_workers_and_flower_start_from_settings_everywhere() -> None:
    # Pools, limits and Flower's auth and state come from settings through `attachd worker` and
    # `attachd flower`, so a laptop, a container and another machine run them alike.
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    procs = procfile()
    assert procs["worker"] == ["attachd", "worker"]
    assert procs["flower"] == ["attachd", "flower"]
    for svc in replicas(compose, "worker"):
        assert compose[svc].get("stop_grace_period"), "a warm shutdown needs time to finish"
        assert "ports" not in compose[svc], "workers are stateless"
    flower_env = compose["flower"]["environment"]
    assert flower_env["ATTACHD_FLOWER_HOST"] == "0.0.0.0"  # noqa: S104 - with basic auth
    assert "ATTACHD_FLOWER_PASSWORD" in flower_env
    assert compose["flower"]["volumes"], "Flower's state must outlive its container"
