"""The pipeline's step logic with small fakes passed in through the constructor: an in-memory
object store and a scripted scanner, over an embedded SQLite record store."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clamd import ScanResult
from core.domain import State
from core.errors import ObjectMissing, ScanLimitExceeded, ServiceUnavailable
from core.tasks import TaskName
from storage.migrate import upgrade
from storage.objects import Buckets, staging_key
from storage.records import RecordStore
from tests.conftest import EICAR, png_bytes
from workers.pipeline import Limits, Pipeline


class FakeObjects:
    def __init__(self) -> None:
        self.buckets = Buckets("staging", "attachments", "quarantine")
        self.data: dict[tuple[str, str], bytes] = {}
        self.tags: dict[tuple[str, str], dict[str, str]] = {}
        # GETs of object contents, and the objects `holding` keeps in memory meanwhile.
        self.reads = 0
        self.held: set[tuple[str, str]] = set()

    def _get(self, bucket: str, key: str) -> bytes:
        if (bucket, key) not in self.data:
            raise ObjectMissing(key)
        if (bucket, key) not in self.held:
            self.reads += 1
        return self.data[(bucket, key)]

    @contextmanager
    def holding(self, bucket: str, key: str, size: int) -> Iterator[None]:
        self._get(bucket, key)
        self.held.add((bucket, key))
        try:
            yield
        finally:
            self.held.discard((bucket, key))

    def copy(
        self, sb: str, sk: str, db: str, dk: str, *, tags: dict[str, str] | None = None
    ) -> None:
        if (sb, sk) not in self.data:
            raise ObjectMissing(sk)
        self.data[(db, dk)] = self.data[(sb, sk)]
        if tags:
            self.tags[(db, dk)] = tags

    def delete(self, bucket: str, key: str) -> None:
        self.data.pop((bucket, key), None)

    def delete_version(self, bucket: str, key: str) -> None:
        for b, k in list(self.data):
            if b == bucket and (k == key or k.startswith(f"{key}@")):
                del self.data[(b, k)]

    def exists(self, bucket: str, key: str) -> bool:
        return (bucket, key) in self.data

    def iter_range(
        self, bucket: str, key: str, offset: int = 0, length: int = 0
    ) -> Iterator[bytes]:
        yield self._get(bucket, key)

    def open_reader(self, bucket: str, key: str, size: int) -> io.BytesIO:
        return io.BytesIO(self._get(bucket, key))

    def list_keys(self, bucket: str, prefix: str = "") -> Iterator[tuple[str, datetime | None]]:
        old = datetime.now(UTC) - timedelta(days=1)
        for b, k in list(self.data):
            if b == bucket and k.startswith(prefix):
                yield k, old

    def keys(self, bucket: str) -> list[str]:
        return sorted(k for b, k in self.data if b == bucket)


class FakeScanner:
    """Infected when EICAR is in the stream; `down` makes it unreachable."""

    def __init__(self) -> None:
        self.signatures = 1
        self.down = False
        self.limit: int | None = None
        self.extra: bytes | None = None

    def version(self) -> str:
        return f"ClamAV 1.4.6/{self.signatures}/Fri Nov 27 08:00:00 2026"

    def instream(self, chunks: Iterable[bytes]) -> ScanResult:
        if self.down:
            raise ServiceUnavailable("clamd", "connection refused")
        data = b"".join(chunks)
        if self.limit is not None and len(data) > self.limit:
            raise ScanLimitExceeded("INSTREAM size limit exceeded. ERROR")
        found = EICAR in data or (self.extra is not None and self.extra in data)
        return ScanResult(found, "Test.Sig" if found else None, self.version())


class World:
    def __init__(self, tmp: Path) -> None:
        url = f"sqlite:///{tmp / 'p.db'}"
        upgrade(url)
        self.records = RecordStore.from_url(url)
        self.objects = FakeObjects()
        self.scanner = FakeScanner()
        self.sent: list[tuple[str, str]] = []
        self.pipeline = Pipeline(
            self.records,
            self.objects,  # type: ignore[arg-type]
            self.scanner,  # type: ignore[arg-type]
            lambda task, uid: self.sent.append((task, uid)),
            Limits(max_image_pixels=10_000_000, max_svg_size=1 << 20, reconcile_after_seconds=0),
        )
        self.records.create_tenant("t")
        self.profile = self.records.create_profile("t", "u", "u@example.com", enabled=True).id

    def stage(self, data: bytes, name: str = "pic") -> str:
        upload_id = uuid.uuid4().hex
        key = staging_key(upload_id)
        self.objects.data[("staging", key)] = data
        self.records.record_upload(
            upload_id=upload_id,
            profile_id=self.profile,
            file_name=name,
            original_name=name + ".png",
            md5="0" * 32,
            sha256="0" * 64,
            size=len(data),
            declared_type="image/png",
            sniffed_type="image/png",
            staging_key=key,
        )
        return upload_id

    def run(self, upload_id: str) -> str | None:
        """Drive the steps the way the queues would, following what each step sends."""
        steps = {
            TaskName.SCAN: self.pipeline.scan,
            TaskName.VERIFY: self.pipeline.verify,
            TaskName.ATTACH: self.pipeline.attach,
        }
        self.sent.clear()
        state = self.pipeline.scan(upload_id)
        while self.sent:
            task, uid = self.sent.pop(0)
            state = steps[task](uid)
        return state

    def state(self, upload_id: str) -> str:
        up = self.records.get_upload(upload_id)
        assert up is not None
        return up.state


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_clean_image_goes_all_the_way(world: World) -> None:
    uid = world.stage(png_bytes())
    assert world.pipeline.scan(uid) == State.VERIFYING
    assert world.sent == [(TaskName.VERIFY, uid)]
    assert world.pipeline.verify(uid) == State.VERIFYING
    assert world.sent[-1] == (TaskName.ATTACH, uid)
    assert world.pipeline.attach(uid) == State.ATTACHED
    up = world.records.get_upload(uid)
    assert up is not None and up.signature_version == 1 and up.detected_type == "image/png"
    assert world.objects.keys("staging") == []
    assert world.objects.keys("attachments") == [up.object_key]


def test_steps_delivered_again_change_nothing(world: World) -> None:
    uid = world.stage(png_bytes())
    world.run(uid)
    before = world.records.get_upload(uid)
    world.sent.clear()
    for step in (world.pipeline.scan, world.pipeline.verify, world.pipeline.attach):
        assert step(uid) == State.ATTACHED
    assert world.sent == [] and world.records.get_upload(uid) == before


def test_infected_is_quarantined_with_tags_and_never_attached(world: World) -> None:
    uid = world.stage(png_bytes() + EICAR)
    assert world.pipeline.scan(uid) == State.INFECTED
    up = world.records.get_upload(uid)
    assert up is not None and up.signature == "Test.Sig" and up.staging_key is None
    assert world.objects.tags[("quarantine", uid)]["result"] == "infected"
    assert world.objects.keys("staging") == [] and world.objects.keys("attachments") == []
    assert world.sent == []


def test_over_the_scanners_limit_is_rejected_not_clean(world: World) -> None:
    world.scanner.limit = 10
    uid = world.stage(png_bytes())
    assert world.pipeline.scan(uid) == State.REJECTED
    assert "too large to scan" in (world.records.get_upload(uid).reason or "")


def test_scanner_down_propagates_for_the_task_to_retry(world: World) -> None:
    world.scanner.down = True
    uid = world.stage(png_bytes())
    with pytest.raises(ServiceUnavailable):
        world.pipeline.scan(uid)
    assert world.state(uid) == State.SCANNING
    world.scanner.down = False
    assert world.run(uid) == State.ATTACHED


def test_missing_staged_file_fails_and_operator_retry_needs_the_file(world: World) -> None:
    uid = world.stage(png_bytes())
    data = world.objects.data.pop(("staging", staging_key(uid)))
    assert world.pipeline.scan(uid) == State.FAILED
    assert world.pipeline.retry(uid) is False
    world.objects.data[("staging", staging_key(uid))] = data
    assert world.pipeline.retry(uid) is True and world.sent == [(TaskName.SCAN, uid)]
    world.sent.clear()
    assert world.run(uid) == State.ATTACHED


def test_reupload_replaces_the_old_version_only_once_attached(world: World) -> None:
    old = world.stage(png_bytes(), name="avatar")
    world.run(old)
    new = world.stage(png_bytes(9, 9), name="avatar")
    up_old = world.records.get_upload(old)
    assert up_old is not None
    attachment = world.records.get_attachment(up_old.attachment_id)
    assert attachment is not None and attachment.current_upload_id == old  # still served
    assert world.run(new) == State.ATTACHED
    assert world.records.get_attachment(attachment.id).current_upload_id == new
    assert world.state(old) == State.SUPERSEDED
    assert world.objects.keys("attachments") == [world.records.get_upload(new).object_key]


def test_an_infected_reupload_leaves_the_old_version_served(world: World) -> None:
    old = world.stage(png_bytes(), name="avatar")
    world.run(old)
    bad = world.stage(png_bytes() + EICAR, name="avatar")
    assert world.run(bad) == State.INFECTED
    up = world.records.get_upload(old)
    assert up is not None and up.state == State.ATTACHED
    assert world.records.get_attachment(up.attachment_id).current_upload_id == old


def test_an_older_upload_finishing_last_never_replaces_a_newer_one(world: World) -> None:
    first = world.stage(png_bytes(), name="race")
    second = world.stage(png_bytes(7, 7), name="race")
    for uid in (first, second):
        world.pipeline.scan(uid)
        world.pipeline.verify(uid)
    assert world.pipeline.attach(second) == State.ATTACHED
    assert world.pipeline.attach(first) == State.SUPERSEDED
    up = world.records.get_upload(second)
    assert up is not None
    assert world.records.get_attachment(up.attachment_id).current_upload_id == second
    assert world.objects.keys("attachments") == [up.object_key]


def test_reconcile_resends_each_stuck_upload_to_its_next_step(world: World) -> None:
    staged = world.stage(png_bytes(), name="a")
    scanned = world.stage(png_bytes(), name="b")
    world.pipeline.scan(scanned)
    verified = world.stage(png_bytes(), name="c")
    world.pipeline.scan(verified)
    world.pipeline.verify(verified)
    world.sent.clear()
    result = world.pipeline.reconcile()
    assert result["resent"] == 3
    assert sorted(world.sent) == sorted(
        [(TaskName.SCAN, staged), (TaskName.VERIFY, scanned), (TaskName.ATTACH, verified)]
    )


def test_reconcile_gives_up_after_the_maximum_resends(world: World) -> None:
    uid = world.stage(png_bytes())
    for _ in range(world.pipeline.limits.max_resends):
        world.pipeline.reconcile()
    assert world.state(uid) == State.STAGED
    assert world.pipeline.reconcile()["failed"] == 1
    assert world.state(uid) == State.FAILED


def test_rescan_after_a_signature_update_detaches_a_new_detection(world: World) -> None:
    marker = b"<<later-known-bad>>"
    uid = world.stage(png_bytes())
    world.run(uid)
    up = world.records.get_upload(uid)
    assert up is not None
    # Bytes only tomorrow's signatures recognise (the fake scanner looks for the marker).
    world.objects.data[("attachments", up.object_key)] = png_bytes() + marker
    assert world.pipeline.rescan() == 0  # same signatures: nothing to do
    world.scanner.signatures, world.scanner.extra = 2, marker
    assert world.pipeline.rescan() == 1 and world.sent == [(TaskName.RESCAN_FILE, uid)]
    assert world.pipeline.rescan() == 0
    assert world.pipeline.rescan_file(uid) == State.INFECTED
    assert world.records.get_attachment(up.attachment_id).current_upload_id is None
    assert world.objects.keys("attachments") == []
    assert world.objects.keys("quarantine") == [uid]


def test_reconcile_backs_off_so_a_long_queue_is_not_mistaken_for_a_lost_message(
    tmp_path: Path,
) -> None:
    now = [datetime.now(UTC) + timedelta(seconds=30)]
    world = World(tmp_path)
    world.pipeline.limits = Limits(1, 1, reconcile_after_seconds=10)
    world.pipeline.clock = lambda: now[0]
    uid = world.stage(png_bytes())
    assert world.pipeline.reconcile()["resent"] == 1  # 30 s without moving: re-sent
    assert world.pipeline.reconcile()["resent"] == 0  # still queued behind others: wait
    now[0] += timedelta(seconds=19)
    assert world.pipeline.reconcile()["resent"] == 0  # the 1st re-send waits 10 * 2**1 s
    now[0] += timedelta(seconds=2)
    assert world.pipeline.reconcile()["resent"] == 1
    up = world.records.get_upload(uid)
    assert up is not None and up.attempts == 2 and up.state == State.STAGED
    world.pipeline.scan(uid)  # it moved: the count starts again
    moved = world.records.get_upload(uid)
    assert moved is not None and moved.attempts == 0 and moved.resend_after is None
