"""A private pipeline for fault tests: its own clamd (which a test may stop, restart with other
limits, or feed new signatures), its own Celery worker (which a test may stop or kill), its own
buckets, SQLite file and Redis database — so faults never touch the shared test services.

With `own=` it also gets private Redis, MinIO or PostgreSQL instances (started by the project's
services.sh on free ports) and `start_api()` a private gunicorn, for faults of those services."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import redis

from core.clamd import ClamdClient
from core.settings import Settings
from core.tasks import ROUTES, Dispatch, TaskName
from storage.broker import make_celery, publish
from storage.migrate import upgrade
from storage.objects import ObjectStore, staging_key
from storage.records import RecordStore
from tests.conftest import REPO, _free_port
from tests.integration.conftest import (
    settings_env,
    wait_for_api,
    wait_for_upload,
    wait_for_worker,
)
from tests.integration.sdk_support import clamd_reload
from workers.tasks import build_works

SERVICES = REPO / "deploy" / "scripts" / "services.sh"
TERMINAL = ("attached", "infected", "rejected", "failed", "superseded")


class PrivateStack:
    def __init__(
        self, base: Settings, workdir: Path, own: tuple[str, ...] = (), **overrides: object
    ) -> None:
        self.workdir = workdir
        # Always a Redis of its own (it starts in a tenth of a second): a shared server's
        # numbered databases run out when many test sessions overlap, and a foreign worker on
        # the same database would take this stack's tasks.
        self.own = own = tuple(dict.fromkeys(("redis", *own)))
        # Service data outside pytest's tmp dir: PostgreSQL runs as the `postgres` user, which
        # cannot enter pytest's private /tmp/pytest-of-root.
        self.svc_dir = Path(tempfile.mkdtemp(prefix="attachd-svc-"))
        self.svc_dir.chmod(0o755)
        self.ports = {name: _free_port() for name in ("clamd", "redis", "minio", "console", "pg")}
        self.clamd_port = self.ports["clamd"]
        for name in own:
            self._services("start", services=(name,))
        tag = secrets.token_hex(3)
        self.settings = replace(
            base,
            var_dir=workdir,
            database_url=(
                f"postgresql+psycopg://postgres@127.0.0.1:{self.ports['pg']}/attachd"
                if "postgres" in own
                else f"sqlite:///{workdir / 'attachd.db'}"
            ),
            redis_url=f"redis://127.0.0.1:{self.ports['redis']}/0",
            s3_endpoint=(
                f"127.0.0.1:{self.ports['minio']}" if "minio" in own else base.s3_endpoint
            ),
            api_port=_free_port(),
            clamd_port=self.clamd_port,
            bucket_staging=f"p{tag}-staging",
            bucket_attachments=f"p{tag}-attachments",
            bucket_quarantine=f"p{tag}-quarantine",
            reconcile_after_seconds=0,
        )
        self.settings = replace(self.settings, **overrides)  # type: ignore[arg-type]
        self.env = settings_env(self.settings)
        self.env["PYTHONUNBUFFERED"] = "1"
        upgrade(self.settings.database_url)
        self.records = RecordStore.from_url(self.settings.database_url)
        self.objects = ObjectStore.from_settings(self.settings)
        self.objects.ensure_buckets(1)
        self.celery = make_celery(self.settings)
        self.works = build_works(self.settings, self.celery)
        self.pipeline = self.works.pipeline
        self.clamd = ClamdClient("127.0.0.1", self.clamd_port, timeout=10)
        self.worker: subprocess.Popen[bytes] | None = None
        self.api: subprocess.Popen[bytes] | None = None
        self.worker_log = workdir / "worker-0.log"
        self._worker_logs = 0

    # --- clamd ------------------------------------------------------------------------------

    def _services(
        self, action: str, max_size: str = "4000M", services: tuple[str, ...] = ("clamd",)
    ) -> None:
        env = dict(os.environ)
        env.update(
            ATTACHD_VAR_DIR=str(self.svc_dir),
            ATTACHD_CLAMD_PORT=str(self.ports["clamd"]),
            ATTACHD_CLAMD_MAX_SIZE=max_size,
            ATTACHD_REDIS_PORT=str(self.ports["redis"]),
            ATTACHD_MINIO_PORT=str(self.ports["minio"]),
            ATTACHD_MINIO_CONSOLE_PORT=str(self.ports["console"]),
            ATTACHD_PG_PORT=str(self.ports["pg"]),
            ATTACHD_PG_DATABASE="attachd",
        )
        done = subprocess.run(
            ["bash", str(SERVICES), action, *services], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise AssertionError(f"services.sh {action} {services} failed:\n{done.stderr}")

    def start_clamd(self, max_size: str = "4000M") -> None:
        self._services("start", max_size)

    def stop_clamd(self) -> None:
        self._services("stop")

    def start_service(self, name: str) -> None:
        self._services("start", services=(name,))

    def stop_service(self, name: str) -> None:
        self._services("stop", services=(name,))

    # --- api --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    def start_api(self) -> None:

        assert self.api is None
        log = self.workdir / "api.log"
        with open(log, "ab") as handle:
            self.api = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "gunicorn"),
                    "-c",
                    "deploy/gunicorn.conf.py",
                    "api.wsgi:app",
                ],
                cwd=REPO,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_api(self.api, self.base_url, log)

    def kill_api(self) -> None:
        """SIGKILL the whole gunicorn process group: no graceful anything."""
        if self.api is not None:
            os.killpg(self.api.pid, signal.SIGKILL)
            self.api.wait()
            self.api = None

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.terminate()
            self.api.wait(timeout=30)
            self.api = None

    @property
    def clamd_db(self) -> Path:
        return self.svc_dir / "clamd" / "db"

    def publish_signatures(self, version: int, extra: Path) -> None:
        """What freshclam does in production: a new database version lands, clamd reloads."""
        subprocess.run(
            [
                str(REPO / "deploy" / "clamav" / "build-db.sh"),
                str(self.clamd_db),
                str(version),
                str(extra),
            ],
            check=True,
            capture_output=True,
        )
        clamd_reload(self.clamd)
        deadline = time.monotonic() + 30
        while f"/{version}/" not in self.clamd.version():
            if time.monotonic() > deadline:
                raise AssertionError(f"clamd did not load signature version {version}")
            time.sleep(0.2)

    # --- worker -----------------------------------------------------------------------------

    def start_worker(self, concurrency: int = 2, queues: tuple[str, ...] = ()) -> None:
        """A worker on `queues` (default: every queue)."""
        assert self.worker is None
        self._worker_logs += 1
        log = self.worker_log = self.workdir / f"worker-{self._worker_logs}.log"
        with open(log, "wb") as handle:
            self.worker = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "celery"),
                    "-A",
                    "workers.app",
                    "worker",
                    "--loglevel=INFO",
                    "-Q",
                    ",".join(queues or sorted(set(ROUTES.values()))),
                    f"--concurrency={concurrency}",
                    f"--hostname=private-{uuid.uuid4().hex[:6]}@%h",
                ],
                cwd=REPO,
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_worker(self.worker, log)

    def stop_worker(self) -> None:
        if self.worker is not None:
            if self.worker.poll() is None:
                self.worker.terminate()
                try:
                    self.worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.worker.pid, signal.SIGKILL)
                    self.worker.wait()
            self.worker = None

    def pool_children(self) -> list[int]:
        assert self.worker is not None
        out = subprocess.run(["pgrep", "-P", str(self.worker.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def flush_broker(self) -> None:
        """Redis restarted empty: every queued message is gone."""
        client = redis.Redis.from_url(self.settings.redis_url)
        client.flushdb()
        client.close()

    # --- uploads ----------------------------------------------------------------------------

    def submit(self, name: str, data: bytes, declared: str, profile_id: str) -> str:
        """Exactly what the API does after its own checks: stage, record, then enqueue. Used to
        feed the workers content the API's head check would refuse, to prove the workers refuse
        it too (defence in depth)."""
        import hashlib
        import io

        upload_id = uuid.uuid4().hex
        key = staging_key(upload_id)
        self.objects.put_stream(
            self.settings.bucket_staging, key, io.BytesIO(data), declared, 5 * 1024 * 1024
        )
        self.records.record_upload(
            upload_id=upload_id,
            profile_id=profile_id,
            file_name=name.rsplit(".", 1)[0],
            original_name=name,
            md5=hashlib.md5(data).hexdigest(),
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            declared_type=declared,
            sniffed_type=None,
            staging_key=key,
        )
        self.send(TaskName.SCAN, upload_id)
        return upload_id

    def send(self, task: TaskName, upload_id: str) -> None:
        publish(self.celery, Dispatch(task, upload_id))

    def profile(self) -> str:
        tenant = "p-" + secrets.token_hex(3)
        self.records.create_tenant(tenant)
        return self.records.create_profile(tenant, "bob", "bob@example.com", enabled=True).id

    def wait(self, upload_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 60) -> str:
        return wait_for_upload(self.records, upload_id, states, timeout, str(self.workdir))

    def close(self) -> None:
        self.stop_api()
        self.stop_worker()
        self.celery.close()
        self.records.engine.dispose()
        if "minio" not in self.own:
            for bucket in (
                self.settings.bucket_staging,
                self.settings.bucket_attachments,
                self.settings.bucket_quarantine,
            ):
                for key, _ in self.objects.list_keys(bucket):
                    self.objects.delete(bucket, key)
                self.objects.client.remove_bucket(bucket)
        self._services("stop", services=("clamd", *self.own))
        shutil.rmtree(self.svc_dir, ignore_errors=True)
