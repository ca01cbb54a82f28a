"""attachd worker's supervisor: a pool that dies on its own is started again; SIGTERM stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

# A "pool" that dies the first time it runs and then runs until told to stop.
POOL = """
import pathlib, signal, sys, time
starts = pathlib.Path(sys.argv[1])
starts.write_text(starts.read_text() + "x" if starts.exists() else "x")
if len(starts.read_text()) == 1:
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(0.1)
"""


def test_a_dead_pool_is_restarted_and_sigterm_stops_everything(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from attachd.launch import supervise; "
            f"sys.exit(supervise({{'p': [sys.executable, '-c', {POOL!r}, "
            f"{str(starts)!r}]}}, 0.05))",
        ],
    )
    try:
        deadline = time.monotonic() + 15
        while not (starts.exists() and len(starts.read_text()) == 2):
            assert time.monotonic() < deadline, "the dead pool was not started again"
            assert supervisor.poll() is None, "the supervisor gave up"
            time.sleep(0.05)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=15) == 0  # the running pool stopped cleanly
        assert len(starts.read_text()) == 2
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
