"""docs/RELIABILITY.md's figures from a real run: runs the hostile-input suite and Schemathesis with
pytest, on the test services of deploy/env/test.env, then rewrites their two sections of the
report with what the tests saw. Nothing is written unless every test passed.

    set -a && source deploy/env/test.env && set +a && deploy/scripts/services.sh start
    .venv/bin/python -m tests.integration.reliability_report

The tests record what they saw through record(), which does nothing outside such a run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "docs" / "RELIABILITY.md"
OUT = "ATTACHD_RELIABILITY_OUT"


def record(kind: str, entry: Any) -> None:
    """Note one observation of the running test, when a report run asked for them."""
    out = os.environ.get(OUT)
    if out:
        with open(Path(out) / f"{kind}.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _read(out: Path, kind: str) -> list[Any]:
    path = out / f"{kind}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _counts(values: list[Any]) -> str:
    return ", ".join(
        f"{n}x {v if v is not None else 'no record'}" for v, n in Counter(values).items()
    )


def hostile_section(out: Path, when: str) -> str:
    cases = _read(out, "hostile")
    [leftovers] = _read(out, "hostile-leftovers")
    accepted = [c for c in cases if c["state"] is not None]
    bugs = [c for c in cases if c["bug"]]
    lines = [
        f"Run of {when}: **{len(cases)} hostile inputs** sent; answered "
        + _counts([c["status"] for c in cases])
        + f". **{len(accepted)} accepted** (200), final states: "
        + _counts([c["state"] for c in accepted])
        + f". **Leftovers found: {sum(leftovers.values())}** (objects without their record, "
        + "records without their object, uploads still in the pipeline, across the run's buckets "
        + "and record store, counted as the soak counts them). After each input its profile's "
        + "list and downloads were read: only attached files are listed or served, byte for byte "
        + "as verified and with nosniff and a sandboxing CSP; everything else answers 404. "
        + f"**Known bugs: {len(bugs)}** (strict xfail until fixed; their row shows what happens "
        + "today).",
        "",
        "| input | answer | final state | why, or the reason recorded |",
        "|---|---|---|---|",
    ]
    for c in cases:
        note = f"**known bug**: {c['bug']}" if c["bug"] else c["why"] or c["reason"]
        state = c["state"] or "no record"
        lines.append(f"| {_cell(c['what'])} | {c['status']} | {state} | {_cell(note)} |")
    return "\n".join(lines)


def schemathesis_section(out: Path, when: str) -> str:
    operations = _read(out, "schemathesis")
    [run] = _read(out, "schemathesis-run")
    checks = ", ".join(f"`{name}`" for name in run["checks"])
    lines = [
        f"Run of {when}: **{len(operations)} operations**, "
        f"**{sum(op['examples'] for op in operations)} generated requests**, checks {checks}: "
        f"**0 failures** (a failure fails the run, and then nothing is written here). "
        f"**Leftovers after the run: {sum(run['leftovers'].values())}**.",
        "",
        "| operation | requests | statuses answered |",
        "|---|---|---|",
    ]
    for op in operations:
        statuses = ", ".join(str(s) for s in op["statuses"])
        lines.append(f"| `{op['operation']}` | {op['examples']} | {statuses} |")
    return "\n".join(lines)


def replace_section(text: str, name: str, section: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{section}\n{end}{rest.split(end, 1)[1]}"


# Each section of the report: the suite that measures it and what it writes from the figures.
SECTIONS: dict[str, tuple[str, Callable[[Path, str], str]]] = {
    "hostile": ("tests/integration/test_hostile_inputs.py", hostile_section),
    "schemathesis": ("tests/integration/test_schemathesis.py", schemathesis_section),
}


def main() -> int:
    suites = [suite for suite, _ in SECTIONS.values()]
    with tempfile.TemporaryDirectory(prefix="attachd-reliability-") as tmp:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
            cwd=REPO,
            env={**os.environ, OUT: tmp},
        )
        if run.returncode != 0:
            print("the suites did not pass: docs/RELIABILITY.md left as it was", file=sys.stderr)
            return 1
        when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        when += f"({platform.machine()})"
        text = REPORT.read_text(encoding="utf-8")
        for name, (_, section) in SECTIONS.items():
            text = replace_section(text, name, section(Path(tmp), when))
        REPORT.write_text(text, encoding="utf-8")
    print(f"wrote {REPORT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
