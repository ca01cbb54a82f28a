"""The fleet commands against real workers: status lists them and their queues, a drained worker
takes nothing new and loses nothing, a warm shutdown hands back what it holds, and an operator's
retry takes a failed upload to the end of the pipeline."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.conftest import _free_port, png_bytes
from tests.integration.ops_support import OpsStack, metric, wait_consumed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ops(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    stack = OpsStack(settings, tmp_path_factory.mktemp("ops-fleet"))
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()


def fleet_status(ops: OpsStack) -> dict[str, Any]:
    return json.loads(ops.attachd("fleet", "status", "--json", "--timeout", "2").stdout)


def worker_entry(status: dict[str, Any], node: str) -> dict[str, Any]:
    found = [w for w in status["workers"] if w["name"] == node]
    assert found, f"{node} not in {[w['name'] for w in status['workers']]}"
    return found[0]


def depth(status: dict[str, Any], queue: str) -> int:
    return next(q["depth"] for q in status["queues"] if q["name"] == queue)


def test_fleet_status_lists_the_live_worker_and_its_queues(ops: OpsStack) -> None:
    node = ops.start_worker("status", queues="scan,verify", concurrency=1)
    try:
        entry = worker_entry(fleet_status(ops), node)
        assert entry["queues"] == ["scan", "verify"]
        assert entry["active"] == [] and entry["reserved"] == []
        assert entry["max_concurrency"] == 1
        human = ops.attachd("fleet", "status").stdout
        assert node in human and "scan,verify" in human
    finally:
        assert ops.stop_worker(node) == 0
    assert all(w["name"] != node for w in fleet_status(ops)["workers"])


def test_a_drained_worker_takes_nothing_new_and_loses_nothing(ops: OpsStack) -> None:
    first = ops.start_worker("drained", concurrency=1)
    second = None
    try:
        # Work in flight while the drain begins: whatever the worker took, it finishes.
        early = [f"early{i}.png" for i in range(4)]
        for name in early:
            assert ops.upload(name, png_bytes(600, 600)).status_code == 200
        drained = ops.attachd("fleet", "drain", first, "--timeout", "60")
        assert "stopped consuming" in drained.stderr
        status = fleet_status(ops)
        entry = worker_entry(status, first)
        assert entry["queues"] == [] and entry["held"] == 0

        # Drained: new uploads wait in the queue rather than go to it.
        late = [f"late{i}.png" for i in range(3)]
        for name in late:
            assert ops.upload(name, png_bytes(20, 20)).status_code == 200
        # Observed, not slept on: the messages sit in the queue while the drained worker, still
        # online and answering, holds nothing.
        deadline = time.monotonic() + 15
        while depth(status := fleet_status(ops), "scan") < len(late):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert worker_entry(status, first)["held"] == 0
        late_ids = [ops.upload_id(name) for name in late]
        assert all(ops.records.get_upload(u).state == "staged" for u in late_ids)

        # Another worker picks everything up: every upload ends, none is lost.
        second = ops.start_worker("relief", concurrency=2)
        for name in early + late:
            assert ops.wait(ops.upload_id(name)) == "attached", name
        worker_log = ops.log_of(first).read_text()
        assert not any(u in worker_log for u in late_ids)

        # Resume puts it back to work on the queues it started with.
        ops.attachd("fleet", "resume", first)
        assert worker_entry(fleet_status(ops), first)["queues"] == [
            "attach",
            "maintenance",
            "scan",
            "verify",
        ]
    finally:
        assert ops.stop_worker(first) == 0
        if second is not None:
            assert ops.stop_worker(second) == 0


def test_drain_with_shutdown_stops_the_worker_warm(ops: OpsStack) -> None:
    node = ops.start_worker("leaving", concurrency=1)
    proc = ops.workers[node]
    ops.attachd("fleet", "drain", node, "--shutdown")
    assert proc.wait(timeout=30) == 0
    del ops.workers[node]


def _closed_port() -> int:
    port = _free_port()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    return port


def test_warm_shutdown_hands_back_a_task_waiting_for_its_retry(ops: OpsStack) -> None:
    # This worker's clamd does not answer: the scan is retried with a countdown, and in between
    # the worker holds the retry (a scheduled task, delivered and unacknowledged).
    env = dict(ops.env, ATTACHD_CLAMD_PORT=str(_closed_port()))
    blind = ops.start_worker("blind", queues="scan", concurrency=1, env=env)
    try:
        assert ops.upload("held.png", png_bytes(12, 12)).status_code == 200
        upload_id = ops.upload_id("held.png")
        deadline = time.monotonic() + 30
        while not worker_entry(fleet_status(ops), blind)["scheduled"]:
            assert time.monotonic() < deadline, "the retry was never held by the worker"
            time.sleep(0.3)
        assert metric(ops.metrics(), "attachd_scan_outcomes_total", outcome="error") >= 1
    finally:
        assert ops.stop_worker(blind) == 0
    # Handed back: waiting in the queue again, the upload not failed.
    status = fleet_status(ops)
    assert depth(status, "scan") == 1
    assert ops.records.get_upload(upload_id).state in ("staged", "scanning")
    sighted = ops.start_worker("sighted", concurrency=1)
    try:
        assert ops.wait(upload_id) == "attached"
    finally:
        assert ops.stop_worker(sighted) == 0


def test_uploads_retry_takes_a_failed_upload_to_a_terminal_state(ops: OpsStack) -> None:
    assert ops.upload("gaveup.png", png_bytes(14, 14)).status_code == 200
    upload_id = ops.upload_id("gaveup.png")
    # What a worker records after its last retry (clamd down for minutes); the staged file stays.
    assert ops.records.transition(upload_id, "staged", "failed", reason="scan gave up (test)")
    listed = ops.attachd("uploads", "list", "--state", "failed").stdout
    assert upload_id in listed
    node = ops.start_worker("retry", concurrency=1)
    try:
        # The original message is harmless: the scan takes it, finds the upload failed, and
        # does nothing.
        wait_consumed(ops.settings.redis_url)
        assert ops.records.get_upload(upload_id).state == "failed"
        done = ops.attachd("uploads", "retry", upload_id)
        assert "1 of 1" in done.stderr
        assert ops.wait(upload_id) == "attached"
        shown = json.loads(ops.attachd("uploads", "show", upload_id).stdout)
        assert shown["state"] == "attached" and shown["reason"] is None
    finally:
        assert ops.stop_worker(node) == 0


def test_attachd_worker_runs_a_pool_per_queue_group_and_stops_them_warm(ops: OpsStack) -> None:
    import signal
    import subprocess

    env = dict(ops.env, ATTACHD_WORKER_POOLS="scan=1-2,verify=1,attach+maintenance=1")
    name = "pools" + str(int(time.time()))
    log = ops.workdir / "pools.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [str(ops_bin() / "attachd"), "worker", "--name", name],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            mine = {
                w["name"].split("@")[0]: w
                for w in fleet_status(ops)["workers"]
                if f".{name}@" in w["name"]
            }
            if len(mine) == 3:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"pools seen: {sorted(mine)}"
            time.sleep(0.5)
        assert mine[f"scan.{name}"]["queues"] == ["scan"]
        assert mine[f"verify.{name}"]["queues"] == ["verify"]
        assert mine[f"attach-maintenance.{name}"]["queues"] == ["attach", "maintenance"]
        assert mine[f"verify.{name}"]["max_concurrency"] == 1
        assert ops.upload("pooled.png", png_bytes(30, 30)).status_code == 200
        assert ops.wait(ops.upload_id("pooled.png")) == "attached"
        pids = {w["pid"] for w in mine.values()}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]
    for pid in pids:  # every pool's worker exited with the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def ops_bin() -> Path:
    return Path(sys.executable).parent
