"""Hostile input, in one table: every attack a client can make on uploadAttachment, the answer it
gets, where the upload ends in the pipeline (or that no record was made), and, for each, proof that
nothing was left behind and that nothing unsafe can be downloaded.

Everything harmful is built here at run time; the EICAR test string is the only "malware". Some
inputs are covered in depth elsewhere (test_api_uploads, test_api_limits, test_pipeline_content):
they are here too, cheaply, because this table is the inventory docs/RELIABILITY.md counts
(`python -m tests.integration.reliability_report` runs it and writes the table from what it saw).
"""

from __future__ import annotations

import hashlib
import io
import struct
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

import pytest
import requests
from PIL import Image

from core.domain import Reason
from storage.objects import ObjectStore
from storage.records import Upload
from tests.conftest import EICAR, png_bytes, png_with_chunk
from tests.integration import reliability_report
from tests.integration.api_support import (
    ATTACHMENT_FIELDS,
    ELF,
    HTML,
    SVG,
    Account,
    RawResponse,
    api_server,
    file_part_head,
    get,
    jpeg_bytes,
    md5,
    new_account,
    post_parts,
    send_partial,
    settled_leftovers,
    staging_keys,
    wait_until_final,
)
from tests.integration.conftest import Stack
from tests.samples import chunk, png_claiming, solid, zip_archive
from tests.sanitize_samples import phone_picture

LIMIT = 64 * 1024  # the tight server's upload limit
SECONDS = 5  # no hostile input holds the server longer than this before its answer

# --- content, built at run time ------------------------------------------------------------------


def big_webp() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (9000, 5000), (250, 250, 250)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def huge_ispe(fmt: str) -> bytes:
    """A real AVIF or HEIC whose every ispe property claims 60000 x 60000 pixels."""
    out = bytearray(phone_picture(fmt))
    at = out.find(b"ispe")
    while at > 0:
        out[at + 8 : at + 16] = struct.pack(">II", 60000, 60000)
        at = out.find(b"ispe", at + 4)
    return bytes(out)


PNG = png_bytes()
SVG_NS = 'xmlns="http://www.w3.org/2000/svg"'


def svg(inner: str, prolog: str = "") -> bytes:
    return f"{prolog}<svg {SVG_NS} width='4' height='4'>{inner}</svg>".encode()


def png_of_size(size: int) -> bytes:
    """A valid PNG of exactly `size` bytes (plain text in a tEXt chunk makes up the size)."""
    data = png_with_chunk(b"a" * (size - len(PNG) - 20))
    assert len(data) == size
    return data


