"""Web markup and script inside a raster image: the one content pattern refused wherever it
is found, at the file's ends, in its metadata, or after it."""

from __future__ import annotations

import re

from core.domain import Reason
from workers.typecheck.refusals import Refused

# Short patterns get a following-character constraint: compressed pixel data is
# near-random, and a bare 4-byte "<svg" would turn up by chance in about one
# image in 4000 when scanning 128 KiB.
MARKUP = re.compile(rb"<script|<\?php\s|<html[\s>]|<svg[\s/>]|javascript:", re.IGNORECASE)
# Bytes kept from one scanned piece to the next, so a pattern split across them is found.
MARKUP_OVERLAP = 16


def refuse_markup(data: bytes, where: str) -> None:
    found = MARKUP.search(data)
    if found:
        text = found.group().decode("latin-1").rstrip()
        raise Refused(
            Reason.POLYGLOT,
            f"image contains {text!r} markup {where}; markup has no place in a raster image",
        )
