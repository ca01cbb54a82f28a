"""Task names and queues: the only thing the API and the CLI know of the workers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum


class TaskName(StrEnum):
    SCAN = "attachd.scan"
    VERIFY = "attachd.verify"
    ATTACH = "attachd.attach"
    RECONCILE = "attachd.reconcile"
    RESCAN = "attachd.rescan"
    RESCAN_FILE = "attachd.rescan_file"
    DELIVER_WEBHOOK = "attachd.deliver_webhook"
    # Sends the hand-offs kept while the broker was unreachable (storage/handoffs.py).
    RESEND = "attachd.resend"
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
    TaskName.RESEND: Queue.MAINTENANCE,
    TaskName.REAP_RESUMABLE: Queue.MAINTENANCE,
}
# Tasks whose first argument is an upload id.
PIPELINE_TASKS: frozenset[TaskName] = frozenset(
    {TaskName.SCAN, TaskName.VERIFY, TaskName.ATTACH, TaskName.RESCAN_FILE}
)


class Lane(IntEnum):
    """Where a pipeline message waits on its queue: the broker hands out lane 0 first, then 3,
    6, 9 (kombu's Redis transport keeps a list per priority step and pops them in that order).

    The API puts each upload in a lane from its tenant's work in flight (storage/fairshare.py),
    so one tenant's burst waits behind another tenant's single upload instead of in front of
    it; bulk work (rescans, uploads sent as bulk) never goes ahead of anyone's."""

    INTERACTIVE = 0
    BUSY = 3
    BACKLOG = 6
    BULK = 9


# The priority steps the broker is configured with: exactly the lanes.
PRIORITY_STEPS: tuple[int, ...] = tuple(int(lane) for lane in Lane)


def lane_for(in_flight: int, interactive: int, busy: int) -> Lane:
    """The lane of a tenant's next upload, `in_flight` counting it: its first `interactive`
    uploads in flight go first, the next ones up to `busy` after them, the rest behind."""
    if in_flight <= interactive:
        return Lane.INTERACTIVE
    return Lane.BUSY if in_flight <= busy else Lane.BACKLOG


@dataclass(frozen=True)
class Dispatch:
    """One message to the workers: which task on what (an upload's id, or a webhook
    delivery's), in which lane, for which tenant's count of work in flight (None: not counted,
    as re-sends and follow-up steps are not), and how many seconds from now."""

    task: TaskName
    target: str
    lane: Lane = Lane.INTERACTIVE
    tenant: str | None = None
    countdown: float = 0.0


# Sends one message (storage/broker.py's `publish`, bound to an app). Raises ServiceUnavailable
# when the broker cannot be reached.
Publish = Callable[[Dispatch], None]
