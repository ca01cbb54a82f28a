"""A stack of its own for the operations tests: a gunicorn API and Celery workers that a test
starts, stops and drains at will, on a redis-server, SQLite file and buckets no other test
touches. A Redis of its own, not a database of the shared one: these tests count workers and
queued messages, and a shared server's databases are handed out round-robin, so a long run (or
two runs side by side) would sooner or later hand another test's workers the same database."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from core.tasks import Queue
from storage.migrate import upgrade
from storage.objects import ObjectStore
from storage.records import RecordStore
from storage.telemetry import Telemetry
from tests.conftest import REPO, _free_port
from tests.integration.conftest import (
    settings_env,
    wait_for_api,
    wait_for_upload,
    wait_for_worker,
)

BIN = Path(sys.executable).parent
TERMINAL = ("attached", "infected", "rejected", "failed", "superseded")
OPS_PASSWORD = "ops-" + secrets.token_hex(8)
METRICS_TOKEN = "prom-" + secrets.token_hex(8)


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A private redis-server on a free port, nothing saved to disk; returns its URL."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (deploy/scripts/ensure-deps.sh installs it)"
    port = _free_port()
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return url, proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError("private redis-server did not start") from None
            time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class OpsStack:
    def __init__(self, base: Settings, workdir: Path, **overrides: Any) -> None:
        tag = secrets.token_hex(3)
        self.workdir = workdir
        redis_url, self.redis = start_redis(workdir)
        self.settings = replace(
            base,
            var_dir=workdir,
            database_url=f"sqlite:///{workdir / 'attachd.db'}",
            redis_url=redis_url,
            api_port=_free_port(),
            bucket_staging=f"o{tag}-staging",
            bucket_attachments=f"o{tag}-attachments",
            bucket_quarantine=f"o{tag}-quarantine",
            ops_password=OPS_PASSWORD,
            metrics_token=METRICS_TOKEN,
            **overrides,
        )
        self.env = settings_env(self.settings)
        self.env["PYTHONUNBUFFERED"] = "1"
        upgrade(self.settings.database_url)
        self.records = RecordStore.from_url(self.settings.database_url)
        s = self.settings
        self.objects = ObjectStore.from_settings(s)
        self.objects.ensure_buckets(1)
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        tenant = "o-" + secrets.token_hex(3)
        self.records.create_tenant(tenant)
        self.token = self.records.create_token(
            "ops-tests", [{"tenant": tenant, "allowedActions": ["MANAGE_PROFILES"]}]
        )
        self.profile_id = self.records.create_profile(
            tenant, "olga", "olga@example.com", enabled=True
        ).id

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.settings.ops_user, OPS_PASSWORD)

    @property
    def basic_header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()

    # --- processes ----------------------------------------------------------------------------

    def _spawn(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(log, "ab") as handle:
            return subprocess.Popen(
                argv,
                cwd=REPO,
                env=env or self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_api(self) -> None:
        log = self.workdir / "api.log"
        self.api = self._spawn(
            [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"], log
        )
        wait_for_api(self.api, self.base_url, log)

    def start_worker(
        self,
        name: str,
        queues: str = "scan,verify,attach,maintenance",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ) -> str:
        """A Celery worker with a node name of its own; returns the node name."""
        node = f"{name}-{secrets.token_hex(3)}@{os.uname().nodename}"
        log = self.log_of(node)
        proc = self._spawn(
            [
                str(BIN / "celery"),
                "-A",
                "workers.app",
                "worker",
                "-Q",
                queues,
                f"--concurrency={concurrency}",
                f"--hostname={node}",
            ],
            log,
            env,
        )
        self.workers[node] = proc
        wait_for_worker(proc, log)
        return node

    def log_of(self, node: str) -> Path:
        return self.workdir / f"worker-{node.split('@')[0]}.log"

    def stop_worker(self, node: str, timeout: float = 60) -> int:
        """SIGTERM (a warm shutdown) and wait; returns the exit code."""
        proc = self.workers.pop(node)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"{node} did not stop within {timeout}s") from None
        return proc.returncode

    def attachd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(BIN / "attachd"), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"attachd {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def close(self) -> None:
        for node in list(self.workers):
            self.stop_worker(node)
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            self.api.wait(timeout=30)
        stop_process(self.redis)
        self.records.engine.dispose()
        s = self.settings
        for bucket in (s.bucket_staging, s.bucket_attachments, s.bucket_quarantine):
            for key, _ in self.objects.list_keys(bucket):
                self.objects.delete(bucket, key)
            self.objects.client.remove_bucket(bucket)

    # --- the API --------------------------------------------------------------------------------

    def upload(self, name: str, data: bytes) -> requests.Response:
        return requests.post(
            f"{self.base_url}/api/1/profile/{self.profile_id}/uploadAttachment",
            params={"accessTokenId": self.token},
            files={"attachment": (name, data, "application/octet-stream")},
            timeout=30,
        )

    def upload_id(self, name: str) -> str:
        att = self.records.find_attachment(self.profile_id, name.rsplit(".", 1)[0])
        assert att is not None, name
        latest = self.records.latest_upload(att.id)
        assert latest is not None
        return latest.id

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        resp = requests.get(self.base_url + "/metrics", auth=self.auth, timeout=10)
        assert resp.status_code == 200, resp.text
        out = {}
        for family in text_string_to_metric_families(resp.text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def wait(self, upload_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 60) -> str:
        return wait_for_upload(self.records, upload_id, states, timeout, str(self.workdir))


def metric(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The value of one series. A series that is not there fails the test: absent is not 0, or
    every `== 0` would pass once a metric is renamed or dropped. `absent()` says so when meant."""
    key = (name, tuple(sorted(labels.items())))
    if key not in values:
        near = sorted({str(dict(k[1])) for k in values if k[0] == name})
        raise AssertionError(f"no series {name}{labels}; the family has {near or 'no series'}")
    return values[key]


def wait_consumed(redis_url: str, timeout: float = 60.0, settle: float = 0.5) -> None:
    """Until every queue is empty and no message is held unacknowledged, for `settle` seconds on
    end: every message sent so far was taken by a worker and its task finished (acks are late).
    What a test waits on before it asserts that a message changed nothing."""
    telemetry = Telemetry.from_url(redis_url)
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while True:
        states = telemetry.queues([q.value for q in Queue])
        now = time.monotonic()
        if all(q.depth == 0 and q.unacked == 0 for q in states):
            idle_since = idle_since or now
            if now - idle_since >= settle:
                return
        else:
            idle_since = None
        if now > deadline:
            raise AssertionError(f"messages still queued or held after {timeout}s: {states}")
        time.sleep(0.05)


def task_retries(redis_url: str, task: str) -> float:
    """How many times tasks named `task` (scan, verify, attach) were retried: Celery's retry
    signal, counted in Redis by the workers."""
    counted = Telemetry.from_url(redis_url).counters().get("task_retries", {})
    return counted.get((task,), 0.0)


def wait_retried(redis_url: str, task: str, more_than: float, timeout: float = 60.0) -> float:
    """Until `task` was retried more than `more_than` times; returns the count."""
    deadline = time.monotonic() + timeout
    while (count := task_retries(redis_url, task)) <= more_than:
        if time.monotonic() > deadline:
            raise AssertionError(f"{task} retried {count} times, not more than {more_than}")
        time.sleep(0.1)
    return count


def absent(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> bool:
    return (name, tuple(sorted(labels.items()))) not in values


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
