"""How big each case is: the issue's sizes for `make bench`, tiny ones for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True)
class Sizes:
    large: int = 1 * GiB  # B1: one upload, API vs direct
    rss: int = 2 * GiB  # B1: the upload during which the API's memory is sampled
    small_count: int = 1000  # B2
    small_size: int = 100 * KiB
    concurrency: int = 16  # B2 and B3's uploads
    pipeline_count: int = 1000  # B3
    scan: int = 500 * MiB  # B4
    # Rounds per side; the best round of each side is reported (see docs/BENCHMARKS.md).
    repeats: int = 3
    pipeline_rounds: int = 2
    # B3 again, with files arriving at this share of the burst's throughput.
    paced_count: int = 300
    paced_share: float = 0.5
    # B7: one tenant's burst, and a person in another tenant uploading one a second meanwhile.
    fair_burst: int = 2000
    fair_person: int = 20
    progress: bool = True


FULL = Sizes()
# Small enough for the test services' 5 MiB upload limit and a few seconds of run time.
SMOKE = Sizes(
    large=2 * MiB,
    rss=4 * MiB,
    small_count=6,
    small_size=8 * KiB,
    concurrency=2,
    pipeline_count=4,
    paced_count=3,
    fair_burst=6,
    fair_person=2,
    scan=2 * MiB,
    repeats=1,
    pipeline_rounds=1,
    progress=False,
)
