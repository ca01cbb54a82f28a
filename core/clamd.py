"""A small clamd client: PING, VERSION and INSTREAM over TCP.

Written here rather than taken from PyPI: the `clamd` and `pyclamd` packages are unmaintained
since 2014/2017, and the protocol is a handful of lines. INSTREAM lets us feed clamd chunk by chunk
from MinIO, so nothing is written to a temp file and memory stays flat.
"""

from __future__ import annotations

import select
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import ScanError, ScanLimitExceeded, ServiceUnavailable

# clamd reports an over-limit file under AlertExceedsMax as a "FOUND" of this family: it is not a
# virus verdict, and it is never clean.
_LIMIT_PREFIX = "Heuristics.Limits.Exceeded"


@dataclass(frozen=True)
class EngineVersion:
    """clamd's VERSION reply, split: 'ClamAV 1.4.6/27852/Thu Nov 26 09:40:14 2026'. The middle
    number is the signature database version; it is absent when clamd loaded only unversioned
    signature files."""

    engine: str
    signatures: int | None
    published: datetime | None

    @classmethod
    def parse(cls, reply: str) -> EngineVersion:
        parts = reply.split("/")
        signatures = int(parts[1]) if len(parts) > 1 and parts[1].strip().isdigit() else None
        published = None
        if len(parts) > 2:
            try:
                published = datetime.strptime(parts[2].strip(), "%a %b %d %H:%M:%S %Y").replace(
                    tzinfo=UTC
                )
            except ValueError:
                published = None
        return cls(engine=parts[0].strip(), signatures=signatures, published=published)

    def age_seconds(self, now: datetime) -> float | None:
        return (now - self.published).total_seconds() if self.published else None


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None
    engine_version: str


class ClamdClient:
    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        try:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ServiceUnavailable("clamd", f"{self.host}:{self.port}: {exc}") from exc

    def _command(self, command: str) -> str:
        with self._connect() as sock:
            try:
                sock.sendall(f"z{command}\0".encode())
                return _read_reply(sock)
            except OSError as exc:
                raise ServiceUnavailable("clamd", str(exc)) from exc

    def ping(self) -> None:
        reply = self._command("PING")
        if reply != "PONG":
            raise ServiceUnavailable("clamd", f"unexpected PING reply {reply!r}")

    def version(self) -> str:
        """e.g. 'ClamAV 1.4.6/27852/Thu Nov 26 09:40:14 2026' (engine/signature db/date)."""
        return self._command("VERSION")

    def instream(self, chunks: Iterable[bytes], chunk_size: int = 256 * 1024) -> ScanResult:
        """Scan a stream. Raises ScanLimitExceeded when the file is over clamd's limits,
        ScanError for any other clamd error, ServiceUnavailable when clamd cannot be reached."""
        engine = self.version()
        with self._connect() as sock:
            try:
                sock.sendall(b"zINSTREAM\0")
                reply = _send_stream(sock, chunks, chunk_size)
                if reply is None:
                    sock.sendall(struct.pack("!L", 0))
                    reply = _read_reply(sock)
            except OSError as exc:
                # clamd closed on us mid-stream; its answer may still be waiting.
                reply = _reply_after_failed_send(sock)
                if not reply:
                    raise ServiceUnavailable("clamd", str(exc)) from exc
        return _verdict(reply, engine)


def _send_stream(sock: socket.socket, chunks: Iterable[bytes], chunk_size: int) -> str | None:
    """Send the chunks; returns clamd's reply if it answered early. clamd stops reading once a
    stream passes StreamMaxLength, says why and closes: reading that answer as soon as it is
    there beats losing it to the connection reset our next send would cause."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), chunk_size):
            piece = view[start : start + chunk_size]
            sock.sendall(struct.pack("!L", len(piece)))
            sock.sendall(piece)
            if select.select([sock], [], [], 0)[0]:
                return _read_reply(sock)
    return None


def _read_reply(sock: socket.socket) -> str:
    data = bytearray()
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if data.endswith(b"\0"):
            break
    return data.rstrip(b"\0").decode("utf-8", "replace").strip()


def _reply_after_failed_send(sock: socket.socket) -> str:
    try:
        sock.settimeout(2)
        return _read_reply(sock)
    except OSError:
        return ""


def _verdict(reply: str, engine: str) -> ScanResult:
    # Replies: "stream: OK", "stream: <Signature> FOUND", "<message> ERROR".
    if reply.endswith("ERROR"):
        if "size limit exceeded" in reply.lower():
            raise ScanLimitExceeded(reply)
        raise ScanError(reply)
    body = reply.split(":", 1)[1].strip() if ":" in reply else reply
    if body == "OK":
        return ScanResult(infected=False, signature=None, engine_version=engine)
    if body.endswith(" FOUND"):
        signature = body.removesuffix(" FOUND").strip()
        if signature.startswith(_LIMIT_PREFIX):
            raise ScanLimitExceeded(signature)
        return ScanResult(infected=True, signature=signature, engine_version=engine)
    raise ScanError(f"unexpected clamd reply {reply!r}")
