"""The real stack for integration tests: a gunicorn API and a Celery worker as subprocesses,
against the real Redis, MinIO and clamd, with this session's buckets and database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import requests

from core.settings import Settings
from storage.migrate import upgrade
from storage.records import RecordStore
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple):
            value = ",".join(value)
        env["ATTACHD_" + f.name.upper()] = str(value)
    return env


@dataclass
class Stack:
    settings: Settings
    records: RecordStore
    base_url: str
    env: dict[str, str]
    log_dir: Path

    def url(self, path: str) -> str:
        return self.base_url + path

    def wait_for_state(self, upload_id: str, states: tuple[str, ...], timeout: float = 30.0) -> str:
        return wait_for_upload(self.records, upload_id, states, timeout, f"logs in {self.log_dir}")


def wait_for_upload(
    records: RecordStore, upload_id: str, states: tuple[str, ...], timeout: float, where: str
) -> str:
    """Poll the record store until the upload is in one of `states`."""
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        up = records.get_upload(upload_id)
        state = up.state if up else None
        if state in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"upload {upload_id} still {state} after {timeout}s; {where}")


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def records(settings: Settings) -> RecordStore:
    upgrade(settings.database_url)
    return RecordStore.from_url(settings.database_url)


@pytest.fixture(scope="session")
def stack(
    settings: Settings,
    records: RecordStore,
    objects: object,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("logs")
    env = settings_env(settings)
    env["PYTHONUNBUFFERED"] = "1"
    bindir = Path(sys.executable).parent
    api = _start(
        [str(bindir / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "api.wsgi:app"],
        env,
        log_dir / "api.log",
    )
    worker = _start(
        [
            str(bindir / "celery"),
            "-A",
            "workers.app",
            "worker",
            "--loglevel=INFO",
            "-Q",
            "scan,verify,attach,maintenance",
            "--concurrency=2",
            f"--hostname=test-{os.getpid()}@%h",
        ],
        env,
        log_dir / "worker.log",
    )
    try:
        _wait_for_api(api, f"http://{settings.api_host}:{settings.api_port}", log_dir)
        wait_for_worker(worker, log_dir / "worker.log")
        yield Stack(
            settings=settings,
            records=records,
            base_url=f"http://{settings.api_host}:{settings.api_port}",
            env=env,
            log_dir=log_dir,
        )
    finally:
        _stop(api)
        _stop(worker)


def wait_for_worker(worker: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """A worker that failed to import must fail the session at once, not as a 30 s timeout in
    the first test that waits for a state."""
    deadline = time.monotonic() + timeout
    while b" ready." not in log.read_bytes():
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"celery worker did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def _wait_for_api(api: subprocess.Popen[bytes], base: str, log_dir: Path) -> None:
    try:
        wait_for_api(api, base, log_dir / "api.log")
    except AssertionError as exc:
        pytest.fail(str(exc))


def wait_for_api(api: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 30) -> None:
    """Until gunicorn answers; its log's tail in the error when it exits or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(base + "/api/1/monitoring/version", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        if api.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"gunicorn did not start: {log.read_text()[-3000:]}")
        time.sleep(0.1)


@dataclass
class Tenant:
    name: str
    token: str
    profile_id: str


@pytest.fixture(scope="session")
def tenant(stack: Stack) -> Tenant:
    records = stack.records
    name = "t-" + os.urandom(3).hex()
    records.create_tenant(name)
    token = records.create_token("tests", [{"tenant": name, "allowedActions": ["MANAGE_PROFILES"]}])
    profile = records.create_profile(name, "alice", "alice@example.com", enabled=True)
    return Tenant(name=name, token=token, profile_id=profile.id)
