"""Where the CPU goes: CPU seconds of each class of process (the API's gunicorn, each worker pool,
MinIO, clamd, Redis, PostgreSQL, the bench client, a peer) over one round, from /proc, and what
the rest of the machine used meanwhile. The cases report it per file, beside the floor's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench.procs import (
    children,
    cmdline,
    cpu_seconds,
    listening_pid,
    machine_busy_seconds,
    tree_cpu_seconds,
)
from bench.target import Target

# The class every process not named here falls into: other users of this shared machine, and
# short-lived helpers nobody waited for.
REST = "rest of the machine"
TOTAL = "total of ours"

Reader = Callable[[], float]


@dataclass
class Usage:
    """CPU seconds per class over one round, and how many files the round handled."""

    files: int
    seconds: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0

    def per_file_ms(self) -> dict[str, float]:
        n = max(self.files, 1)
        return {name: 1000 * s / n for name, s in self.seconds.items()}

    def to_json(self) -> dict[str, object]:
        return {
            "files": self.files,
            "wall_seconds": self.wall,
            "cpu_seconds": self.seconds,
            "cpu_ms_per_file": self.per_file_ms(),
        }


def _tree(pid: int) -> Reader:
    return lambda: tree_cpu_seconds(pid)


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def _redis_port(url: str) -> int:
    hostport = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    return int(hostport.rsplit(":", 1)[1]) if ":" in hostport else 6379


def _service(name: str, port: int, host: str, out: dict[str, Reader]) -> None:
    pid = listening_pid(port, host)
    if pid is not None:
        out[name] = _tree(pid)


def worker_classes(root: int) -> dict[str, Reader]:
    """`attachd worker` supervises one Celery node per pool: a class per pool, named after the
    node's --hostname (scan@…, verify@…); a single Celery worker is one class."""
    nodes = children(root)
    named: dict[str, Reader] = {}
    for pid in nodes:
        host = next((a for a in cmdline(pid) if a.startswith("--hostname=")), "")
        if host:
            pool = host.removeprefix("--hostname=").split("@", 1)[0]
            named[f"workers: {pool}"] = _tree(pid)
    if not named:
        return {"workers": lambda: tree_cpu_seconds(root)}
    named["workers: supervisor"] = lambda: cpu_seconds(root, reaped=False)
    return named


def classes(t: Target, extra: Mapping[str, int] = {}) -> dict[str, Reader]:
    """The processes of this stack, found now: the API by its master's pid, the workers by the
    root the Target knows of, the services by the port they listen on. `extra` adds trees (a
    peer's server)."""
    s = t.settings
    out: dict[str, Reader] = {"API (gunicorn)": _tree(t.api_pid)}
    root = t.worker_root()
    if root is not None:
        out.update(worker_classes(root))
    for name, pid in {**t.companions(), **extra}.items():
        out[name] = _tree(pid)
    host = s.s3_endpoint.rsplit(":", 1)[0]
    _service("MinIO", _port(s.s3_endpoint), host, out)
    _service("clamd", s.clamd_port, s.clamd_host, out)
    _service("Redis", _redis_port(s.redis_url), "127.0.0.1", out)
    if s.database_url.startswith("postgresql"):
        # postgresql+driver://user:pass@host:port/db
        where = s.database_url.split("@", 1)[-1].split("/", 1)[0]
        pg_host, _, pg_port = where.partition(":")
        _service("PostgreSQL", int(pg_port or 5432), pg_host or "127.0.0.1", out)
    # The client threads (uploads, polling, and the floor's own work) run in this process; its
    # children are the stack's processes, counted above, so only its own time counts here.
    me = os.getpid()
    out["bench client"] = lambda: cpu_seconds(me, reaped=False)
    return out


@contextmanager
def metered(readers: Mapping[str, Reader], files: int) -> Iterator[Usage]:
    """CPU of each class over the `with` block; the Usage is filled in when the block ends."""
    usage = Usage(files)
    before = {name: read() for name, read in readers.items()}
    busy = machine_busy_seconds()
    start = time.perf_counter()
    yield usage
    usage.wall = time.perf_counter() - start
    for name, read in readers.items():
        usage.seconds[name] = max(0.0, read() - before[name])
    ours = sum(usage.seconds.values())
    usage.seconds[TOTAL] = ours
    usage.seconds[REST] = max(0.0, machine_busy_seconds() - busy - ours)
