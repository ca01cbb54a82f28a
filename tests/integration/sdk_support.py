"""Calls only tests make, straight through the MinIO SDK or clamd's socket: the product never puts
small objects, reads tags back or reloads clamd, so these live here rather than in its stores."""

from __future__ import annotations

import io
import socket

from core.clamd import ClamdClient
from storage.objects import ObjectStore


def put_bytes(objects: ObjectStore, bucket: str, key: str, data: bytes, content_type: str) -> None:
    objects.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type)


def object_tags(objects: ObjectStore, bucket: str, key: str) -> dict[str, str]:
    return dict(objects.client.get_object_tags(bucket, key) or {})


def clamd_reload(clamd: ClamdClient) -> None:
    """What freshclam's notification does: clamd reloads its signature database."""
    with socket.create_connection((clamd.host, clamd.port), timeout=30) as sock:
        sock.sendall(b"zRELOAD\0")
        reply = b""
        while not reply.endswith(b"\0"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    if reply.rstrip(b"\0").strip() != b"RELOADING":
        raise AssertionError(f"unexpected RELOAD reply {reply!r}")
