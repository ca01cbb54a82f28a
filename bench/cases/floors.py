"""B3's floors: the same whole job as the pipeline without the framework (the fair floor), and the
older, narrower floor kept beside it for comparison with earlier reports."""

from __future__ import annotations

import io
import os
import socket
import struct
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import magic
from minio.commonconfig import CopySource
from PIL import Image

from bench.accounting import Reader, Usage, metered
from bench.cases import bar
from bench.config import MiB, Sizes
from bench.target import Target

FAIR = (
    "the same whole job without the framework: put_object, GET, clamd INSTREAM, libmagic on the "
    "head, a full Pillow decode, server-side copy, delete; one thread per core"
)
OLD = "clamd INSTREAM from MinIO + libmagic + server-side copy, one file after another"


def instream(host: str, port: int, chunks: Iterable[bytes]) -> str:
    """clamd's INSTREAM and nothing else: what scanning a file costs at the least."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(b"zINSTREAM\0")
        for chunk in chunks:
            sock.sendall(struct.pack("!L", len(chunk)) + chunk)
        sock.sendall(struct.pack("!L", 0))
        reply = bytearray()
        while not reply.endswith(b"\0"):
            data = sock.recv(4096)
            if not data:
                break
            reply += data
    return reply.rstrip(b"\0").decode()


def scan_and_check(host: str, port: int, chunks: Iterable[bytes]) -> bytes:
    """What the scan and the type checks do to one file, at the least: `chunks` streamed to clamd
    and kept, libmagic on the first MiB, a full Pillow decode. Returns the bytes; raises on
    anything but a clean image."""
    got = bytearray()

    def kept() -> Iterable[bytes]:
        for chunk in chunks:
            got.extend(chunk)
            yield chunk

    reply = instream(host, port, kept())
    if not reply.endswith("OK"):
        raise RuntimeError(f"clamd said {reply!r}")
    body = bytes(got)
    mime = magic.from_buffer(body[:MiB], mime=True)
    if not mime.startswith("image/"):
        raise RuntimeError(f"libmagic took it for {mime}")
    with Image.open(io.BytesIO(body)) as img:
        img.load()
    return body


def fair_round(
    t: Target, files: list[bytes], sizes: Sizes, i: int, readers: dict[str, Reader]
) -> tuple[float, Usage]:
    """Files per second of the fair floor, and its CPU per class."""
    client = t.objects.client
    bucket = t.scratch_bucket
    host, port = t.settings.clamd_host, t.settings.clamd_port
    prefix = f"b3-fair/{i}"

    def one(n: int) -> None:
        data = files[n]
        src, dst = f"{prefix}/staged/{n}.png", f"{prefix}/kept/{n}.png"
        client.put_object(bucket, src, io.BytesIO(data), len(data), content_type="image/png")
        response = client.get_object(bucket, src)
        try:
            scan_and_check(host, port, response.stream(256 * 1024))
        finally:
            response.close()
            response.release_conn()
        client.copy_object(bucket, dst, CopySource(bucket, src))
        client.remove_object(bucket, src)
        progress.update(1)

    threads = os.cpu_count() or 1
    with (
        bar(sizes.progress, f"B3 fair floor {i + 1}", len(files), unit="file") as progress,
        metered(readers, len(files)) as usage,
        ThreadPoolExecutor(threads) as pool,
    ):
        start = time.perf_counter()
        list(pool.map(one, range(len(files))))
        seconds = time.perf_counter() - start
    t.empty(bucket, "b3-fair/")
    return len(files) / seconds, usage


def old_round(t: Target, keys: list[str], sizes: Sizes, i: int) -> float:
    """Files per second of the floor the reports used up to issue 11: no upload, no decode, one
    file after another."""
    client = t.objects.client
    bucket = t.settings.bucket_attachments
    host, port = t.settings.clamd_host, t.settings.clamd_port
    with bar(sizes.progress, f"B3 old floor {i + 1}", len(keys), unit="file") as progress:
        start = time.perf_counter()
        for key in keys:
            response = client.get_object(bucket, key)
            try:
                head = bytearray()

                def chunks(r: object = response, head: bytearray = head) -> Iterable[bytes]:
                    for chunk in r.stream(256 * 1024):  # type: ignore[attr-defined]
                        if len(head) < MiB:
                            head += chunk[: MiB - len(head)]
                        yield chunk

                reply = instream(host, port, chunks())
            finally:
                response.close()
                response.release_conn()
            if not reply.endswith("OK"):
                raise RuntimeError(f"clamd said {reply!r} about {key}")
            magic.from_buffer(bytes(head), mime=True)
            client.copy_object(t.scratch_bucket, f"b3-floor/{key}", CopySource(bucket, key))
            progress.update(1)
        seconds = time.perf_counter() - start
    t.empty(t.scratch_bucket, "b3-floor/")
    return len(keys) / seconds
