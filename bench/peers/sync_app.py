"""B3's synchronous peer: what many teams write instead of a pipeline — one Falcon handler that
streams the upload to clamd, checks its type with libmagic and a full Pillow decode, and only
then puts it into MinIO, all inside the request. No accounts, records or queues: the least a
"scan before you store" service does. Run under gunicorn by bench/peers/__init__.py, settings in
BENCH_PEER_* variables."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator

import falcon
from minio import Minio

from bench.cases.floors import scan_and_check

CHUNK = 64 * 1024


def _env(name: str) -> str:
    value = os.environ.get(f"BENCH_PEER_{name}")
    if not value:
        raise RuntimeError(f"BENCH_PEER_{name} is not set")
    return value


class Upload:
    def __init__(self) -> None:
        self.client = Minio(
            _env("S3_ENDPOINT"), _env("S3_ACCESS_KEY"), _env("S3_SECRET_KEY"), secure=False
        )
        self.bucket = _env("BUCKET")
        self.clamd = (_env("CLAMD_HOST"), int(_env("CLAMD_PORT")))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        for part in req.get_media():
            if part.name != "attachment":
                continue

            def chunks(stream: io.BufferedIOBase = part.stream) -> Iterator[bytes]:
                while chunk := stream.read(CHUNK):
                    yield chunk

            try:
                body = scan_and_check(*self.clamd, chunks())
            except RuntimeError as exc:
                raise falcon.HTTPUnprocessableEntity(description=str(exc)) from exc
            key = f"b3-peer/{secrets.token_hex(8)}-{part.secure_filename}"
            self.client.put_object(
                self.bucket, key, io.BytesIO(body), len(body), content_type=part.content_type
            )
            resp.media = {"key": key, "size": len(body)}
            return
        raise falcon.HTTPBadRequest(description="no attachment part")


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


app = falcon.App()
app.add_route("/upload", Upload())
app.add_route("/health", Health())
