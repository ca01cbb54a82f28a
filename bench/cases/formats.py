"""B6: what each picture format costs the worker: the verify step's checks (libmagic, the header
walk, a full decode, the structure walk) and the sanitize step on a phone photo carrying GPS,
camera and orientation 6, per format, in this process (no service involved). JPEG is the floor:
the format every other is compared with."""

from __future__ import annotations

import io
import time

from PIL import Image

from bench.cases.renditions import phone_photo
from bench.config import Sizes
from bench.results import CaseResult, Figure
from bench.stats import percentile
from core.pictures.pixels import Bounds
from workers.sanitize import Policy, sanitize
from workers.typecheck import inspect

FORMATS = {"JPEG": "image/jpeg", "WebP": "image/webp", "AVIF": "image/avif", "HEIC": "image/heic"}
_PILLOW = {"JPEG": "JPEG", "WebP": "WEBP", "AVIF": "AVIF", "HEIC": "HEIF"}


def phone_file(fmt: str, size: tuple[int, int]) -> bytes:
    """A photo as a phone saves it in `fmt`: GPS, make and model, orientation 6, quality 90."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Acme", "Phone 12 Pro", 6
    exif.get_ifd(0x8825).update({1: "N", 2: (40.0, 26.0, 46.0), 3: "W", 4: (79.0, 58.0, 56.0)})
    img = Image.open(io.BytesIO(phone_photo(7, size)))
    out = io.BytesIO()
    img.save(out, _PILLOW[fmt], quality=90, exif=exif.tobytes())
    return out.getvalue()


def _timed(fn: object, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def run(sizes: Sizes) -> CaseResult:
    size = (3000, 2000) if sizes.repeats >= 3 else (600, 400)
    rounds = max(sizes.repeats, 1) * 2
    result = CaseResult(
        "B6",
        f"Verify and sanitize per format: a {size[0] * size[1] / 1e6:g} MP phone photo with GPS "
        "and orientation 6, in one process",
        floor="the same step for the JPEG of the same photo",
    )
    bounds = Bounds.of(40_000_000)
    verify: dict[str, float] = {}
    strip: dict[str, float] = {}
    files: dict[str, int] = {}
    for name, kind in FORMATS.items():
        data = phone_file(name, size)
        files[name] = len(data)
        verdict = inspect(io.BytesIO(data), len(data), kind)
        if not verdict.ok:
            raise RuntimeError(f"the {name} sample was refused: {verdict.reason}")
        verify[name] = percentile(
            _timed(lambda d=data, k=kind: inspect(io.BytesIO(d), len(d), k), rounds), 50
        )
        strip[name] = percentile(
            _timed(lambda d=data, k=kind: sanitize(d, k, Policy.STRIP, bounds), rounds), 50
        )
    for label, figures in (("verify", verify), ("sanitize (strip, orient)", strip)):
        for name, seconds in figures.items():
            result.figures.append(
                Figure("B6", f"{label}, {name}", "ms", 1000 * seconds, 1000 * figures["JPEG"])
            )
    result.details = {"file_bytes": files, "size": list(size), "rounds": rounds}
    return result
