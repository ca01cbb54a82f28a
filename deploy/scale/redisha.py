"""make scale-test, start-up of Redis with failover: the master, its replica and three Sentinels
on the hosts deploy/scale/topology.toml gives them, and what the Sentinels say of them."""

from __future__ import annotations

import secrets

from redis import Redis
from redis.exceptions import RedisError
from rig import Rig, wait


class RedisHA:
    def __init__(self, rig: Rig) -> None:
        self.rig, self.topo, self.root = rig, rig.topo, rig.root
        self.password = secrets.token_hex(12)

    MASTER_NAME = "attachd"

    def master_service(self) -> str:
        """The process the master was started as (the scale test kills it)."""
        h = self.topo.of_kind("redis")[0]
        return next(s for s, k in h.services.items() if k == "redis")

    def url(self) -> str:
        """Every process reaches the master through the Sentinels (core/redisurl.py)."""
        port = self.topo.ports["sentinel"]
        sentinels = [
            s
            for h in self.topo.of_kind("sentinel")
            for s, k in h.services.items()
            if k == "sentinel"
        ]
        auth = f":{self.password}@"
        return ";".join(f"sentinel://{auth}{s}:{port}" for s in sentinels) + (
            f"/0?master_name={self.MASTER_NAME}"
        )

    def start(self) -> None:
        """The master, its replicas (which may be promoted, so they ask for the same password)
        and the Sentinels, which watch the master by address and agree on its death by two."""
        p = self.topo.ports
        master = self.topo.of_kind("redis")[0]
        for h in [master, *self.topo.of_kind("redis-replica")]:
            name = next(s for s, k in h.services.items() if k in ("redis", "redis-replica"))
            conf = self.root / name / "redis.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            text = (
                f"bind 0.0.0.0\nport {p['redis']}\nprotected-mode no\n"
                f"requirepass {self.password}\nmasterauth {self.password}\n"
                f"dir {conf.parent}\n"
                'save ""\nappendonly no\ndaemonize no\nlogfile ""\n'
            )
            if h is not master:
                text += f"replicaof {master.address} {p['redis']}\n"
            conf.write_text(text)
            conf.chmod(0o600)
            self.rig.spawn(h.name, name, ["redis-server", str(conf)], {})
        for h in self.topo.of_kind("sentinel"):
            name = next(s for s, k in h.services.items() if k == "sentinel")
            conf = self.root / name / "sentinel.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            # Sentinel rewrites its own file (the replicas and peers it learns): one per process.
            conf.write_text(
                f"port {p['sentinel']}\nbind 0.0.0.0\nprotected-mode no\ndir {conf.parent}\n"
                f'daemonize no\nlogfile ""\n'
                f"sentinel monitor {self.MASTER_NAME} {master.address} {p['redis']} 2\n"
                f"sentinel auth-pass {self.MASTER_NAME} {self.password}\n"
                # Declared down after 2 s of silence; see docs/OPERATIONS.md for the trade.
                f"sentinel down-after-milliseconds {self.MASTER_NAME} 2000\n"
                f"sentinel failover-timeout {self.MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
            )
            conf.chmod(0o600)
            self.rig.spawn(h.name, name, ["redis-server", str(conf), "--sentinel"], {})
        replicas = len(self.topo.of_kind("redis-replica"))
        sentinels = len(self.topo.of_kind("sentinel"))
        wait(
            lambda: self.info(master.name, "replication").get("connected_slaves") == str(replicas),
            "redis and its replica",
        )
        # Each Sentinel knows the replica and the other Sentinels before the load starts, or a
        # death early in the load could find no quorum.
        for h in self.topo.of_kind("sentinel"):
            wait(
                lambda h=h: (
                    self.sentinel_view(h.address) == (master.address, replicas, sentinels - 1)
                ),
                f"the Sentinel on {h.name}",
                60,
            )

    def info(self, host: str, section: str) -> dict[str, str]:
        res = self.rig.run(
            host,
            [
                "redis-cli",
                "-p",
                str(self.topo.ports["redis"]),
                "--no-auth-warning",
                "-a",
                self.password,
                "info",
                section,
            ],
            {},
        )
        return dict(line.strip().split(":", 1) for line in res.stdout.splitlines() if ":" in line)

    def sentinel_view(self, address: str) -> tuple[str, int, int]:
        """(the master's address, replicas, other Sentinels) as the Sentinel at `address` sees."""
        client = Redis(
            address, self.topo.ports["sentinel"], socket_timeout=2, decode_responses=True
        )
        with client:
            m = client.sentinel_master(self.MASTER_NAME)
            return m["ip"], int(m["num-slaves"]), int(m["num-other-sentinels"])

    def master(self) -> str | None:
        """The master's address as the Sentinels' majority says now (None: no answer)."""
        views = []
        for h in self.topo.of_kind("sentinel"):
            try:
                views.append(self.sentinel_view(h.address)[0])
            except RedisError:
                continue
        return max(set(views), key=views.count) if views else None
