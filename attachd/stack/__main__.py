"""`python -m attachd.stack run|up|down|status|env-file`: the process half of `make run/up/down`
(deploy/scripts/stack.sh starts and stops the backing services around it).

`up` runs `run` detached, in a session of its own with its output in var/log/stack.log; its pid
and its components' are kept in var/run/stack.json, which is how `down` and `status` find it.
`env-file` writes what the stack runs with to var/attachd.env (core/installation.py), which
every process of this checkout reads, the `attachd` command included.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from attachd.stack import REPO, Stack, StackError, file_tail, say
from core import installation
from core.secrets_check import SECRET_FIELDS, URL_FIELDS
from core.settings import Settings

ENV_FILE_HEADER = """\
Written by deploy/scripts/stack.sh (make run / make up): what this local stack runs with.
Every process of this checkout reads it (the API, the workers, beat, Flower, `attachd`);
a variable set in the environment wins. Rewritten at each start: edit the environment instead."""


def var_path(settings: Settings, *parts: str) -> Path:
    var = settings.var_dir if settings.var_dir.is_absolute() else REPO / settings.var_dir
    return var.joinpath(*parts)


def read_state(path: Path) -> dict[str, object] | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(path: Path, **state: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)  # whole or not at all: `up` polls it


def alive(pid: object) -> bool:
    """A live `attachd.stack` process: a pid file left by a crash may name a pid reused since."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # empty for a zombie
    except OSError:
        return False
    return b"attachd.stack" in cmdline


def run(start_timeout: float, stop_timeout: float) -> int:
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # A signal only asks: the stop that follows is bounded and must not be cut short by a
        # second Ctrl-C (which would leave the components running).
        signal.signal(sig, lambda signum, frame: stopping.set())
    stack = Stack(
        os.environ, start_timeout=start_timeout, stop_timeout=stop_timeout, cancel=stopping
    )
    state = var_path(stack.settings, "run", "stack.json")
    write_state(state, pid=os.getpid(), ready=False)
    gone = None
    try:
        with stack:
            pids = {name: proc.pid for name, proc in stack.procs.items()}
            write_state(state, pid=os.getpid(), ready=True, components=pids)
            s = stack.settings
            say(f"up: api {stack.base_url}, flower http://{s.flower_host}:{s.flower_port}")
            gone = stack.wait(stopping)
            code = stack.procs[gone].returncode if gone else None
            say(f"{gone} exited with {code}; stopping the rest" if gone else "stopping")
    except StackError as exc:
        say(str(exc))
        return 130 if stopping.is_set() else 1
    finally:
        state.unlink(missing_ok=True)
    say("stopped")
    return 1 if gone else 0


def up(start_timeout: float, stop_timeout: float) -> int:
    settings = Settings.from_env(os.environ)
    state, log = var_path(settings, "run", "stack.json"), var_path(settings, "log", "stack.log")
    current = read_state(state)
    proc = None
    if current is not None and alive(current.get("pid")):
        pid = current["pid"]
        say(f"already running (pid {pid})")
    else:
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "attachd.stack", "run", f"--timeout={start_timeout}"]
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [*argv, f"--stop-timeout={stop_timeout}"],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: outlives this command and its terminal
            )
        pid = proc.pid
    deadline = time.monotonic() + start_timeout + 15
    while True:
        current = read_state(state)
        if current is not None and current.get("pid") == pid and current.get("ready"):
            say(f"up (pid {pid}); output in {log}")
            return 0
        if (proc.poll() is not None) if proc else not alive(pid):
            say(f"the stack exited; last lines of {log}:\n{file_tail(log)}")
            return 1
        if time.monotonic() > deadline:
            say(f"not up after {start_timeout:.0f}s; stopping it. Output in {log}")
            down(stop_timeout)
            return 1
        time.sleep(0.3)


def down(stop_timeout: float) -> int:
    settings = Settings.from_env(os.environ)
    state = var_path(settings, "run", "stack.json")
    current = read_state(state)
    if current is None:
        say("not running")
        return 0
    pid = current.get("pid")
    if isinstance(pid, int) and alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + stop_timeout + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # What a supervisor killed outright could not stop itself.
    components = current.get("components")
    for leader in components.values() if isinstance(components, dict) else ():
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.killpg(leader, signal.SIGKILL)
    state.unlink(missing_ok=True)
    say("stopped")
    return 0


def installation_values(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The settings `environ` gives, as the installation file records them, and the secrets it
    gives by value, which the file leaves out: a secret is recorded by the file that holds it
    (NAME_FILE, which stack.sh sets for the ones it keeps in var/), never copied."""
    names = {"ATTACHD_" + f.name.upper(): f.name for f in dataclasses.fields(Settings)}
    values, left_out = {}, []
    for key, value in environ.items():
        name = names.get(key.removesuffix(installation.FILE_SUFFIX))
        if name is None:
            continue
        if key.endswith(installation.FILE_SUFFIX):
            values[key] = str(Path(value).resolve())
            continue
        secret = name in SECRET_FIELDS or (
            name in URL_FIELDS and urlsplit(value).password is not None
        )
        if not secret:
            values[key] = value
        elif key + installation.FILE_SUFFIX not in environ:
            left_out.append(key)
    if "ATTACHD_VAR_DIR" in values:
        values["ATTACHD_VAR_DIR"] = str(Path(values["ATTACHD_VAR_DIR"]).resolve())
    return values, sorted(left_out)


def env_file() -> int:
    path = installation.location(os.environ)
    values, left_out = installation_values(os.environ)
    header = ENV_FILE_HEADER
    if left_out:
        note = f"given by value, not recorded here: {', '.join(left_out)}"
        header += f"\nSecrets {note} (give them to `attachd` too)."
        say(f"{path}: secrets {note}")
    installation.write(path, values, header)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attachd.stack", description=__doc__)
    parser.add_argument("command", choices=("run", "up", "down", "status", "env-file"))
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("ATTACHD_UP_TIMEOUT", "90")),
        help="seconds every component may take to answer (ATTACHD_UP_TIMEOUT)",
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=30.0, help="seconds before SIGKILL on stop"
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.timeout, args.stop_timeout)
    if args.command == "up":
        return up(args.timeout, args.stop_timeout)
    if args.command == "down":
        return down(args.stop_timeout)
    if args.command == "env-file":
        return env_file()
    current = read_state(var_path(Settings.from_env(os.environ), "run", "stack.json"))
    return 0 if current is not None and alive(current.get("pid")) else 1


if __name__ == "__main__":
    sys.exit(main())
