"""A small file's whole job in one task (workers/fused.py): the same steps, run in one process
on one read of the object, leaving no next step to publish; larger files keep the three
queues."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.domain import State
from core.errors import ServiceUnavailable
from core.tasks import TaskName
from tests.conftest import EICAR, png_bytes, png_with_chunk
from tests.unit.test_pipeline import World
from workers.fused import SmallFiles
from workers.pipeline import StepResult


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def small(world: World, max_size: int = 1 << 20) -> SmallFiles:
    return SmallFiles(world.pipeline, max_size)


def test_a_small_clean_file_is_attached_in_one_run_reading_its_object_once(world: World) -> None:
    uid = world.stage(png_bytes(12, 12))
    # Nothing left to publish: verify and attach ran here.
    assert small(world).scan(uid) == StepResult(State.ATTACHED, None)
    assert world.state(uid) == State.ATTACHED
    assert world.objects.reads == 1  # scan and type check read the same bytes
    assert world.objects.keys("staging") == []
    assert len(world.objects.keys("attachments")) == 1


def test_a_small_infected_file_stops_at_the_scan(world: World) -> None:
    uid = world.stage(png_with_chunk(EICAR))
    assert small(world).scan(uid) == StepResult(State.INFECTED, None)
    assert world.objects.keys("attachments") == []


def test_a_small_file_refused_by_the_type_check_is_rejected(world: World) -> None:
    uid = world.stage(b"GIF89a" + b"\0" * 64)  # named .png, content of another type
    assert small(world).scan(uid) == StepResult(State.REJECTED, None)
    assert world.objects.keys("staging") == []


def test_a_file_over_the_threshold_takes_the_queues(world: World) -> None:
    data = png_bytes(40, 40)
    uid = world.stage(data)
    assert small(world, max_size=len(data) - 1).scan(uid) == StepResult(
        State.VERIFYING, TaskName.VERIFY
    )


def test_a_retry_goes_on_from_where_the_upload_stands(world: World) -> None:
    uid = world.stage(png_bytes(12, 12))
    world.scanner.down = True
    with pytest.raises(ServiceUnavailable):  # the task retries this, with backoff
        small(world).scan(uid)
    assert world.state(uid) == State.SCANNING
    world.scanner.down = False
    assert small(world).scan(uid) == StepResult(State.ATTACHED, None)
    before = world.records.get_upload(uid)
    # Delivered again once done: nothing moves, nothing is left to send.
    assert small(world).scan(uid) == StepResult(State.ATTACHED, None)
    assert world.records.get_upload(uid) == before


def test_an_upload_verified_by_the_queues_is_attached_by_a_late_scan_delivery(world: World) -> None:
    uid = world.stage(png_bytes(12, 12))
    world.pipeline.scan(uid)
    world.pipeline.verify(uid)
    assert small(world).scan(uid) == StepResult(State.ATTACHED, None)
