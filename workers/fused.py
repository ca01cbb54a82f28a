"""A small file's whole job in one task: scan → verify → attach, its object read once.

Three tasks per file cost three publishes, consumes, acks and sets of task events, plus a GET
of the object per step. For a file below `ATTACHD_SMALL_FILE_SIZE` the scan task runs the next
steps itself, in the same process, on one copy of the bytes held in memory; larger files keep
the separate queues, so scanning and decoding them scale apart.

Nothing changes in what a step does: each still begins with "already done?" and moves the
upload with a compare-and-set, and returns the step that comes next (workers/pipeline.py's
StepResult); this loop runs that step here instead of publishing it. A retry of the task starts
again from wherever the upload stands.
"""

from __future__ import annotations

import contextlib
import logging

from core.errors import ObjectMissing
from core.tasks import TaskName
from workers.pipeline import Pipeline, StepResult, next_step

log = logging.getLogger(__name__)


class SmallFiles:
    def __init__(self, pipeline: Pipeline, max_size: int) -> None:
        self.pipeline = pipeline
        self.max_size = max_size

    def scan(self, upload_id: str) -> StepResult:
        """What the scan task runs: the whole job for a small file, the scan alone otherwise."""
        p = self.pipeline
        up = p.records.get_upload(upload_id)
        if up is None or up.size > self.max_size or not up.staging_key or up.state.terminal:
            return p.scan(upload_id)
        steps = {TaskName.SCAN: p.scan, TaskName.VERIFY: p.verify, TaskName.ATTACH: p.attach}
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(p.objects.holding(p.buckets.staging, up.staging_key, up.size))
            except ObjectMissing:
                return p.scan(upload_id)  # the step itself records what a missing object means
            outcome = steps[next_step(up)](upload_id)
            while outcome.then in steps:
                outcome = steps[outcome.then](upload_id)
        return outcome
