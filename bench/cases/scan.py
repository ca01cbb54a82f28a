"""B4: scanning a large object from MinIO the way the worker does (ClamdClient.instream over
ObjectStore.iter_range) against clamd INSTREAM of the same bytes from a local file."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from bench.cases import bar, counted, human
from bench.config import MiB, Sizes
from bench.data import Pattern
from bench.results import CaseResult, Figure, Goal
from bench.target import Target

CHUNK = 256 * 1024  # what ObjectStore.iter_range reads at a time


def run(t: Target, sizes: Sizes) -> CaseResult:
    result = CaseResult(
        "B4",
        f"Scan: a {human(sizes.scan)} object from MinIO through the worker path",
        floor="clamd INSTREAM of the same bytes from a local file, read in 256 KiB chunks",
    )
    pattern = Pattern(sizes.scan, seed=4)
    key = "b4/scan.bin"
    t.objects.client.put_object(
        t.scratch_bucket,
        key,
        cast(BinaryIO, pattern.reader()),
        length=pattern.size,
        part_size=t.settings.upload_part_size,
    )
    worker: list[float] = []
    local: list[float] = []
    with tempfile.TemporaryDirectory(prefix="attachd-bench-") as tmp:
        path = Path(tmp) / "scan.bin"
        with path.open("wb") as out:
            for chunk in pattern.chunks():
                out.write(chunk)
        try:
            for i in range(sizes.repeats):
                sides = [("worker", worker), ("local", local)]
                for side, times in sides if i % 2 == 0 else reversed(sides):
                    with bar(sizes.progress, f"B4 {side:<6} {i + 1}", sizes.scan) as progress:
                        source = (
                            t.objects.iter_range(t.scratch_bucket, key)
                            if side == "worker"
                            else _file_chunks(path)
                        )
                        start = time.perf_counter()
                        verdict = t.scanner.instream(counted(source, progress))
                        times.append(time.perf_counter() - start)
                    if verdict.infected:
                        raise RuntimeError(f"clamd found {verdict.signature} in the test bytes")
        finally:
            t.objects.delete(t.scratch_bucket, key)
    mib = sizes.scan / MiB
    result.figures = [
        Figure(
            "B4",
            f"{human(sizes.scan)} scan throughput",
            "MiB/s",
            mib / min(worker),
            mib / min(local),
            Goal(">=", 0.8),
        ),
    ]
    result.details = {"worker_seconds": worker, "local_seconds": local}
    return result


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
