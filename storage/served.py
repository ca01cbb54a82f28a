"""What an attached version serves: its file (sanitized, or as received) and its renditions.
A mixin of storage.uploads.Upload, kept apart so the record module stays about queries.

Renditions are made at their first request (api/renditions.py) and stored beside the file
(storage.objects.rendition_key); the object store is their record, so deleting a version is
ObjectStore.delete_version, which lists them. The `renditions` column describes only those of
versions attached before then, made eagerly by the attach step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.objects import rendition_key


@dataclass(frozen=True)
class ServedBytes:
    md5: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ServedObject(ServedBytes):
    key: str


class Served:
    # Fields of Upload (storage/uploads.py) this reads.
    md5: str
    sha256: str
    size: int
    declared_type: str
    served_type: str | None
    object_key: str | None
    served_md5: str | None
    served_sha256: str | None
    served_size: int | None
    renditions: list[dict[str, Any]] | None

    @property
    def served(self) -> ServedBytes:
        """The bytes details, list and download describe: the sanitized file, or as received."""
        if self.served_md5 is None or self.served_sha256 is None or self.served_size is None:
            return ServedBytes(self.md5, self.sha256, self.size)
        return ServedBytes(self.served_md5, self.served_sha256, self.served_size)

    @property
    def served_as(self) -> str:
        """The media type of the bytes served: the declared one, unless the sanitize step served
        the picture in another format (a HEIC as JPEG)."""
        return self.served_type or self.declared_type

    def rendition(self, px: int) -> ServedObject | None:
        """The `px` rendition made at attach (versions attached before renditions were made on
        demand): an object of its own, or (`"stored": false`, a picture no larger than px) the
        served file itself."""
        for r in self.renditions or ():
            if int(r["px"]) == px and self.object_key:
                key = (
                    rendition_key(self.object_key, px) if r.get("stored", True) else self.object_key
                )
                return ServedObject(str(r["md5"]), str(r["sha256"]), int(r["size"]), key)
        return None

    def served_keys(self) -> list[str]:
        """The file and the renditions the record names (made at attach). Renditions made on
        demand are found by listing: ObjectStore.delete_version removes them all."""
        if not self.object_key:
            return []
        stored = [int(r["px"]) for r in self.renditions or () if r.get("stored", True)]
        return [self.object_key, *(rendition_key(self.object_key, px) for px in stored)]
