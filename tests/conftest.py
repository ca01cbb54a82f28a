"""Shared fixtures. Integration tests run against the real services that `make test` starts
(deploy/env/test.env); a service that does not answer fails the run, it is never skipped."""

from __future__ import annotations

import io
import os
import secrets
import socket
import struct
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
INTEGRATION = REPO / "tests" / "integration"

# The EICAR test string: the only "malware" this project ever uses. Assembled at run time so the
# repository holds no file any scanner would flag.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def png_bytes(
    width: int = 8, height: int = 8, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def png_with_chunk(payload: bytes) -> bytes:
    """A valid PNG carrying `payload` in an ancillary tEXt chunk before IEND."""
    data = png_bytes()
    iend = data.rindex(b"IEND") - 4
    body = b"tEXt" + b"Comment\0" + payload
    chunk = struct.pack(">I", len(payload) + 8) + body + struct.pack(">I", zlib.crc32(body))
    return data[:iend] + chunk + data[iend:]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the services, so it is marked `integration`
    here, in one place: `-m "not integration"` (`make test-fast`) then starts nothing that needs
    them, whether or not its file says so (a `pytestmark` in a conftest marks nothing)."""
    for item in items:
        if item.path.resolve().is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def services_up(base_settings: Settings) -> Settings:
    """Fail loudly, naming the service, when `make test` did not start what the tests need."""
    host, _, port = base_settings.s3_endpoint.partition(":")
    redis_port = int(base_settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    needed = {
        "redis": ("127.0.0.1", redis_port),
        "minio": (host, int(port or 80)),
        "clamd": (base_settings.clamd_host, base_settings.clamd_port),
    }
    down = [name for name, (h, p) in needed.items() if not _answers(h, p)]
    if down:
        pytest.fail(
            f"services not answering: {', '.join(down)} — run the tests with `make test`, "
            "which starts them (deploy/scripts/services.sh)",
            pytrace=False,
        )
    return base_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _session_redis_url(redis_url: str) -> str:
    """A Redis database of this session's own: sessions running side by side must not consume
    each other's tasks (a worker would find no record for a foreign upload and drop it)."""
    import redis

    base = redis_url.rsplit("/", 1)[0]
    client = redis.Redis.from_url(base + "/0")
    db = 1 + int(client.incr("attachd:test:session-counter")) % 15
    client.close()
    session = redis.Redis.from_url(f"{base}/{db}")
    session.flushdb()
    session.close()
    return f"{base}/{db}"


@pytest.fixture(scope="session")
def settings(services_up: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Per-session buckets, SQLite file, Redis database and API port, so runs never see each
    other's data, even when two run at the same time."""
    tag = secrets.token_hex(3)
    db = tmp_path_factory.mktemp("db") / "attachd.db"
    return replace(
        services_up,
        database_url=f"sqlite:///{db}",
        redis_url=_session_redis_url(services_up.redis_url),
        api_port=_free_port(),
        bucket_staging=f"t{tag}-staging",
        bucket_attachments=f"t{tag}-attachments",
        bucket_quarantine=f"t{tag}-quarantine",
    )


def postgres_url() -> str:
    url = os.environ.get("ATTACHD_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "ATTACHD_TEST_POSTGRES_URL is not set: run the tests with `make test`", pytrace=False
        )
    return url


@pytest.fixture
def eicar() -> bytes:
    return EICAR


@pytest.fixture(scope="session")
def objects(settings: Settings) -> Iterator[object]:
    from storage.objects import ObjectStore

    store = ObjectStore.from_settings(settings)
    store.ensure_buckets(settings.staging_expiry_days)
    yield store
    for bucket in (
        settings.bucket_staging,
        settings.bucket_attachments,
        settings.bucket_quarantine,
    ):
        for key, _ in store.list_keys(bucket):
            store.delete(bucket, key)
        store.client.remove_bucket(bucket)
