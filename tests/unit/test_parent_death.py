"""A child started from a short-lived thread must outlive that thread: PR_SET_PDEATHSIG fires
when the forking *thread* ends, which once stopped the soak's restarted worker."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from attachd.launch import parent_death_hook


def test_a_child_started_by_a_thread_survives_the_thread() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        started.append(
            subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(30)"],
                preexec_fn=parent_death_hook(),
            )
        )

    t = threading.Thread(target=start)
    t.start()
    t.join()
    child = started[0]
    try:
        time.sleep(1.0)  # the thread is gone; an armed PDEATHSIG would have fired by now
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_the_main_thread_arms_it() -> None:
    assert parent_death_hook() is not None
