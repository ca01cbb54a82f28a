"""The peers: other software doing the same job on the same machine, in the same run. B1 beside
tusd, the reference tus server, storing into the same MinIO (bench/peers/tus.py); B3 beside a
synchronous Falcon handler that scans and checks in the request (bench/peers/sync_app.py).
Each is started for its case and stopped after it, also on an error."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from attachd.stack import file_tail, spawn, stop
from bench.target import Target

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class Peer:
    url: str
    pid: int  # the server's root process: bench/accounting.py counts its tree


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    name: str, argv: list[str], env: Mapping[str, str], url: str, health: str
) -> Iterator[Peer]:
    """Start `argv`, wait until GET `health` answers below 500, stop it on the way out."""
    log = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / f"{name}.log"
    proc = spawn(argv, env, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{file_tail(log)}")
            try:
                if requests.get(health, timeout=1).status_code < 500:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer in 60 s:\n{file_tail(log)}")
            time.sleep(0.1)
        yield Peer(url, proc.pid)
    finally:
        stop([proc], timeout=30)


@contextmanager
def sync_peer(t: Target) -> Iterator[Peer]:
    """The synchronous handler under gunicorn with the API's workers and threads."""
    s = t.settings
    port = free_port()
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "BENCH_PEER_S3_ENDPOINT": s.s3_endpoint,
        "BENCH_PEER_S3_ACCESS_KEY": s.s3_access_key,
        "BENCH_PEER_S3_SECRET_KEY": s.s3_secret_key,
        "BENCH_PEER_BUCKET": t.scratch_bucket,
        "BENCH_PEER_CLAMD_HOST": s.clamd_host,
        "BENCH_PEER_CLAMD_PORT": str(s.clamd_port),
    }
    argv = [
        str(BIN / "gunicorn"),
        "--worker-class=gthread",
        f"--workers={s.api_workers}",
        f"--threads={s.api_threads}",
        f"--bind=127.0.0.1:{port}",
        "--chdir",
        str(REPO),
        "bench.peers.sync_app:app",
    ]
    base = f"http://127.0.0.1:{port}"
    with serve("sync-peer", argv, env, base + "/upload", base + "/health") as peer:
        yield peer


def tusd_binary() -> str:
    """deploy/scripts/tusd-bin.sh: the cached build, or a build now (a minute or two, once)."""
    out = subprocess.run(
        [str(REPO / "deploy" / "scripts" / "tusd-bin.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"deploy/scripts/tusd-bin.sh failed:\n{out.stderr[-2000:]}")
    return out.stdout.strip()
