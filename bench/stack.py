"""The benchmarks' own stack: services on the ports of deploy/env/bench.env, a fresh record store,
gunicorn, and the default workers when a case asks for them. Everything started here is stopped
on the way out, also on an error or Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType

import redis
import requests

from bench.target import Target
from core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("redis", "minio", "clamd")
BIN = Path(sys.executable).parent


def load_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as `set -a; source` would read the simple files in deploy/env/."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


class BenchStack:
    def __init__(self, env: Mapping[str, str], worker_concurrency: int | None = None) -> None:
        self.env = {**env, "PYTHONUNBUFFERED": "1", "PATH": f"{BIN}:{env.get('PATH', '')}"}
        self.settings = Settings.from_env(self.env)
        var_dir = Path(self.settings.var_dir)
        self.var_dir = var_dir if var_dir.is_absolute() else REPO / var_dir
        self.log_dir = self.var_dir / "log"
        self.worker_concurrency = worker_concurrency
        self.base_url = f"http://{self.settings.api_host}:{self.settings.api_port}"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._services_up = False

    # --- the whole stack ------------------------------------------------------------------------

    def __enter__(self) -> Target:
        try:
            self._services("start")
            self._services_up = True
            self._fresh_state()
            self._run("attachd", "migrate")
            self._run("attachd", "init-storage")
            api = self._start("api", "gunicorn", "-c", "deploy/gunicorn.conf.py", "api.wsgi:app")
            self._wait_api(api)
            self.target = Target.connect(self.settings, self.base_url, api.pid, self.workers)
        except BaseException:
            self.close()
            raise
        return self.target

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        target = getattr(self, "target", None)
        if target is not None:
            try:
                target.close()
            except Exception as exc:  # the services are about to stop anyway
                print(f"[bench] cleaning up the scratch bucket failed: {exc}", file=sys.stderr)
        for name in list(self._procs):
            self._stop(name)
        if self._services_up:
            self._services("stop")
            self._services_up = False
            # MinIO empties the trash of deleted objects in the background and at start; stopped
            # right after a run deletes ~10 GiB, it would keep them on disk until the next run.
            shutil.rmtree(
                self.var_dir / "minio" / "data" / ".minio.sys" / "tmp" / ".trash",
                ignore_errors=True,
            )

    @contextmanager
    def workers(self) -> Iterator[None]:
        """The default workers, as deploy/Procfile runs them, for the duration of a case."""
        # Tasks the API queued during B1 and B2 belong to uploads nobody will process: drop them,
        # so the workers see only what the case sends them.
        broker = redis.Redis.from_url(self.settings.redis_url)
        broker.flushdb()
        broker.close()
        if self.worker_concurrency is None:
            # The default fleet, as deploy/Procfile runs it: a pool per queue group, autoscaled
            # (ATTACHD_WORKER_POOLS).
            proc = self._start("worker", "attachd", "worker")
        else:
            proc = self._start(
                "worker",
                "celery",
                "-A",
                "workers.app",
                "worker",
                "--loglevel=INFO",
                "-Q",
                "scan,verify,attach,maintenance",
                f"--concurrency={self.worker_concurrency}",
                "--hostname=bench@%h",
                "--max-tasks-per-child=500",
                "-E",
            )
        try:
            self._wait_worker(proc)
            yield
        finally:
            self._stop("worker")

    # --- pieces ---------------------------------------------------------------------------------

    def _services(self, action: str) -> None:
        subprocess.run(
            [str(REPO / "deploy" / "scripts" / "services.sh"), action, *SERVICES],
            cwd=REPO,
            env=self.env,
            check=True,
        )

    def _run(self, *cmd: str) -> None:
        subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=REPO, env=self.env, check=True)

    def _fresh_state(self) -> None:
        """An empty record store and broker, and no objects left by an interrupted run: each run
        starts from the same state."""
        url = self.settings.database_url
        if url.startswith("sqlite:///"):
            db = Path(url.removeprefix("sqlite:///"))
            for suffix in ("", "-wal", "-shm"):
                db.with_name(db.name + suffix).unlink(missing_ok=True)
        broker = redis.Redis.from_url(self.settings.redis_url)
        broker.flushdb()
        broker.close()
        from minio import Minio
        from minio.deleteobjects import DeleteObject

        s = self.settings
        client = Minio(s.s3_endpoint, s.s3_access_key, s.s3_secret_key, secure=s.s3_secure)
        for bucket in (
            s.bucket_staging,
            s.bucket_attachments,
            s.bucket_quarantine,
            f"{s.bucket_staging}-bench",
        ):
            if client.bucket_exists(bucket):
                names = [
                    DeleteObject(o.object_name or "")
                    for o in client.list_objects(bucket, recursive=True)
                ]
                for error in client.remove_objects(bucket, names):
                    raise RuntimeError(f"could not delete {bucket}/{error.name}: {error.message}")

    def _start(self, name: str, *cmd: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:  # the child keeps its own copy
            proc = subprocess.Popen(
                [str(BIN / cmd[0]), *cmd[1:]],
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C reaches only us, and we stop it in order.
                start_new_session=True,
            )
        self._procs[name] = proc
        return proc

    def _stop(self, name: str) -> None:
        proc = self._procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        # Whatever is left of its session (gunicorn and celery children), then the leader.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _fail(self, name: str, why: str) -> RuntimeError:
        log = (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
        return RuntimeError(f"{name} {why}; last lines of {self.log_dir / name}.log:\n{log}")

    def _wait_api(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise self._fail("api", "exited during start-up")
            try:
                if requests.get(self.base_url + "/api/1/monitoring/version", timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise self._fail("api", "did not answer within 60 s")
            time.sleep(0.2)

    def _wait_worker(self, proc: subprocess.Popen[bytes]) -> None:
        from storage.broker import make_celery

        app = make_celery(self.settings)
        deadline = time.monotonic() + 60
        try:
            while True:
                if proc.poll() is not None:
                    raise self._fail("worker", "exited during start-up")
                if app.control.ping(timeout=0.5):
                    return
                if time.monotonic() > deadline:
                    raise self._fail("worker", "did not answer within 60 s")
        finally:
            app.close()
