"""The real stack for integration tests: a gunicorn API and a Celery worker as subprocesses
(started and stopped by attachd.stack, as `make run` starts them), against the real Redis,
MinIO and clamd, with this session's buckets and database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from attachd.stack import (
    Component,
    StackError,
    api_ready,
    file_tail,
    log_says,
    spawn,
    stop,
    wait_ready,
    workers_ready,
)
from attachd.stack import Stack as ProcessStack
from core.settings import Settings
from storage.migrate import upgrade
from storage.records import RecordStore


def settings_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, tuple):
            value = ",".join(map(str, value))
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
    return spawn(cmd, env, log)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop([proc], timeout=20)


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
    bindir = Path(sys.executable).parent
    worker = Component(
        "worker",
        (
            str(bindir / "celery"),
            "-A",
            "workers.app",
            "worker",
            "--loglevel=INFO",
            "-Q",
            "scan,verify,attach,maintenance,webhooks",
            "--concurrency=2",
            f"--hostname=test-{os.getpid()}@%h",
        ),
        workers_ready(settings.redis_url),
    )
    processes = ProcessStack(
        env, ("api", worker), log_dir=log_dir, start_timeout=30, stop_timeout=20
    )
    try:
        processes.start()
    except StackError as exc:
        # A worker that failed to import fails the session at once, not as a 30 s timeout in
        # the first test that waits for a state.
        pytest.fail(str(exc))
    try:
        yield Stack(
            settings=settings,
            records=records,
            base_url=processes.base_url,
            env=processes.env,
            log_dir=log_dir,
        )
    finally:
        processes.stop()


def wait_for_worker(worker: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """A worker that failed to import must fail the session at once, not as a 30 s timeout in
    the first test that waits for a state."""
    try:
        wait_ready(
            "celery worker", worker, log_says(log, b" ready."), timeout, lambda: file_tail(log)
        )
    except StackError as exc:
        pytest.fail(str(exc))


def _wait_for_api(api: subprocess.Popen[bytes], base: str, log_dir: Path) -> None:
    try:
        wait_for_api(api, base, log_dir / "api.log")
    except AssertionError as exc:
        pytest.fail(str(exc))


def wait_for_api(api: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 30) -> None:
    """Until gunicorn answers; its log's tail in the error when it exits or never answers."""
    try:
        wait_ready("gunicorn", api, api_ready(base), timeout, lambda: file_tail(log))
    except StackError as exc:
        raise AssertionError(str(exc)) from None


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
