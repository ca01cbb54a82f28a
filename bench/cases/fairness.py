"""B7: fairness between tenants. One tenant sends a burst of uploads from many threads (an
import, a bot); meanwhile a person in another tenant uploads one picture a second. What the
person waits for, upload answered → attached, is the figure; the burst's own throughput, upload
→ attached, is reported beside it (fair share must not slow the burst down)."""

from __future__ import annotations

import threading
import time

from bench.cases import human
from bench.cases.records import upload_rows, wait_terminal
from bench.cases.small import ApiUploads, upload_all
from bench.config import Sizes
from bench.data import noise_pngs
from bench.results import CaseResult, Figure, Goal
from bench.stats import percentile
from bench.target import Account, Target


def run(t: Target, sizes: Sizes) -> CaseResult:
    burst_files = noise_pngs(sizes.fair_burst, sizes.small_size, seed=5)
    person_files = noise_pngs(sizes.fair_person, sizes.small_size, seed=6)
    result = CaseResult(
        "B7",
        f"Fairness: tenant A uploads {sizes.fair_burst} PNGs of {human(sizes.small_size)} from "
        f"{sizes.concurrency} threads; meanwhile a person in tenant B uploads one a second, "
        f"{sizes.fair_person} times",
        floor="none: the person's wait is bounded by the target itself",
    )
    with t.workers():
        burst = t.account("b7-burst", tenant="b7-tenant-a")
        person = t.account("b7-person", tenant="b7-tenant-b")
        burst_answered: dict[str, float] = {}
        start = time.time()
        sender = threading.Thread(
            target=upload_all,
            args=(t, burst, burst_files, "b7-burst", sizes, "B7 burst", burst_answered),
        )
        sender.start()
        uploads = ApiUploads(t, person)
        try:
            for i, data in enumerate(person_files):
                time.sleep(max(0.0, start + 1.0 + i - time.time()))
                uploads.post(f"b7-person-{i}.png", data)
        finally:
            uploads.close()
        sender.join()
        wait_terminal(t, burst, len(burst_files), sizes, "B7 burst attach")
        wait_terminal(t, person, len(person_files), sizes, "B7 person attach")
    person_waits = _waits(t, person, uploads.answered)
    burst_rows = upload_rows(t, burst)
    last = max(finished for *_, finished, _ in burst_rows)
    burst_rate = len(burst_files) / (last - start)
    result.figures = [
        Figure(
            "B7",
            "a person's upload → attached during another tenant's burst, p99",
            "s",
            percentile(person_waits, 99),
            None,
            Goal("<=", 2, "value"),
        ),
        Figure("B7", "… p50", "s", percentile(person_waits, 50)),
        Figure("B7", "… worst", "s", max(person_waits)),
        Figure("B7", "the burst's throughput, upload → attached", "files/s", burst_rate),
        Figure(
            "B7",
            "the burst's upload → attached, p99",
            "s",
            percentile(_waits(t, burst, burst_answered), 99),
        ),
    ]
    result.details = {
        "person_waits_seconds": person_waits,
        "burst_files_per_second": burst_rate,
        "fair_interactive": t.settings.fair_interactive,
        "fair_busy": t.settings.fair_busy,
    }
    return result


def _waits(t: Target, account: Account, answered: dict[str, float]) -> list[float]:
    rows = upload_rows(t, account)
    bad = [(name, state, why) for name, state, why, _, _ in rows if state != "attached"]
    if bad:
        raise RuntimeError(f"{len(bad)} uploads did not attach, e.g. {bad[:3]}")
    return [finished - answered[name] for name, _, _, finished, _ in rows]
