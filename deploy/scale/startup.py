"""make scale-test, start-up: attachd's services started on the hosts of the rig
(deploy/scale/rig.py), each as its kind in deploy/scale/topology.toml says, from the commands of
deploy/Procfile and the environment variables of the README."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from redisha import RedisHA
from rig import REPO, Rig, wait

# The commands every deployment runs (docker-compose.yml runs the same, checked by
# tests/unit/test_deploy_files.py): the rig starts exactly these, parsed as `make up` parses them.
from attachd.stack import procfile

VENV = REPO / ".venv"
PG_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Stack:
    """attachd's services started on the rig's hosts, each as its kind says."""

    def __init__(self, rig: Rig, args: argparse.Namespace) -> None:
        self.rig, self.topo, self.args = rig, rig.topo, args
        self.root = rig.root
        self.pg_password = secrets.token_hex(12)
        self.redis = RedisHA(rig)
        self.s3_secret = secrets.token_hex(12)
        self.ops_password = secrets.token_hex(12)
        self.procs = procfile()
        p = self.topo.ports
        lb = self.topo.of_kind("nginx")[0]
        self.lb = lb.address
        self.api_url = f"http://{lb.address}:{p['api']}"
        self.flower_url = f"http://{lb.address}:{p['flower']}"
        self.s3_endpoint = f"{lb.address}:{p['s3']}"
        self.db_host = self.topo.of_kind("postgres")[0]
        self.pg_dir = self.root / "db" / "postgres"

    def env(self, host: str) -> dict[str, str]:
        p = self.topo.ports
        return {
            "PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "ATTACHD_VAR_DIR": str(self.root / host),
            "ATTACHD_DATABASE_URL": f"postgresql+psycopg://attachd:{self.pg_password}"
            f"@postgres:{p['postgres']}/attachd",
            "ATTACHD_REDIS_URL": self.redis.url(),
            "ATTACHD_S3_ENDPOINT": f"lb:{p['s3']}",
            "ATTACHD_S3_ACCESS_KEY": "attachd",
            "ATTACHD_S3_SECRET_KEY": self.s3_secret,
            # Each worker host has its own clamd; an API host only pings one for its status.
            "ATTACHD_CLAMD_HOST": self.clamd_for(host),
            "ATTACHD_CLAMD_PORT": str(p["clamd"]),
            "ATTACHD_API_HOST": "0.0.0.0",  # noqa: S104 - inside its own namespace
            "ATTACHD_API_PORT": str(p["api"]),
            "ATTACHD_OPS_PASSWORD": self.ops_password,
            "ATTACHD_FLOWER_HOST": "0.0.0.0",  # noqa: S104 - with basic auth, behind lb
            "ATTACHD_FLOWER_PORT": str(p["flower"]),
            "ATTACHD_FLOWER_USER": "ops",
            "ATTACHD_FLOWER_PASSWORD": self.ops_password,
            "ATTACHD_RECONCILE_AFTER_SECONDS": str(self.args.reconcile_after),
            "ATTACHD_WORKER_POOLS": self.args.pools,
        }

    def clamd_for(self, host: str) -> str:
        mine = [s for s, kind in self.topo.hosts[host].services.items() if kind == "clamd"]
        if mine:
            return mine[0]
        return next(
            s
            for h in self.topo.of_kind("clamd")
            for s, kind in h.services.items()
            if kind == "clamd"
        )

    def start(self) -> None:
        t0 = time.monotonic()
        # The slow starters first, each on its own host, then wait for them together.
        self.start_minio()
        self.start_clamd()
        self.start_lb()
        self.start_db()
        self.redis.start()
        self.wait_s3()
        self.wait_clamd()
        api1 = self.topo.of_kind("api")[0].name
        for step in (
            ["attachd", "migrate"],
            ["attachd", "init-storage"],
            ["attachd", "demo", "--tenant", "scale", "--username", "loader"],
        ):
            self.must(self.rig.run(api1, step, self.env(api1)), " ".join(step))
        demo = json.loads((self.root / api1 / "demo.json").read_text())
        self.token, self.profile = demo["token"], demo["profile"]
        for h in self.topo.of_kind("api"):
            self.start_api(h.name)
        for h in self.topo.of_kind("worker"):
            self.start_worker(h.name)
        beat = self.topo.of_kind("beat")[0].name
        self.rig.spawn(beat, "beat", ["bash", "-c", "exec " + self.procs["beat"]], self.env(beat))
        flower = self.topo.of_kind("flower")[0].name
        self.rig.spawn(
            flower, "flower", ["bash", "-c", "exec " + self.procs["flower"]], self.env(flower)
        )
        self.wait_ready()
        log(
            f"topology up in {time.monotonic() - t0:.1f}s: "
            + ", ".join(f"{h.name}={h.address}" for h in self.topo.hosts.values())
        )

    @staticmethod
    def must(res: Any, what: str) -> Any:
        if res.returncode != 0:
            raise RuntimeError(f"{what} failed ({res.returncode}): {res.stdout}{res.stderr}")
        return res

    # PostgreSQL and Redis on the db host ---------------------------------------------------------

    def pg_bindir(self) -> Path:
        return sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))[-1].parent

    def start_db(self) -> None:
        host, pg = self.db_host.name, self.pg_dir
        (pg / "run").mkdir(parents=True)
        pwfile = pg / "pw"
        pwfile.write_text(self.pg_password + "\n")
        os.system(f"chown -R postgres: {shlex.quote(str(pg))}")  # noqa: S605
        self.must(
            self.rig.run(
                host,
                [
                    str(self.pg_bindir() / "initdb"),
                    "-D",
                    str(pg / "data"),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ],
                PG_ENV,
                user="postgres",
            ),
            "initdb",
        )
        with open(pg / "data" / "pg_hba.conf", "a") as f:
            f.write(f"host all all {self.topo.subnet} scram-sha-256\n")
        self.start_postgres()
        sql = (
            f"CREATE ROLE attachd LOGIN PASSWORD '{self.pg_password}';"
            "CREATE DATABASE attachd OWNER attachd;"
        )
        for stmt in sql.split(";")[:-1]:
            self.must(self.psql(stmt, db="postgres"), stmt.split(" PASSWORD")[0])

    def start_postgres(self) -> None:
        pg, port = self.pg_dir, self.topo.ports["postgres"]
        self.rig.spawn(
            self.db_host.name,
            "postgres",
            [
                str(self.pg_bindir() / "postgres"),
                "-D",
                str(pg / "data"),
                "-c",
                "listen_addresses=*",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={pg / 'run'}",
                "-c",
                "fsync=off",
            ],
            {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            user="postgres",
        )
        self.wait(self.pg_ready, "postgres")

    def pg_ready(self) -> bool:
        res = self.rig.run(
            self.db_host.name,
            [
                str(self.pg_bindir() / "pg_isready"),
                "-q",
                "-h",
                str(self.pg_dir / "run"),
                "-p",
                str(self.topo.ports["postgres"]),
            ],
            {},
        )
        return res.returncode == 0

    def psql(self, sql: str, db: str = "attachd") -> Any:
        return self.rig.run(
            self.db_host.name,
            [
                "psql",
                "-X",
                "-q",
                "-At",
                "-F",
                "\t",
                "-h",
                str(self.pg_dir / "run"),
                "-p",
                str(self.topo.ports["postgres"]),
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            user="postgres",
        )

    def restart_postgres(self) -> float:
        """A fast shutdown (SIGINT: sessions cut, nothing lost) and a start; seconds down."""
        t0 = time.monotonic()
        self.rig.stop("postgres", signal.SIGINT, timeout=30)
        self.start_postgres()
        return time.monotonic() - t0

    # MinIO on s3-1..N, behind lb ------------------------------------------------------------------

    def minio_bin(self) -> str:
        res = self.must(
            subprocess.run(
                [str(REPO / "deploy/scripts/minio-bin.sh")],
                text=True,
                capture_output=True,
                timeout=1800,
            ),
            "minio-bin.sh",
        )
        return res.stdout.strip()

    def start_minio(self) -> None:
        nodes = self.topo.of_kind("minio")
        port = self.topo.ports["s3"]
        # s3-{1...4}: MinIO's own notation for the nodes of one erasure set.
        names = [h.name for h in nodes]
        stem = names[0].rstrip("0123456789")
        numbers = [int(n[len(stem) :]) for n in names]
        if numbers != list(range(1, len(nodes) + 1)):
            raise ValueError(f"MinIO hosts must be named {stem}1..{stem}{len(nodes)}")
        endpoints = f"http://{stem}{{1...{len(nodes)}}}:{port}/data"
        binary = self.minio_bin()
        # Every node is started with the same endpoint list, so the drive has the same path on
        # each; each host mounts its own directory there, in its own mount namespace.
        drive = self.root / "s3" / "data"
        drive.mkdir(parents=True)
        endpoints = endpoints.replace("/data", str(drive))
        for h in nodes:
            data = self.root / h.name / "data"
            data.mkdir(parents=True)
            env = {
                "PATH": "/usr/sbin:/usr/bin:/bin",
                "HOME": str(self.root / h.name),
                "MINIO_ROOT_USER": "attachd",
                "MINIO_ROOT_PASSWORD": self.s3_secret,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
                # drives on the root filesystem (a test rig; real hosts have their own disks)
                "MINIO_CI_CD": "on",
            }
            self.rig.spawn(
                h.name,
                h.name,
                [
                    "bash",
                    "-c",
                    'mount --bind "$0" "$1" && exec "${@:2}"',
                    str(data),
                    str(drive),
                    binary,
                    "server",
                    endpoints,
                    "--address",
                    f":{port}",
                    "--console-address",
                    f"127.0.0.1:{port + 1}",
                ],
                env,
            )

    def wait_s3(self) -> None:
        url = f"http://{self.s3_endpoint}/minio/health/cluster"
        self.wait(lambda: _get(url).status_code == 200, "MinIO cluster (write quorum)", 120)

    # clamd, nginx, API, workers -----------------------------------------------------------------

    def start_clamd(self) -> None:
        """Each worker host's clamd, from the project's template and test signatures; it listens
        on the host's address too, so the API hosts can ask it for their status route."""
        port = self.topo.ports["clamd"]
        for h in self.topo.of_kind("clamd"):
            d = self.root / h.name / "clamd"
            for sub in ("db", "tmp"):
                (d / sub).mkdir(parents=True)
            self.must(
                subprocess.run(
                    [str(REPO / "deploy/clamav/build-db.sh"), str(d / "db"), "1"],
                    capture_output=True,
                    text=True,
                ),
                "build-db.sh",
            )
            conf = (REPO / "deploy/clamav/clamd.conf.in").read_text()
            for key, value in {
                "CLAMD_PORT": str(port),
                "CLAMD_DB_DIR": str(d / "db"),
                "CLAMD_TMP_DIR": str(d / "tmp"),
                "CLAMD_PID_FILE": str(d / "pid"),
                "CLAMD_LOG_FILE": str(d / "clamd.log"),
                "CLAMD_MAX_SIZE": "100M",
            }.items():
                conf = conf.replace(f"@{key}@", value)
            conf = conf.replace("TCPAddr 127.0.0.1", "TCPAddr 0.0.0.0")
            if "@CLAMD_" in conf or "TCPAddr 0.0.0.0" not in conf:
                raise RuntimeError("deploy/clamav/clamd.conf.in changed: update start_clamd")
            (d / "clamd.conf").write_text(conf)
            self.rig.spawn(h.name, f"clamd-{h.name}", ["clamd", "-c", str(d / "clamd.conf")], {})

    def wait_clamd(self) -> None:
        port = self.topo.ports["clamd"]
        for h in self.topo.of_kind("clamd"):
            self.wait(lambda a=h.address: _clamd_ping(a, port), f"clamd on {h.name}", 120)

    def start_lb(self) -> None:
        lb = self.topo.of_kind("nginx")[0].name
        d = self.root / lb
        (d / "tmp").mkdir(parents=True)
        (d / "tmp").chmod(0o777)
        conf = d / "nginx.conf"
        conf.write_text(
            "daemon off;\nworker_processes 2;\n"
            f"pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            + "".join(
                f"  {t}_temp_path {d / 'tmp' / t};\n"
                for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"  include {REPO}/deploy/nginx/attachd.conf;\n}}\n"
        )
        self.rig.spawn(
            lb,
            "nginx",
            ["/usr/sbin/nginx", "-c", str(conf), "-p", str(d)],
            {"PATH": "/usr/sbin:/usr/bin:/bin"},
        )
        self.wait(lambda: _get(f"{self.api_url}/lb/health").status_code == 200, "nginx")

    def start_api(self, host: str) -> None:
        self.rig.spawn(host, host, ["bash", "-c", "exec " + self.procs["api"]], self.env(host))

    def start_worker(self, host: str) -> None:
        # `--name` keeps the Celery node names of the two hosts apart (they share a hostname).
        self.rig.spawn(
            host, host, ["bash", "-c", f"exec {self.procs['worker']} --name {host}"], self.env(host)
        )

    def wait_ready(self) -> None:
        api = self.topo.of_kind("api")
        for h in api:
            url = f"http://{h.address}:{self.topo.ports['api']}/api/1/monitoring/status"
            try:
                self.wait(lambda u=url: _get(u).status_code == 200, h.name, 60)
            except RuntimeError:
                log(f"{h.name} says: {_get(url).text}")
                raise
        self.wait(
            lambda: _get(f"{self.api_url}/api/1/monitoring/status").status_code == 200,
            "the API through lb",
        )
        self.wait(
            lambda: (
                _get(f"{self.flower_url}/healthcheck", auth=("ops", self.ops_password)).status_code
                == 200
            ),
            "Flower through lb",
            60,
        )
        want = {h.name for h in self.topo.of_kind("worker")}
        self.wait(
            lambda: want <= {n.split("@")[0].split(".")[-1] for n in self.nodes()}, "workers", 90
        )

    def fleet(self) -> dict[str, Any]:
        host = self.topo.of_kind("api")[0].name
        res = self.rig.run(
            host,
            ["attachd", "fleet", "status", "--json", "--timeout", "1"],
            self.env(host),
            timeout=30,
        )
        try:
            return json.loads(res.stdout)
        except ValueError:
            return {"workers": []}

    def nodes(self) -> list[str]:
        return [w["name"] for w in self.fleet()["workers"]]

    wait = staticmethod(wait)


def _clamd_ping(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=3) as sock:
        sock.sendall(b"zPING\0")
        return sock.recv(16).startswith(b"PONG")


def _get(url: str, **kw: Any) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(url, timeout=5, **kw)


# --- the run -----------------------------------------------------------------------------------
