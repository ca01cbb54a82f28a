"""B5: renditions on demand. The first `?size=` request of a version makes its rendition (read
the served file from MinIO, decode, scale, encode, PUT); every later one is served stored. This
times the first request per format and size beside the stored one (the floor), and a crowd of
first requests for one rendition at once (made once, the others wait for it)."""

from __future__ import annotations

import io
import random
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image, ImageDraw

from bench.cases.records import wait_terminal
from bench.config import Sizes
from bench.results import CaseResult, Figure
from bench.stats import percentile
from bench.target import Account, Target

# What a browser sends for <img> (Chromium), what sends only WebP, and a JPEG-only client.
ACCEPTS = {
    "AVIF": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
    "WebP": "image/webp,*/*",
    "JPEG": "image/jpeg",
}
PIXELS = (128, 512)
CROWD = 8


def phone_photo(seed: int, size: tuple[int, int] = (3000, 2000)) -> bytes:
    """A 6-megapixel JPEG at quality 90 with shapes and grain, so the encoders have real work
    (a flat picture would flatter them)."""
    rng = random.Random(seed)
    small = Image.new("RGB", (size[0] // 8, size[1] // 8))
    draw = ImageDraw.Draw(small)
    for _ in range(60):
        x, y = rng.randrange(small.width), rng.randrange(small.height)
        r = rng.randrange(8, 120)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)  # type: ignore[arg-type]
    img = small.resize(size, Image.Resampling.BICUBIC)
    grain = Image.effect_noise(size, 24).convert("RGB")
    img = Image.blend(img, grain, 0.12)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def _url(t: Target, account: Account, name: str) -> str:
    return f"{t.base_url}/api/1/profile/{account.profile_id}/attachment/{name}"


def _timed_get(session: requests.Session, url: str, token: str, px: int, accept: str) -> float:
    start = time.perf_counter()
    resp = session.get(
        url, params={"accessTokenId": token, "size": str(px)}, headers={"Accept": accept}
    )
    seconds = time.perf_counter() - start
    if resp.status_code != 200:
        raise RuntimeError(f"rendition answered {resp.status_code}: {resp.text[:200]}")
    return seconds


def run(t: Target, sizes: Sizes) -> CaseResult:
    count = sizes.repeats + 2
    result = CaseResult(
        "B5",
        f"Renditions on demand: first request vs stored, {count} 6 MP JPEGs, per format and size",
        floor="the same rendition's next request, served stored",
    )
    account = t.account("b5")
    photos = [phone_photo(i) for i in range(count + 1)]
    with t.workers(), requests.Session() as session:
        upload = f"{t.base_url}/api/1/profile/{account.profile_id}/uploadAttachment"
        for i, data in enumerate(photos):
            resp = session.post(
                upload,
                params={"accessTokenId": account.token},
                files={"attachment": (f"b5-{i}.jpg", data)},
            )
            resp.raise_for_status()
        wait_terminal(t, account, len(photos), sizes, "B5 attach")
        first: dict[tuple[str, int], list[float]] = {}
        stored: dict[tuple[str, int], list[float]] = {}
        for i in range(count):
            url = _url(t, account, f"b5-{i}")
            for fmt, accept in ACCEPTS.items():
                for px in PIXELS:
                    first.setdefault((fmt, px), []).append(
                        _timed_get(session, url, account.token, px, accept)
                    )
                    stored.setdefault((fmt, px), []).append(
                        _timed_get(session, url, account.token, px, accept)
                    )
    crowd_url = _url(t, account, f"b5-{count}")

    def one(_: int) -> float:
        with requests.Session() as s:
            return _timed_get(s, crowd_url, account.token, 512, ACCEPTS["WebP"])

    with ThreadPoolExecutor(CROWD) as pool:
        crowd = list(pool.map(one, range(CROWD)))
    for (fmt, px), times in first.items():
        result.figures.append(
            Figure(
                "B5",
                f"first request, {fmt} {px} px (p50)",
                "ms",
                1000 * percentile(times, 50),
                1000 * percentile(stored[(fmt, px)], 50),
            )
        )
    result.figures.append(
        Figure("B5", f"{CROWD} first requests at once, slowest", "ms", 1000 * max(crowd))
    )
    result.details = {
        "photo_bytes": [len(p) for p in photos],
        "first_ms": {f"{f} {p}": [round(1000 * x, 1) for x in v] for (f, p), v in first.items()},
        "stored_ms": {f"{f} {p}": [round(1000 * x, 1) for x in v] for (f, p), v in stored.items()},
        "crowd_ms": [round(1000 * x, 1) for x in crowd],
    }
    return result
