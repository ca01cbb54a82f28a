from __future__ import annotations

import io
import threading
import zipfile

import pytest
from PIL import Image

from core import filetypes
from core.filetypes import base_name, canonical_type, head_agrees, sniff, type_for_name
from core.settings import Settings


def image_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect/></svg>'
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(100)
HTML = b"<!DOCTYPE html><html><body><p>hello</p></body></html>"
PHP = b'<?php echo shell_exec($_GET["c"]); ?>'


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("pic.jpg", "image/jpeg"),
        ("A.JPEG", "image/jpeg"),
        ("x.jpe", "image/jpeg"),
        ("pic.Png", "image/png"),
        ("anim.gif", "image/gif"),
        ("old.BMP", "image/bmp"),
        ("scan.tif", "image/tiff"),
        ("scan.tiff", "image/tiff"),
        ("logo.svg", "image/svg+xml"),
        ("photo.webp", "image/webp"),
        ("doc.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
        ("page.html", "text/html"),
        ("setup.exe", "application/vnd.microsoft.portable-executable"),
        ("x.php.png", "image/png"),
        ("x.png.php", "application/x-httpd-php"),
        ("dir/pic.jpg", "image/jpeg"),
        ("..\\evil.png", "image/png"),
        ("C:\\Users\\me\\pic.gif", "image/gif"),
        ("dir.png/noext", "application/octet-stream"),
        ("noext", "application/octet-stream"),
        ("", "application/octet-stream"),
        ("x.unknownext", "application/octet-stream"),
        ("x.php.", "application/octet-stream"),
        ("x.png.", "application/octet-stream"),
        ("x.png ", "application/octet-stream"),
        ("x.png\t", "application/octet-stream"),
        (".png", "image/png"),
    ],
)
def test_type_for_name(name: str, expected: str) -> None:
    assert type_for_name(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dir/pic.jpg", "pic"),
        ("a.b.jpg", "a.b"),
        ("noext", "noext"),
        ("A.JPEG", "A"),
        ("x.php.png", "x.php"),
        ("..\\evil.png", "evil"),
        ("a/b\\c/d.e.f", "d.e"),
        ("x.", "x"),
        (".png", ""),
        ("dir/", ""),
    ],
)
def test_base_name(name: str, expected: str) -> None:
    assert base_name(name) == expected


def test_type_table_is_not_the_system_mimetypes() -> None:
    # Every allowed type must come out of the explicit table, whatever the machine.
    names = ["a.bmp", "a.gif", "a.jpg", "a.png", "a.tif", "a.svg"]
    names += ["a.webp", "a.avif", "a.heic", "a.heif"]
    assert sorted(type_for_name(n) for n in names) == sorted(Settings().allowed_types)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("image/jpg", "image/jpeg"),
        ("IMAGE/PJPEG", "image/jpeg"),
        ("image/x-ms-bmp", "image/bmp"),
        ("image/png; charset=binary", "image/png"),
        ("image/svg+xml", "image/svg+xml"),
    ],
)
def test_canonical_type(raw: str, expected: str) -> None:
    assert canonical_type(raw) == expected


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("TIFF", "image/tiff")],
)
def test_sniff_images(fmt: str, mime: str) -> None:
    assert sniff(image_bytes(fmt)) == mime


def test_sniff_uses_one_libmagic_handle_per_thread() -> None:
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG")
    results: list[tuple[str, str]] = []
    handles: list[object] = []  # kept alive so their ids stay distinct

    def work() -> None:
        for _ in range(50):
            results.append((sniff(png), sniff(jpeg)))
        handles.append(filetypes._magic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results) == {("image/png", "image/jpeg")}
    assert len({id(handle) for handle in handles}) == 4


@pytest.mark.parametrize(
    ("claimed", "content", "sniffed"),
    [
        ("image/png", image_bytes("PNG"), "image/png"),
        ("image/jpeg", image_bytes("JPEG"), "image/jpeg"),
        ("image/jpg", image_bytes("JPEG"), "image/jpeg"),
        ("image/gif", image_bytes("GIF"), "image/gif"),
        ("image/bmp", image_bytes("BMP"), "image/bmp"),
        ("image/tiff", image_bytes("TIFF"), "image/tiff"),
        ("image/svg+xml", SVG, "image/svg+xml"),
        ("image/svg+xml", b'<?xml version="1.0" encoding="UTF-8"?>\n' + SVG, "image/svg+xml"),
        # libmagic gives up before the root element: plain text, accepted as markup
        ("image/svg+xml", b"<!-- " + b"x" * 5000 + b" -->\n" + SVG, "text/plain"),
        ("image/svg+xml", b"\xef\xbb\xbf<!-- " + b"x" * 5000 + b" -->\n" + SVG, "text/plain"),
    ],
)
def test_head_agrees(claimed: str, content: bytes, sniffed: str) -> None:
    assert head_agrees(claimed, content) == (True, sniffed)


@pytest.mark.parametrize(
    ("claimed", "content", "sniffed"),
    [
        ("image/png", ELF, "application/x-executable"),
        ("image/png", image_bytes("JPEG"), "image/jpeg"),
        ("image/gif", HTML, "text/html"),
        ("image/jpeg", PHP, "text/x-php"),
        ("image/png", PHP, "text/x-php"),
        ("image/png", b"", "application/x-empty"),
        ("image/svg+xml", b"", "application/x-empty"),
        ("image/svg+xml", HTML, "text/html"),
        ("image/svg+xml", b"<html><svg><script>alert(1)</script></svg></html>", "text/html"),
        ("image/svg+xml", b'<?xml version="1.0"?><note>not svg</note>', "text/xml"),
        ("image/svg+xml", b"hello world\n", "text/plain"),
        ("image/svg+xml", b"<!-- " + b"x" * 5000 + b" -->\n<html><body/></html>", "text/plain"),
        ("image/svg+xml", image_bytes("PNG"), "image/png"),
        ("image/webp", image_bytes("PNG"), "image/png"),
    ],
)
def test_head_disagrees(claimed: str, content: bytes, sniffed: str) -> None:
    assert head_agrees(claimed, content) == (False, sniffed)


def test_head_agrees_with_a_zip_named_png() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("a.txt", "hello")
    ok, sniffed = head_agrees("image/png", buf.getvalue())
    assert not ok
    assert sniffed == "application/zip"


@pytest.mark.parametrize(
    "head",
    [
        b"<svg>",
        b'<svg:svg xmlns:svg="http://www.w3.org/2000/svg">',
        b'  <?xml version="1.0"?>\n<!-- a -- b --->\n<!DOCTYPE svg [<!ENTITY a "b">]>\n<svg\n',
    ],
)
def test_looks_like_svg(head: bytes) -> None:
    assert filetypes.looks_like_svg(head)


@pytest.mark.parametrize("head", [b"<svgx>", b"<html><svg>", b"<?xml version='1.0'?><a/>", b"svg"])
def test_does_not_look_like_svg(head: bytes) -> None:
    assert not filetypes.looks_like_svg(head)


def test_describe() -> None:
    assert filetypes.describe("text/html") == "an HTML document"
    assert filetypes.describe("image/webp") == "of type image/webp"