def png_zero_bomb() -> bytes:
    """20000 x 20000 pixels of zeros, 1 bit each, compressed to about 50 KB: 400 million pixels
    once decoded. Made at send time: compressing 50 MB is not for every test collection."""
    side = 20000
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = (b"\0" * (1 + side // 8)) * side
    idat = zlib.compress(rows, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def gif_with_huge_screen() -> bytes:
    """A tiny GIF whose logical screen claims 65535 x 65535 pixels."""
    data = solid("GIF")
    return data[:6] + struct.pack("<HH", 65535, 65535) + data[10:]


def png_hiding_a_zip() -> bytes:
    """A valid PNG whose text chunk holds a ZIP archive, the archive's directory comment stretched
    over the rest of the file (the chunk's CRC and IEND, 16 bytes): unzip opens it as an archive,
    every viewer shows the picture."""
    archive = zip_archive()
    return png_with_chunk(archive[:-2] + struct.pack("<H", 16))


BILLION_LAUGHS = svg(
    "<text>&e;</text>",
    prolog='<?xml version="1.0"?><!DOCTYPE svg ['
    + '<!ENTITY a "aaaaaaaaaa">'
    + "".join(
        f'<!ENTITY {n} "{("&" + p + ";") * 10}">' for p, n in zip("abcd", "bcde", strict=True)
    )
    + "]>",
)
XXE = svg(
    "<text>&x;</text>",
    prolog='<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
)


# --- requests ------------------------------------------------------------------------------------

Send = Callable[[str, Account], RawResponse | None]
Content = bytes | Callable[[], bytes]


def _raw(resp: requests.Response) -> RawResponse:
    headers = {k.lower(): v for k, v in resp.headers.items()}
    return RawResponse(resp.status_code, headers, resp.content, resp.elapsed.total_seconds())


def _bytes(content: Content) -> bytes:
    return content() if callable(content) else content


def parts(*items: tuple[str, tuple[Any, ...]]) -> Send:
    """These multipart parts, in this order; the token in the query string."""

    def send(base: str, account: Account) -> RawResponse:
        wire = [(field, (p[0], _bytes(p[1]), *p[2:])) for field, p in items]
        return _raw(post_parts(base, account, wire, params={"accessTokenId": account.token}))

    return send


def file(name: str, content: Content, part_type: str = "application/octet-stream") -> Send:
    return parts(("attachment", (name, content, part_type)))


def body(content_type: str, content: Content) -> Send:
    """A body sent exactly as given, under this Content-Type."""

    def send(base: str, account: Account) -> RawResponse:
        return _raw(
            requests.post(
                base + account.path("/uploadAttachment"),
                params={"accessTokenId": account.token},
                data=_bytes(content),
                headers={"Content-Type": content_type},
                timeout=30,
            )
        )

    return send


def multipart(*pieces: bytes, boundary: str = "hostileboundary") -> Send:
    """A multipart body written by hand (`BOUNDARY` in a piece stands for the boundary), for what
    an HTTP library would refuse to write or would escape: raw bytes in a part's headers, a
    missing end, another boundary."""
    data = b"".join(pieces).replace(b"BOUNDARY", boundary.encode())
    return body(f"multipart/form-data; boundary={boundary}", data)


def file_part(name: str, content: bytes, extra_header: str = "") -> bytes:
    head = file_part_head("BOUNDARY", name)
    if extra_header:  # before the blank line that ends the headers
        head = head[:-2] + extra_header.encode() + b"\r\n\r\n"
    return head + content + b"\r\n"


def field_part(name: str, value: str) -> bytes:
    return (
        f'--BOUNDARY\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    )


END = b"--BOUNDARY--\r\n"


def drip(base: str, account: Account) -> RawResponse | None:
    """Declares 60 KiB, sends the start of a PNG, then one byte every 0.4 s: never idle for the
    1 s idle timeout, far slower than the whole body's deadline (grace + size / min rate)."""
    boundary = uuid.uuid4().hex
    return send_partial(
        base,
        account.path(f"/uploadAttachment?accessTokenId={account.token}"),
        {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(60 * 1024),
        },
        file_part_head(boundary, "drip.png") + PNG,
        trickle=(b"\0", 0.4, 20),
    )


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    id: str
    what: str  # the input, as the report names it
    send: Send
    status: int
    state: str | None = None  # where the upload ends; None: no record is made
    why: str = ""  # the reason, where the expected behaviour is a judgement call
    tight: bool = False  # sent to the gunicorn with a 64 KiB limit and 1 s timeouts
    bug: str = ""  # a known bug of the pipeline: the case fails until it is fixed (strict xfail)
    # Why it ended as it did (the record's reason_code): every refused case names its reason, so
    # a file refused for the wrong reason (a polyglot found "corrupt") fails.
    code: Reason | None = None


TYPE_FROM_NAME = "the type comes from the last extension, and the content agrees with it"
BASE_NAME = "only the base name is kept; objects are keyed by ids, never by a name"
STRUCTURE = "not a well-formed multipart form: the parser stops there, the staged part is deleted"

# fmt: off
# SVG that could run script or reach out when rendered: rejected by the verifier.
SVG_REFUSED = [
    Hostile(f"svg-{key}", what, file(f"{key}.svg", content), 200, "rejected",
            code=Reason.SVG_UNSAFE)
    for key, what, content in [
        ("script", "SVG with `<script>`", svg("<script>alert(1)</script>")),
        ("onload", "SVG with an onload handler",
         svg("<rect onload='alert(1)' width='4' height='4'/>")),
        ("js-href", "SVG with a `javascript:` link",
         svg("<a href='javascript:alert(1)'><rect width='4' height='4'/></a>")),
        ("foreign-html", "SVG carrying HTML in `<foreignObject>`",
         svg("<foreignObject><body xmlns='http://www.w3.org/1999/xhtml'>"
             "<iframe src='https://example.com'/></body></foreignObject>")),
        ("external-image", "SVG loading an external image (tracking, SSRF)",
         svg("<image href='http://example.com/pixel.png' width='4'/>")),
        ("css-import", "SVG with a CSS `@import`",
         svg("<style>@import url(http://example.com/x.css);</style>")),
        ("xxe", "SVG with an external entity (XXE)", XXE),
        ("billion-laughs", "SVG with nested entities (billion laughs)", BILLION_LAUGHS),
    ]
]

CASES: list[Hostile] = [
    # content-type spoofing
    Hostile("ct-html-as-png", "HTML named .png, part Content-Type image/png",
            file("page.png", HTML, "image/png"), 415),
    Hostile("ct-png-as-html", "a real PNG sent with part Content-Type text/html",
            file("real.png", PNG, "text/html"), 200, "attached",
            "the part's Content-Type is ignored; the file is served as image/png, nosniff"),
    Hostile("ct-elf-as-png", "an ELF executable named .png", file("tool.png", ELF), 415),
    Hostile("ct-png-as-jpg", "a PNG named .jpg", file("photo.jpg", PNG), 415),
    Hostile("ct-eicar-as-png", "the EICAR string named .png", file("virus.png", EICAR), 415),
    Hostile("ct-body-not-form", "a raw PNG body, Content-Type image/png",
            body("image/png", PNG), 400),
    # names
    Hostile("name-php-png", "`shell.php.png`, a real PNG", file("shell.php.png", PNG), 200,
            "attached", TYPE_FROM_NAME + "; served as image/png, never run"),
    Hostile("name-png-php", "`shell.png.php`", file("shell.png.php", b"<?php phpinfo(); ?>"), 415),
    Hostile("name-png-html", "`page.png.html`, HTML", file("page.png.html", HTML), 415),
    Hostile("name-trailing-dot", "`x.png.` (trailing dot)", file("x.png.", PNG), 400,
            why="Windows would save it as `x.png`: a name must not hide its real extension"),
    Hostile("name-trailing-space", "`x.png ` (trailing space)", file("x.png ", PNG), 400,
            why="as for the trailing dot"),
    Hostile("name-nul", "`evil.php\\0.png` (NUL byte)",
            multipart(file_part("evil.php\0.png", PNG), END), 400,
            why="control characters are refused, not stripped (no NUL truncation anywhere)"),
    Hostile("name-crlf", "CR LF inside the part's filename (header injection)",
            multipart(file_part("x\r\nContent-Type: text/html\r\n.png", PNG), END), 415,
            why="the raw CR LF ends the header line: the name is cut there (`\"x`, no extension)"),
    Hostile("name-rtl", "`invoice\\u202Efdp.png` (right-to-left override: shows as "
            "`invoicegnp.pdf`)", file("invoice\u202efdp.png", PNG), 400,
            why="format characters disguise names: refused"),
    Hostile("name-zero-width", "`pay\\u200Bpal.png` (zero-width space)",
            file("pay\u200bpal.png", PNG), 400),
    Hostile("name-256", "a 256-character name", file("a" * 252 + ".png", PNG), 400),
    Hostile("name-255", "a 255-character name (the limit)", file("b" * 251 + ".png", PNG),
            200, "attached"),
    Hostile("name-unicode", "`фото 日本 🙂.png`", file("фото 日本 🙂.png", PNG), 200, "attached",
            "letters of any script are names; served with RFC 5987 filename*"),
    Hostile("name-fullwidth-ext", "`x.\\uFF50\\uFF4E\\uFF47` (full-width `png`)",
            file("x.\uff50\uff4e\uff47", PNG), 415,
            why="extensions are not Unicode-normalised: an unknown extension is not allowed"),
    Hostile("name-quote", '`evil.html"; x=".png` in the `filename` field (a quote in the name)',
            parts(("filename", (None, b'evil.html"; x=".png')), ("attachment", ("q.tmp", PNG))),
            200, "attached",
            "accepted as Crafter does; the download's Content-Disposition carries the name "
            "percent-encoded, never as header parameters"),
    Hostile("name-dots-only", "`..png` (base name `.`)", file("..png", PNG), 400,
            why="`.` and `..` are not names: no URL could address them"),
    Hostile("name-empty", "an empty file name", file("", PNG), 400),
    Hostile("name-ext-only", "`.png` (extension only)", file(".png", PNG), 400),
    Hostile("traversal-part", "`../../../etc/cron.d/evil.png` as the part's filename",
            file("../../../etc/cron.d/evil.png", PNG), 200, "attached", BASE_NAME),
    Hostile("traversal-windows", "`..\\..\\Windows\\System32\\evil.png`",
            file("..\\..\\Windows\\System32\\evil.png", PNG), 200, "attached", BASE_NAME),
    Hostile("traversal-field", "`../../evil.png` in the `filename` field",
            parts(("filename", (None, b"../../evil.png")), ("attachment", ("x.tmp", PNG))),
            200, "attached", BASE_NAME),
    # sizes
    Hostile("size-zero", "a zero-byte file", file("empty.png", b""), 400),
    Hostile("size-empty-body", "an empty body", multipart(), 400),
    Hostile("size-at-limit", "exactly the limit (64 KiB), a real PNG",
            file("edge.png", lambda: png_of_size(LIMIT)), 200, "attached", tight=True),
    Hostile("size-over-limit", "one byte over the limit",
            file("over.png", lambda: png_of_size(LIMIT + 1)), 413, tight=True),
    # structure of the body
    Hostile("parts-300-before", "300 form fields before the file",
            multipart(*(field_part(f"f{i}", "x") for i in range(300)),
                      file_part("p.png", PNG), END), 400),
    Hostile("parts-300-after", "the file, then 300 form fields",
            multipart(file_part("p.png", PNG), *(field_part(f"f{i}", "x") for i in range(300)),
                      END), 400, why=STRUCTURE),
    Hostile("part-header-huge", "a 20 KiB part header",
            multipart(file_part("h.png", PNG, "X-Pad: " + "x" * 20_000), END), 400),
    Hostile("field-huge", "a 70 KB `filename` field",
            multipart(field_part("filename", "n" * 70_000 + ".png"), file_part("f.png", PNG),
                      END), 400),
    Hostile("boundary-missing", "multipart/form-data without a boundary",
            body("multipart/form-data", file_part("b.png", PNG) + END), 400),
    Hostile("boundary-wrong", "a body written with another boundary than declared",
            body("multipart/form-data; boundary=declared",
                 (file_part("b.png", PNG) + END).replace(b"BOUNDARY", b"other")), 400),
    Hostile("body-truncated", "a body that ends inside the file (no closing boundary)",
            multipart(file_part_head("BOUNDARY", "t.png") + png_bytes(64, 64)[:300]), 400,
            why=STRUCTURE),
    Hostile("two-attachments", "two `attachment` parts",
            multipart(file_part("a.png", PNG), file_part("b.png", PNG), END), 400,
            why="which one would be meant? Neither is kept"),
    Hostile("no-attachment", "a `filename` field and no file part",
            multipart(field_part("filename", "x.png"), END), 400),
    Hostile("drip", "a client that drips one byte every 0.4 s", drip, 408, tight=True,
            why="the whole body has a deadline: cut off within seconds, whatever the pace"),
    # content: polyglots, markup, bombs, archives
    Hostile("png-zip-appended", "a PNG with a ZIP archive appended",
            file("zip1.png", PNG + zip_archive()), 200, "rejected", code=Reason.POLYGLOT),
    Hostile("jpeg-zip-appended", "a JPEG with a ZIP archive appended",
            file("zip2.jpg", jpeg_bytes() + zip_archive()), 200, "rejected", code=Reason.POLYGLOT),
    Hostile("png-zip-inside", "a PNG that is also a ZIP (archive in a chunk, directory at EOF)",
            file("zip3.png", png_hiding_a_zip), 200, "rejected", code=Reason.POLYGLOT),
    Hostile("png-zip-in-chunk", "a PNG whose text chunk holds a ZIP archive",
            file("zip4.png", lambda: png_with_chunk(zip_archive())), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("gifar", "a GIF whose comment holds a ZIP archive (GIFAR)",
            file("gifar.gif", lambda: solid("GIF", comment=zip_archive())), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("jpeg-zip-in-comment", "a JPEG whose COM segment holds a ZIP archive",
            file("zip5.jpg", lambda: solid("JPEG", comment=zip_archive())), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("tiff-elf-appended", "a TIFF with an ELF executable appended",
            file("elf.tiff", lambda: solid("TIFF") + ELF), 200, "rejected", code=Reason.POLYGLOT),
    Hostile("gif-pdf-appended", "a GIF with a PDF appended",
            file("pdf.gif", solid("GIF") + b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("png-php-chunk", "PHP code in a PNG text chunk",
            file("php.png", png_with_chunk(b"<?php system($_GET['c']); ?>")), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("png-html-appended", "HTML with script after a PNG's end",
            file("tail.png", PNG + HTML), 200, "rejected", code=Reason.POLYGLOT),
    Hostile("gif-script-comment", "a GIF whose comment is `<script>`",
            file("comment.gif", solid("GIF", comment=b"<script>alert(1)</script>")),
            200, "rejected", code=Reason.POLYGLOT),
    Hostile("gif-js-polyglot", "GIF header followed by script (GIF/JS polyglot)",
            file("gifjs.gif", b"GIF89a<script>alert(1)</script>" + bytes(64)), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("jpeg-html-comment", "a JPEG whose COM segment is an HTML page",
            file("comment.jpg", solid("JPEG", comment=HTML)), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("jpeg-truncated", "a truncated JPEG",
            file("cut.jpg", solid("JPEG", (200, 200))[:-400]), 200, "rejected",
            code=Reason.CORRUPT),
    *SVG_REFUSED,
    Hostile("svg-clean", "a clean SVG", file("clean.svg", SVG), 200, "attached",
            "served as a download (Content-Disposition: attachment), sandboxed by CSP"),
    Hostile("html-as-svg", "an HTML page named .svg", file("page.svg", HTML), 415),
    Hostile("html-as-gif", "an HTML page named .gif", file("page.gif", HTML), 415),
    Hostile("bomb-png-header", "a PNG claiming 30000 x 30000 pixels",
            file("b1.png", png_claiming(30000, 30000)), 200, "rejected", code=Reason.TOO_LARGE),
    Hostile("bomb-png-zeros", "a real PNG bomb: 400 million pixels in ~50 KB",
            file("b2.png", png_zero_bomb), 200, "rejected", code=Reason.TOO_LARGE),
    Hostile("bomb-gif-screen", "a GIF claiming a 65535 x 65535 screen",
            file("b3.gif", gif_with_huge_screen), 200, "rejected", code=Reason.TOO_LARGE),
    # The formats of issue 21, from real encoders (Pillow's libwebp and libavif, pillow-heif).
    Hostile("png-as-webp", "a PNG named .webp", file("p.webp", png_bytes()), 415),
    Hostile("heic-as-png", "a HEIC named .png", file("h.png", lambda: phone_picture("HEIF")), 415),
    Hostile("avif-as-heic", "an AVIF named .heic",
            file("a.heic", lambda: phone_picture("AVIF")), 415),
    Hostile("bomb-webp", "a 45-megapixel lossless WebP of a few KiB",
            file("b4.webp", big_webp), 200, "rejected", code=Reason.TOO_LARGE),
    Hostile("bomb-avif-ispe", "an AVIF whose ispe claims 60000 x 60000",
            file("b5.avif", lambda: huge_ispe("AVIF")), 200, "rejected", code=Reason.TOO_LARGE),
    Hostile("bomb-heic-ispe", "a HEIC whose ispe claims 60000 x 60000",
            file("b6.heic", lambda: huge_ispe("HEIF")), 200, "rejected", code=Reason.TOO_LARGE),
    Hostile("truncated-webp", "a WebP cut short",
            file("t1.webp", lambda: phone_picture("WEBP")[:600]), 200, "rejected",
            code=Reason.CORRUPT),
    Hostile("truncated-avif", "an AVIF cut short",
            file("t2.avif", lambda: phone_picture("AVIF")[:900]), 200, "rejected",
            code=Reason.CORRUPT),
    Hostile("truncated-heic", "a HEIC cut short",
            file("t3.heic", lambda: phone_picture("HEIF")[:1200]), 200, "rejected",
            code=Reason.CORRUPT),
    Hostile("heic-zip", "a HEIC with a ZIP archive appended",
            file("z.heic", lambda: phone_picture("HEIF") + zip_archive()), 200, "rejected",
            code=Reason.POLYGLOT),
    Hostile("eicar-in-png", "EICAR inside a PNG text chunk",
            file("v1.png", png_with_chunk(EICAR)), 200, "infected", code=Reason.INFECTED),
    Hostile("eicar-in-svg", "EICAR inside an SVG comment",
            file("v2.svg", svg(f"<!-- {EICAR.decode()} --><rect width='1' height='1'/>")),
            200, "infected", code=Reason.INFECTED),
]
# fmt: on


TIGHT = {
    "ATTACHD_MAX_UPLOAD_SIZE": str(LIMIT),
    "ATTACHD_UPLOAD_IDLE_TIMEOUT": "1",
    "ATTACHD_UPLOAD_GRACE_SECONDS": "1",
}


@pytest.fixture(scope="module")
def tight(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with api_server(stack, tmp_path_factory.mktemp("hostile-api"), **TIGHT) as base:
        yield base


def upload_rows(stack: Stack) -> int:
    return sum(stack.records.count_by_state().values())


def assert_crafter_error(answer: RawResponse) -> None:
    body = answer.json()
    assert set(body) == {"errorCode", "message"} and body["errorCode"] == "OTHER", body
    assert "Traceback" not in body["message"]
    assert answer.headers["content-type"].startswith("application/json")


def served_as(header: str) -> tuple[str | None, str]:
    """(disposition, the file name a browser reads) of a Content-Disposition header, which must
    hold nothing but file-name parameters."""
    message = Message()
    message["Content-Disposition"] = header
    params = message.get_params(header="content-disposition") or []
    assert {key for key, _ in params[1:]} == {"filename"}, header
    # filename* (RFC 5987), when present, is last and is what browsers use.
    return message.get_content_disposition(), collapse_rfc2231_value(params[-1][1])


def assert_nothing_unsafe_served(stack: Stack, account: Account, upload: Upload | None) -> None:
    """Only an attached upload, scanned and verified, is listed and served, byte for byte as it
    was verified and with headers that keep a browser from running it; anything else is 404."""
    listed = get(stack.base_url, account, "/attachments").json()
    if upload is None or upload.state != "attached":
        assert listed == []
        if upload is not None:
            for rest in ("", "/details"):
                path = f"/attachment/{upload.attachment_id}{rest}"
                assert get(stack.base_url, account, path).status_code == 404
        return
    assert upload.scanned_at and upload.verified_at
    assert upload.detected_type == upload.declared_type
    assert [item["id"] for item in listed] == [upload.attachment_id]
    served = get(stack.base_url, account, f"/attachment/{upload.attachment_id}")
    assert served.status_code == 200
    # The bytes served: the sanitized picture (a PNG padded with a text chunk loses it).
    assert md5(served.content) == upload.served.md5
    assert hashlib.sha256(served.content).hexdigest() == upload.served.sha256
    assert served.headers["Content-Type"] == upload.declared_type
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"]
    kind = "attachment" if upload.declared_type == "image/svg+xml" else "inline"
    assert served_as(served.headers["Content-Disposition"]) == (kind, upload.original_name)


def _param(case: Hostile) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_hostile_input(
    case: Hostile, stack: Stack, objects: ObjectStore, request: pytest.FixtureRequest
) -> None:
    account = new_account(stack.records)
    base = request.getfixturevalue("tight") if case.tight else stack.base_url
    rows, staged = upload_rows(stack), staging_keys(objects, stack.settings)
    answer = case.send(base, account)
    assert answer is not None, "the server closed the connection without an answer"
    upload: Upload | None = None
    if answer.status == 200:
        accepted = answer.json()
        assert set(accepted) == ATTACHMENT_FIELDS
        upload = wait_until_final(stack, account, accepted["id"])
    # What was seen, before it is judged: the report shows known bugs as they are.
    reliability_report.record(
        "hostile",
        {
            "what": case.what,
            "why": case.why,
            "bug": case.bug,
            "status": answer.status,
            "state": upload.state if upload else None,
            "reason": upload.reason if upload else answer.json()["message"],
        },
    )
    assert answer.status == case.status, answer.body[:500]
    assert answer.seconds < SECONDS
    if upload is None:
        assert_crafter_error(answer)
        assert upload_rows(stack) == rows, "a refused upload left a record"
        assert staging_keys(objects, stack.settings) - staged == set()
    else:
        assert upload.state == case.state, upload.reason
        if case.state in ("rejected", "infected"):
            assert case.code is not None, f"{case.id}: a refused case must name its reason"
        assert upload.reason_code == case.code, upload.reason
    assert_nothing_unsafe_served(stack, account, upload)


def test_nothing_was_left_behind(stack: Stack, objects: ObjectStore) -> None:
    """After every input above: no object without its record, no record without its object, no
    upload still in the pipeline — across the session's buckets and record store."""
    found = settled_leftovers(stack, objects)
    reliability_report.record("hostile-leftovers", found)
    assert not any(found.values()), (found, stack.records.count_by_state())
