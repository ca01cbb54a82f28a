"""Reading attachments in-process: details, the list, the download, the status, and the 404s."""

from __future__ import annotations

from tests.api.conftest import World
from tests.conftest import png_bytes


def test_details_list_and_download_of_an_attached_file(world: World) -> None:
    data = png_bytes(12, 12)
    uploaded = world.attached("avatar.png", data)

    details = world.get("/attachment/avatar/details")
    assert details.status_code == 200, details.text
    assert details.json == uploaded
    by_id = world.get(f"/attachment/{uploaded['id']}/details")
    assert by_id.json == uploaded

    listed = world.get("/attachments")
    assert listed.status_code == 200
    assert listed.json == [uploaded]

    download = world.get("/attachment/avatar")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["Content-Disposition"] == 'inline; filename="avatar.png"'
    assert "sandbox" in download.headers["Content-Security-Policy"]

    part = world.get("/attachment/avatar", headers={"Range": "bytes=0-7"})
    assert part.status_code == 206
    assert part.content == data[:8]
    etag = download.headers["ETag"]
    assert world.get("/attachment/avatar", headers={"If-None-Match": etag}).status_code == 304


def test_an_unknown_attachment_is_404(world: World) -> None:
    for rest in ("/attachment/nothing", "/attachment/nothing/details"):
        resp = world.get(rest)
        assert resp.status_code == 404
        assert resp.json == {
            "errorCode": "OTHER",
            "message": f"No attachment 'nothing' found for profile \"{world.profile_id}\"",
        }


def test_an_upload_still_in_the_pipeline_is_not_served(world: World) -> None:
    assert world.upload("pending.png", png_bytes()).status_code == 200
    assert world.get("/attachment/pending").status_code == 404
    assert world.get("/attachments").json == []


def test_status_tells_where_the_latest_upload_is(world: World) -> None:
    uploaded = world.attached("avatar.png", png_bytes())
    assert world.upload("avatar.png", png_bytes(9, 9)).status_code == 200
    newest = world.sender.sent[-1]

    status = world.get("/attachment/avatar/status")
    assert status.status_code == 200, status.text
    assert status.json["id"] == uploaded["id"]
    assert status.json["uploadId"] == newest
    assert status.json["state"] == "staged"
    assert (status.json["served"], status.json["servedUploadId"]) == (False, world.sender.sent[0])
    assert world.get("/attachment/nothing/status").status_code == 404


def test_delete_removes_the_record_and_its_objects(world: World) -> None:
    world.attached("avatar.png", png_bytes())
    resp = world.client.simulate_delete(
        world.path("/attachment/avatar"), params={"accessTokenId": world.token}
    )
    assert resp.status_code == 204
    assert world.records.attachments == {}
    assert world.objects.data == {}
