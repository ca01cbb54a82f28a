"""Nothing lost, nothing clean without a scan: the pipeline under duplicate delivery, a killed
worker, an emptied broker, a stopped clamd, clamd's limits and a signature update."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.errors import ScanLimitExceeded
from core.settings import Settings
from core.tasks import TaskName
from tests.conftest import png_bytes
from tests.integration.ops_support import wait_consumed
from tests.integration.pipeline_support import PrivateStack
from tests.integration.sdk_support import object_tags, put_bytes

pytestmark = pytest.mark.integration


@pytest.fixture
def private(settings: Settings, tmp_path: Path) -> Iterator[PrivateStack]:
    stack = PrivateStack(settings, tmp_path)
    stack.start_clamd()
    try:
        yield stack
    finally:
        stack.close()


def noise_png(width: int, height: int) -> bytes:
    """Incompressible pixels, so the file is as large as the image."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, "PNG")
    return buf.getvalue()


def attachments_keys(stack: PrivateStack) -> list[str]:
    return [k for k, _ in stack.objects.list_keys(stack.settings.bucket_attachments)]


def test_every_task_delivered_twice_attaches_once(private: PrivateStack) -> None:
    profile = private.profile()
    data = png_bytes(20, 20)
    upload_id = private.submit("twice.png", data, "image/png", profile)
    private.send(TaskName.SCAN, upload_id)  # the scan message, delivered a second time
    private.start_worker()
    assert private.wait(upload_id) == "attached"
    for task in (
        TaskName.SCAN,
        TaskName.VERIFY,
        TaskName.ATTACH,
        TaskName.SCAN,
        TaskName.VERIFY,
        TaskName.ATTACH,
    ):
        private.send(task, upload_id)
    # Every duplicate taken and finished (acks are late): each found the work done.
    wait_consumed(private.settings.redis_url)
    up = private.records.get_upload(upload_id)
    assert up is not None and up.state == "attached"
    attachment = private.records.get_attachment(up.attachment_id)
    assert attachment is not None and attachment.current_upload_id == upload_id
    assert attachments_keys(private) == [up.object_key]
    assert list(private.objects.list_keys(private.settings.bucket_staging)) == []
    assert (
        b"".join(private.objects.iter_range(private.settings.bucket_attachments, up.object_key))
        == data
    )


def test_worker_killed_mid_scan_still_ends_terminal(private: PrivateStack) -> None:
    profile = private.profile()
    # Large enough that the scan takes a while, so the kill lands inside it.
    big = noise_png(6000, 6000)
    private.start_worker(concurrency=1)
    upload_id = private.submit("big.png", big, "image/png", profile)
    private.wait(upload_id, ("scanning",), timeout=30)
    children = private.pool_children()
    assert children, "the worker has no pool process"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    assert private.records.get_upload(upload_id).state == "scanning"  # killed inside the scan
    # acks_late + reject_on_worker_lost: the message goes back and a new child finishes the job.
    assert private.wait(upload_id, timeout=120) == "attached"
    up = private.records.get_upload(upload_id)
    assert up is not None and up.scanned_at is not None
    log = private.worker_log.read_text()
    assert "SIGKILL" in log and "WorkerLostError" in log


def test_redis_flushed_with_uploads_pending_all_finish_after_reconcile(
    private: PrivateStack,
) -> None:
    profile = private.profile()
    ids = [private.submit(f"p{i}.png", png_bytes(8 + i, 8), "image/png", profile) for i in range(5)]
    private.flush_broker()  # the broker restarted empty: the scan messages are gone
    private.start_worker()
    # Nothing queued, nothing held: no message is left that could move them.
    wait_consumed(private.settings.redis_url)
    assert {private.records.get_upload(i).state for i in ids} == {"staged"}
    result = private.works.upkeep.reconcile()
    assert result["resent"] == 5
    assert [private.wait(i) for i in ids] == ["attached"] * 5


