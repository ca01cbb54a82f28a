"""The attach step with the sanitizer, on the pipeline's fakes (tests/unit/test_pipeline.py): what
lands in the attachments bucket (the served file only: renditions are made on demand by the
API), what is recorded, and that every path that stops serving a version deletes the renditions
made of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from core.domain import Reason, State
from storage.objects import rendition_key
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
    return Sanitizing(tmp_path, Options(Policy.STRIP, BOUNDS))


def test_the_sanitized_file_and_its_renditions_are_served_and_recorded(world: Sanitizing) -> None:
    uid = world.stage(samples.texted_png(), name="pic")
    assert world.run(uid) == State.ATTACHED
    up = world.records.get_upload(uid)
    assert up is not None and up.object_key is not None
    assert up.sanitize_steps == "strip"
    served = world.objects.data[("attachments", up.object_key)]
    assert b"Main Street" not in served and up.served.size == len(served)
    # Nothing but the served file: no rendition is made before it is asked for.
    assert world.objects.keys("attachments") == [up.object_key]
    assert up.renditions is None
    assert [o.changed for o in world.counted] == [True]


def _requested(world: Sanitizing, uid: str) -> None:
    """Renditions as the API puts them at their first requests."""
    up = world.records.get_upload(uid)
    assert up is not None and up.object_key is not None
    for px, ext in ((128, "webp"), (512, "avif"), (128, "png")):
        world.objects.data[("attachments", rendition_key(up.object_key, px, ext))] = b"made"


def test_a_replaced_version_loses_its_renditions(world: Sanitizing) -> None:
    first = world.stage(samples.plain("PNG"), name="pic")
    world.run(first)
    _requested(world, first)
    second = world.stage(samples.plain("PNG", (100, 40)), name="pic")
    world.run(second)
    up = world.records.get_upload(second)
    assert up is not None
    assert world.objects.keys("attachments") == [up.object_key]


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
    assert world.objects.keys("attachments") == [up.object_key]


def test_a_rescan_detection_deletes_the_renditions_too(world: Sanitizing) -> None:
    uid = world.stage(samples.plain("PNG"), name="pic")
    world.run(uid)
    _requested(world, uid)
    world.scanner.extra = b"IEND"  # every PNG ends with it: the next scan finds "malware"
    assert world.steps.rescan_file(uid) == State.INFECTED
    assert world.objects.keys("attachments") == []


def test_unsanitizable_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    world = Sanitizing(tmp_path, Options(Policy.STRIP, Bounds(100, 10, 400)))
    # 240x120, turned by its orientation: decoded, and over 100 pixels.
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = samples.plain("PNG", exif=exif.tobytes())
    uid = world.stage(turned, name="pic")
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
    assert world.objects.keys("attachments") == [up.object_key]
    assert [o.changed for o in world.counted] == [False]


def test_eicar_never_reaches_the_sanitizer(world: Sanitizing) -> None:
    uid = world.stage(EICAR, name="virus")
    assert world.run(uid) == State.INFECTED
    assert world.counted == [] and world.objects.keys("attachments") == []
