"""The run's record: the machine, versions and date, then every figure beside its floor and
target, as JSON (bench/results/) and as the markdown report (docs/BENCHMARKS.md)."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.accounting import REST, TOTAL
from bench.cases import human
from bench.config import GiB, Sizes
from bench.results import CaseResult, Figure, Goal
from bench.target import Target
from storage.objects import PARALLEL_PARTS

REPO = Path(__file__).resolve().parent.parent
FINDINGS = Path(__file__).resolve().parent / "findings.md"
# The multiplication sign, spelt out for the linter that takes it for an x.
TIMES = "\u00d7"
PACKAGES = ("falcon", "gunicorn", "celery", "minio", "SQLAlchemy", "Pillow", "requests")


@dataclass
class Run:
    date: str
    machine: dict[str, str]
    versions: dict[str, str]
    sizes: dict[str, Any]
    settings: dict[str, Any]
    cases: list[CaseResult]

    @classmethod
    def collect(
        cls,
        cases: list[CaseResult],
        sizes: Sizes,
        target: Target,
        worker_concurrency: int | None,
    ) -> Run:
        s = target.settings
        return cls(
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=machine(),
            versions=versions(target),
            sizes=asdict(sizes),
            settings={
                "API": f"gunicorn gthread, {s.api_workers} workers {TIMES} {s.api_threads} threads",
                "upload parts": f"{human(s.upload_part_size)}, {PARALLEL_PARTS} in flight",
                "pipeline workers (B2, B3, B7)": (
                    f"celery prefork, {worker_concurrency} processes"
                    if worker_concurrency
                    else "what make up runs: the default fleet (attachd worker: "
                    + ", ".join(s.worker_pools)
                    + "), beat, and Flower (task events on)"
                ),
                "fair share (B7)": f"first lane up to {s.fair_interactive} uploads in flight "
                f"per tenant, second up to {s.fair_busy}",
                "image sanitize, renditions": f"{s.image_sanitize}, "
                + (", ".join(f"{px} px" for px in s.image_renditions) or "none"),
                "record store": s.database_url.split(":", 1)[0].split("+")[0],
                "client": f"python -m bench, {sizes.concurrency} threads for B2, B3, B7's burst",
            },
            cases=cases,
        )

    @property
    def errors(self) -> list[str]:
        return [f"{c.case}: {c.error}" for c in self.cases if c.error]

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "machine": self.machine,
            "versions": self.versions,
            "sizes": self.sizes,
            "settings": self.settings,
            "cases": [c.to_json() for c in self.cases],
        }


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem / GiB:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        # Anything above ~1 here means the figures were taken beside someone else's work.
        "load average (1/5/15 min) at the end": load,
    }


def _command(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def versions(target: Target) -> dict[str, str]:
    found = {"python": platform.python_version()}
    minio_bin = _command(str(REPO / "deploy" / "scripts" / "minio-bin.sh"))
    if minio_bin:
        out = _command(minio_bin, "--version")
        release = re.search(r"^minio version (\S+)", out, re.MULTILINE)
        runtime = re.search(r"Runtime: (\S+)", out)
        # A `go install` build calls itself DEVELOPMENT.GOGET: the cache path names the commit.
        commit = re.search(r"minio-([0-9a-f]{7,40})", minio_bin)
        if release and release.group(1) != "DEVELOPMENT.GOGET":
            found["minio server"] = release.group(1)
        else:
            found["minio server"] = "built from source" + (
                f", commit {commit.group(1)}" if commit else ""
            )
        if runtime:
            found["minio server"] += f" ({runtime.group(1)})"
    try:
        found["clamd"] = target.scanner.version()
    except Exception:  # the report is still worth writing without it
        found["clamd"] = _command("clamd", "--version") or "unknown"
    script = (REPO / "deploy" / "scripts" / "tusd-bin.sh").read_text()
    tusd = re.search(r'^TUSD_VERSION="(\S+)"', script, re.MULTILINE)
    if tusd:
        found["tusd (B1's peer)"] = f"{tusd.group(1)}, built with go install"
    for name in PACKAGES:
        try:
            found[name if name != "minio" else "minio SDK"] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# --- rendering ------------------------------------------------------------------------------


def _num(x: float | None, unit: str = "") -> str:
    if x is None or math.isnan(x):
        return "—"
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:.{digits}f}" + (f" {unit}" if unit else "")


def _row(f: Figure, markdown: bool = True) -> list[str]:
    met = {True: "yes", False: "**no**" if markdown else "NO", None: "—"}[f.met]
    return [
        f.case,
        f.name,
        _num(f.value, f.unit),
        _num(f.floor, f.unit) if f.floor is not None else "—",
        f"{f.ratio:.2f}{TIMES}" if f.ratio is not None else "—",
        f.goal.describe(f.unit) if f.goal else "—",
        met,
    ]


HEADER = ["case", "figure", "attachd", "floor", "ratio", "target", "met"]


def table(run: Run) -> str:
    """A plain-text table for the terminal."""
    rows = [HEADER] + [_row(f, markdown=False) for c in run.cases for f in c.figures]
    rows += [[c.case, f"FAILED: {c.error}", "", "", "", "", ""] for c in run.cases if c.error]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for c in run.cases:
        rows = cpu_rows(c)
        if rows:
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines += ["", f"{c.case}: CPU ms per file"]
            lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


SIDES = ("attachd", "floor", "peer")


def cpu_rows(case: CaseResult) -> list[list[str]]:
    """CPU ms per file of each class of process, each side beside the floor, and what attachd
    spends above the floor's for that class; then the totals, the wall clock and the cores kept
    busy. Empty where the case did not account."""
    cpu = case.details.get("cpu") if isinstance(case.details, dict) else None
    if not cpu:
        return []
    sides = [side for side in SIDES if side in cpu]
    per = {side: cpu[side]["cpu_ms_per_file"] for side in sides}
    names: list[str] = []
    for side in sides:
        names += [n for n in per[side] if n not in names and n not in (TOTAL, REST)]
    rows = [["process", *[f"{side} ms/file" for side in sides], "attachd above floor"]]

    def above(name: str) -> str:
        if "attachd" not in per or "floor" not in per:
            return "—"
        return _num(per["attachd"].get(name, 0.0) - per["floor"].get(name, 0.0))

    for name in [*names, TOTAL, REST]:
        cells = [_num(per[side].get(name)) if name in per[side] else "—" for side in sides]
        rows.append([name, *cells, above(name) if name != REST else "—"])
    wall = [1000 * cpu[s]["wall_seconds"] / max(cpu[s]["files"], 1) for s in sides]
    rows.append(["wall clock per file", *[_num(w) for w in wall], "—"])
    busy = [cpu[s]["cpu_seconds"][TOTAL] / max(cpu[s]["wall_seconds"], 1e-9) for s in sides]
    rows.append(["cores kept busy (ours)", *[_num(b) for b in busy], "—"])
    return rows


def markdown(run: Run) -> str:
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/); do not edit by hand — the analysis lives in "
        "bench/findings.md and is copied in below. Each figure stands beside its floor, measured "
        "in the same run on the same machine with the same bytes; ratios are attachd ÷ floor. "
        "Rows that name a peer (tusd, the synchronous handler) have the peer in the floor column.",
        "",
        f"Run on {run.date}.",
        "",
        "## Results",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    out += ["| " + " | ".join(_row(f)) + " |" for c in run.cases for f in c.figures]
    out += [f"| {c.case} | FAILED: {c.error} | | | | | |" for c in run.cases if c.error]
    accounted = [(c, cpu_rows(c)) for c in run.cases]
    if any(rows for _, rows in accounted):
        out += [
            "",
            "## Where the CPU goes",
            "",
            "CPU milliseconds per file of each class of process over the round each figure above "
            "comes from, read from /proc/<pid>/stat (utime + stime of every process in the "
            "class's tree, and of its children that exited). The bench client is this process: "
            "it uploads and polls, and does the floor's work itself. The rest of the machine is "
            "what everyone else on it used meanwhile (other work on a shared machine).",
        ]
    for c, rows in accounted:
        if not rows:
            continue
        out += ["", f"**{c.case}**", "", "| " + " | ".join(rows[0]) + " |"]
        out += ["|" + "---|" * len(rows[0])]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    out += ["", "## What each case measures", ""]
    for c in run.cases:
        if c.error:
            continue
        out.append(f"- **{c.case}** — {c.title}. Floor: {c.floor}. ({c.seconds:.0f} s)")
    out += [
        "",
        "Throughput is the best of the rounds run for each side, sides alternating (B1: attachd, "
        "direct put_object and tusd; B2, B4) or interleaved (B3: pipeline, fair floor, old floor, "
        "synchronous peer), so that load from elsewhere on the machine hits all alike; "
        "latencies come from the same round as the throughput. B3's burst latencies include the "
        "time each file waits behind the rest of the burst; its paced round sends files at a "
        "share of the burst's throughput instead. Raw rounds are in the JSON written to "
        "bench/results/.",
        "",
        "## Set-up",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in run.settings.items()]
    out += ["", "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in run.machine.items()]
    out += ["", "## Versions", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in run.versions.items()]
    if FINDINGS.exists():
        out += ["", FINDINGS.read_text().strip()]
    return "\n".join(out) + "\n"


def from_json(data: dict[str, Any]) -> Run:
    """A run read back from bench/results/, to render the report again (after findings.md
    changed) without running the cases again."""
    cases = []
    for c in data["cases"]:
        figures = [
            Figure(
                f["case"],
                f["name"],
                f["unit"],
                f["value"],
                f["floor"],
                Goal(**f["goal"]) if f.get("goal") else None,
            )
            for f in c["figures"]
        ]
        result = CaseResult(c["case"], c["title"], c["floor"], figures, c["details"], c["error"])
        result.seconds = c["seconds"]
        cases.append(result)
    return Run(
        data["date"], data["machine"], data["versions"], data["sizes"], data["settings"], cases
    )


def write_json(run: Run, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(run.to_json(), indent=2, default=str) + "\n")
    return path


def write_markdown(run: Run, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(run))
    return path


if __name__ == "__main__":
    import sys

    # python -m bench.report bench/results/<time>.json [docs/BENCHMARKS.md]
    saved = from_json(json.loads(Path(sys.argv[1]).read_text()))
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs" / "BENCHMARKS.md"
    print(f"report: {write_markdown(saved, out)}")
