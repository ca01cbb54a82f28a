"""Signed links in-process: issued to a token holder, served without one exactly as the
download route serves, refused when altered, expired, deleted or replaced."""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from falcon import testing
from PIL import Image

from api.app import Services, create_app
from api.signing import Link, Signer
from core.domain import State
from storage.objects import rendition_key
from tests.api.conftest import URL_SECRET, World
from tests.conftest import png_bytes


def client_with(world: World, **settings: Any) -> testing.TestClient:
    """The same fakes behind an app with other settings."""
    services = Services(
        records=world.records,
        objects=world.objects,
        enqueue=world.sender,
        checks=world.checks,
        refusals=world.counter,
    )
    return testing.TestClient(create_app(replace(world.settings, **settings), services))


def ask(world: World, rest: str, **params: str) -> testing.Result:
    return world.client.simulate_get(
        world.path(rest), params={"accessTokenId": world.token, **params}
    )


def link_for(world: World, name: str, **params: str) -> dict[str, Any]:
    resp = ask(world, f"/attachment/{name}/url", **params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json
    return body


def fetch(client: testing.TestClient, url: str, method: str = "GET", **kw: Any) -> testing.Result:
    parts = urlsplit(url)
    return client.simulate_request(method, parts.path, query_string=parts.query, **kw)


def test_a_link_serves_the_file_without_a_token_as_the_download_does(world: World) -> None:
    data = png_bytes(20, 20)
    world.attached("pic.png", data)
    before = time.time()
    link = link_for(world, "pic")
    assert set(link) == {"url", "expiresAt"}
    assert link["url"].startswith("/api/1/signed/")
    assert "accessTokenId" not in link["url"]
    expires = datetime.strptime(link["expiresAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before + 3595 <= expires.timestamp() <= time.time() + 3601

    got = fetch(world.client, link["url"])
    assert got.status_code == 200, got.text
    assert got.content == data
    download = world.get("/attachment/pic")
    for header in ("Content-Type", "ETag", "Content-Disposition", "Content-Security-Policy"):
        assert got.headers[header] == download.headers[header], header
    max_age = int(got.headers["Cache-Control"].removeprefix("private, max-age="))
    assert 3590 <= max_age <= 3600

    head = fetch(world.client, link["url"], "HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["ETag"] == got.headers["ETag"]
    assert head.headers["Content-Length"] == str(len(data))
    part = fetch(world.client, link["url"], headers={"Range": "bytes=2-9"})
    assert part.status_code == 206 and part.content == data[2:10]
    etag = got.headers["ETag"]
    assert fetch(world.client, link["url"], headers={"If-None-Match": etag}).status_code == 304


def test_expires_in_is_capped_and_checked(world: World) -> None:
    world.attached("pic.png", png_bytes())
    client = client_with(world, signed_url_max_seconds=60)
    resp = client.simulate_get(
        world.path("/attachment/pic/url"),
        params={"accessTokenId": world.token, "expiresIn": "999999"},
    )
    max_age = fetch(client, resp.json["url"]).headers["Cache-Control"]
    assert int(max_age.removeprefix("private, max-age=")) <= 60
    for bad in ("0", "-5", "soon"):
        wrong = ask(world, "/attachment/pic/url", expiresIn=bad)
        assert wrong.status_code == 400, bad


def test_altered_and_expired_links_are_403(world: World) -> None:
    world.attached("pic.png", png_bytes())
    world.attached("other.png", png_bytes(3, 3))
    url = link_for(world, "pic")["url"]
    other = link_for(world, "other")["url"]
    path, query = url.split("?")
    params = {k: v[0] for k, v in parse_qs(query).items()}
    altered = [
        f"{path}?expires={int(params['expires']) + 1}&sig={params['sig']}",
        f"{path}?expires={params['expires']}&sig={params['sig'][:-2]}AA",
        f"{path}?expires={params['expires']}",
        f"{other.split('?')[0]}?{query}",  # another version, this link's signature
        f"{path}?expires={params['expires']}&size=128&sig={params['sig']}",
        # Non-ASCII signature or expiry: refused, never a 500 (found by Schemathesis).
        f"{path}?expires={params['expires']}&sig=%F3%92%9F%9DY",
        f"{path}?expires=%D9%A3&sig={params['sig']}",
    ]
    for bad in altered:
        resp = fetch(world.client, bad)
        assert resp.status_code == 403, bad
        assert resp.json["errorCode"] == "ACCESS_DENIED"
    upload_id = path.rsplit("/", 1)[-1]
    past = Signer((URL_SECRET,)).query(Link(upload_id, int(time.time()) - 1))
    resp = world.client.simulate_get(path, params=past)
    assert resp.status_code == 403
    assert "expired" in resp.json["message"]


def test_a_deleted_or_replaced_version_is_404(world: World) -> None:
    world.attached("pic.png", png_bytes())
    first = link_for(world, "pic")["url"]
    world.attached("pic.png", png_bytes(9, 9))
    # The pipeline would have superseded the first version; the fake only moves the pointer.
    old_id = first.split("?")[0].rsplit("/", 1)[-1]
    world.records.uploads[old_id] = replace(world.records.uploads[old_id], state=State.SUPERSEDED)
    assert fetch(world.client, first).status_code == 404
    second = link_for(world, "pic")["url"]
    assert fetch(world.client, second).status_code == 200
    assert (
        world.client.simulate_delete(
            world.path("/attachment/pic"), params={"accessTokenId": world.token}
        ).status_code
        == 204
    )
    gone = fetch(world.client, second)
    assert gone.status_code == 404
    assert set(gone.json) == {"errorCode", "message"}


def test_a_link_needs_the_token_and_a_configured_key(world: World) -> None:
    world.attached("pic.png", png_bytes())
    assert world.client.simulate_get(world.path("/attachment/pic/url")).status_code == 403
    stranger = world.records.add_token("another-tenant")
    resp = ask(world, "/attachment/pic/url", accessTokenId=stranger)
    assert resp.status_code == 403 and resp.json["errorCode"] == "ACTION_DENIED"
    assert world.get("/attachment/nothing/url").status_code == 404
    url = link_for(world, "pic")["url"]
    bare = client_with(world, url_secret=())
    for resp in (
        bare.simulate_get(world.path("/attachment/pic/url"), params={"accessTokenId": world.token}),
        fetch(bare, url),
    ):
        assert resp.status_code == 503
        assert "ATTACHD_URL_SECRET" in resp.json["message"]
        assert "Retry-After" not in resp.headers


def test_keys_rotate_the_first_signs_every_one_verifies(world: World) -> None:
    world.attached("pic.png", png_bytes())
    url = link_for(world, "pic")["url"]
    new_key = "a-newer-url-secret-for-rotation-0000000"
    rotated = client_with(world, url_secret=(new_key, URL_SECRET))
    assert fetch(rotated, url).status_code == 200
    issued = rotated.simulate_get(
        world.path("/attachment/pic/url"), params={"accessTokenId": world.token}
    )
    assert fetch(rotated, issued.json["url"]).status_code == 200
    assert fetch(world.client, issued.json["url"]).status_code == 403
    dropped = client_with(world, url_secret=(new_key,))
    assert fetch(dropped, url).status_code == 403


def test_links_carry_the_url_prefix_and_work_under_it(world: World) -> None:
    world.attached("pic.png", png_bytes())
    client = client_with(world, url_prefix="/crafter-profile")
    resp = client.simulate_get(
        "/crafter-profile" + world.path("/attachment/pic/url.json"),
        params={"accessTokenId": world.token},
    )
    assert resp.status_code == 200, resp.text
    url = resp.json["url"]
    assert url.startswith("/crafter-profile/api/1/signed/")
    assert fetch(client, url).status_code == 200
    assert fetch(client, url.removeprefix("/crafter-profile")).status_code == 200


def test_a_link_may_name_a_rendition_signed_with_it(world: World) -> None:
    world.attached("pic.png", png_bytes(40, 40))
    attachment = world.records.find_attachment(world.profile_id, "pic")
    assert attachment is not None and attachment.current_upload_id
    upload = world.records.uploads[attachment.current_upload_id]
    assert upload.object_key
    small = png_bytes(4, 4)
    digest = hashlib.sha256(small).hexdigest()
    rendition = {"px": 128, "size": len(small), "md5": "0" * 32, "sha256": digest}
    world.records.uploads[upload.id] = replace(upload, renditions=[rendition])
    bucket = world.settings.bucket_attachments
    world.objects.data[(bucket, rendition_key(upload.object_key, 128))] = small

    url = link_for(world, "pic", size="128")["url"]
    assert "size=128" in url
    got = fetch(world.client, url)
    assert got.status_code == 200 and got.content == small
    assert got.headers["ETag"] == f'"{digest}"'
    # The size is signed: the same link for the file itself is refused.
    assert fetch(world.client, url.replace("size=128&", "")).status_code == 403
    assert ask(world, "/attachment/pic/url", size="100").status_code == 400  # not configured
    # A configured size not made yet is made at the link's first use.
    later = link_for(world, "pic", size="512")["url"]
    made = fetch(world.client, later)
    assert made.status_code == 200 and made.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(made.content)).size == (40, 40)  # never scaled up
