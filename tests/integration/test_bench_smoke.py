"""The benchmark harness (bench/) at tiny sizes against the test stack, so it cannot rot: it must
produce a well-formed result — every figure present, ratios computed, no errors. No speed is
asserted: benchmarks report figures, tests assert behaviour."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import pytest

from bench import report
from bench.config import SMOKE
from bench.procs import listening_pid
from bench.runner import CASES, run_cases
from bench.target import Target
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

FIGURES_PER_CASE = {"B1": 3, "B2": 3, "B3": 7, "B4": 1, "B5": 7, "B6": 8, "B7": 5}
# The processes every accounted side is found to have (the test stack's worker belongs to its
# fixture, so the worker pools are accounted only by `make bench`).
ACCOUNTED = {"API (gunicorn)", "MinIO", "clamd", "Redis", "bench client"}
# Figures that may be 0 in a correct run: the API's memory growth during a small upload.
MAY_BE_ZERO = ("API peak RSS growth",)


def test_the_harness_produces_a_well_formed_result(stack: Stack, tmp_path: Path) -> None:
    api_pid = listening_pid(stack.settings.api_port, stack.settings.api_host)
    assert api_pid is not None, "no gunicorn master found listening on the test API's port"
    # The test stack's worker runs all along: B3 needs nothing started for it, and B1 and B2 leave
    # their uploads to it, so the session's stores stay consistent for the tests that check them.
    target = Target.connect(
        stack.settings, stack.base_url, api_pid, nullcontext, workers_running=True
    )
    try:
        results = run_cases(target, SMOKE)
        run = report.Run.collect(results, SMOKE, target, worker_concurrency=2)
    finally:
        target.close()

    assert run.errors == []
    assert [c.case for c in run.cases] == list(CASES)
    for case in run.cases:
        assert len(case.figures) == FIGURES_PER_CASE[case.case], case.case
        for figure in case.figures:
            # A zero is a measurement that did not happen (no file timed, no byte counted), not
            # a fast run; only a growth may honestly be nothing at smoke sizes.
            if figure.name.startswith(MAY_BE_ZERO):
                assert math.isfinite(figure.value) and figure.value >= 0, figure
            else:
                assert math.isfinite(figure.value) and figure.value > 0, figure
            if figure.floor is not None:
                assert math.isfinite(figure.floor) and figure.floor > 0, figure
                assert figure.ratio is not None and math.isfinite(figure.ratio), figure
                assert figure.ratio > 0, figure
            if figure.goal is not None:
                assert figure.met in (True, False), figure

    # B2 and B3 say where the CPU went, per class of process, for attachd and its floor (and B3's
    # synchronous peer), over rounds that did work: the client at least spent something.
    for case in (c for c in run.cases if c.case in ("B2", "B3")):
        sides = case.details["cpu"]
        assert set(sides) == (
            {"attachd", "floor", "peer"} if case.case == "B3" else {"attachd", "floor"}
        )
        for side, usage in sides.items():
            assert set(usage["cpu_ms_per_file"]) >= ACCOUNTED, (case.case, side)
            assert usage["files"] > 0 and usage["wall_seconds"] > 0, (case.case, side)
            assert usage["cpu_seconds"]["total of ours"] > 0, (case.case, side)
        if case.case == "B3":
            assert "peer (gunicorn)" in sides["peer"]["cpu_ms_per_file"]

    saved = json.loads(report.write_json(run, tmp_path / "results").read_text())
    assert {"date", "machine", "versions", "sizes", "settings", "cases"} <= set(saved)
    assert {"cpu", "cores", "memory", "kernel"} <= set(saved["machine"])
    assert {"python", "minio server", "clamd", "falcon", "gunicorn", "celery", "minio SDK"} <= set(
        saved["versions"]
    )
    assert sum(len(c["figures"]) for c in saved["cases"]) == sum(FIGURES_PER_CASE.values())

    markdown = report.write_markdown(run, tmp_path / "BENCHMARKS.md").read_text()
    for case in run.cases:
        for figure in case.figures:
            assert f"| {case.case} | {figure.name} |" in markdown
    assert "## Where the CPU goes" in markdown
    assert "| bench client |" in markdown
