"""Flower as `make run` and docker-compose start it: `attachd flower`, with basic auth from
settings and its state kept on disk."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from core.settings import Settings
from tests.conftest import REPO, _free_port
from tests.integration.conftest import settings_env

pytestmark = pytest.mark.integration


def test_flower_answers_only_with_the_configured_credentials(
    settings: Settings, tmp_path: Path
) -> None:
    s = replace(
        settings,
        var_dir=tmp_path,
        flower_port=_free_port(),
        flower_user="fl",
        flower_password="fl-secret",
    )
    env = settings_env(s)
    log = tmp_path / "flower.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "attachd"), "flower"],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{s.flower_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = requests.get(base + "/workers", timeout=1)
                break
            except requests.RequestException:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        assert resp.status_code == 401
        assert requests.get(base + "/workers", auth=("fl", "wrong"), timeout=5).status_code == 401
        assert requests.get(base + "/workers", auth=("fl", "fl-secret"), timeout=5).ok
        # Issue 23: a page of another site cannot drive Flower's POST API with the credentials
        # a browser caches for basic auth (Flower 2.2 checks Fetch metadata and Origin; older
        # Flowers had no CSRF check at all, hence flower>=2.2 in pyproject.toml).
        target = base + "/api/worker/shutdown/nobody@nowhere"
        for headers in (
            {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
            {"Origin": "https://evil.example"},
            {"Sec-Fetch-Site": "same-site"},  # another port of this host: the API's pages
        ):
            forged = requests.post(target, auth=("fl", "fl-secret"), headers=headers, timeout=5)
            assert forged.status_code == 403, (headers, forged.status_code)
        own = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
        mine = requests.post(target, auth=("fl", "fl-secret"), headers=own, timeout=10)
        assert mine.status_code == 404, mine.text  # through the check: no such worker
        # The running process's own argv, as `ps` shows it to every user of the machine: it is
        # Flower's (attachd flower execs it) and holds no password.
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert any(b"flower" in arg for arg in cmdline[1:]), cmdline
        assert not [arg for arg in cmdline if b"fl-secret" in arg], cmdline
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # Persistent: its state file is under the var dir.
    assert any(p.name.startswith("flower.db") for p in tmp_path.iterdir())


def test_flower_refuses_an_open_network_address_without_a_password(
    settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(
        replace(
            settings,
            var_dir=tmp_path,
            flower_host="0.0.0.0",  # noqa: S104 - refused, never bound
            flower_user="",
            flower_password="",
        )
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "attachd"), "flower"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ATTACHD_FLOWER_PASSWORD" in done.stderr
