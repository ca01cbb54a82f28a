"""In-process: a tenant's policy narrows the intake's limits (read through a short cache), and
Crafter's empty answer for an unknown attachment on the `.json` routes only."""

from __future__ import annotations

from api.resources.attachments import EMPTY_ATTACHMENT
from core.policy import TenantPolicy
from tests.api.conftest import World
from tests.conftest import png_bytes


def test_a_tenant_size_limit_refuses_before_anything_is_kept(world: World) -> None:
    world.records.policies[world.tenant] = TenantPolicy(world.tenant, max_upload_size=1000)
    small = png_bytes(2, 2)
    assert len(small) < 1000
    big = small + b"\0" * 4000
    resp = world.upload("big.png", big)
    assert resp.status_code == 413, resp.text
    assert set(resp.json) == {"errorCode", "message"}
    assert "1000 bytes" in resp.json["message"]
    assert world.objects.data == {}
    assert world.records.uploads == {}
    assert world.upload("small.png", small).status_code == 200


def test_a_tenant_type_list_refuses_other_types(world: World) -> None:
    world.records.policies[world.tenant] = TenantPolicy(world.tenant, allowed_types=("image/gif",))
    resp = world.upload("pic.png", png_bytes())
    assert resp.status_code == 415, resp.text
    assert resp.json["errorCode"] == "OTHER"
    assert "image/gif" in resp.json["message"]
    assert world.objects.data == {}


def test_a_policy_cannot_widen_the_installation(world: World) -> None:
    limit = world.settings.max_upload_size
    world.records.policies[world.tenant] = TenantPolicy(
        world.tenant, max_upload_size=limit * 10, allowed_types=("image/png", "text/html")
    )
    resp = world.upload("big.png", png_bytes() + b"\0" * limit)
    assert resp.status_code == 413
    assert world.upload("page.html", b"<html></html>").status_code == 415


def test_the_policy_is_read_once_for_many_uploads(world: World) -> None:
    for n in range(5):
        assert world.upload(f"p{n}.png", png_bytes()).status_code == 200
    assert world.records.policy_reads == 1


def test_crafter_json_routes_answer_an_unknown_attachment_with_an_empty_one(world: World) -> None:
    details = world.get("/attachment/nothing/details.json")
    assert details.status_code == 200, details.text
    assert details.json == EMPTY_ATTACHMENT
    assert details.json == {
        "md5": None,
        "contentType": None,
        "fileSize": None,
        "fileName": None,
        "fileSizeBytes": 0,
        "id": None,
    }
    download = world.get("/attachment/nothing.json")
    assert download.status_code == 200
    assert download.content == b""
    assert download.headers["Content-Length"] == "0"
    # The plain routes keep their 404.
    assert world.get("/attachment/nothing/details").status_code == 404
    assert world.get("/attachment/nothing").status_code == 404


def test_crafter_json_routes_keep_the_other_errors(world: World) -> None:
    unknown = "0123456789abcdef01234567"
    resp = world.client.simulate_get(
        f"/api/1/profile/{unknown}/attachment/x/details.json",
        params={"accessTokenId": world.token},
    )
    assert resp.status_code == 404 and resp.json["errorCode"] == "NO_SUCH_PROFILE"
    resp = world.client.simulate_get(world.path("/attachment/x/details.json"))
    assert resp.status_code == 403 and resp.json["errorCode"] == "ACCESS_DENIED"
    stranger = world.records.add_token("elsewhere")
    resp = world.client.simulate_get(
        world.path("/attachment/x.json"), params={"accessTokenId": stranger}
    )
    assert resp.status_code == 403 and resp.json["errorCode"] == "ACTION_DENIED"


def test_an_attached_file_is_served_on_the_json_routes_as_before(world: World) -> None:
    data = png_bytes(7, 7)
    uploaded = world.attached("pic.png", data)
    assert world.get("/attachment/pic/details.json").json == uploaded
    assert world.get("/attachment/pic.json").content == data
