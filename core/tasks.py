"""Task names and queues: the only thing the API and the CLI know of the workers."""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    SCAN = "attachd.scan"
    VERIFY = "attachd.verify"
    ATTACH = "attachd.attach"
    RECONCILE = "attachd.reconcile"
    RESCAN = "attachd.rescan"
    RESCAN_FILE = "attachd.rescan_file"
    DELIVER_WEBHOOK = "attachd.deliver_webhook"
    REAP_RESUMABLE = "attachd.reap_resumable"

    @property
    def short(self) -> str:
        return self.value.rsplit(".", 1)[-1]


class Queue(StrEnum):
    SCAN = "scan"
    VERIFY = "verify"
    ATTACH = "attach"
    # Rescans share the maintenance queue: throttled background work, never in the way of new
    # uploads on `scan`.
    MAINTENANCE = "maintenance"
    # Deliveries wait on receivers the pipeline does not control: never on a pipeline queue.
    WEBHOOKS = "webhooks"


ROUTES: dict[TaskName, Queue] = {
    TaskName.SCAN: Queue.SCAN,
    TaskName.VERIFY: Queue.VERIFY,
    TaskName.ATTACH: Queue.ATTACH,
    TaskName.RECONCILE: Queue.MAINTENANCE,
    TaskName.RESCAN: Queue.MAINTENANCE,
    TaskName.RESCAN_FILE: Queue.MAINTENANCE,
    TaskName.DELIVER_WEBHOOK: Queue.WEBHOOKS,
    TaskName.REAP_RESUMABLE: Queue.MAINTENANCE,
}
# Tasks whose first argument is an upload id.
PIPELINE_TASKS: frozenset[TaskName] = frozenset(
    {TaskName.SCAN, TaskName.VERIFY, TaskName.ATTACH, TaskName.RESCAN_FILE}
)
