"""make scale-test: attachd's production topology (deploy/scale/topology.toml) built from real
hosts on this machine, a bounded load through its load balancer, and the faults of those hosts
at fixed points; then a count of where every upload ended and what was left behind.

    .venv/bin/python deploy/scale/scaletest.py [--uploads 1000] [--partition-seconds 30]

Needs root (network namespaces). Everything it starts runs in the namespaces it creates, on its
own subnet; the load and the checks run from the bridge's address. Everything is taken down at
the end, whatever happened (also on SIGTERM/SIGINT). The last line printed is the summary,
ending `N lost, N duplicated, N leftovers`; the exit status is 0 only when all three are 0.

It depends on attachd only through its entry points: the commands of deploy/Procfile (read by
the parser `make up` uses), the `attachd` CLI, the environment variables of the README, the HTTP
routes, and the record store's table as the migrations define it. Its parts: startup.py (the
services on their hosts), faults.py (the load and the faults), checks.py (where every upload
ended, and the summary).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

# The modules beside this one, and the checkout's (bench/ is not an installed package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from checks import check, drain, summary
from faults import Figures, load
from rig import Rig, load_topology, teardown_leftovers
from startup import Stack, log

LOCK = Path("/run/attachd-scale.lock")


def run(args: argparse.Namespace) -> Figures:
    # One run at a time on a machine: a second would take the same subnet and names (and its
    # start would clear the first's hosts away). The next one waits.
    lock = LOCK.open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another scale test holds {LOCK}; waiting for it")
        fcntl.flock(lock, fcntl.LOCK_EX)
    started = time.monotonic()
    fig = Figures(uploads=args.uploads, concurrency=args.concurrency)
    root = Path(tempfile.mkdtemp(prefix="attachd-scale-", dir="/var/tmp"))
    with Rig(load_topology(), root) as rig:
        rig.build()
        stack = Stack(rig, args)
        try:
            stack.start()
        except BaseException:
            keep_logs(rig, args)
            raise
        fig.seconds_setup = round(time.monotonic() - started, 1)
        try:
            sent = load(stack, args, fig)
            drain(stack, args, fig)
            check(stack, sent, fig)
        finally:
            keep_logs(rig, args)
    fig.seconds_total = round(time.monotonic() - started, 1)
    return fig


def keep_logs(rig: Rig, args: argparse.Namespace) -> None:
    if args.keep_logs:
        dest = Path(args.keep_logs)
        dest.mkdir(parents=True, exist_ok=True)
        for f in (rig.root / "log").glob("*.log"):
            (dest / f.name).write_bytes(f.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deploy/scale/scaletest.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--partition-seconds", type=float, default=30)
    parser.add_argument(
        "--reconcile-after",
        type=int,
        default=60,
        help="ATTACHD_RECONCILE_AFTER_SECONDS on every host",
    )
    parser.add_argument(
        "--pools",
        default="scan=1-2,verify=1,attach+maintenance=1",
        help="ATTACHD_WORKER_POOLS on each worker host",
    )
    parser.add_argument("--drain-timeout", type=float, default=360)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="once the uploads have ended, run `attachd reconcile` every few "
        "seconds instead of waiting for beat's next minute (the short run)",
    )
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--keep-logs", help="copy every process's log here before teardown")
    parser.add_argument(
        "--teardown-only",
        action="store_true",
        help="remove what a killed run left (namespaces, links)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("scale-test needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.teardown_only:
        with LOCK.open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log("another scale test is running: its hosts are its own to remove")
                return 0
            teardown_leftovers()
        return 0

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    fig = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(fig), indent=2, default=str))
    for what in fig.lost + fig.duplicated:
        log(what)
    log(
        json.dumps(
            {
                "responses": fig.responses,
                "final_states": fig.final_states,
                "leftovers": fig.leftovers,
                "partition": fig.partition,
                "faults": fig.faults,
                "answers_lost_but_kept": fig.answers_lost_but_kept,
                "downloads_checked": fig.downloads_checked,
                "dashboard": fig.dashboard,
                "flower": fig.flower,
                "setup": fig.seconds_setup,
                "load": fig.seconds_load,
            },
            default=str,
        )
    )
    print(summary(fig), flush=True)
    ok = not fig.lost and not fig.duplicated and not sum(fig.leftovers.values())
    ok = ok and fig.dashboard == 200 and fig.flower == 200 and len(fig.faults) == 4
    ok = ok and all("chaos failed" not in f["fault"] for f in fig.faults)
    # The failover happened: the Sentinels named the replica master.
    ok = ok and all(
        f.get("seconds_to_promotion") is not None for f in fig.faults if "master_before" in f
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