def test_clamd_stopped_uploads_wait_and_finish_when_it_is_back(private: PrivateStack) -> None:
    profile = private.profile()
    private.start_worker()
    private.stop_clamd()
    upload_id = private.submit("wait.png", png_bytes(), "image/png", profile)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        state = private.records.get_upload(upload_id).state
        assert state in ("staged", "scanning"), f"went {state} without clamd"
        time.sleep(0.1)
    private.start_clamd()
    assert private.wait(upload_id, timeout=90) == "attached"


def test_over_clamds_limits_is_rejected_never_clean(private: PrivateStack) -> None:
    private.stop_clamd()
    private.start_clamd(max_size="1M")
    profile = private.profile()
    private.start_worker()
    upload_id = private.submit("large.png", noise_png(800, 800), "image/png", profile)
    assert private.wait(upload_id) == "rejected"
    up = private.records.get_upload(upload_id)
    assert up is not None and up.reason and "too large to scan" in up.reason
    assert attachments_keys(private) == []
    # clamd answers and closes mid-stream; the answer must never be lost to the reset that
    # follows (which would turn a verdict into retries and, in the end, `failed`).
    for _ in range(25):
        with pytest.raises(ScanLimitExceeded):
            private.clamd.instream(iter([os.urandom(1024 * 1024)] * 4))


def test_signature_added_after_attach_rescan_quarantines(private: PrivateStack) -> None:
    profile = private.profile()
    marker = os.urandom(16).hex().encode()
    # A clean image now, whose pixels are the marker's bytes: a row of an uncompressed BMP, which
    # the sanitize step serves as it is (a marker in a PNG text chunk would be stripped away).
    buf = io.BytesIO()
    Image.frombytes("L", (len(marker), 1), marker).save(buf, "BMP")
    data = buf.getvalue()
    private.start_worker()
    upload_id = private.submit("later.bmp", data, "image/bmp", profile)
    assert private.wait(upload_id) == "attached"
    before = private.records.get_upload(upload_id)
    assert before is not None and before.signature_version == 1

    # ...until a signature update (version 2) learns to recognise it.
    sig = private.workdir / "new.ndb"
    sig.write_text(f"Attachd.Test.Marker:0:*:{marker.hex()}\n")
    private.publish_signatures(2, sig)
    assert private.works.rescans.rescan() == 1
    assert private.works.rescans.rescan() == 0  # queued once per version
    assert private.wait(upload_id, ("infected",), timeout=60) == "infected"

    up = private.records.get_upload(upload_id)
    assert up is not None
    assert up.reason and "rescan" in up.reason and "Attachd.Test.Marker" in up.reason
    assert up.signature_version == 2 and up.object_key is None
    assert private.records.get_attachment(up.attachment_id).current_upload_id is None
    assert attachments_keys(private) == []
    tags = object_tags(private.objects, private.settings.bucket_quarantine, up.quarantine_key)
    assert tags["result"] == "infected"


def test_reconcile_deletes_staged_objects_without_a_record(private: PrivateStack) -> None:
    profile = private.profile()
    private.start_worker()
    kept = private.submit("kept.png", png_bytes(), "image/png", profile)
    assert private.wait(kept) == "attached"
    bucket = private.settings.bucket_staging
    put_bytes(private.objects, bucket, "uploads/orphan", b"left by a crashed request", "x/y")
    private.stop_worker()
    pending = private.submit("pending.png", png_bytes(), "image/png", profile)
    result = private.works.upkeep.reconcile()
    assert result["orphans_deleted"] == 1
    assert [k for k, _ in private.objects.list_keys(bucket)] == [f"uploads/{pending}"]


def test_staging_has_a_lifecycle_rule_as_the_last_backstop(private: PrivateStack) -> None:
    config = private.objects.client.get_bucket_lifecycle(private.settings.bucket_staging)
    assert config is not None
    [rule] = config.rules
    assert rule.status == "Enabled" and rule.expiration.days == 1
