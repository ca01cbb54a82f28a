"""Starting workers and Flower from settings, so the Procfile, docker-compose.yml and an operator
on another machine all start them the same way.

`attachd worker` runs one Celery worker per pool of ATTACHD_WORKER_POOLS and supervises them: a
signal to it is a warm shutdown of every pool, and a pool that dies on its own is started again,
after a pause that grows with each death in a row (see supervise), while the others keep working.
One node per machine or container; `docker compose up --scale worker=N` adds nodes.
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
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

from core.errors import ConfigError
from core.settings import Settings, WorkerPool
from core.tasks import Queue

log = logging.getLogger(__name__)

CELERY = [sys.executable, "-m", "celery", "-A", "workers.app"]


def node_name(pool: WorkerPool, name: str = "") -> str:
    """Celery nodename: `scan@%h`, or `scan.NAME@%h` to run two nodes on one host."""
    base = pool.name.replace("+", "-")
    return f"{base}.{name}@%h" if name else f"{base}@%h"


def worker_argv(settings: Settings, pool: WorkerPool, hostname: str) -> list[str]:
    argv = [
        *CELERY,
        "worker",
        f"--loglevel={settings.log_level.upper()}",
        "-Q",
        ",".join(pool.queues),
        f"--hostname={hostname}",
    ]
    if pool.autoscaled:
        argv.append(f"--autoscale={pool.max_concurrency},{pool.min_concurrency}")
    else:
        argv.append(f"--concurrency={pool.min_concurrency}")
    return argv


def check_pools(pools: Sequence[WorkerPool], known: Sequence[str] = tuple(Queue)) -> None:
    """Every queue a pool names is one of `known` (core.tasks' queues), and in one pool only."""
    seen: set[str] = set()
    for pool in pools:
        for queue in pool.queues:
            if queue not in known:
                raise ConfigError(
                    f"ATTACHD_WORKER_POOLS: unknown queue {queue!r} (queues: {', '.join(known)})"
                )
            if queue in seen:
                raise ConfigError(f"ATTACHD_WORKER_POOLS: queue {queue!r} is in two pools")
            seen.add(queue)
    missing = [q for q in known if q not in seen]
    if missing:
        log.warning("no pool consumes %s on this node", ", ".join(missing))


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: if the supervisor is killed outright, its children get SIGTERM (a warm shutdown)
    instead of living on unsupervised.

    The kernel ties this to the *thread* that forked, not the process: arm it only for children
    started from the main thread (see parent_death_hook), or a child started by a short-lived
    thread is stopped the moment that thread ends."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def parent_death_hook() -> Callable[[], None] | None:
    """die_with_parent for a child forked from the calling thread, when that is safe."""
    return die_with_parent if threading.current_thread() is threading.main_thread() else None


def supervise(commands: dict[str, list[str]], poll: float = 0.5) -> int:
    """Run each command, forward SIGTERM/SIGINT to all as SIGTERM (Celery's warm shutdown), and
    start again a pool that dies on its own, after a pause that grows with each death in a row.

    Pools do die on their own: kombu's Redis transport can crash a worker while it reconnects
    after the broker restarts (AttributeError on the lost connection's parameters, seen in the
    soak). Restarting it here keeps the node working without a human, and with late acks and the
    reconciler nothing it held is lost. Returns 0 only if every pool exited cleanly when told to.
    """
    children: dict[str, subprocess.Popen[bytes]] = {}
    restarts: dict[str, int] = dict.fromkeys(commands, 0)
    due: dict[str, float] = {}
    stopping = False

    def stop_all(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def start(name: str) -> None:
        log.info("starting pool %s: %s", name, " ".join(commands[name]))
        # Same process group: whatever stops the group (a terminal's Ctrl-C, `make down`, a
        # container stop) reaches every pool too. SIGTERM twice is still a warm shutdown.
        children[name] = subprocess.Popen(commands[name], preexec_fn=parent_death_hook())
        started[name] = time.monotonic()

    started: dict[str, float] = {}
    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for name in commands:
            start(name)
        # Until told to stop and every pool has stopped.
        while not stopping or any(child.poll() is None for child in children.values()):
            now = time.monotonic()
            for name, child in children.items():
                if child.poll() is None or stopping or name in due:
                    continue
                # A pool that ran a while before dying starts a fresh run of restarts.
                restarts[name] = 0 if now - started[name] > 60 else restarts[name] + 1
                pause = min(2 ** restarts[name], 30)
                log.error(
                    "pool %s exited with %s; starting it again in %ss",
                    name,
                    child.returncode,
                    pause,
                )
                due[name] = now + pause
            for name, when in list(due.items()):
                if stopping:
                    due.clear()
                elif now >= when:
                    del due[name]
                    start(name)
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
    argv = [
        *CELERY,
        "flower",
        f"--address={settings.flower_host}",
        f"--port={settings.flower_port}",
        "--persistent=True",
        f"--db={settings.var_dir / 'flower.db'}",
        # Saved every minute, not only at a clean exit: a killed Flower keeps its history.
        "--state_save_interval=60000",
    ]
    env = dict(os.environ)
    env.pop("FLOWER_BASIC_AUTH", None)
    if password:
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    return argv, env
