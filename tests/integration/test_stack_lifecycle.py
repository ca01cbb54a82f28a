"""`make run`'s Ctrl-C, as a person gives it: deploy/scripts/stack.sh run with its output through
a pipe (`2>&1 | cat`, as `make run 2>&1 | tee run.log`), on a pseudo-terminal whose ^C the
kernel turns into SIGINT for the whole foreground process group. The reader of the pipe dies
first; every process of the stack must still stop, the backing services included.

The stack here has services, ports and a var dir of its own, so it never meets the test services
or a `make run` of the same machine."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest
import requests

from attachd.stack import spawn, stop
from tests.conftest import REPO

pytestmark = pytest.mark.integration

STACK_SH = REPO / "deploy" / "scripts" / "stack.sh"
# What a person's environment may carry that the stack needs (where the MinIO build is).
KEPT = ("PATH", "HOME", "LANG", "MINIO_BIN", "ATTACHD_CACHE_DIR")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def stack_env(var_dir: Path) -> tuple[dict[str, str], list[int]]:
    ports = free_ports(7)
    api, backend, flower, redis, minio, console, clamd = ports
    env = {k: v for k, v in os.environ.items() if k in KEPT}
    env.update(
        ATTACHD_VAR_DIR=str(var_dir),
        ATTACHD_API_PORT=str(api),
        # gunicorn's, behind the nginx that make run puts on ATTACHD_API_PORT
        ATTACHD_API_BACKEND_PORT=str(backend),
        ATTACHD_FLOWER_PORT=str(flower),
        ATTACHD_REDIS_PORT=str(redis),
        ATTACHD_MINIO_PORT=str(minio),
        ATTACHD_MINIO_CONSOLE_PORT=str(console),
        ATTACHD_CLAMD_PORT=str(clamd),
        # The smallest whole stack: one pool for every queue, one API process.
        ATTACHD_WORKER_POOLS="scan+verify+attach+maintenance=1",
        ATTACHD_API_WORKERS="1",
        ATTACHD_API_THREADS="2",
        ATTACHD_UP_TIMEOUT="60",
    )
    return env, ports


def on_terminal(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """`argv` as the foreground job of a fresh terminal: its own session, the pty's slave as
    controlling terminal, so a ^C written to the master reaches its whole process group."""
    master, slave = os.openpty()

    def take_terminal() -> None:  # after setsid, in the child
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(slave)
    return proc, master


def drain(master: int, into: bytearray) -> None:
    """The terminal's screen: read it all, or `cat` blocks on a full pty and the stack with it."""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every process holding the slave is gone
            return
        if not chunk:
            return
        into += chunk


def mentioning(needle: str) -> list[str]:
    """Processes whose command line or environment names `needle` (the var dir): whatever the
    stack started, however deep, carries it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmdline or needle.encode() in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command}")
    return found


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def assert_the_command_beside_it_has_its_settings(env: dict[str, str], var_dir: Path) -> None:
    """`attachd` run beside the stack, told only where the installation is, takes the stack's
    settings from var/attachd.env: the loopback receiver the stack allows is accepted. The file
    names where the secrets are, never holds them."""
    recorded = (var_dir / "attachd.env").read_text()
    assert "ATTACHD_WEBHOOK_ALLOWED_NETWORKS=" in recorded
    assert "ATTACHD_OPS_PASSWORD_FILE=" in recorded
    assert (var_dir / "ops-password").read_text().strip() not in recorded
    beside = {k: v for k, v in env.items() if k in KEPT} | {"ATTACHD_VAR_DIR": str(var_dir)}
    attachd = str(REPO / ".venv" / "bin" / "attachd")
    done = subprocess.run(
        [attachd, "webhook", "add", "--url", "http://127.0.0.1:9999/hook", "--json"],
        cwd=REPO,
        env=beside,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_ctrl_c_on_a_piped_make_run_leaves_no_process(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    env, ports = stack_env(var_dir)
    proc, master = on_terminal(["bash", "-c", f"{STACK_SH} run 2>&1 | cat"], env)
    screen = bytearray()
    reader = threading.Thread(target=drain, args=(master, screen), daemon=True)
    reader.start()
    state = var_dir / "run" / "stack.json"
    try:
        deadline = time.monotonic() + 90
        while not (state.exists() and json.loads(state.read_text() or "{}").get("ready")):
            assert proc.poll() is None, f"stack.sh run exited:\n{screen.decode(errors='replace')}"
            assert time.monotonic() < deadline, f"not up:\n{screen.decode(errors='replace')}"
            time.sleep(0.2)
        api = f"http://127.0.0.1:{env['ATTACHD_API_PORT']}/api/1/monitoring/version"
        assert requests.get(api, timeout=5).ok
        assert mentioning(str(var_dir)), "the stack's processes should be visible"
        assert_the_command_beside_it_has_its_settings(env, var_dir)

        os.write(master, b"\x03")  # Ctrl-C: SIGINT to the terminal's foreground group
        proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while (left := mentioning(str(var_dir))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, "left running after Ctrl-C:\n" + "\n".join(left)
        assert not [p for p in ports if listening(p)]
    finally:
        for line in mentioning(str(var_dir)):  # never leave them to the next test
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(5)
        os.close(master)


def test_a_component_deaf_to_sigterm_is_killed_with_its_children_after_the_bound(
    tmp_path: Path,
) -> None:
    """As Flower was seen to: SIGTERM ignored. It and what it started go after `timeout`."""
    marker = str(tmp_path)
    script = f"trap '' TERM; sleep 300 & sleep 301 & : {marker}; wait"
    env = {"PATH": os.environ["PATH"], "MARK": marker}  # children inherit it
    proc = spawn(["bash", "-c", script], env, tmp_path / "deaf.log")
    try:
        deadline = time.monotonic() + 10
        while len(mentioning(marker)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(mentioning(marker)) == 3, mentioning(marker)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    started = time.monotonic()
    stop([proc], timeout=1.0)
    assert time.monotonic() - started < 5
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while (left := mentioning(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left
