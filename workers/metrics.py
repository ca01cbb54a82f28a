"""What the workers count: each move a pipeline step makes, into Redis (storage/telemetry.py),
where every API process exports it. Counting never fails a task: Redis being down costs a few
increments, logged, not an upload."""

from __future__ import annotations

import logging

from core.domain import Reason, State, Transition
from core.errors import AttachdError
from storage.telemetry import Telemetry

log = logging.getLogger(__name__)

# What a move out of `scanning` says about the scan itself.
SCAN_OUTCOMES: dict[State, str] = {
    State.VERIFYING: "clean",
    State.INFECTED: "infected",
    State.REJECTED: "over_limit",
    State.FAILED: "error",
}


class TransitionCounter:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def __call__(self, move: Transition) -> None:
        try:
            self._count(move)
        except (AttachdError, OSError) as exc:
            log.warning("metrics: %s → %s not counted: %s", move.before, move.after, exc)

    def _count(self, move: Transition) -> None:
        tele = self.telemetry
        tele.incr("upload_transitions", move.before, move.after)
        if move.before == State.SCANNING and move.after in SCAN_OUTCOMES:
            tele.incr("scan_outcomes", SCAN_OUTCOMES[move.after])
        if move.before == State.VERIFYING and move.after == State.REJECTED:
            tele.incr("typecheck_rejections", "verify", move.reason or Reason.OTHER)
        if move.latency_seconds is not None:
            tele.observe_latency(move.after, move.latency_seconds)
