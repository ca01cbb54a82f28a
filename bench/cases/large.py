"""B1: one large upload through the API against the minio SDK's put_object of the same bytes into
the same MinIO and against tusd (bench/peers/tus.py) sending them over the tus protocol into the
same MinIO, and the API's memory while it streams a larger one."""

from __future__ import annotations

import time
from typing import BinaryIO, cast

import requests

from bench.cases import bar, counted, human
from bench.config import MiB, Sizes
from bench.data import PNG_HEAD, MultipartBody, Pattern, PatternReader
from bench.peers import tus
from bench.procs import RssSampler
from bench.results import CaseResult, Figure, Goal
from bench.target import Account, Target


def run(t: Target, sizes: Sizes) -> CaseResult:
    result = CaseResult(
        "B1",
        f"Large upload: {human(sizes.large)} through the API",
        floor="minio SDK put_object of the same bytes into the same MinIO, same part size. "
        "Peer: tusd (deploy/scripts/tusd-bin.sh) with its S3 store into the same MinIO, same part "
        "size, the same bytes sent over the tus protocol (one POST, one PATCH)",
    )
    account = t.account("b1")
    session = requests.Session()
    try:
        # A first small upload, so that memory the first request of a process needs (imports,
        # pools, the SDK's upload threads) is not counted as growth caused by size.
        warmup = Pattern(MiB, seed=9, head=PNG_HEAD)
        _through_api(t, account, session, warmup, "b1-warmup.png", sizes)
        with RssSampler(t.api_pid) as rss:
            rss_seconds = _through_api(
                t, account, session, Pattern(sizes.rss, seed=2, head=PNG_HEAD), "b1-rss.png", sizes
            )
        # The same bytes on both sides, alternating which goes first, so that drift in the
        # machine's load (page cache, other users) hits both alike.
        pattern = Pattern(sizes.large, seed=1, head=PNG_HEAD)
        api: list[float] = []
        direct: list[float] = []
        peer: list[float] = []
        with tus.tusd(t) as server:
            for i in range(sizes.repeats):
                sides = [("api", api), ("direct", direct), ("tusd", peer)]
                for side, times in sides if i % 2 == 0 else reversed(sides):
                    if side == "api":
                        times.append(
                            _through_api(t, account, session, pattern, f"b1-{i}.png", sizes)
                        )
                    elif side == "direct":
                        times.append(_direct(t, pattern, f"b1/{i}", sizes))
                    else:
                        times.append(_tus(t, session, server.url, pattern, f"b1-{i}", sizes))
    finally:
        session.close()
    mib = sizes.large / MiB
    result.figures = [
        Figure(
            "B1",
            f"{human(sizes.large)} upload throughput",
            "MiB/s",
            mib / min(api),
            mib / min(direct),
            Goal(">=", 0.9),
        ),
        Figure(
            "B1",
            f"{human(sizes.large)} upload throughput, beside tusd (tusd in the floor column)",
            "MiB/s",
            mib / min(api),
            mib / min(peer),
            Goal(">=", 1.0),
        ),
        Figure(
            "B1",
            f"API peak RSS growth during a {human(sizes.rss)} upload",
            "MiB",
            rss.growth / MiB,
            None,
            Goal("<=", 64, "value"),
        ),
    ]
    result.details = {
        "api_seconds": api,
        "direct_seconds": direct,
        "tusd_seconds": peer,
        "rss_upload_seconds": rss_seconds,
        "rss_baseline_bytes": rss.baseline,
        "rss_peak_bytes": rss.peak,
        "part_size": t.settings.upload_part_size,
        "api_workers": t.settings.api_workers,
        "api_threads": t.settings.api_threads,
    }
    return result


def _through_api(
    t: Target,
    account: Account,
    session: requests.Session,
    pattern: Pattern,
    name: str,
    sizes: Sizes,
) -> float:
    with bar(sizes.progress, f"B1 API    {name}", pattern.size) as progress:
        body = MultipartBody(name, pattern.size, pattern.chunks, progress.update)
        start = time.perf_counter()
        resp = session.post(
            t.upload_url(account),
            params={"accessTokenId": account.token},
            data=body,
            headers={"Content-Type": body.content_type},
            timeout=900,
        )
        seconds = time.perf_counter() - start
    if resp.status_code != 200:
        raise RuntimeError(f"the API answered {resp.status_code} to {name}: {resp.text[:300]}")
    if t.workers_running:
        return seconds
    # Keep the disk from filling up with GiBs of staged copies nobody will process.
    attachment = t.records.find_attachment(account.profile_id, name.rsplit(".", 1)[0])
    upload = t.records.latest_upload(attachment.id) if attachment else None
    if upload is not None and upload.staging_key:
        t.objects.delete(t.settings.bucket_staging, upload.staging_key)
    return seconds


def _direct(t: Target, pattern: Pattern, key: str, sizes: Sizes) -> float:
    with bar(sizes.progress, f"B1 direct {key}", pattern.size) as progress:
        reader = PatternReader(counted(pattern.chunks(), progress))
        start = time.perf_counter()
        t.objects.client.put_object(
            t.scratch_bucket,
            key,
            cast(BinaryIO, reader),
            length=pattern.size,
            part_size=t.settings.upload_part_size,
        )
        seconds = time.perf_counter() - start
    t.objects.delete(t.scratch_bucket, key)
    return seconds


def _tus(
    t: Target, session: requests.Session, url: str, pattern: Pattern, name: str, sizes: Sizes
) -> float:
    with bar(sizes.progress, f"B1 tusd   {name}", pattern.size) as progress:
        start = time.perf_counter()
        tus.upload(session, url, name, pattern.size, lambda: counted(pattern.chunks(), progress))
        seconds = time.perf_counter() - start
    t.empty(t.scratch_bucket, tus.PREFIX)
    return seconds
