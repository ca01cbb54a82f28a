"""make scale-test: attachd's production topology (deploy/scale/topology.toml) built from real
hosts on this machine, a bounded load through its load balancer, and the faults of those hosts
at fixed points; then a count of where every upload ended and what was left behind.

    .venv/bin/python deploy/scale/scaletest.py [--uploads 1000] [--partition-seconds 30]

Needs root (network namespaces). Everything it starts runs in the namespaces it creates, on its
own subnet; the load and the checks run from the bridge's address. Everything is taken down at
the end, whatever happened (also on SIGTERM/SIGINT). The last line printed is the summary,
ending `N lost, N duplicated, N leftovers`; the exit status is 0 only when all three are 0.

It depends on attachd only through its entry points: the commands of deploy/Procfile, the
`attachd` CLI, the environment variables of the README, the HTTP routes, and the record store's
table as the migrations define it.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from minio import Minio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rig import REPO, Rig, load_topology, teardown_leftovers

# The soak's mix of uploads (clean, infected, refused, rejected, re-uploaded), so the two runs'
# counts mean the same thing.
sys.path.insert(0, str(REPO))
from bench.soak import sample

VENV = REPO / ".venv"
ACTIVE = ("staged", "scanning", "verifying")
TERMINAL = ("attached", "infected", "rejected", "failed", "superseded")
PG_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def procfile() -> dict[str, str]:
    """The commands every deployment runs (docker-compose.yml runs the same, checked by
    tests/unit/test_deploy_files.py): the rig starts exactly these."""
    procs = {}
    for line in (REPO / "deploy" / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            procs[name.strip()] = command.strip()
    return procs


# --- the stack ---------------------------------------------------------------------------------


class Stack:
    """attachd's services started on the rig's hosts, each as its kind says."""

    def __init__(self, rig: Rig, args: argparse.Namespace) -> None:
        self.rig, self.topo, self.args = rig, rig.topo, args
        self.root = rig.root
        self.pg_password = secrets.token_hex(12)
        self.redis_password = secrets.token_hex(12)
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
            "ATTACHD_REDIS_URL": f"redis://:{self.redis_password}@redis:{p['redis']}/0",
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
        host, p = self.db_host.name, self.topo.ports
        pg = self.pg_dir
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
        conf = self.root / host / "redis.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"bind 0.0.0.0\nport {p['redis']}\nprotected-mode no\n"
            f"requirepass {self.redis_password}\ndir {conf.parent}\n"
            'save ""\nappendonly no\ndaemonize no\nlogfile ""\n'
        )
        conf.chmod(0o600)
        self.rig.spawn(host, "redis", ["redis-server", str(conf)], {})
        ping = [
            "redis-cli",
            "-p",
            str(p["redis"]),
            "--no-auth-warning",
            "-a",
            self.redis_password,
            "ping",
        ]
        self.wait(lambda: self.rig.run(host, ping, {}).stdout.strip() == "PONG", "redis")

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

    @staticmethod
    def wait(check: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except Exception:  # noqa: S110 - not up yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f}s")
            time.sleep(0.3)

    # the record store and the buckets, as they are ------------------------------------------------

    def uploads(self) -> list[dict[str, Any]]:
        cols = [
            "id",
            "state",
            "original_name",
            "attachment_id",
            "seq",
            "created_at",
            "finished_at",
            "updated_at",
            "staging_key",
            "object_key",
            "quarantine_key",
            "attempts",
            "reason",
            "sha256",
        ]
        # Served beside an attached version when the schema has them: the sanitized file's
        # digest and the renditions (storage/served.py).
        have = set(
            self.must(
                self.psql(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'uploads'"
                ),
                "columns",
            ).stdout.split()
        )
        cols += [c for c in ("served_sha256", "renditions") if c in have]
        epoch = {"created_at", "finished_at", "updated_at"}
        sel = ", ".join(
            f"extract(epoch from {c})"
            if c in epoch
            else f"replace(replace({c}::text, E'\\t', ' '), E'\\n', ' ')"
            if c == "reason"
            else f"{c}::text"
            if c == "renditions"
            else c
            for c in cols
        )
        # Column names from this file and the catalogue only: no value is interpolated.
        query = f"SELECT {sel} FROM uploads ORDER BY seq"  # noqa: S608
        res = self.must(self.psql(query), "SELECT uploads")
        rows = []
        for line in res.stdout.splitlines():
            vals = line.split("\t")
            row: dict[str, Any] = dict(
                zip(cols, [v if v != "" else None for v in vals], strict=False)
            )
            for c in epoch:
                row[c] = float(row[c]) if row[c] else None
            renditions = json.loads(row.get("renditions") or "null") or []
            # A rendition no smaller than the file is the file itself ("stored": false).
            row["served_keys"] = [
                row["object_key"],
                *(f"{row['object_key']}@{r['px']}" for r in renditions if r.get("stored", True)),
            ]
            row["served_sha256"] = row.get("served_sha256") or row["sha256"]
            rows.append(row)
        return rows

    def bucket_keys(self) -> dict[str, set[str]]:
        client = Minio(self.s3_endpoint, "attachd", self.s3_secret, secure=False)
        return {
            b: {o.object_name for o in client.list_objects(f"attachd-{b}", recursive=True)}
            for b in ("staging", "attachments", "quarantine")
        }


def _clamd_ping(address: str, port: int) -> bool:
    with socket.create_connection((address, port), timeout=3) as sock:
        sock.sendall(b"zPING\0")
        return sock.recv(16).startswith(b"PONG")


def _get(url: str, **kw: Any) -> requests.Response:
    with requests.Session() as s:
        s.trust_env = False
        return s.get(url, timeout=5, **kw)


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Figures:
    uploads: int = 0
    concurrency: int = 0
    responses: dict[str, int] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    partition: dict[str, Any] = field(default_factory=dict)
    final_states: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    leftovers: dict[str, int] = field(default_factory=dict)
    answers_lost_but_kept: int = 0
    downloads_checked: int = 0
    seconds_setup: float = 0.0
    seconds_load: float = 0.0
    seconds_drain: float = 0.0
    seconds_pipeline_done: float | None = None
    seconds_total: float = 0.0
    dashboard: int = 0
    flower: int = 0


@dataclass
class Sent:
    i: int
    name: str
    expect: str
    sha256: str
    status: str = ""
    t_start: float = 0.0
    t_end: float = 0.0


LOCK = Path("/run/attachd-scale.lock")


def run(args: argparse.Namespace) -> Figures:
    # One run at a time on a machine: a second would take the same subnet and names (and its
    # start would clear the first's hosts away). The next one waits.
    lock = LOCK.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another scale test holds {LOCK}; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    started = time.monotonic()
    fig = Figures(uploads=args.uploads, concurrency=args.concurrency)
    root = Path(tempfile.mkdtemp(prefix="attachd-scale-", dir="/var/tmp"))
    with Rig(load_topology(), root) as rig:
        rig.build()
        stack = Stack(rig, args)
        try:
            stack.start()
        except BaseException:
            keep_logs(rig, args)
            raise
        fig.seconds_setup = round(time.monotonic() - started, 1)
        try:
            sent = load(stack, args, fig)
            drain(stack, args, fig)
            check(stack, sent, fig)
        finally:
            keep_logs(rig, args)
    fig.seconds_total = round(time.monotonic() - started, 1)
    return fig


def load(stack: Stack, args: argparse.Namespace, fig: Figures) -> list[Sent]:
    url = f"{stack.api_url}/api/1/profile/{stack.profile}/uploadAttachment"
    sent: list[Sent] = []
    for i in range(args.uploads):
        name, data, expect = sample(i)
        sent.append(Sent(i, name, expect, hashlib.sha256(data).hexdigest()))
    done = 0
    lock = threading.Lock()
    local = threading.local()

    def send(s: Sent) -> None:
        nonlocal done
        _, data, _ = sample(s.i)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False
        s.t_start = time.time()
        try:
            resp = session.post(
                url,
                params={"accessTokenId": stack.token},
                files={"attachment": (s.name, data)},
                # Longer than lb's 120 s read timeout: an upload slowed by a MinIO node's death
                # is answered by the load balancer, never abandoned by the client first.
                timeout=150,
            )
            s.status = str(resp.status_code)
        except requests.RequestException as exc:
            s.status = f"error {type(exc).__name__}"
        s.t_end = time.time()
        with lock:
            done += 1

    def at(fraction: float) -> None:
        while done < args.uploads * fraction:
            time.sleep(0.02)

    def chaos() -> None:
        try:
            # The partition runs beside the other faults: they come at their own points.
            cut = threading.Thread(target=partition, args=(stack, args, fig, at), daemon=True)
            cut.start()
            at(0.35)
            api = stack.topo.of_kind("api")[-1].name
            t = time.time()
            stack.rig.send(api, signal.SIGKILL)
            fig.faults.append(
                {
                    "fault": f"SIGKILL {api} (gunicorn and its workers)",
                    "at": t,
                    "after_uploads": done,
                }
            )
            log(f"SIGKILL {api} after {done} uploads")
            at(0.55)
            s3 = stack.topo.of_kind("minio")[2].name
            t = time.time()
            stack.rig.send(s3, signal.SIGKILL)
            fig.faults.append({"fault": f"SIGKILL MinIO on {s3}", "at": t, "after_uploads": done})
            log(f"SIGKILL MinIO on {s3} after {done} uploads")
            at(0.75)
            t = time.time()
            n = done
            down = stack.restart_postgres()
            fig.faults.append(
                {
                    "fault": "PostgreSQL restarted (fast shutdown, start)",
                    "at": t,
                    "after_uploads": n,
                    "seconds_down": round(down, 1),
                }
            )
            log(f"PostgreSQL restarted after {n} uploads, {down:.1f}s down")
            cut.join()
        except Exception as exc:
            fig.faults.append({"fault": f"chaos failed: {exc!r}", "at": time.time()})
            log(f"chaos failed: {exc!r}")

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    t0 = time.monotonic()
    chaos_thread.start()
    with ThreadPoolExecutor(args.concurrency) as pool:
        for n, _ in enumerate(pool.map(send, sent), 1):
            if n % 250 == 0:
                log(f"{n}/{args.uploads} sent")
    chaos_thread.join(timeout=args.partition_seconds + 120)
    fig.seconds_load = round(time.monotonic() - t0, 1)
    fig.responses = dict(Counter(s.status for s in sent))
    # What the clients saw of each fault: the requests that failed between it and the next.
    points = [*sorted([f["at"] for f in fig.faults] + [fig.partition.get("at", 0)]), 1e12]
    for f in fig.faults:
        until = min(t for t in points if t > f["at"])
        bad = [s for s in sent if f["at"] <= s.t_end < until and s.status not in ("200", "415")]
        f["failed_requests"] = len(bad)
        f["failed_for_seconds"] = round(max((s.t_end for s in bad), default=f["at"]) - f["at"], 1)
        f["statuses"] = dict(Counter(s.status for s in bad))
    return sent


def partition(stack: Stack, args: argparse.Namespace, fig: Figures, at: Any) -> None:
    """worker-1's link goes down while it runs a task, for longer than a task takes."""
    victim = stack.topo.of_kind("worker")[0].name
    at(0.15)
    # At its fixed point, whatever the host is doing: under this load it always holds tasks,
    # and which ones is read from its own log afterwards (held_at_cut).
    t_cut = time.time()
    stack.rig.link(victim, up=False)
    log(f"{victim}'s link down")
    time.sleep(args.partition_seconds)
    stack.rig.link(victim, up=True)
    t_up = time.time()
    log(f"{victim}'s link up after {t_up - t_cut:.1f}s")
    fig.partition = {
        "host": victim,
        "at": t_cut,
        "link_up_at": t_up,
        "seconds_down": round(t_up - t_cut, 1),
    }


