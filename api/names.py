"""The names a client gives: object ids in the path, the attachment's file name, and the type that
name declares. Each is refused as given, never silently rewritten."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from api.crafter import OBJECT_ID
from core import filetypes
from core.domain import Reason
from core.errors import BadRequest, UnsupportedType


def check_object_id(value: str, what: str = "profile") -> None:
    if not OBJECT_ID.match(value):
        raise BadRequest(f'Invalid {what} ID "{value}": expected 24 lowercase hex characters')


def clean_name(raw: str | None, max_length: int) -> str:
    """The attachment's name as given (with extension): refuse what no file system or client
    should have to deal with, rather than silently rewriting it."""
    if raw is None or not raw.strip():
        raise BadRequest("The attachment has no file name")
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) > max_length:
        raise BadRequest(f"The file name is longer than {max_length} characters")
    for ch in name:
        # Control characters and format characters (NUL, right-to-left override...) disguise names.
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs"):
            raise BadRequest(f"The file name contains a forbidden character U+{ord(ch):04X}")
    if name in (".", "..") or not filetypes.base_name(name).strip():
        raise BadRequest("The file name is empty once its path and extension are removed")
    if filetypes.base_name(name) in (".", ".."):
        # `..png` would be the attachment `.`: a dot segment, which no URL can address.
        raise BadRequest("The file name without its extension must not be '.' or '..'")
    if name != name.strip() or name.endswith("."):
        raise BadRequest("The file name must not end with a dot or a space")
    return name


def declared_type(name: str, allowed: Sequence[str]) -> str:
    """The type the name's extension declares, which must be one of the allowed types."""
    content_type = filetypes.type_for_name(name)
    if content_type not in allowed:
        raise UnsupportedType(
            Reason.TYPE_NOT_ALLOWED,
            f"The file type {content_type} of '{name}' is not allowed; allowed types: "
            + ", ".join(allowed),
        )
    return content_type
