"""`attachd minio-user` on the test MinIO: attachd gets a user of its own, allowed its buckets and
nothing else, made with the root credentials that the services never hold."""

from __future__ import annotations

import io
import secrets
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import ServiceUnavailable
from core.settings import Settings
from storage.objects import ObjectStore
from tests.integration.conftest import settings_env

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def _minio_user(settings: Settings, app: Settings) -> subprocess.CompletedProcess[str]:
    env = {
        **settings_env(app),
        # The test MinIO's root pair is the development one services.sh starts it with.
        "MINIO_ROOT_USER": settings.s3_access_key,
        "MINIO_ROOT_PASSWORD": settings.s3_secret_key,
    }
    return subprocess.run(
        [str(BIN / "attachd"), "minio-user"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_app_user_reaches_its_buckets_and_nothing_else(settings: Settings) -> None:
    app = replace(
        settings,
        s3_access_key="attachd-app-" + secrets.token_hex(4),
        s3_secret_key=secrets.token_urlsafe(24),
        insecure_defaults=False,
    )
    done = _minio_user(settings, app)
    assert done.returncode == 0, done.stderr
    assert _minio_user(settings, app).returncode == 0  # idempotent

    mine = ObjectStore.from_settings(app)
    mine.ensure_buckets(app.staging_expiry_days)
    key = "staging/" + secrets.token_hex(8)
    mine.put_stream(app.bucket_staging, key, io.BytesIO(b"hello"), "text/plain", 5 * 1024 * 1024)
    assert key in {k for k, _ in mine.list_keys(app.bucket_staging)}
    mine.delete(app.bucket_staging, key)

    elsewhere = replace(app, bucket_staging="not-attachd-" + secrets.token_hex(3))
    with pytest.raises(ServiceUnavailable):
        ObjectStore.from_settings(elsewhere).ensure_buckets(1)


def test_the_root_user_is_never_the_apps(settings: Settings) -> None:
    app = replace(settings, s3_secret_key=secrets.token_urlsafe(24), insecure_defaults=False)
    done = _minio_user(settings, app)
    assert done.returncode == 1
    assert "root user" in done.stderr
