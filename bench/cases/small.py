"""B2: many small uploads at a fixed concurrency through the API against direct put_object of the
same files at the same concurrency."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from bench.accounting import Reader, Usage, classes, metered
from bench.cases import bar, human
from bench.cases.records import wait_terminal
from bench.config import Sizes
from bench.data import noise_pngs
from bench.results import CaseResult, Figure, Goal
from bench.stats import percentile
from bench.target import Account, Target


@dataclass
class Round:
    seconds: float
    latencies: list[float]
    usage: Usage = field(default_factory=lambda: Usage(0))

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds


def run(t: Target, sizes: Sizes) -> CaseResult:
    files = noise_pngs(sizes.small_count, sizes.small_size)
    mean_size = sum(map(len, files)) / len(files)
    result = CaseResult(
        "B2",
        f"Small uploads: {sizes.small_count} PNGs of {human(sizes.small_size)}, "
        f"concurrency {sizes.concurrency}, the worker fleet running",
        floor="put_object of the same files at the same concurrency",
    )
    readers: dict[str, Reader] = {}
    api: list[Round] = []
    direct: list[Round] = []
    # The worker fleet runs as it does in production: it takes the uploads in as they come, and
    # its share of the machine is part of what an upload costs.
    with t.workers():
        readers = classes(t)
        for i in range(sizes.repeats):
            sides = [("api", api), ("direct", direct)]
            for side, rounds in sides if i % 2 == 0 else reversed(sides):
                account = t.account(f"b2-{i}") if side == "api" else None
                with metered(readers, len(files)) as usage:
                    if account is not None:
                        one = upload_all(t, account, files, f"b2-{i}", sizes, f"B2 API    {i + 1}")
                    else:
                        one = _direct_round(t, files, f"b2/{i}", sizes, f"B2 direct {i + 1}")
                one.usage = usage
                rounds.append(one)
                if account is not None:
                    # Outside the timing: the next side must not share the machine with these.
                    wait_terminal(t, account, len(files), sizes, f"B2 attach {i + 1}")
                else:
                    t.empty(t.scratch_bucket, "b2/")
    # Each side's least disturbed round: the machine is shared, and the best round is the best
    # estimate of what each side does undisturbed.
    a = max(api, key=lambda r: r.per_second)
    d = max(direct, key=lambda r: r.per_second)
    result.figures = [
        Figure("B2", "throughput", "files/s", a.per_second, d.per_second, Goal(">=", 0.5)),
        Figure(
            "B2",
            "p50 latency",
            "ms",
            1000 * percentile(a.latencies, 50),
            1000 * percentile(d.latencies, 50),
        ),
        Figure(
            "B2",
            "p99 latency",
            "ms",
            1000 * percentile(a.latencies, 99),
            1000 * percentile(d.latencies, 99),
            Goal("<=", 3.0),
        ),
    ]
    result.details = {
        "mean_file_bytes": mean_size,
        "api_rounds": [{"seconds": r.seconds, "per_second": r.per_second} for r in api],
        "direct_rounds": [{"seconds": r.seconds, "per_second": r.per_second} for r in direct],
        # CPU per file of each class of process, over the round each figure comes from.
        "cpu": {"attachd": a.usage.to_json(), "floor": d.usage.to_json()},
        "latency_ms": {
            side: {f"p{p}": 1000 * percentile(r.latencies, p) for p in (50, 90, 99, 100)}
            for side, r in (("attachd", a), ("floor", d))
        },
    }
    return result


def pool_round(
    count: int, concurrency: int, one: Callable[[int], float], progress_desc: str, sizes: Sizes
) -> Round:
    with bar(sizes.progress, progress_desc, count, unit="file") as progress:

        def timed(i: int) -> float:
            seconds = one(i)
            progress.update(1)
            return seconds

        pool = ThreadPoolExecutor(concurrency)
        try:
            start = time.perf_counter()
            latencies = list(pool.map(timed, range(count)))
            seconds = time.perf_counter() - start
        finally:
            # On an error or Ctrl-C, drop the files not yet started rather than send them all.
            pool.shutdown(cancel_futures=True)
    return Round(seconds, latencies)


class Poster:
    """POSTs files as multipart forms to `url`, one keep-alive session per calling thread.
    `answered` gets the wall-clock time of each 200, by file name."""

    def __init__(self, url: str, params: dict[str, str] | None = None) -> None:
        self._url = url
        self._params = params or {}
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self.answered: dict[str, float] = {}

    def post(self, name: str, data: bytes) -> float:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            self._sessions.append(session)
        start = time.perf_counter()
        resp = session.post(
            self._url,
            params=self._params,
            files={"attachment": (name, data, "image/png")},
            timeout=120,
        )
        seconds = time.perf_counter() - start
        self.answered[name] = time.time()
        if resp.status_code != 200:
            raise RuntimeError(f"{self._url}: {resp.status_code} to {name}: {resp.text[:300]}")
        return seconds

    def close(self) -> None:
        for session in self._sessions:
            session.close()


class ApiUploads(Poster):
    """Uploads through attachd's API, as `account`."""

    def __init__(self, t: Target, account: Account) -> None:
        super().__init__(t.upload_url(account), {"accessTokenId": account.token})


def upload_all(
    t: Target,
    account: Account,
    files: list[bytes],
    prefix: str,
    sizes: Sizes,
    desc: str,
    answered: dict[str, float] | None = None,
) -> Round:
    """POST every file through the API, `sizes.concurrency` at a time. `answered` collects the
    wall-clock time of each 200, by file name."""
    uploads = ApiUploads(t, account)
    try:
        return pool_round(
            len(files),
            sizes.concurrency,
            lambda i: uploads.post(f"{prefix}-{i}.png", files[i]),
            desc,
            sizes,
        )
    finally:
        uploads.close()
        if answered is not None:
            answered.update(uploads.answered)


def _direct_round(t: Target, files: list[bytes], prefix: str, sizes: Sizes, desc: str) -> Round:
    client = t.objects.client

    def one(i: int) -> float:
        start = time.perf_counter()
        client.put_object(
            t.scratch_bucket,
            f"{prefix}/{i}.png",
            io.BytesIO(files[i]),
            len(files[i]),
            content_type="image/png",
        )
        return time.perf_counter() - start

    return pool_round(len(files), sizes.concurrency, one, desc, sizes)
