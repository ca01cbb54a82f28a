"""The attach step with the sanitizer, on the pipeline's fakes (tests/unit/test_pipeline.py): what
lands in the attachments bucket, what is recorded, and that every path that stops serving a
version deletes its renditions with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.domain import Reason, State
from tests import sanitize_samples as samples
from tests.conftest import EICAR
from tests.unit.test_pipeline import World
from workers.sanitize import Bounds, Policy
from workers.sanitize.publish import Options, Outcome, Publisher

BOUNDS = Bounds(10_000_000, 1000, 40_000_000)


class Sanitizing(World):
    def __init__(self, tmp: Path, options: Options) -> None:
        super().__init__(tmp)
        self.counted: list[Outcome] = []
        self.pipeline.publisher = Publisher(
            self.objects,  # type: ignore[arg-type]
            options,
            self.counted.append,
        )


@pytest.fixture
def world(tmp_path: Path) -> Sanitizing:
    return Sanitizing(tmp_path, Options(Policy.STRIP, (16, 64), BOUNDS))


def test_the_sanitized_file_and_its_renditions_are_served_and_recorded(world: Sanitizing) -> None:
    uid = world.stage(samples.texted_png(), name="pic")
    assert world.run(uid) == State.ATTACHED
    up = world.records.get_upload(uid)
    assert up is not None and up.object_key is not None
    assert up.sanitize_steps == "strip"
    served = world.objects.data[("attachments", up.object_key)]
    assert b"Main Street" not in served and up.served.size == len(served)
    # 240x120: 16 and 64 are renditions of their own.
    assert sorted(world.objects.keys("attachments")) == sorted(up.served_keys())
    assert len(up.served_keys()) == 3
    assert [o.changed for o in world.counted] == [True]


def test_a_replaced_version_loses_its_renditions(world: Sanitizing) -> None:
    first = world.stage(samples.plain("PNG"), name="pic")
    world.run(first)
    second = world.stage(samples.plain("PNG", (100, 40)), name="pic")
    world.run(second)
    up = world.records.get_upload(second)
    assert up is not None
    assert sorted(world.objects.keys("attachments")) == sorted(up.served_keys())


def test_an_older_upload_finishing_last_leaves_no_rendition(world: Sanitizing) -> None:
    first = world.stage(samples.plain("PNG"), name="race")
    second = world.stage(samples.plain("PNG", (120, 60)), name="race")
    for uid in (first, second):
        world.steps.scan(uid)
        world.steps.verify(uid)
    assert world.steps.attach(second) == State.ATTACHED
    assert world.steps.attach(first) == State.SUPERSEDED
    up = world.records.get_upload(second)
    assert up is not None
    assert sorted(world.objects.keys("attachments")) == sorted(up.served_keys())


def test_a_rescan_detection_deletes_the_renditions_too(world: Sanitizing) -> None:
    uid = world.stage(samples.plain("PNG"), name="pic")
    world.run(uid)
    world.scanner.extra = b"IEND"  # every PNG ends with it: the next scan finds "malware"
    assert world.steps.rescan_file(uid) == State.INFECTED
    assert world.objects.keys("attachments") == []


def test_unsanitizable_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    world = Sanitizing(tmp_path, Options(Policy.STRIP, (16,), Bounds(100, 10, 400)))
    uid = world.stage(samples.texted_png(), name="pic")  # 240x120: over 100 pixels
    assert world.run(uid) == State.REJECTED
    up = world.records.get_upload(uid)
    assert up is not None and up.reason_code == Reason.UNSANITIZABLE
    assert world.objects.keys("attachments") == [] and world.objects.keys("staging") == []
    assert world.counted == []


def test_an_unchanged_file_is_copied_as_it_is(world: Sanitizing) -> None:
    data = samples.plain("PNG", (50, 50))
    uid = world.stage(data, name="pic")
    world.run(uid)
    up = world.records.get_upload(uid)
    assert up is not None and up.object_key is not None
    assert world.objects.data[("attachments", up.object_key)] == data
    assert up.sanitize_steps == "" and up.served.md5 == up.md5
    # 50 px: the 64 px rendition is the file itself, not a copy of it.
    assert up.served_keys() == [up.object_key, up.object_key + "@16"]
    assert up.rendition(64) is not None and up.rendition(64).key == up.object_key  # type: ignore[union-attr]
    assert [o.changed for o in world.counted] == [False]


def test_eicar_never_reaches_the_sanitizer(world: Sanitizing) -> None:
    uid = world.stage(EICAR, name="virus")
    assert world.run(uid) == State.INFECTED
    assert world.counted == [] and world.objects.keys("attachments") == []
