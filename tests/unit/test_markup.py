"""The markup search (workers/typecheck/markup.py) finds exactly what the case-insensitive
pattern it replaced found, written as it is in the file."""

from __future__ import annotations

import random
import re

import pytest

from workers.typecheck.markup import find_markup

# The pattern as it was: case-insensitive over the raw bytes.
BEFORE = re.compile(rb"<script|<\?php\s|<html[\s>]|<svg[\s/>]|javascript:", re.IGNORECASE)

SAMPLES = [
    b"<SCRIPT>alert(1)</script>",
    b"xx<ScRiPt",
    b"<?PHP\n echo 1;",
    b"<?php",  # no whitespace after: not markup
    b"<HtMl>",
    b"<html",
    b"<Svg/onload=1>",
    b"<svgx",
    b"JavaScript:void(0)",
    b"\x89PNG\r\n\x1a\n" + b"\0" * 40 + b"<sVg ",
    "<script\u00e9".encode("latin-1"),
]


@pytest.mark.parametrize("data", SAMPLES)
def test_the_same_markup_is_found_as_written(data: bytes) -> None:
    expected = BEFORE.search(data)
    assert find_markup(data) == (expected.group() if expected else None)


def test_random_bytes_with_markup_planted_are_found_at_the_same_place() -> None:
    rng = random.Random(7)
    for i in range(200):
        noise = bytearray(rng.randbytes(2048))
        planted = SAMPLES[i % len(SAMPLES)]
        at = rng.randrange(len(noise))
        noise[at:at] = planted
        data = bytes(noise)
        expected = BEFORE.search(data)
        assert find_markup(data) == (expected.group() if expected else None)
