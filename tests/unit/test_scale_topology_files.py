"""One topology, three readers: deploy/scale/topology.toml is what `make scale-test` builds and
breaks; docker-compose.yml, deploy/nginx/attachd.conf and docs/OPERATIONS.md ("Several
machines") must describe the same hosts and services, or what was proven is not what ships."""

from __future__ import annotations

import ipaddress
import re
import shlex
import tomllib
from typing import Any

import yaml

from core import redisurl
from tests.conftest import REPO

TOPOLOGY = tomllib.loads((REPO / "deploy" / "scale" / "topology.toml").read_text())
HOSTS: dict[str, Any] = TOPOLOGY["hosts"]
PORTS: dict[str, int] = TOPOLOGY["ports"]
SERVICES = {svc: (host, kind) for host, h in HOSTS.items() for svc, kind in h["services"].items()}
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
NGINX = (REPO / "deploy" / "nginx" / "attachd.conf").read_text()
# Flags whose values differ between a laptop and a container (as tests/unit/test_deploy_files.py).
_LOCAL_FLAGS = ("--address", "--port", "--db", "--schedule", "--hostname", "--concurrency")


def of_kind(kind: str) -> list[str]:
    return [svc for svc, (_, k) in SERVICES.items() if k == kind]


def procfile(name: str) -> list[str]:
    for line in (REPO / "deploy" / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return [a for a in shlex.split(line.split(":", 1)[1]) if not a.startswith(_LOCAL_FLAGS)]
    raise AssertionError(f"no {name} in deploy/Procfile")


def command(svc: str) -> list[str]:
    return [a for a in COMPOSE[svc]["command"] if not a.startswith(_LOCAL_FLAGS)]


def upstream(name: str) -> list[str]:
    block = re.search(rf"upstream {name} \{{(.*?)\}}", NGINX, re.S)
    assert block, f"no upstream {name} in deploy/nginx/attachd.conf"
    return re.findall(r"^\s*server (\S+?)[\s;]", block.group(1), re.M)


def test_the_topology_is_one_subnet_of_distinct_hosts() -> None:
    net = ipaddress.ip_network(TOPOLOGY["subnet"])
    addresses = [TOPOLOGY["client"], *(h["address"] for h in HOSTS.values())]
    assert all(ipaddress.ip_address(a) in net for a in addresses)
    assert len(set(addresses)) == len(addresses)
    assert net.is_private, "the scale test's addresses must never be routable"
    # The rig names each host's link asc-v-<host>, at most 15 bytes: no two may collide.
    assert len({("asc-v-" + h)[:15] for h in HOSTS}) == len(HOSTS)
    kinds = ("nginx", "api", "minio", "postgres", "redis", "redis-replica", "sentinel", "worker")
    for kind in (*kinds, "clamd", "beat", "flower"):
        assert of_kind(kind), f"the topology has no {kind}"
    assert len(of_kind("beat")) == 1, "one beat in the whole fleet"
    assert len(of_kind("api")) >= 2 and len(of_kind("worker")) >= 2
    # Redis fails over: a replica on another host than the master, and three Sentinels (a
    # quorum of two) on three hosts, so losing any one host leaves a majority.
    (master,) = of_kind("redis")
    assert of_kind("redis-replica")
    assert all(SERVICES[r][0] != SERVICES[master][0] for r in of_kind("redis-replica"))
    sentinels = of_kind("sentinel")
    assert len(sentinels) == 3 and len({SERVICES[s][0] for s in sentinels}) == 3
    # Every worker host scans with its own clamd.
    for svc in of_kind("worker"):
        host = SERVICES[svc][0]
        assert "clamd" in HOSTS[host]["services"].values(), f"{host} has no clamd"


def test_compose_runs_exactly_the_topologys_services() -> None:
    assert set(COMPOSE) - {"migrate"} == set(SERVICES)


def test_each_compose_service_is_its_kind() -> None:
    for svc in of_kind("api"):
        assert command(svc) == procfile("api"), svc
    for svc in of_kind("worker"):
        assert command(svc) == procfile("worker"), svc
        assert COMPOSE[svc].get("stop_grace_period"), "a warm shutdown needs time"
        assert "ports" not in COMPOSE[svc]
        host = SERVICES[svc][0]
        own = [s for s, k in HOSTS[host]["services"].items() if k == "clamd"]
        assert COMPOSE[svc]["environment"]["ATTACHD_CLAMD_HOST"] in own, svc
    for svc in of_kind("beat"):
        assert command(svc) == procfile("beat")
    for svc in of_kind("flower"):
        assert command(svc) == procfile("flower")
        assert COMPOSE[svc]["environment"]["ATTACHD_FLOWER_HOST"] == "0.0.0.0"  # noqa: S104
    for svc in of_kind("clamd"):
        assert COMPOSE[svc]["image"].startswith("clamav/"), svc
    for svc in of_kind("postgres"):
        assert COMPOSE[svc]["image"].startswith("postgres:"), svc
    (master,) = of_kind("redis")
    for svc in [master, *of_kind("redis-replica"), *of_kind("sentinel")]:
        assert COMPOSE[svc]["image"].startswith("redis:"), svc
    for svc in of_kind("redis-replica"):
        assert f"--replicaof {master} {PORTS['redis']}" in " ".join(COMPOSE[svc]["command"])
    for svc in of_kind("sentinel"):
        script = " ".join(COMPOSE[svc]["command"])
        assert f"sentinel monitor attachd {master} {PORTS['redis']} 2" in script, svc
        assert "--sentinel" in script and f"port {PORTS['sentinel']}" in script, svc
    (lb,) = of_kind("nginx")
    assert COMPOSE[lb]["image"].startswith("nginx:")
    assert any("deploy/nginx/attachd.conf" in v for v in COMPOSE[lb]["volumes"])
    assert {f"{PORTS[p]}:{PORTS[p]}" for p in ("api", "flower")} <= set(COMPOSE[lb]["ports"])


def test_minio_is_one_erasure_set_over_the_s3_hosts() -> None:
    nodes = of_kind("minio")
    assert len(nodes) >= 4, "erasure coding that survives the loss of a node needs 4 drives"
    assert nodes == [f"s3-{i}" for i in range(1, len(nodes) + 1)]
    for svc in nodes:
        assert COMPOSE[svc]["hostname"] == svc
        assert COMPOSE[svc]["command"][:2] == [
            "server",
            f"http://s3-{{1...{len(nodes)}}}:{PORTS['s3']}/data",
        ]


def test_the_load_balancer_balances_the_topologys_replicas() -> None:
    assert upstream("attachd_api") == [f"{s}:{PORTS['api']}" for s in of_kind("api")]
    assert upstream("attachd_s3") == [f"{s}:{PORTS['s3']}" for s in of_kind("minio")]
    assert upstream("attachd_flower") == [f"{s}:{PORTS['flower']}" for s in of_kind("flower")]
    listens = {int(p) for p in re.findall(r"^\s*listen (\d+);", NGINX, re.M)}
    assert listens == {PORTS["api"], PORTS["s3"], PORTS["flower"]}
    assert "X-Request-ID" in NGINX and "client_max_body_size" in NGINX
    assert "proxy_next_upstream" in NGINX and "max_fails" in NGINX


def test_every_process_reaches_the_others_by_the_topologys_names() -> None:
    env = COMPOSE[of_kind("api")[0]]["environment"]
    (lb,) = of_kind("nginx")
    (pg,) = of_kind("postgres")
    assert env["ATTACHD_S3_ENDPOINT"] == f"{lb}:{PORTS['s3']}"
    assert f"@{pg}:{PORTS['postgres']}/" in env["ATTACHD_DATABASE_URL"]
    # Redis is reached through every Sentinel, never at one address.
    url = env["ATTACHD_REDIS_URL"].replace(
        "${ATTACHD_REDIS_PASSWORD:?set ATTACHD_REDIS_PASSWORD}", "pw"
    )
    redis = redisurl.parse(url)
    assert list(redis.sentinels) == [(s, PORTS["sentinel"]) for s in of_kind("sentinel")]
    assert redis.master_name == "attachd" and redis.password
    assert env["ATTACHD_CLAMD_PORT"] == str(PORTS["clamd"])


def test_the_plain_hosts_guide_lists_the_same_hosts() -> None:
    text = (REPO / "docs" / "OPERATIONS.md").read_text()
    section = text.split("## Several machines", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([\d.]+)` \| (.+?) \|$", section, re.M)
    # The services are the names in backquotes outside the parentheses (which say what runs).
    listed = {
        host: (addr, set(re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", runs))))
        for host, addr, runs in rows
    }
    assert listed == {h: (v["address"], set(v["services"])) for h, v in HOSTS.items()}
