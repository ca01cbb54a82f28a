"""Metrics follow real uploads through a real API and worker: queue depth rises while no worker
runs and falls when one starts; states, scan outcomes, rejections and latency count up; the
endpoint is closed without the operator's credentials; logs carry the ids end to end."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from core.clamd import ClamdClient, EngineVersion
from core.settings import Settings
from tests.conftest import png_bytes, png_with_chunk
from tests.integration.ops_support import METRICS_TOKEN, OpsStack, json_lines, metric

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ops(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsStack]:
    stack = OpsStack(settings, tmp_path_factory.mktemp("ops-metrics"))
    try:
        stack.start_api()
        yield stack
    finally:
        stack.close()


def test_metrics_follow_uploads_through_the_pipeline(ops: OpsStack, eicar: bytes) -> None:
    m = ops.metrics()
    # Each `== 0` below is a series that is exported and reads zero: metric() fails on a series
    # that is not there, so a renamed or dropped metric cannot pass as "nothing waiting".
    assert metric(m, "attachd_queue_messages", queue="scan") == 0
    assert metric(m, "attachd_workers_online") == 0
    assert metric(m, "attachd_metrics_source_up", source="redis") == 1

    # No worker yet: the uploads wait in the scan queue, and the store says staged.
    names = [f"m{i}.png" for i in range(3)]
    for i, name in enumerate(names):
        assert ops.upload(name, png_bytes(16 + i, 16)).status_code == 200
    # Waiting ages them: until the oldest message and the stalled uploads read a second.
    deadline = time.monotonic() + 15
    while (
        metric(m := ops.metrics(), "attachd_queue_oldest_message_age_seconds", queue="scan") < 1.0
        or metric(m, "attachd_uploads_stalled_seconds", state="staged") < 1.0
    ):
        assert time.monotonic() < deadline, "the waiting uploads never aged a second"
        time.sleep(0.1)
    assert metric(m, "attachd_queue_messages", queue="scan") == 3
    assert metric(m, "attachd_uploads", state="staged") == 3
    assert metric(m, "attachd_queue_consumers", queue="scan") == 0

    # A worker starts: the queue drains and everything is attached, scanned clean, timed.
    node = ops.start_worker("metrics")
    try:
        for name in names:
            assert ops.wait(ops.upload_id(name)) == "attached"
        assert ops.upload("bad.png", png_with_chunk(eicar)).status_code == 200
        assert ops.upload("poly.png", png_bytes() + b"<script>alert(1)</script>").status_code in (
            200,
            415,
        )
        assert ops.upload("notes.txt", b"hello").status_code == 415
        assert ops.wait(ops.upload_id("bad.png")) == "infected"
        poly = ops.records.find_attachment(ops.profile_id, "poly")
        if poly is not None:  # the API's head check may already refuse it (415)
            ops.wait(ops.upload_id("poly.png"))
        deadline = time.monotonic() + 15
        while metric(m := ops.metrics(), "attachd_workers_online") < 1:
            assert time.monotonic() < deadline, "the worker's heartbeat never showed"
            time.sleep(0.5)
    finally:
        ops.stop_worker(node)

    assert metric(m, "attachd_queue_messages", queue="scan") == 0
    assert metric(m, "attachd_queue_oldest_message_age_seconds", queue="scan") == 0
    assert metric(m, "attachd_uploads", state="staged") == 0
    assert metric(m, "attachd_uploads", state="attached") == 3
    assert metric(m, "attachd_uploads", state="infected") == 1
    assert metric(m, "attachd_queue_consumers", queue="scan") == 1
    assert metric(m, "attachd_scan_outcomes_total", outcome="clean") >= 3
    assert metric(m, "attachd_scan_outcomes_total", outcome="infected") == 1
    assert (
        metric(m, "attachd_upload_transitions_total", **{"from": "verifying", "to": "attached"})
        == 3
    )
    # Every move is counted, one at a time: the infected file went staged → scanning → infected.
    assert (
        metric(m, "attachd_upload_transitions_total", **{"from": "scanning", "to": "infected"}) == 1
    )
    entered = 4 + (poly is not None)  # three clean, the infected one, and poly if accepted
    assert (
        metric(m, "attachd_upload_transitions_total", **{"from": "staged", "to": "scanning"})
        == entered
    )
    assert metric(m, "attachd_upload_latency_seconds_count", state="attached") == 3
    assert metric(m, "attachd_upload_latency_seconds_bucket", state="attached", le="+Inf") == 3
    assert metric(m, "attachd_upload_latency_seconds_count", state="infected") == 1
    assert (
        metric(m, "attachd_typecheck_rejections_total", stage="intake", reason="type_not_allowed")
        == 1
    )
    refusals = "attachd_typecheck_rejections_total"
    rejected = sum(
        v for (name, labels), v in m.items() if name == refusals and ("stage", "verify") in labels
    )
    intake = sum(
        v for (name, labels), v in m.items() if name == refusals and ("stage", "intake") in labels
    )
    assert rejected + intake == 2  # notes.txt, and poly.png at whichever stage refused it
    assert rejected == metric(m, "attachd_uploads", state="rejected")
    # The signature version is clamd's own (the shipped test database is daily.cud version 1;
    # a database of bare signature files reports none, and then no version or age is exported).
    reply = ClamdClient(ops.settings.clamd_host, ops.settings.clamd_port).version()
    version = EngineVersion.parse(reply).signatures
    if version is None:
        assert ("attachd_clamd_signature_version", ()) not in m
    else:
        assert metric(m, "attachd_clamd_signature_version") == version
        assert ("attachd_clamd_signature_age_seconds", ()) in m
    assert any(name == "attachd_clamd_info" for name, _ in m)

    # The workers are gone; the store and Redis remember: a fresh API process says the same.
    assert metric(ops.metrics(), "attachd_scan_outcomes_total", outcome="infected") == 1


def test_metrics_need_the_operator_or_the_metrics_token(ops: OpsStack) -> None:
    url = ops.base_url + "/metrics"
    anonymous = requests.get(url, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(url, auth=(ops.auth[0], "wrong"), timeout=10).status_code == 401
    # The right password under another user's name opens nothing either, here or on the
    # dashboard: both halves of the pair are checked.
    wrong_user = ("not-" + ops.auth[0], ops.auth[1])
    assert requests.get(url, auth=wrong_user, timeout=10).status_code == 401
    dashboard = ops.base_url + "/ops/dashboard"
    assert requests.get(dashboard, auth=wrong_user, timeout=10).status_code == 401
    assert requests.get(dashboard, auth=ops.auth, timeout=10).status_code == 200
    assert requests.get(url, auth=ops.auth, timeout=10).status_code == 200
    bearer = requests.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert bearer.status_code == 200
    assert "attachd_uploads" in bearer.text
    assert (
        requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401
    )
    # The token opens /metrics only, not the dashboard.
    dash = requests.get(
        ops.base_url + "/ops/dashboard",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=10,
    )
    assert dash.status_code == 401


def test_every_log_line_of_a_task_carries_the_request_upload_and_task_ids(ops: OpsStack) -> None:
    node = ops.start_worker("logs")
    try:
        resp = ops.upload("traced.png", png_bytes(9, 9))
        assert resp.status_code == 200
        request_id = resp.headers["X-Request-ID"]
        upload_id = ops.upload_id("traced.png")
        assert ops.wait(upload_id) == "attached"
        time.sleep(0.5)  # the last task's final lines
    finally:
        ops.stop_worker(node)
    lines = json_lines(ops.log_of(node))
    # This worker did nothing but this upload: every line after its start-up is about it. None
    # is filtered out by the ids asserted, only Celery's "received" line is let off the upload
    # and request ids: the consumer logs it before the task runs, knowing only the task.
    ready = next(i for i, line in enumerate(lines) if line["msg"].endswith(" ready."))
    mine = lines[ready + 1 :]
    tasks = {line.get("task") for line in mine}
    # A small file's verify and attach run inside its scan task (workers/fused.py).
    assert tasks == {"attachd.scan"}, mine
    assert any("verified" in line["msg"] for line in mine), mine
    assert any("attached" in line["msg"] for line in mine), mine
    for line in mine:
        assert line.get("task") and line.get("task_id"), line
        if re.fullmatch(r"Task attachd\.\w+\[[0-9a-f-]+\] received", line["msg"]):
            continue
        assert line.get("upload_id") == upload_id, line
        assert line.get("request_id") == request_id, line
    # Celery's own "succeeded" line is among them: one task did the whole job.
    assert sum("succeeded" in line["msg"] for line in mine) == 1
    api_lines = json_lines(Path(ops.workdir / "api.log"))
    access = [line for line in api_lines if line.get("request_id") == request_id]
    assert access and access[-1]["status"].startswith("200"), access
    assert "accessTokenId" not in "".join(str(line) for line in api_lines)
