"""Content-type decisions shared by the API and the workers.

Everything here is deterministic and does no I/O apart from running libmagic
over bytes the caller already has, so the API can apply it to the first bytes
of an upload and the workers to the stored object with the same results.
"""

from __future__ import annotations

import re
import threading

import magic

OCTET_STREAM = "application/octet-stream"

# An explicit table rather than the mimetypes module: its tables are read from
# /etc/mime.types and the registry, so the same name would map differently on
# different machines.
_BY_EXTENSION: dict[str, str] = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "svg": "image/svg+xml",
    "webp": "image/webp",
    "ico": "image/vnd.microsoft.icon",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "pdf": "application/pdf",
    "txt": "text/plain",
    "csv": "text/csv",
    "htm": "text/html",
    "html": "text/html",
    "xml": "application/xml",
    "json": "application/json",
    "js": "text/javascript",
    "css": "text/css",
    "zip": "application/zip",
    "gz": "application/gzip",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "exe": "application/vnd.microsoft.portable-executable",
    "dll": "application/vnd.microsoft.portable-executable",
    "php": "application/x-httpd-php",
    "sh": "application/x-sh",
    "mp3": "audio/mpeg",
    "mp4": "video/mp4",
}

# Extension → type, for pages that list what is accepted (the demo's file picker).
EXTENSIONS = _BY_EXTENSION

# Non-standard spellings that browsers and libmagic use for the allowed types.
_ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
}

# What libmagic may report for content that really is of the claimed type.
_SNIFF_AGREES: dict[str, frozenset[str]] = {
    "image/png": frozenset({"image/png"}),
    "image/jpeg": frozenset({"image/jpeg"}),
    "image/gif": frozenset({"image/gif"}),
    "image/bmp": frozenset({"image/bmp", "image/x-ms-bmp"}),
    "image/tiff": frozenset({"image/tiff"}),
    "image/svg+xml": frozenset({"image/svg+xml"}),
    "image/webp": frozenset({"image/webp"}),
    "image/avif": frozenset({"image/avif"}),
    # libmagic names a HEIF file by its major brand: image/heic for `heic`/`heix`, image/heif
    # for `mif1` (what many phones and libheif write). Both are the same container and codec.
    "image/heic": frozenset({"image/heic", "image/heif"}),
    "image/heif": frozenset({"image/heif", "image/heic"}),
}

# libmagic only says image/svg+xml when <svg appears early; an SVG behind a long
# comment comes back as generic XML or text, which we accept only if the markup
# itself starts like an SVG document. text/html is never in this set.
_SVG_AS_TEXT = frozenset({"text/xml", "application/xml", "text/plain"})

_SVG_START = re.compile(
    rb"""\A(?:\xef\xbb\xbf)?\s*
    (?:<\?xml\s[^>]*\?>\s*)?
    (?:(?:<!--[^-]*(?:-(?!->)[^-]*)*-->|<!DOCTYPE[^>\[]*(?:\[[^\]]*\])?\s*>)\s*)*
    <(?:[A-Za-z_][\w.-]*:)?svg[\s/>]""",
    re.VERBOSE | re.DOTALL | re.IGNORECASE,
)

_DESCRIPTIONS: dict[str, str] = {
    "text/html": "an HTML document",
    "text/x-php": "a PHP script",
    "text/plain": "plain text",
    "text/xml": "an XML document",
    "application/xml": "an XML document",
    "application/x-executable": "an ELF executable",
    "application/x-sharedlib": "an ELF shared library or executable",
    "application/x-pie-executable": "an ELF executable",
    "application/x-dosexec": "a Windows executable",
    "application/vnd.microsoft.portable-executable": "a Windows executable",
    "application/zip": "a ZIP archive",
    "application/pdf": "a PDF document",
    "application/x-empty": "empty",
    OCTET_STREAM: "unidentified binary data",
}

_thread = threading.local()


def canonical_type(mime: str) -> str:
    """Lower-case `mime`, drop parameters and map known aliases (image/jpg...)."""
    bare = mime.split(";", 1)[0].strip().lower()
    return _ALIASES.get(bare, bare)


def _base(name: str) -> str:
    return re.split(r"[/\\]", name)[-1]


def type_for_name(name: str) -> str:
    """Content type implied by the extension of `name`'s last path component.

    The extension is everything after the last dot, compared case-insensitively
    and otherwise verbatim: nothing is stripped, so "x.png " has the extension
    "png " and "x.php." has an empty one; both are unknown and give
    application/octet-stream, as does a name without a dot. Windows would strip
    those trailing characters when saving, which is exactly why we must not
    treat them as the extension before them. A dot-file such as ".png" has the
    extension "png" (as commons-io's FilenameUtils, which Crafter uses, says).
    """
    base = _base(name)
    if "." not in base:
        return OCTET_STREAM
    return _BY_EXTENSION.get(base.rsplit(".", 1)[1].lower(), OCTET_STREAM)


def base_name(name: str) -> str:
    """Crafter's fileName: the last path component without its final extension.

    "dir/pic.jpg" -> "pic", "a.b.jpg" -> "a.b", "noext" -> "noext", "x." -> "x",
    ".png" -> "" (callers must reject an empty result if they need a name).
    """
    base = _base(name)
    return base.rsplit(".", 1)[0] if "." in base else base


def _magic() -> magic.Magic:
    # A libmagic handle must not be used by two threads at once; one per thread
    # avoids both the races and a shared lock on a hot path.
    handle: magic.Magic | None = getattr(_thread, "magic", None)
    if handle is None:
        handle = magic.Magic(mime=True)
        _thread.magic = handle
    return handle


def sniff(head: bytes) -> str:
    """libmagic's MIME type for the first bytes of some content."""
    try:
        return str(_magic().from_buffer(head))
    except magic.MagicException:
        # A buffer libmagic chokes on is not something we can call an image.
        return OCTET_STREAM


def looks_like_svg(head: bytes) -> bool:
    """Whether the markup starts like an SVG document.

    After an optional BOM, whitespace, XML declaration, comments and doctype,
    the first element must be <svg> (optionally prefixed, as in <svg:svg>).
    """
    return _SVG_START.match(head) is not None


def head_agrees(claimed: str, head: bytes) -> tuple[bool, str]:
    """Whether the sniffed type of `head` is compatible with `claimed`.

    Returns (ok, sniffed). Types without an entry in the compatibility table
    must match libmagic exactly. Empty content never agrees.
    """
    sniffed = sniff(head)
    if not head:
        return False, sniffed
    claimed = canonical_type(claimed)
    accepted = _SNIFF_AGREES.get(claimed, frozenset({claimed}))
    if sniffed in accepted:
        return True, sniffed
    if claimed == "image/svg+xml" and sniffed in _SVG_AS_TEXT:
        return looks_like_svg(head), sniffed
    return False, sniffed


def describe(mime: str) -> str:
    """A phrase for messages: 'content is <describe(x)>, not image/png'."""
    return _DESCRIPTIONS.get(mime, f"of type {mime}")
