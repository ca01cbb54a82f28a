"""A child started from a short-lived thread must outlive that thread: PR_SET_PDEATHSIG fires
when the forking *thread* ends, which once stopped the soak's restarted worker.

The children report the death signal armed in them (PR_GET_PDEATHSIG), so the tests read the
cause instead of sleeping and hoping the effect would have shown by then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from attachd.launch import parent_death_hook

# Prints its parent-death signal (0: none armed), then lives until killed.
REPORTER = (
    "import ctypes, time\n"
    "armed = ctypes.c_int()\n"
    "ctypes.CDLL(None).prctl(2, ctypes.byref(armed), 0, 0, 0)  # PR_GET_PDEATHSIG\n"
    "print(armed.value, flush=True)\n"
    "time.sleep(30)\n"
)


def _reporter(hook: Callable[[], None] | None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", REPORTER], stdout=subprocess.PIPE, text=True, preexec_fn=hook
    )


def _armed(child: subprocess.Popen[str]) -> int:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"the child died (exit code {child.wait()}) before it reported"
    return int(line)


def _stop(child: subprocess.Popen[str]) -> None:
    child.kill()
    child.wait()
    if child.stdout is not None:
        child.stdout.close()


def test_a_child_started_by_a_thread_survives_the_thread() -> None:
    started: list[subprocess.Popen[str]] = []
    t = threading.Thread(target=lambda: started.append(_reporter(parent_death_hook())))
    t.start()
    t.join()
    child = started[0]
    try:
        # Until the kernel has ended the thread, which is when an armed signal would be sent.
        deadline = time.monotonic() + 10
        while str(t.native_id) in os.listdir("/proc/self/task"):
            assert time.monotonic() < deadline, "the thread never ended"
            time.sleep(0.01)
        assert _armed(child) == 0
        assert child.poll() is None
    finally:
        _stop(child)


def test_the_main_thread_arms_it() -> None:
    hook = parent_death_hook()
    assert hook is not None
    child = _reporter(hook)
    try:
        assert _armed(child) == signal.SIGTERM
    finally:
        _stop(child)
