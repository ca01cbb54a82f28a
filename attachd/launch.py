"""Starting workers and Flower from settings, so the Procfile, docker-compose.yml and an operator
on another machine all start them the same way.

`attachd worker` runs one Celery worker per pool of ATTACHD_WORKER_POOLS and supervises them: a
signal to it is a warm shutdown of every pool, and one pool dying stops the rest, so the process
manager (honcho, Docker, systemd) sees the failure and restarts the whole node. One node per
machine or container; `docker compose up --scale worker=N` adds nodes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from attachd.errors import ConfigError
from attachd.settings import Settings, WorkerPool

log = logging.getLogger(__name__)

CELERY = [sys.executable, "-m", "celery", "-A", "workers.app"]


def node_name(pool: WorkerPool, name: str = "") -> str:
    """Celery nodename: `scan@%h`, or `scan.NAME@%h` to run two nodes on one host."""
    base = pool.name.replace("+", "-")
    return f"{base}.{name}@%h" if name else f"{base}@%h"


def worker_argv(settings: Settings, pool: WorkerPool, hostname: str) -> list[str]:
    argv = [*CELERY, "worker", f"--loglevel={settings.log_level.upper()}",
            "-Q", ",".join(pool.queues), f"--hostname={hostname}"]
    if pool.autoscaled:
        argv.append(f"--autoscale={pool.max_concurrency},{pool.min_concurrency}")
    else:
        argv.append(f"--concurrency={pool.min_concurrency}")
    return argv


def check_pools(pools: Sequence[WorkerPool], known: Sequence[str]) -> None:
    seen: set[str] = set()
    for pool in pools:
        for queue in pool.queues:
            if queue not in known:
                raise ConfigError(f"ATTACHD_WORKER_POOLS: unknown queue {queue!r} "
                                  f"(queues: {', '.join(known)})")
            if queue in seen:
                raise ConfigError(f"ATTACHD_WORKER_POOLS: queue {queue!r} is in two pools")
            seen.add(queue)
    missing = [q for q in known if q not in seen]
    if missing:
        log.warning("no pool consumes %s on this node", ", ".join(missing))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: if the supervisor is killed outright, its workers get SIGTERM (a warm shutdown)
    # instead of living on unsupervised.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supervise(commands: dict[str, list[str]], poll: float = 0.5) -> int:
    """Run each command, forward SIGTERM/SIGINT to all as SIGTERM (Celery's warm shutdown),
    and stop all when one exits. Returns 0 only if every one exited cleanly."""
    children: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for name, argv in commands.items():
            log.info("starting pool %s: %s", name, " ".join(argv))
            # Same process group: whatever stops the group (a terminal's Ctrl-C, `make down`,
            # a container stop) reaches every pool too. SIGTERM twice is still a warm shutdown.
            children[name] = subprocess.Popen(argv, preexec_fn=_die_with_parent)
        while any(child.poll() is None for child in children.values()):
            for name, child in children.items():
                if child.returncode is not None and not stopping:
                    log.error("pool %s exited with %s; stopping the others", name,
                              child.returncode)
                    stop_all()
            time.sleep(poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = {name: child.returncode for name, child in children.items()}
    return 0 if all(code == 0 for code in codes.values()) else 1


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def flower_command(settings: Settings) -> tuple[list[str], dict[str, str]]:
    """Flower's argv and environment: persistent state under the var dir, basic auth from
    settings (through the environment, so the password is not in `ps`)."""
    user, password = settings.flower_user, settings.flower_password
    if bool(user) != bool(password):
        raise ConfigError("ATTACHD_FLOWER_USER and ATTACHD_FLOWER_PASSWORD go together")
    if not password and not _loopback(settings.flower_host):
        raise ConfigError(
            f"ATTACHD_FLOWER_PASSWORD: Flower on {settings.flower_host} would be open to the "
            "network; set ATTACHD_FLOWER_USER and ATTACHD_FLOWER_PASSWORD"
        )
    if ":" in user or "," in user or "," in password:
        raise ConfigError("ATTACHD_FLOWER_USER/PASSWORD: no ':' in the user, no ',' in either")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    argv = [*CELERY, "flower", f"--address={settings.flower_host}",
            f"--port={settings.flower_port}", "--persistent=True",
            f"--db={settings.var_dir / 'flower.db'}",
            # Saved every minute, not only at a clean exit: a killed Flower keeps its history.
            "--state_save_interval=60000"]
    env = dict(os.environ)
    env.pop("FLOWER_BASIC_AUTH", None)
    if password:
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    return argv, env
