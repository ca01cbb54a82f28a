"""`attachd --help` answers at once: the commands import what they run when they run it
(attachd/cli/*), so the help and a usage error load no store, broker or SDK."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ATTACHD = Path(sys.executable).with_name("attachd")
# Well under half a second, as a person at a terminal feels it (the best of a few runs, since the
# machine may be busy with other work), and in the processor time it costs.
WALL_BOUND = 0.5
CPU_BOUND = 0.25
# What the commands need and the help does not: each costs tens to hundreds of milliseconds.
HEAVY = ("sqlalchemy", "alembic", "celery", "kombu", "redis", "minio", "urllib3", "PIL", "magic")


def test_attachd_help_answers_well_under_half_a_second() -> None:
    walls, cpus = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([str(ATTACHD), "--help"], capture_output=True, text=True, timeout=30)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert done.returncode == 0, done.stderr
        assert "webhook" in done.stdout and "quarantine" in done.stdout
    assert min(walls) < WALL_BOUND, f"attachd --help took {min(walls):.3f}s at best: {walls}"
    assert min(cpus) < CPU_BOUND, f"attachd --help cost {min(cpus):.3f}s of CPU at best: {cpus}"


def test_the_help_loads_no_store_broker_or_sdk() -> None:
    code = (
        "import sys\n"
        "from attachd.cli import cli\n"
        "try:\n"
        "    cli(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    loaded = {name.split(".")[0] for name in done.stderr.split()}
    assert "click" in loaded
    assert sorted(loaded & set(HEAVY)) == []
