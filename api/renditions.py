"""Which stored object a download of an attached version serves: the file, or one of its
renditions (`?size=N`). One function, so every route that serves a version (the token route,
signed links) chooses the same way and refuses the same sizes."""

from __future__ import annotations

from dataclasses import dataclass

from api.params import optional_number
from core.errors import BadRequest, NotFound
from storage.records import Upload

SIZE_PARAM = "size"
# Renditions are of raster pictures only: an SVG scales itself.
_NO_RENDITIONS = frozenset({"image/svg+xml"})


@dataclass(frozen=True)
class Selected:
    key: str
    md5: str
    sha256: str  # the ETag
    size: int  # bytes
    px: int | None  # the rendition's longest side, None for the file itself


def select(upload: Upload, size: str | None, configured: tuple[int, ...]) -> Selected:
    """The object to serve for `?size=` (None or "": the file). A size that is not configured,
    or asked of an SVG, is a 400 naming the sizes there are; a configured size this version has
    no rendition of (attached before renditions, or before the size was configured) is a 404."""
    assert upload.object_key is not None
    if not size:
        served = upload.served
        return Selected(upload.object_key, served.md5, served.sha256, served.size, None)
    sizes = ", ".join(str(n) for n in configured) or "none"
    if upload.declared_type in _NO_RENDITIONS:
        raise BadRequest(f"{upload.declared_type} has no renditions (configured sizes: {sizes})")
    px = optional_number(size, SIZE_PARAM)
    if px is None or px not in configured:
        raise BadRequest(f"size must be one of the configured rendition sizes: {sizes}")
    rendition = upload.rendition(px)
    if rendition is None:
        raise NotFound(f"this version has no {px}px rendition")
    return Selected(rendition.key, rendition.md5, rendition.sha256, rendition.size, px)
