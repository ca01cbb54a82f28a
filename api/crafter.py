"""Crafter Profile's JSON shapes, byte for byte: Crafter's Java client fails on unknown fields, so
these carry exactly Crafter's fields and nothing more."""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from storage.records import Attachment, Profile, Upload

_UNITS = ("B", "KB", "MB", "GB", "TB")
OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def format_file_size(size: int) -> str:
    """Crafter's FileUtils.readableFileSize: base 1024, unit index floor(log10(size)/log10(1024)),
    DecimalFormat '#,##0.#' with half-even rounding; '0' for size <= 0."""
    if size <= 0:
        return "0"
    index = min(int(math.log10(size) / math.log10(1024)), len(_UNITS) - 1)
    # Java's DecimalFormat rounds the double's exact binary value, which Decimal(float) keeps.
    value = Decimal(size / 1024**index).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN)
    text = f"{value:,.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text} {_UNITS[index]}"


def attachment_json(attachment: Attachment, upload: Upload) -> dict[str, Any]:
    return {
        # The bytes served (sanitized, once attached); at upload time, the bytes received.
        "md5": upload.served.md5,
        # Of those bytes too: a HEIC served as JPEG says image/jpeg once attached.
        "contentType": upload.served_as,
        "fileSize": format_file_size(upload.served.size),
        "fileName": attachment.file_name,
        "fileSizeBytes": upload.served.size,
        "id": attachment.id,
    }


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def profile_json(profile: Profile) -> dict[str, Any]:
    return {
        "id": profile.id,
        "username": profile.username,
        "email": profile.email,
        "verified": profile.verified,
        "enabled": profile.enabled,
        "createdOn": _millis(profile.created_on),
        "lastModified": _millis(profile.last_modified),
        "tenant": profile.tenant,
        "roles": list(profile.roles),
        "attributes": dict(profile.attributes),
    }
