"""B1's peer: tusd, the reference tus server (v2.9.1, built by deploy/scripts/tusd-bin.sh), with
its S3 store writing into the same MinIO, and the least tus client that sends one file: POST to
create the upload, then PATCH with the whole body streamed (what tus clients do by default when
no chunk size is set; a dropped connection would resume from HEAD's Upload-Offset)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests

from bench.peers import BIN, Peer, free_port, serve, tusd_binary
from bench.target import Target

TUS = {"Tus-Resumable": "1.0.0"}
PREFIX = "tus/"


@contextmanager
def tusd(t: Target) -> Iterator[Peer]:
    """tusd on a free port, storing under tus/ in the scratch bucket with attachd's part size."""
    s = t.settings
    port = free_port()
    endpoint = ("https://" if s.s3_secure else "http://") + s.s3_endpoint
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "AWS_ACCESS_KEY_ID": s.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": s.s3_secret_key,
        "AWS_REGION": s.s3_region,
    }
    argv = [
        tusd_binary(),
        "-host=127.0.0.1",
        f"-port={port}",
        "-base-path=/files/",
        f"-s3-bucket={t.scratch_bucket}",
        f"-s3-object-prefix={PREFIX}",
        f"-s3-endpoint={endpoint}",
        f"-s3-part-size={s.upload_part_size}",
        "-verbose=false",
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        with serve("tusd", argv, env, base + "/files/", base + "/metrics") as peer:
            yield peer
    finally:
        t.empty(t.scratch_bucket, PREFIX)


class Body:
    """A streamed request body of known length: requests sends it with a Content-Length."""

    def __init__(self, size: int, chunks: Callable[[], Iterator[bytes]]) -> None:
        self._size = size
        self._chunks = chunks

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()


def upload(
    session: requests.Session, url: str, name: str, size: int, chunks: Callable[[], Iterator[bytes]]
) -> str:
    """Create the upload and send every byte; returns its URL once the server holds all of it."""
    meta = "filename " + base64.b64encode(name.encode()).decode()
    created = session.post(
        url, headers={**TUS, "Upload-Length": str(size), "Upload-Metadata": meta}, timeout=60
    )
    if created.status_code != 201:
        raise RuntimeError(f"tusd answered {created.status_code} to the creation: {created.text}")
    location = requests.compat.urljoin(url, created.headers["Location"])
    sent = session.patch(
        location,
        data=Body(size, chunks),
        headers={
            **TUS,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=900,
    )
    if sent.status_code != 204 or int(sent.headers.get("Upload-Offset", -1)) != size:
        raise RuntimeError(
            f"tusd answered {sent.status_code} (offset {sent.headers.get('Upload-Offset')}) "
            f"to the PATCH of {size} bytes: {sent.text[:300]}"
        )
    return location
