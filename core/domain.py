"""The upload's life as types: its states, the moves between them, and why a file was refused.

Every package speaks these, never prose: the record store enforces TRANSITIONS, the pipeline
returns the Transition it made, and metrics, the dashboard and the OpenAPI document take their
labels and enums from State and Reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    STAGED = "staged"
    SCANNING = "scanning"
    VERIFYING = "verifying"
    ATTACHED = "attached"
    INFECTED = "infected"
    REJECTED = "rejected"
    FAILED = "failed"
    # An attached version replaced by a newer one: kept as history, no longer served.
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


ACTIVE: frozenset[State] = frozenset({State.STAGED, State.SCANNING, State.VERIFYING})
TERMINAL: frozenset[State] = frozenset(State) - ACTIVE

# The one table of allowed moves. `RecordStore.transition()` refuses any other pair, so a bug
# that would, say, attach an infected file fails loudly instead of writing the row.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.STAGED: frozenset({State.SCANNING, State.REJECTED, State.FAILED}),
    State.SCANNING: frozenset({State.VERIFYING, State.INFECTED, State.REJECTED, State.FAILED}),
    # verifying → superseded: an older upload finishing after a newer one was attached.
    State.VERIFYING: frozenset({State.ATTACHED, State.REJECTED, State.FAILED, State.SUPERSEDED}),
    # From attached: replaced by a newer version, or a rescan's verdict.
    State.ATTACHED: frozenset({State.SUPERSEDED, State.INFECTED, State.REJECTED, State.FAILED}),
    # An operator's retry puts a failed upload back at the start.
    State.FAILED: frozenset({State.STAGED}),
    # An operator's release (`attachd quarantine release`): a false positive skips the scan once
    # and goes through verify and attach like any other file.
    State.INFECTED: frozenset({State.VERIFYING}),
    State.REJECTED: frozenset(),
    State.SUPERSEDED: frozenset(),
}


def allowed(before: State, after: State) -> bool:
    return after in TRANSITIONS[before]


class Reason(StrEnum):
    """Why an upload was refused or ended badly: a bounded label set, stored in its own column
    beside the human message."""

    # The intake's own refusals (415), before anything is stored.
    TYPE_NOT_ALLOWED = "type_not_allowed"
    CONTENT_MISMATCH = "content_mismatch"
    # The scan.
    INFECTED = "infected"
    SCAN_LIMIT = "scan_limit"
    # The deep type check.
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    TYPE_MISMATCH = "type_mismatch"
    CORRUPT = "corrupt"
    POLYGLOT = "polyglot"
    SVG_UNSAFE = "svg_unsafe"
    # The picture passed the checks but could not be made safe to publish within the limits.
    UNSANITIZABLE = "unsanitizable"
    # Failures of the pipeline itself.
    OBJECT_MISSING = "object_missing"
    GAVE_UP = "gave_up"
    NO_PROGRESS = "no_progress"
    # Rows written before reasons were typed whose text matched no class (migration 0004).
    OTHER = "other"


# The refusals the deep type check can make (metrics: typecheck_rejections{stage="verify"}).
VERIFY_REASONS: tuple[Reason, ...] = (
    Reason.EMPTY,
    Reason.TOO_LARGE,
    Reason.TYPE_MISMATCH,
    Reason.CORRUPT,
    Reason.POLYGLOT,
    Reason.SVG_UNSAFE,
)
INTAKE_REASONS: tuple[Reason, ...] = (Reason.TYPE_NOT_ALLOWED, Reason.CONTENT_MISMATCH)


class QuarantineAction(StrEnum):
    """What an operator did to a quarantined file: the kinds of entries of its audit trail."""

    RELEASED = "released"
    PURGED = "purged"


@dataclass(frozen=True)
class Transition:
    """A move a pipeline step made (not one it found already made): what the task layer counts."""

    upload_id: str
    before: State
    after: State
    reason: Reason | None = None
    # Seconds from upload to a terminal state, when `after` is terminal.
    latency_seconds: float | None = None
