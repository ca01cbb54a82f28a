"""Whole numbers in query strings, read one way on every route.

`str.isdigit` is true for '²' and '٣', which `int` then refuses or reads as another number, and
`int` refuses strings past 4,300 digits: both were 500s. Only ASCII digits, at most MAX_DIGITS of
them, are a number here; anything else is a 400 in Crafter's shape (BadRequest).
"""

from __future__ import annotations

import falcon

from core.errors import BadRequest

# Twelve digits hold every value a route means (seconds until a link expires, an epoch second
# until the year 33,658, a rendition's pixels) and keep `int` far from its limit.
MAX_DIGITS = 12


class MalformedNumber(BadRequest):
    """A query parameter that should be a whole number is not one (400 OTHER)."""


def whole_number(raw: str, name: str) -> int:
    """`raw` as a non-negative int, or MalformedNumber. The value is not echoed: it can be
    thousands of characters of anything."""
    if not (0 < len(raw) <= MAX_DIGITS and raw.isascii() and raw.isdigit()):
        raise MalformedNumber(
            f"'{name}' must be a whole number written with at most {MAX_DIGITS} digits 0-9"
        )
    return int(raw)


def optional_number(raw: str | None, name: str) -> int | None:
    """None for an absent or empty parameter, else as whole_number."""
    if raw is None or raw == "":
        return None
    return whole_number(raw, name)


def positive_param(req: falcon.Request, name: str) -> int | None:
    """The query parameter `name` as an int of at least 1, None when absent or empty."""
    value = optional_number(req.get_param(name), name)
    if value is not None and value < 1:
        raise MalformedNumber(f"'{name}' must be a whole number of at least 1")
    return value
