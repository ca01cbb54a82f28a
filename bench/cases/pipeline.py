"""B3: small images from the first upload to the last attached, through the API and the default
workers, beside the fair floor (the same whole job without the framework, bench/cases/floors.py),
the old narrower floor, and the synchronous peer (bench/peers/sync_app.py); the CPU each class of
process spends per file in each (bench/accounting.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.accounting import Reader, Usage, classes, metered
from bench.cases import bar, floors, human
from bench.cases.records import upload_rows, wait_terminal
from bench.cases.small import ApiUploads, Poster, Round, pool_round, upload_all
from bench.config import Sizes
from bench.data import noise_pngs
from bench.peers import sync_peer
from bench.results import CaseResult, Figure, Goal
from bench.stats import percentile
from bench.target import Account, Target


def run(t: Target, sizes: Sizes, worker_concurrency: int | None) -> CaseResult:
    files = noise_pngs(sizes.pipeline_count, sizes.small_size, seed=3)
    result = CaseResult(
        "B3",
        f"Pipeline: {sizes.pipeline_count} PNGs of {human(sizes.small_size)}, upload → attached, "
        + (
            f"{worker_concurrency} worker processes"
            if worker_concurrency
            else "the default workers"
        ),
        floor=f"{floors.FAIR}. Old floor: {floors.OLD}. Peer: a Falcon handler under gunicorn "
        "that streams each upload to clamd, checks it with libmagic and a full Pillow decode, then "
        "puts it into MinIO, all in the request",
    )
    pipeline: list[dict[str, float]] = []
    fair: list[tuple[float, Usage]] = []
    old: list[float] = []
    peer: list[Round] = []
    usages: list[Usage] = []
    with t.workers(), sync_peer(t) as server:
        readers = classes(t, {"peer (gunicorn)": server.pid})
        for i in range(sizes.pipeline_rounds):
            account = t.account(f"b3-{i}")
            with metered(readers, len(files)) as usage:
                outcome, keys = _pipeline_round(t, account, files, sizes, i)
            pipeline.append(outcome)
            usages.append(usage)
            fair.append(floors.fair_round(t, files, sizes, i, readers))
            old.append(floors.old_round(t, keys, sizes, i))
            peer.append(_peer_round(t, server.url, files, sizes, i, readers))
        best_i = max(range(len(pipeline)), key=lambda n: pipeline[n]["per_second"])
        best = pipeline[best_i]
        # The burst's latencies are mostly time spent queued behind the rest of the burst; this
        # round shows the latency of the same work when files arrive slower than it is done.
        rate = sizes.paced_share * best["per_second"]
        paced = _paced_round(t, t.account("b3-paced"), files[: sizes.paced_count], rate, sizes)
    fair_best = max(fair, key=lambda r: r[0])
    peer_best = max(peer, key=lambda r: r.per_second)
    result.figures = [
        Figure(
            "B3",
            "throughput, upload → attached, beside the fair floor",
            "files/s",
            best["per_second"],
            fair_best[0],
            Goal(">=", 0.5),
        ),
        Figure(
            "B3",
            "throughput, beside the old floor (no upload, no decode, sequential)",
            "files/s",
            best["per_second"],
            max(old),
        ),
        Figure(
            "B3",
            "throughput, beside the synchronous peer (peer in the floor column)",
            "files/s",
            best["per_second"],
            peer_best.per_second,
            Goal(">=", 1.0),
        ),
        Figure("B3", "p50 latency, upload answered → attached", "s", best["p50"]),
        Figure("B3", "p99 latency, upload answered → attached", "s", best["p99"]),
        Figure(
            "B3",
            f"p50 latency, arrivals at {_pct(sizes.paced_share)} of that throughput",
            "s",
            paced["p50"],
        ),
        Figure(
            "B3",
            f"p99 latency, arrivals at {_pct(sizes.paced_share)} of that throughput",
            "s",
            paced["p99"],
            None,
            Goal("<=", 2, "value"),
        ),
    ]
    result.details = {
        "worker_concurrency": worker_concurrency,
        "upload_concurrency": sizes.concurrency,
        "pipeline_rounds": pipeline,
        "fair_floor_files_per_second": [r[0] for r in fair],
        "old_floor_files_per_second": old,
        "peer_files_per_second": [r.per_second for r in peer],
        "paced": paced,
        # CPU per file of each class of process, over the round each figure comes from.
        "cpu": {
            "attachd": usages[best_i].to_json(),
            "floor": fair_best[1].to_json(),
            "peer": peer_best.usage.to_json(),
        },
        "latency_ms": {
            "attachd": {"p50": 1000 * best["p50"], "p99": 1000 * best["p99"]},
            "peer": {f"p{p}": 1000 * percentile(peer_best.latencies, p) for p in (50, 90, 99)},
        },
    }
    return result


def _pct(share: float) -> str:
    return f"{share * 100:.0f}%"


def _pipeline_round(
    t: Target, account: Account, files: list[bytes], sizes: Sizes, i: int
) -> tuple[dict[str, float], list[str]]:
    answered: dict[str, float] = {}
    start = time.time()
    uploaded = upload_all(t, account, files, f"b3-{i}", sizes, f"B3 upload {i + 1}", answered)
    done = wait_terminal(t, account, len(files), sizes, f"B3 attach {i + 1}")
    rows = upload_rows(t, account)
    bad = [(name, state, reason) for name, state, reason, _, _ in rows if state != "attached"]
    if bad:
        raise RuntimeError(f"{len(bad)} uploads did not attach, e.g. {bad[:3]}")
    latencies = [finished - answered[name] for name, _, _, finished, _ in rows]
    last = max(finished for _, _, _, finished, _ in rows)
    outcome = {
        "per_second": len(files) / (last - start),
        "seconds": last - start,
        "upload_seconds": uploaded.seconds,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "wait_seconds": done,
    }
    return outcome, [key for *_, key in rows]


def _paced_round(
    t: Target, account: Account, files: list[bytes], rate: float, sizes: Sizes
) -> dict[str, float]:
    """Upload `files` at `rate` per second (each on its own schedule, so a slow answer does not
    delay the next one) and measure upload answered → attached."""
    uploads = ApiUploads(t, account)
    start = time.monotonic()
    try:
        with (
            bar(sizes.progress, "B3 paced", len(files), unit="file") as progress,
            ThreadPoolExecutor(sizes.concurrency) as pool,
        ):
            futures = []
            for i, data in enumerate(files):
                time.sleep(max(0.0, start + i / rate - time.monotonic()))
                futures.append(pool.submit(uploads.post, f"b3-paced-{i}.png", data))
                progress.update(1)
            for future in futures:
                future.result()
    finally:
        uploads.close()
    wait_terminal(t, account, len(files), sizes, "B3 paced attach")
    rows = upload_rows(t, account)
    bad = [(name, state, reason) for name, state, reason, _, _ in rows if state != "attached"]
    if bad:
        raise RuntimeError(f"{len(bad)} paced uploads did not attach, e.g. {bad[:3]}")
    latencies = [finished - uploads.answered[name] for name, _, _, finished, _ in rows]
    return {
        "files": len(files),
        "rate": rate,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
    }


def _peer_round(
    t: Target, url: str, files: list[bytes], sizes: Sizes, i: int, readers: dict[str, Reader]
) -> Round:
    """The same files POSTed to the synchronous peer at the same concurrency: each is scanned,
    checked and stored when its answer comes."""
    poster = Poster(url)
    try:
        with metered(readers, len(files)) as usage:
            one = pool_round(
                len(files),
                sizes.concurrency,
                lambda n: poster.post(f"b3-peer-{i}-{n}.png", files[n]),
                f"B3 peer  {i + 1}",
                sizes,
            )
    finally:
        poster.close()
    one.usage = usage
    t.empty(t.scratch_bucket, "b3-peer/")
    return one
