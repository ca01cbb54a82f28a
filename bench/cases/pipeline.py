"""B3: small images from the first upload to the last attached, through the API and the default
workers, beside the floor: the same per-file work (clamd INSTREAM, libmagic, server-side copy) on
the same files in a plain sequential loop."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import magic
from minio.commonconfig import CopySource
from sqlalchemy import func, select

from bench.cases import bar, human
from bench.cases.small import ApiUploads, upload_all
from bench.config import MiB, Sizes
from bench.data import noise_pngs
from bench.results import CaseResult, Figure, Goal
from bench.stats import percentile
from bench.target import Account, Target
from storage.schema import attachments, uploads

TERMINAL = ("attached", "infected", "rejected", "failed", "superseded")


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
        floor="clamd INSTREAM from MinIO + libmagic + server-side copy, one file after another",
    )
    pipeline: list[dict[str, float]] = []
    floor: list[float] = []
    with t.workers():
        for i in range(sizes.pipeline_rounds):
            account = t.account(f"b3-{i}")
            outcome, keys = _pipeline_round(t, account, files, sizes, i)
            pipeline.append(outcome)
            floor.append(_floor_round(t, keys, sizes, i))
        best = max(pipeline, key=lambda r: r["per_second"])
        # The burst's latencies are mostly time spent queued behind the rest of the burst; this
        # round shows the latency of the same work when files arrive slower than it is done.
        rate = sizes.paced_share * best["per_second"]
        paced = _paced_round(t, t.account("b3-paced"), files[: sizes.paced_count], rate, sizes)
    result.figures = [
        Figure(
            "B3",
            "throughput, upload → attached",
            "files/s",
            best["per_second"],
            max(floor),
            Goal(">=", 0.8),
        ),
        Figure("B3", "p50 latency, upload answered → attached", "s", best["p50"]),
        Figure(
            "B3",
            "p99 latency, upload answered → attached",
            "s",
            best["p99"],
            None,
            Goal("<=", 5, "value"),
        ),
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
            Goal("<=", 5, "value"),
        ),
    ]
    result.details = {
        "worker_concurrency": worker_concurrency,
        "upload_concurrency": sizes.concurrency,
        "pipeline_rounds": pipeline,
        "floor_files_per_second": floor,
        "paced": paced,
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
    done = _wait_terminal(t, account, len(files), sizes, f"B3 attach {i + 1}")
    rows = _uploads(t, account)
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
    _wait_terminal(t, account, len(files), sizes, "B3 paced attach")
    rows = _uploads(t, account)
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


def _state_counts(t: Target, account: Account) -> dict[str, int]:
    query = (
        select(uploads.c.state, func.count())
        .join(attachments, attachments.c.id == uploads.c.attachment_id)
        .where(attachments.c.profile_id == account.profile_id)
        .group_by(uploads.c.state)
    )
    with t.records.engine.connect() as conn:
        return {state: count for state, count in conn.execute(query)}


def _wait_terminal(t: Target, account: Account, count: int, sizes: Sizes, desc: str) -> float:
    """Wait until every upload has left the pipeline. One cheap query per poll: the timings come
    from the records themselves, not from when we noticed."""
    start = time.monotonic()
    deadline = start + max(120.0, count * 1.0)
    with bar(sizes.progress, desc, count, unit="file") as progress:
        while True:
            counts = _state_counts(t, account)
            done = sum(counts.get(s, 0) for s in TERMINAL)
            progress.update(counts.get("attached", 0) - progress.n)
            if done >= count:
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise RuntimeError(f"the pipeline did not finish in time: {counts}")
            time.sleep(0.25)


def _uploads(t: Target, account: Account) -> list[tuple[str, str, str | None, float, str]]:
    """(original name, state, reason, finished as a Unix time, attached object key) per upload."""
    query = (
        select(
            uploads.c.original_name,
            uploads.c.state,
            uploads.c.reason,
            uploads.c.finished_at,
            uploads.c.object_key,
        )
        .join(attachments, attachments.c.id == uploads.c.attachment_id)
        .where(attachments.c.profile_id == account.profile_id)
    )
    with t.records.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [(name, state, why, _unix(finished), key) for name, state, why, finished, key in rows]


def _unix(value: datetime | None) -> float:
    if value is None:
        return float("nan")
    # SQLite gives the stored UTC time back without its zone.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _floor_round(t: Target, keys: list[str], sizes: Sizes, i: int) -> float:
    client = t.objects.client
    bucket = t.settings.bucket_attachments
    host, port = t.settings.clamd_host, t.settings.clamd_port
    with bar(sizes.progress, f"B3 floor  {i + 1}", len(keys), unit="file") as progress:
        start = time.perf_counter()
        for key in keys:
            response = client.get_object(bucket, key)
            try:
                head = bytearray()

                def chunks(r: object = response, head: bytearray = head) -> Iterable[bytes]:
                    for chunk in r.stream(256 * 1024):  # type: ignore[attr-defined]
                        if len(head) < MiB:
                            head += chunk[: MiB - len(head)]
                        yield chunk

                reply = instream(host, port, chunks())
            finally:
                response.close()
                response.release_conn()
            if not reply.endswith("OK"):
                raise RuntimeError(f"clamd said {reply!r} about {key}")
            magic.from_buffer(bytes(head), mime=True)
            client.copy_object(t.scratch_bucket, f"b3-floor/{key}", CopySource(bucket, key))
            progress.update(1)
        seconds = time.perf_counter() - start
    t.empty(t.scratch_bucket, "b3-floor/")
    return len(keys) / seconds


def instream(host: str, port: int, chunks: Iterable[bytes]) -> str:
    """clamd's INSTREAM and nothing else: what scanning a file costs at the least."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(b"zINSTREAM\0")
        for chunk in chunks:
            sock.sendall(struct.pack("!L", len(chunk)) + chunk)
        sock.sendall(struct.pack("!L", 0))
        reply = bytearray()
        while not reply.endswith(b"\0"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return reply.rstrip(b"\0").decode()
