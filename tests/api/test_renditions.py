"""Renditions on demand, in-process: made at the first `?size=` request in the format the
client's Accept negotiates, stored, served stored afterwards, made once under concurrent first
requests, removed with their version."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from tests.api.conftest import World
from tests.api.test_links import client_with
from tests.sanitize_samples import plain

AVIF_BROWSER = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
WEBP_BROWSER = "image/webp,*/*"


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _get(world: World, name: str, accept: str | None = None, **params: str):  # type: ignore[no-untyped-def]
    headers = {"Accept": accept} if accept else {}
    return world.client.simulate_get(
        world.path(f"/attachment/{name}"),
        params={"accessTokenId": world.token, **params},
        headers=headers,
    )


def test_the_attach_leaves_no_rendition_until_one_is_asked_for(world: World) -> None:
    world.attached("pic.jpg", plain("JPEG", (800, 400)))
    bucket = world.settings.bucket_attachments
    assert len(world.objects.keys(bucket)) == 1 and world.objects.puts == []

    got = _get(world, "pic", "image/jpeg", size="128")
    assert got.status_code == 200, got.text
    img = _open(got.content)
    assert img.format == "JPEG" and img.size == (128, 64)
    assert got.headers["Content-Type"] == "image/jpeg"
    assert got.headers["Vary"] == "Accept"
    assert 'filename="pic.jpg"' in got.headers["Content-Disposition"]
    assert len(world.objects.keys(bucket)) == 2 and len(world.objects.puts) == 1

    again = _get(world, "pic", "image/jpeg", size="128")
    assert again.content == got.content and again.headers["ETag"] == got.headers["ETag"]
    assert len(world.objects.puts) == 1  # served from storage, not made again


def test_the_format_follows_accept(world: World) -> None:
    world.attached("pic.jpg", plain("JPEG", (800, 400)))
    formats = {
        accept: _open(_get(world, "pic", accept, size="128").content).format
        for accept in (AVIF_BROWSER, WEBP_BROWSER, "image/jpeg", "*/*", None)
    }
    assert formats == {
        AVIF_BROWSER: "AVIF",
        WEBP_BROWSER: "WEBP",
        "image/jpeg": "JPEG",
        "*/*": "JPEG",
        None: "JPEG",
    }
    webp = _get(world, "pic", WEBP_BROWSER, size="128")
    assert webp.headers["Content-Type"] == "image/webp"
    assert 'filename="pic.webp"' in webp.headers["Content-Disposition"]
    # q=0 refuses a format.
    refused = _get(world, "pic", "image/avif;q=0,image/webp", size="128")
    assert _open(refused.content).format == "WEBP"
    # One object per (size, format); the file itself has no Vary.
    assert len(world.objects.puts) == 3
    assert "Vary" not in _get(world, "pic", AVIF_BROWSER).headers


def test_formats_can_be_narrowed_and_animations_never_become_avif(world: World) -> None:
    client = client_with(world, image_rendition_formats=("webp",))
    world.attached("pic.png", plain("PNG", (300, 300)))
    got = client.simulate_get(
        world.path("/attachment/pic"),
        params={"accessTokenId": world.token, "size": "128"},
        headers={"Accept": AVIF_BROWSER},
    )
    assert _open(got.content).format == "WEBP"

    world.attached("anim.gif", _animated())
    moving = _get(world, "anim", AVIF_BROWSER, size="128")
    img = _open(moving.content)
    assert img.format == "WEBP" and getattr(img, "n_frames", 1) == 3
    assert _open(_get(world, "anim", "image/png", size="128").content).format == "GIF"


def test_concurrent_first_requests_make_it_once(world: World) -> None:
    world.attached("pic.jpg", plain("JPEG", (1600, 800)))
    start = threading.Barrier(8)

    def fetch(_: int) -> bytes:
        start.wait()
        got = _get(world, "pic", WEBP_BROWSER, size="512")
        assert got.status_code == 200
        return bytes(got.content)

    with ThreadPoolExecutor(8) as pool:
        bodies = set(pool.map(fetch, range(8)))
    assert len(bodies) == 1
    assert len(world.objects.puts) == 1


def test_delete_removes_every_rendition(world: World) -> None:
    world.attached("pic.jpg", plain("JPEG", (800, 400)))
    for accept in (AVIF_BROWSER, WEBP_BROWSER, "image/jpeg"):
        assert _get(world, "pic", accept, size="128").status_code == 200
    bucket = world.settings.bucket_attachments
    assert len(world.objects.keys(bucket)) == 4
    gone = world.client.simulate_delete(
        world.path("/attachment/pic"), params={"accessTokenId": world.token}
    )
    assert gone.status_code == 204
    assert world.objects.keys(bucket) == []


def test_unknown_sizes_and_svgs_are_refused(world: World) -> None:
    world.attached("pic.jpg", plain("JPEG", (800, 400)))
    assert _get(world, "pic", size="100").status_code == 400
    status = world.get("/attachment/pic/status").json
    assert status["renditions"] == [128, 512]
    assert world.objects.puts == []


def _animated() -> bytes:
    frames = [Image.new("RGB", (300, 200), c) for c in ("red", "green", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()