def drain(stack: Stack, args: argparse.Namespace, fig: Figures) -> None:
    """Until every upload has ended and staging holds nothing without a record (what a request
    cut off by a fault staged), as beat's reconciler gets there; with --sweep, the drain also
    runs `attachd reconcile` itself every few seconds once the uploads have ended."""
    t0 = time.monotonic()
    counts: Counter[str] = Counter()
    orphans = -1
    host = stack.topo.of_kind("api")[0].name
    while time.monotonic() - t0 < args.drain_timeout:
        rows = stack.uploads()
        counts = Counter(r["state"] for r in rows)
        if not any(counts[s] for s in ACTIVE):
            if fig.seconds_pipeline_done is None:
                fig.seconds_pipeline_done = round(time.monotonic() - t0, 1)
            staged = stack.bucket_keys()["staging"]
            orphans = len(staged - {r["staging_key"] for r in rows if r["staging_key"]})
            if orphans == 0:
                break
            if args.sweep:
                stack.must(
                    stack.rig.run(host, ["attachd", "reconcile"], stack.env(host)),
                    "attachd reconcile",
                )
        time.sleep(2)
    fig.seconds_drain = round(time.monotonic() - t0, 1)
    log(
        f"drained in {fig.seconds_drain}s (pipeline done after {fig.seconds_pipeline_done}s, "
        f"{orphans} orphaned staged objects left): {dict(counts)}"
    )


