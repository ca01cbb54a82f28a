"""The pipeline's step logic with small fakes passed in through the constructor: an in-memory
object store and a scripted scanner, over an embedded SQLite record store."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clamd import ScanResult
from core.domain import State
from core.errors import ScanLimitExceeded, ServiceUnavailable
from core.tasks import Dispatch, Lane, TaskName
from storage.migrate import upgrade
from storage.objects import staging_key
from storage.records import RecordStore
from tests.conftest import EICAR, png_bytes
from tests.fakes import FakeObjects
from workers.pipeline import Limits, Pipeline, StepResult
from workers.rescan import Rescans
from workers.upkeep import Upkeep


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
        # What was handed to the workers: (task, target) in order, and every message whole.
        self.sent: list[tuple[str, str]] = []
        self.dispatched: list[Dispatch] = []
        self.pipeline = Pipeline(
            self.records,
            self.objects,  # type: ignore[arg-type]
            self.scanner,  # type: ignore[arg-type]
            Limits(max_image_pixels=10_000_000, max_svg_size=1 << 20, reconcile_after_seconds=0),
        )
        self.steps = Driver(self)
        self.upkeep = Upkeep(self.pipeline, self.dispatch)
        self.rescans = Rescans(self.pipeline, self.dispatch)
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

    def dispatch(self, message: Dispatch) -> None:
        self.dispatched.append(message)
        self.sent.append((message.task, message.target))

    def run(self, upload_id: str) -> str | None:
        """Drive the steps the way the queues would, following what each step sends."""
        steps = {
            TaskName.SCAN: self.steps.scan,
            TaskName.VERIFY: self.steps.verify,
            TaskName.ATTACH: self.steps.attach,
        }
        self.sent.clear()
        state = self.steps.scan(upload_id)
        while self.sent:
            task, uid = self.sent.pop(0)
            state = steps[task](uid)
        return state

    def state(self, upload_id: str) -> str:
        up = self.records.get_upload(upload_id)
        assert up is not None
        return up.state


class Driver:
    """Runs a step as the task layer does: the step it says comes next is sent."""

    def __init__(self, world: World) -> None:
        self.world = world

    def _run(self, result: StepResult, upload_id: str) -> State | None:
        if result.then is not None:
            self.world.dispatch(Dispatch(result.then, upload_id))
        return result.state

    def scan(self, upload_id: str) -> State | None:
        return self._run(self.world.pipeline.scan(upload_id), upload_id)

    def verify(self, upload_id: str) -> State | None:
        return self._run(self.world.pipeline.verify(upload_id), upload_id)

    def attach(self, upload_id: str) -> State | None:
        return self._run(self.world.pipeline.attach(upload_id), upload_id)

    def rescan_file(self, upload_id: str) -> State | None:
        return self._run(self.world.rescans.rescan_file(upload_id), upload_id)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_clean_image_goes_all_the_way(world: World) -> None:
    uid = world.stage(png_bytes())
    assert world.steps.scan(uid) == State.VERIFYING
    assert world.sent == [(TaskName.VERIFY, uid)]
    assert world.steps.verify(uid) == State.VERIFYING
    assert world.sent[-1] == (TaskName.ATTACH, uid)
    assert world.steps.attach(uid) == State.ATTACHED
    up = world.records.get_upload(uid)
    assert up is not None and up.signature_version == 1 and up.detected_type == "image/png"
    assert world.objects.keys("staging") == []
    assert world.objects.keys("attachments") == [up.object_key]


def test_a_step_returns_the_step_that_comes_next_and_sends_nothing(world: World) -> None:
    uid = world.stage(png_bytes())
    assert world.pipeline.scan(uid) == StepResult(State.VERIFYING, TaskName.VERIFY)
    assert world.pipeline.verify(uid) == StepResult(State.VERIFYING, TaskName.ATTACH)
    assert world.pipeline.attach(uid) == StepResult(State.ATTACHED, None)
    assert world.sent == []


def test_steps_delivered_again_change_nothing(world: World) -> None:
    uid = world.stage(png_bytes())
    world.run(uid)
    before = world.records.get_upload(uid)
    world.sent.clear()
    for step in (world.steps.scan, world.steps.verify, world.steps.attach):
        assert step(uid) == State.ATTACHED
    assert world.sent == [] and world.records.get_upload(uid) == before


def test_infected_is_quarantined_with_tags_and_never_attached(world: World) -> None:
    uid = world.stage(png_bytes() + EICAR)
    assert world.steps.scan(uid) == State.INFECTED
    up = world.records.get_upload(uid)
    assert up is not None and up.signature == "Test.Sig" and up.staging_key is None
    assert world.objects.tags[("quarantine", uid)]["result"] == "infected"
    assert world.objects.keys("staging") == [] and world.objects.keys("attachments") == []
    assert world.sent == []


def test_over_the_scanners_limit_is_rejected_not_clean(world: World) -> None:
    world.scanner.limit = 10
    uid = world.stage(png_bytes())
    assert world.steps.scan(uid) == State.REJECTED
    assert "too large to scan" in (world.records.get_upload(uid).reason or "")


def test_scanner_down_propagates_for_the_task_to_retry(world: World) -> None:
    world.scanner.down = True
    uid = world.stage(png_bytes())
    with pytest.raises(ServiceUnavailable):
        world.steps.scan(uid)
    assert world.state(uid) == State.SCANNING
    world.scanner.down = False
    assert world.run(uid) == State.ATTACHED


def test_missing_staged_file_fails_and_operator_retry_needs_the_file(world: World) -> None:
    uid = world.stage(png_bytes())
    data = world.objects.data.pop(("staging", staging_key(uid)))
    assert world.steps.scan(uid) == State.FAILED
    assert world.upkeep.retry(uid) is False
    world.objects.data[("staging", staging_key(uid))] = data
    assert world.upkeep.retry(uid) is True and world.sent == [(TaskName.SCAN, uid)]
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
        world.steps.scan(uid)
        world.steps.verify(uid)
    assert world.steps.attach(second) == State.ATTACHED
    assert world.steps.attach(first) == State.SUPERSEDED
    up = world.records.get_upload(second)
    assert up is not None
    assert world.records.get_attachment(up.attachment_id).current_upload_id == second
    assert world.objects.keys("attachments") == [up.object_key]


def test_reconcile_resends_each_stuck_upload_to_its_next_step(world: World) -> None:
    staged = world.stage(png_bytes(), name="a")
    scanned = world.stage(png_bytes(), name="b")
    world.steps.scan(scanned)
    verified = world.stage(png_bytes(), name="c")
    world.steps.scan(verified)
    world.steps.verify(verified)
    world.sent.clear()
    result = world.upkeep.reconcile()
    assert result["resent"] == 3
    assert sorted(world.sent) == sorted(
        [(TaskName.SCAN, staged), (TaskName.VERIFY, scanned), (TaskName.ATTACH, verified)]
    )
    # Behind new uploads: a re-send may duplicate a message still waiting in the queue.
    assert {m.lane for m in world.dispatched[-3:]} == {Lane.BACKLOG}


def test_reconcile_gives_up_after_the_maximum_resends(world: World) -> None:
    uid = world.stage(png_bytes())
    for _ in range(world.pipeline.limits.max_resends):
        world.upkeep.reconcile()
    assert world.state(uid) == State.STAGED
    assert world.upkeep.reconcile()["failed"] == 1
    assert world.state(uid) == State.FAILED


def test_rescan_after_a_signature_update_detaches_a_new_detection(world: World) -> None:
    marker = b"<<later-known-bad>>"
    uid = world.stage(png_bytes())
    world.run(uid)
    up = world.records.get_upload(uid)
    assert up is not None
    # Bytes only tomorrow's signatures recognise (the fake scanner looks for the marker).
    world.objects.data[("attachments", up.object_key)] = png_bytes() + marker
    assert world.rescans.rescan() == 0  # same signatures: nothing to do
    world.scanner.signatures, world.scanner.extra = 2, marker
    assert world.rescans.rescan() == 1 and world.sent == [(TaskName.RESCAN_FILE, uid)]
    assert world.dispatched[-1].lane == Lane.BULK  # never ahead of anyone's upload
    assert world.rescans.rescan() == 0
    assert world.steps.rescan_file(uid) == State.INFECTED
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
    assert world.upkeep.reconcile()["resent"] == 1  # 30 s without moving: re-sent
    assert world.upkeep.reconcile()["resent"] == 0  # still queued behind others: wait
    now[0] += timedelta(seconds=19)
    assert world.upkeep.reconcile()["resent"] == 0  # the 1st re-send waits 10 * 2**1 s
    now[0] += timedelta(seconds=2)
    assert world.upkeep.reconcile()["resent"] == 1
    up = world.records.get_upload(uid)
    assert up is not None and up.attempts == 2 and up.state == State.STAGED
    world.steps.scan(uid)  # it moved: the count starts again
    moved = world.records.get_upload(uid)
    assert moved is not None and moved.attempts == 0 and moved.resend_after is None
