"""A small file's whole job in one task: scan → verify → attach, its object read once.

Three tasks per file cost three publishes, consumes, acks and sets of task events — about
12 ms of CPU each on this design (make bench, B3, "Where the CPU goes") — plus a GET of the
object per step. For a file below `ATTACHD_SMALL_FILE_SIZE` the scan task runs the next steps
itself, in the same process, on one copy of the bytes held in memory; larger files keep the
separate queues, so scanning and decoding them scale apart.

Nothing changes in what a step does: each still begins with "already done?" and moves the
upload with a compare-and-set. The steps run on a copy of the pipeline whose `send` records the
next step instead of publishing it, and this loop runs that step when it is this upload's
verify or attach. A retry of the task starts again from wherever the upload stands.
"""

from __future__ import annotations

import contextlib
import copy
import logging

from core.domain import State
from core.errors import ObjectMissing
from core.tasks import TaskName
from workers.pipeline import Pipeline, next_step

log = logging.getLogger(__name__)

_INLINE = (TaskName.SCAN, TaskName.VERIFY, TaskName.ATTACH)


class SmallFiles:
    def __init__(self, pipeline: Pipeline, max_size: int) -> None:
        self.pipeline = pipeline
        self.max_size = max_size

    def scan(self, upload_id: str) -> State | None:
        """What the scan task runs: the whole job for a small file, the scan alone otherwise."""
        p = self.pipeline
        up = p.records.get_upload(upload_id)
        if up is None or up.size > self.max_size or not up.staging_key or up.state.terminal:
            return p.scan(upload_id)
        then: list[tuple[TaskName, str]] = []
        inline = copy.copy(p)
        inline.send = lambda task, uid: then.append((task, uid))
        steps = {
            TaskName.SCAN: inline.scan,
            TaskName.VERIFY: inline.verify,
            TaskName.ATTACH: inline.attach,
        }
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(p.objects.holding(p.buckets.staging, up.staging_key, up.size))
            except ObjectMissing:
                return p.scan(upload_id)  # the step itself records what a missing object means
            state = steps[next_step(up)](upload_id)
            while then:
                task, uid = then.pop(0)
                if uid == upload_id and task in _INLINE:
                    state = steps[task](uid)
                else:  # anything else goes out as it would have
                    p.send(task, uid)
        return state
