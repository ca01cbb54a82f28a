"""The benchmarks' own stack: services on the ports of deploy/env/bench.env, a fresh record store,
gunicorn, and the default workers when a case asks for them, started, awaited and stopped by
attachd.stack as `make run` starts them. Everything started here is stopped on the way out, also
on an error or Ctrl-C."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import redis

from attachd.stack import (
    api_ready,
    file_tail,
    flower_ready,
    spawn,
    stop,
    wait_ready,
    workers_ready,
)
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
            self.target = Target.connect(
                self.settings,
                self.base_url,
                api.pid,
                self.workers,
                worker_root=self._worker_pid,
                companions=self._companions,
            )
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
            # What `make up` runs (deploy/Procfile): the default fleet, a pool per queue group,
            # autoscaled (ATTACHD_WORKER_POOLS), with beat and Flower beside it. Flower turns
            # the workers' task events on: their cost is part of what a user's stack pays.
            proc = self._start("worker", "attachd", "worker")
            self._start(
                "beat",
                "celery",
                "-A",
                "workers.app",
                "beat",
                f"--schedule={self.var_dir / 'celerybeat-schedule'}",
            )
            self._start("flower", "attachd", "flower")
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
            if "flower" in self._procs:
                wait_ready(
                    "flower",
                    self._procs["flower"],
                    flower_ready(self.settings),
                    60,
                    functools.partial(self._tail, "flower"),
                )
            yield
        finally:
            for name in ("flower", "beat", "worker"):
                if name in self._procs:
                    self._stop(name)

    def _worker_pid(self) -> int | None:
        proc = self._procs.get("worker")
        return proc.pid if proc is not None else None

    def _companions(self) -> dict[str, int]:
        return {
            label: self._procs[name].pid
            for name, label in (("flower", "Flower"), ("beat", "beat"))
            if name in self._procs
        }

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
        # A session of its own (attachd.stack.spawn): Ctrl-C reaches only us, and we stop it.
        proc = spawn([str(BIN / cmd[0]), *cmd[1:]], self.env, self.log_dir / f"{name}.log")
        self._procs[name] = proc
        return proc

    def _stop(self, name: str) -> None:
        stop([self._procs.pop(name)], timeout=30)

    def _tail(self, name: str) -> str:
        return f"last lines of {self.log_dir / name}.log:\n" + file_tail(
            self.log_dir / f"{name}.log"
        )

    def _wait_api(self, proc: subprocess.Popen[bytes]) -> None:
        ready = api_ready(self.base_url)
        wait_ready("api", proc, ready, 60, functools.partial(self._tail, "api"))

    def _wait_worker(self, proc: subprocess.Popen[bytes]) -> None:
        # `attachd worker` runs a node per pool; a worker started with a concurrency is one node.
        nodes = len(self.settings.pools()) if self.worker_concurrency is None else 1
        ready = workers_ready(self.settings.redis_url, nodes)
        wait_ready("worker", proc, ready, 60, functools.partial(self._tail, "worker"))
