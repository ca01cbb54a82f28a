"""`python -m bench` (what `make bench` runs): bring the bench stack up, run the cases, print the
table, write bench/results/<time>.json and docs/BENCHMARKS.md, stop everything.

    python -m bench                      # all four cases at the issue's sizes (~10 minutes)
    python -m bench --cases B1,B4        # some of them
    python -m bench --smoke              # tiny sizes: checks the harness, figures mean nothing
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from bench import report
from bench.config import FULL, SMOKE
from bench.runner import CASES, run_cases
from bench.stack import REPO, BenchStack, load_env


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, e.g. B1,B3")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, no report unless --report")
    p.add_argument(
        "--env",
        type=Path,
        default=REPO / "deploy" / "env" / "bench.env",
        help="the stack's settings; they override the environment",
    )
    p.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="B3 with one Celery worker of N processes for every queue "
        "(default: the default fleet, `attachd worker`)",
    )
    p.add_argument(
        "--report",
        type=Path,
        default=None,
        help="markdown report (default docs/BENCHMARKS.md; none with --smoke)",
    )
    p.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    args.cases = [c.strip().upper() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases: {', '.join(sorted(unknown))}")
    if args.report is None and not args.smoke:
        args.report = REPO / "docs" / "BENCHMARKS.md"
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through the stack's __exit__, which stops every process it started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # Relative paths in the settings (var/bench, the SQLite file) mean the same thing here as in
    # the processes started from the repository root.
    os.chdir(REPO)
    env = {**os.environ, **load_env(args.env)}
    os.environ.update(env)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sizes = SMOKE if args.smoke else FULL
    stack = BenchStack(env, worker_concurrency=args.worker_concurrency)
    with stack as target:
        results = run_cases(target, sizes, args.cases, args.worker_concurrency)
        run = report.Run.collect(results, sizes, target, args.worker_concurrency)
    print(report.table(run))
    print(f"JSON: {report.write_json(run, args.results)}")
    if args.report:
        print(f"report: {report.write_markdown(run, args.report)}")
    for error in run.errors:
        print(f"FAILED {error}", file=sys.stderr)
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