def check(stack: Stack, sent: list[Sent], fig: Figures) -> None:
    rows = stack.uploads()
    keys = stack.bucket_keys()
    fig.final_states = dict(Counter(r["state"] for r in rows))
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_name.setdefault(r["original_name"], []).append(r)
    # One record per accepted upload; a request whose answer was lost to a fault (502, a
    # reset) may have been recorded all the same, and must then end like any other.
    for s in sent:
        if s.name == "again.png":
            continue
        mine = by_name.get(s.name, [])
        if s.status == "200":
            if not mine:
                fig.lost.append(f"{s.name}: accepted, no record")
            elif len(mine) > 1:
                fig.duplicated.append(f"{s.name}: {len(mine)} records")
        elif mine:
            fig.answers_lost_but_kept += 1
        for r in mine:
            want = {"refused": "(no record)", "attached-or-superseded": "attached"}.get(
                s.expect, s.expect
            )
            if r["state"] != want:
                fig.lost.append(f"{s.name}: {r['state']} ({r['reason']}), expected {want}")
    again_ok = sum(1 for s in sent if s.name == "again.png" and s.status == "200")
    again = by_name.get("again.png", [])
    if len(again) < again_ok:
        fig.lost.append(f"again.png: {again_ok} accepted, {len(again)} records")
    fig.answers_lost_but_kept += max(0, len(again) - again_ok)
    # Never two versions served, never an older one attached after a newer one.
    by_attachment: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_attachment.setdefault(r["attachment_id"], []).append(r)
    for att, versions in by_attachment.items():
        attached = [r for r in versions if r["state"] == "attached"]
        newest_ok = max(
            (int(r["seq"]) for r in versions if r["state"] in ("attached", "superseded")),
            default=None,
        )
        detail = ", ".join(
            f"{r['id']} seq {r['seq']} {r['state']} at {r['finished_at']}"
            for r in versions
            if r["state"] in ("attached", "superseded")
        )
        if len(attached) > 1:
            fig.duplicated.append(f"attachment {att}: {len(attached)} versions attached: {detail}")
        elif attached and int(attached[0]["seq"]) != newest_ok:
            fig.duplicated.append(
                f"attachment {att}: an older version attached over a newer: {detail}"
            )
        if not attached and newest_ok is not None:
            fig.lost.append(f"attachment {att}: verified versions but none attached")
    for r in again:
        if r["state"] not in ("attached", "superseded"):
            fig.lost.append(f"again.png {r['id']}: {r['state']} ({r['reason']})")
    # Leftovers, counted as the soak counts them (bench/soak.py, leftovers()).
    want_staged = {r["staging_key"] for r in rows if r["staging_key"]}
    want_attached = {k for r in rows if r["state"] == "attached" for k in r["served_keys"]}
    want_quarantined = {r["quarantine_key"] for r in rows if r["quarantine_key"]}
    fig.leftovers = {
        "staged objects without an upload": len(keys["staging"] - want_staged),
        "uploads whose staged object is missing": len(want_staged - keys["staging"]),
        "attached objects not served": len(keys["attachments"] - want_attached),
        "attached uploads without their object": len(want_attached - keys["attachments"]),
        "quarantined objects without a record": len(keys["quarantine"] - want_quarantined),
        "infected uploads without quarantined evidence": len(want_quarantined - keys["quarantine"]),
        "uploads still in the pipeline": sum(1 for r in rows if r["state"] in ACTIVE),
    }
    # Downloads go on with a MinIO node down: the bytes served are the bytes the record says
    # were verified (as received, or sanitized), of the upload that was sent.
    base = f"{stack.api_url}/api/1/profile/{stack.profile}/attachment"
    clean = [s for s in sent if s.expect == "attached" and s.status == "200"][
        :: max(1, len(sent) // 40)
    ]
    for s in clean:
        if len(by_name.get(s.name, [])) != 1:
            continue  # counted above
        (row,) = by_name[s.name]
        name = urllib.parse.quote(s.name.rsplit(".", 1)[0])
        resp = requests.get(f"{base}/{name}", params={"accessTokenId": stack.token}, timeout=30)
        digest = hashlib.sha256(resp.content).hexdigest()
        if resp.status_code != 200 or row["sha256"] != s.sha256 or digest != row["served_sha256"]:
            fig.lost.append(f"{s.name}: download {resp.status_code}, not the bytes verified")
        fig.downloads_checked += 1
    # The operator's views, through lb.
    fig.dashboard = _get(
        f"{stack.api_url}/ops/dashboard", auth=("ops", stack.ops_password)
    ).status_code
    fig.flower = _get(
        f"{stack.flower_url}/api/workers", auth=("ops", stack.ops_password)
    ).status_code
    # The partitioned worker's tasks: when their uploads ended, and who ended them.
    p = fig.partition
    if p:
        ends = {r["id"]: r for r in rows}
        held = held_at_cut(stack, p)
        held = [u for u in held if u in ends and not (ends[u]["finished_at"] or 1e12) < p["at"]]
        p["held"] = held
        done_at = [ends[u]["finished_at"] for u in held if ends[u]["finished_at"]]
        p["held_finished"] = len(done_at)
        p["seconds_to_finish_held"] = round(max(done_at) - p["at"], 1) if done_at else None
        by = finished_by(stack, held, p["at"])
        p["finished"] = {
            u: {
                "by": by.get(u),
                "state": ends[u]["state"],
                "seconds_after_cut": round((ends[u]["finished_at"] or 0) - p["at"], 1),
            }
            for u in held
        }


def worker_log(stack: Stack, host: str) -> list[dict[str, Any]]:
    lines = []
    path = stack.rig.log(host)
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "ts" in entry:
            entry["t"] = datetime.fromisoformat(entry["ts"]).timestamp()
            lines.append(entry)
    return lines


def held_at_cut(stack: Stack, p: dict[str, Any]) -> list[str]:
    """The uploads whose tasks the partitioned host had received and not finished at the cut:
    from its own log: received before the cut, and its last line at or after it (or none)."""
    tasks: dict[str, dict[str, Any]] = {}
    for e in worker_log(stack, p["host"]):
        tid = e.get("task_id")
        if not tid:
            continue
        t = tasks.setdefault(tid, {"received": None, "last": None, "upload": None})
        if "received" in e.get("msg", "") and t["received"] is None:
            t["received"] = e["t"]
        elif e.get("logger") == "celery.app.trace":
            t["last"] = e["t"]
        t["upload"] = t["upload"] or e.get("upload_id")
    held = {
        t["upload"]
        for t in tasks.values()
        if t["upload"]
        and t["received"] is not None
        and t["received"] < p["at"]
        and (t["last"] is None or t["last"] >= p["at"])
    }
    return sorted(held)


def finished_by(stack: Stack, uploads: list[str], after: float) -> dict[str, str]:
    """Which worker host logged the last successful step of each upload, after the cut."""
    who: dict[str, tuple[float, str]] = {}
    for h in stack.topo.of_kind("worker"):
        for e in worker_log(stack, h.name):
            u = e.get("upload_id")
            if (
                u in uploads
                and e["t"] >= after
                and "succeeded" in e.get("msg", "")
                and (u not in who or who[u][0] < e["t"])
            ):
                who[u] = (e["t"], h.name)
    return {u: w for u, (_, w) in who.items()}


def keep_logs(rig: Rig, args: argparse.Namespace) -> None:
    if args.keep_logs:
        dest = Path(args.keep_logs)
        dest.mkdir(parents=True, exist_ok=True)
        for f in (rig.root / "log").glob("*.log"):
            (dest / f.name).write_bytes(f.read_bytes())


def summary(fig: Figures) -> str:
    accepted = fig.responses.get("200", 0)
    p = fig.partition
    held = p.get("held", [])
    faults = [
        f"{p.get('host')}'s link down {p.get('seconds_down')}s holding {len(held)} "
        f"task(s), finished {p.get('seconds_to_finish_held')}s after the cut"
    ]
    for f in fig.faults:
        faults.append(
            f"{f['fault']}: {f.get('failed_requests', 0)} requests failed "
            f"over {f.get('failed_for_seconds', 0)}s"
        )
    return (
        f"scale-test: {fig.uploads} uploads through lb, {accepted} accepted; "
        + "; ".join(faults)
        + f"; drained {fig.seconds_drain}s after the load, {fig.seconds_total}s in all: "
        f"{len(fig.lost)} lost, {len(fig.duplicated)} duplicated, "
        f"{sum(fig.leftovers.values())} leftovers"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy/scale/scaletest.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--partition-seconds", type=float, default=30)
    parser.add_argument(
        "--reconcile-after",
        type=int,
        default=60,
        help="ATTACHD_RECONCILE_AFTER_SECONDS on every host",
    )
    parser.add_argument(
        "--pools",
        default="scan=1-2,verify=1,attach+maintenance=1",
        help="ATTACHD_WORKER_POOLS on each worker host",
    )
    parser.add_argument("--drain-timeout", type=float, default=360)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="once the uploads have ended, run `attachd reconcile` every few "
        "seconds instead of waiting for beat's next minute (the short run)",
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep-logs", help="copy every process's log here before teardown")
    parser.add_argument(
        "--teardown-only",
        action="store_true",
        help="remove what a killed run left (namespaces, links)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("scale-test needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.teardown_only:
        with LOCK.open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log("another scale test is running: its hosts are its own to remove")
                return 0
            teardown_leftovers()
        return 0

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    fig = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(fig), indent=2, default=str))
    for what in fig.lost + fig.duplicated:
        log(what)
    log(
        json.dumps(
            {
                "responses": fig.responses,
                "final_states": fig.final_states,
                "leftovers": fig.leftovers,
                "partition": fig.partition,
                "faults": fig.faults,
                "answers_lost_but_kept": fig.answers_lost_but_kept,
                "downloads_checked": fig.downloads_checked,
                "dashboard": fig.dashboard,
                "flower": fig.flower,
                "setup": fig.seconds_setup,
                "load": fig.seconds_load,
            },
            default=str,
        )
    )
    print(summary(fig), flush=True)
    ok = not fig.lost and not fig.duplicated and not sum(fig.leftovers.values())
    ok = ok and fig.dashboard == 200 and fig.flower == 200 and len(fig.faults) == 3
    ok = ok and all("chaos failed" not in f["fault"] for f in fig.faults)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
