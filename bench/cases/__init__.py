"""The four cases. Each takes a Target and Sizes and returns a CaseResult; none knows how the
stack was started."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tqdm import tqdm

from bench.config import GiB, KiB, MiB


def bar(sizes_progress: bool, desc: str, total: int, unit: str = "B") -> tqdm:
    """A progress bar on stderr; bytes are shown in KiB/MiB/GiB."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",
        unit_divisor=1024,
        disable=not sizes_progress,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.25,
    )


def counted(chunks: Iterable[bytes], progress: tqdm) -> Iterator[bytes]:
    for chunk in chunks:
        progress.update(len(chunk))
        yield chunk


def human(size: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} B"
