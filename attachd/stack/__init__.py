"""attachd's own processes on this machine (the API, the workers, beat, Flower): started, waited
for until each answers, and stopped with nothing left behind. One module for `make run/up/down`
(through deploy/scripts/stack.sh and `python -m attachd.stack`, see __main__.py), the
integration tests and `make bench`. The backing services (Redis, MinIO, clamd) are
deploy/scripts/services.sh's job, not this one's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from attachd.launch import parent_death_hook
from attachd.stack import proxy
from core.errors import ServiceUnavailable
from core.settings import Settings
from storage.telemetry import Telemetry

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROCFILE = REPO / "deploy" / "Procfile"
COMPONENTS = ("api", "worker", "beat", "flower")


def components_of(settings: Settings) -> tuple[str, ...]:
    """What `make run` starts: with ATTACHD_API_PROXY, nginx in front of the API too."""
    return ("api", "proxy", *COMPONENTS[1:]) if settings.api_proxy else COMPONENTS


Probe = Callable[["subprocess.Popen[bytes]"], bool]


class StackError(RuntimeError):
    """A component did not start, or exited while starting; the message has its last lines."""


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    ready: Probe  # True once the component answers


# --- readiness -----------------------------------------------------------------------------------


def api_ready(base_url: str) -> Probe:
    def probe(proc: subprocess.Popen[bytes]) -> bool:
        try:
            return requests.get(base_url + "/api/1/monitoring/version", timeout=1).ok
        except requests.RequestException:
            return False

    return probe


def workers_ready(redis_url: str, count: int = 1) -> Probe:
    """`count` workers of this component's process group have a fresh presence heartbeat: the
    same fact the dashboard counts as "online", and no stale heartbeat of an earlier run (or
    another stack's worker on the same Redis) can pass for it."""
    telemetry = Telemetry.from_url(redis_url)

    def probe(proc: subprocess.Popen[bytes]) -> bool:
        try:
            presences = telemetry.workers()
        except ServiceUnavailable:  # Redis not answering yet is "not ready", not a failure
            return False
        mine = 0
        for p in presences:
            with contextlib.suppress(OSError):
                mine += os.getpgid(p.pid) == proc.pid
        return mine >= count

    return probe


def flower_ready(settings: Settings) -> Probe:
    url = f"http://{settings.flower_host}:{settings.flower_port}/healthcheck"
    auth = (settings.flower_user, settings.flower_password) if settings.flower_password else None

    def probe(proc: subprocess.Popen[bytes]) -> bool:
        try:
            return requests.get(url, auth=auth, timeout=1).ok
        except requests.RequestException:
            return False

    return probe


def log_says(log: Path, marker: bytes) -> Probe:
    """For a component that announces itself only in its log (a worker on a Redis this process
    cannot read)."""

    def probe(proc: subprocess.Popen[bytes]) -> bool:
        try:
            return marker in log.read_bytes()
        except OSError:
            return False

    return probe


def running(proc: subprocess.Popen[bytes]) -> bool:
    """Beat serves nothing to ask: started is all there is to wait for."""
    return proc.poll() is None


def procfile() -> dict[str, str]:
    procs = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            procs[name.strip()] = command.strip()
    return procs


def standard(settings: Settings, name: str) -> Component:
    """A component as deploy/Procfile runs it (which docker-compose.yml keeps in step with), run
    by the shell as honcho would so its `${VAR:-default}` work; `exec` keeps the pid the same."""
    public = f"http://{settings.api_host}:{settings.api_port}"
    if name == "proxy":
        # Ready once the API answers through it.
        return Component(name, proxy.argv(settings), api_ready(public))
    backend = f"http://127.0.0.1:{settings.api_backend_port}" if settings.api_proxy else public
    ready = {
        "api": api_ready(backend),
        "worker": workers_ready(settings.redis_url, len(settings.pools())),
        "beat": running,
        "flower": flower_ready(settings),
    }[name]
    return Component(name, ("/bin/sh", "-c", "exec " + procfile()[name]), ready)


# --- one process ---------------------------------------------------------------------------------


def spawn(
    argv: Sequence[str], env: Mapping[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A session of its own: a Ctrl-C at the terminal reaches only whoever started it, who stops
    the components in order, and its whole group (gunicorn's and Celery's children) can be
    killed at once. It gets SIGTERM if its starter dies first, so none outlives a killed
    supervisor. Output goes to `log`, or to a pipe when `log` is None."""
    out: IO[bytes] | int = subprocess.PIPE
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115 - the child keeps its own copy; ours closes below
    try:
        return subprocess.Popen(
            list(argv),
            cwd=REPO,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=parent_death_hook(),
        )
    finally:
        if not isinstance(out, int):
            out.close()


def stop(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM to each leader at once, a wait bounded by `timeout` for all of them, then SIGKILL
    to each whole group. Only the leader is asked: gunicorn and Celery stop their own children
    in order, and a signal straight to a Celery pool process would lose the task it holds. The
    SIGKILL to the group takes what a leader left behind or what would not stop in time."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_ready(
    name: str,
    proc: subprocess.Popen[bytes],
    ready: Probe,
    timeout: float,
    tail: Callable[[], str],
    cancel: threading.Event | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not ready(proc):
        if proc.poll() is not None:
            raise StackError(f"{name} exited with {proc.returncode} while starting:\n{tail()}")
        if cancel is not None and cancel.is_set():
            raise StackError(f"interrupted while waiting for {name}")
        if time.monotonic() > deadline:
            raise StackError(f"{name} did not answer within {timeout:.0f}s:\n{tail()}")
        time.sleep(0.2)


def file_tail(log: Path, chars: int = 3000) -> str:
    try:
        return log.read_text(errors="replace")[-chars:]
    except OSError:
        return f"({log} unreadable)"


# --- output for people ---------------------------------------------------------------------------


class Echo:
    """Components' lines, prefixed with their name, onto one stream (a terminal, or the log of
    `up`). The reader may go away first: Ctrl-C on `make run | tee run.log` ends tee at once,
    and a write that failed must not end the stop that follows, so from then on the lines are
    read and dropped (a component blocked on a full pipe would not stop either)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.tails: dict[str, deque[bytes]] = {}
        self.threads: list[threading.Thread] = []

    def follow(self, name: str, pipe: IO[bytes]) -> None:
        tail = self.tails[name] = deque(maxlen=40)
        prefix = f"{name:<7}| ".encode()

        def relay() -> None:
            for line in iter(pipe.readline, b""):
                tail.append(line)
                self.write(time.strftime("%H:%M:%S ").encode() + prefix + line)
            pipe.close()

        thread = threading.Thread(target=relay, name=f"echo-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def write(self, data: bytes) -> None:
        with self.lock:
            write_quietly(self.stream, data)

    def tail(self, name: str) -> str:
        return b"".join(self.tails.get(name, ())).decode(errors="replace")

    def join(self, timeout: float = 2.0) -> None:
        for thread in self.threads:
            thread.join(timeout)


def write_quietly(stream: IO[bytes], data: bytes) -> None:
    """Write, or, once the reader is gone, point the descriptor at /dev/null: later writes, and
    the interpreter's flush at exit, then succeed instead of raising BrokenPipeError."""
    try:
        stream.write(data)
        stream.flush()
    except OSError:
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)


def say(message: str) -> None:
    write_quietly(sys.stderr.buffer, f"[stack] {message}\n".encode())


# --- the stack -----------------------------------------------------------------------------------


class Stack:
    """`with Stack(env) as stack:` starts the components, returns once each answers, and stops
    them all on the way out, also on an error or while still starting. Each one's output goes to
    `log_dir/<name>.log`, or, with no log_dir, prefixed onto `echo` (default: stdout)."""

    def __init__(
        self,
        env: Mapping[str, str],
        components: Sequence[str | Component] | None = None,
        *,
        log_dir: Path | None = None,
        echo: IO[bytes] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.env = {**env, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}:{env.get('PATH', '')}"}
        self.settings = Settings.from_env(self.env)
        self.components = [
            c if isinstance(c, Component) else standard(self.settings, c)
            for c in (components if components is not None else components_of(self.settings))
        ]
        self.log_dir = log_dir
        self.echo = None if log_dir else Echo(echo or sys.stdout.buffer)
        self.start_timeout, self.stop_timeout = start_timeout, stop_timeout
        self.cancel = cancel
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def tail(self, name: str) -> str:
        if self.echo is not None:
            return self.echo.tail(name)
        assert self.log_dir is not None
        return file_tail(self.log_dir / f"{name}.log")

    def start(self) -> None:
        try:
            for c in self.components:
                log = self.log_dir / f"{c.name}.log" if self.log_dir else None
                proc = self.procs[c.name] = spawn(c.argv, self.env, log)
                if self.echo is not None and proc.stdout is not None:
                    self.echo.follow(c.name, proc.stdout)
            # One deadline for all: they start side by side, so the slowest one sets the pace.
            deadline = time.monotonic() + self.start_timeout
            for c in self.components:
                left = max(deadline - time.monotonic(), 1.0)
                tail = functools.partial(self.tail, c.name)
                wait_ready(c.name, self.procs[c.name], c.ready, left, tail, self.cancel)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        stop(list(self.procs.values()), self.stop_timeout)
        if "proxy" in self.procs:
            proxy.remove_temp(self.settings)
        self.procs.clear()
        if self.echo is not None:
            self.echo.join()

    def wait(self, until: threading.Event) -> str | None:
        """Block until `until` is set (None) or a component exits (its name): one gone means
        the stack is not whole, and the caller stops the rest, as honcho did."""
        while not until.wait(0.5):
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    return name
        return None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
