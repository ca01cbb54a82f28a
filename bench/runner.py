"""Runs the cases against a Target and gathers what the report needs."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Sequence

from bench.cases import fairness, formats, large, pipeline, renditions, scan, small
from bench.config import Sizes
from bench.results import CaseResult
from bench.target import Target

CASES: dict[str, Callable[[Target, Sizes, int | None], CaseResult]] = {
    "B1": lambda t, s, _w: large.run(t, s),
    "B2": lambda t, s, _w: small.run(t, s),
    "B3": lambda t, s, w: pipeline.run(t, s, w),
    "B4": lambda t, s, _w: scan.run(t, s),
    "B5": lambda t, s, _w: renditions.run(t, s),
    "B6": lambda _t, s, _w: formats.run(s),
    "B7": lambda t, s, _w: fairness.run(t, s),
}


def run_cases(
    target: Target,
    sizes: Sizes,
    cases: Sequence[str] = tuple(CASES),
    worker_concurrency: int | None = None,
) -> list[CaseResult]:
    """Every case runs even when one before it failed; a failure is recorded, not raised."""
    results = []
    for case in cases:
        start = time.perf_counter()
        try:
            result = CASES[case](target, sizes, worker_concurrency)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result = CaseResult(case, case, floor="", error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - start
        results.append(result)
        print(
            f"[bench] {case} done in {result.seconds:.0f} s"
            + (f" — FAILED: {result.error}" if result.error else ""),
            file=sys.stderr,
        )
    return results
