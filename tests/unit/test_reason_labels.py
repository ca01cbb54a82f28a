"""Every refusal reason the code can produce is counted under its own label: the labels come
from core.domain.Reason, never from the prose beside it."""

from __future__ import annotations

from collections import Counter

import pytest

from api.metrics import _KNOWN
from core.domain import INTAKE_REASONS, VERIFY_REASONS, Reason, State, Transition
from workers.metrics import TransitionCounter


class RecordingTelemetry:
    def __init__(self) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.latencies: list[tuple[str, float]] = []

    def incr(self, counter: str, *labels: str, amount: int = 1) -> None:
        self.counts[(counter, *labels)] += amount

    def observe_latency(self, state: str, seconds: float) -> None:
        self.latencies.append((state, seconds))


@pytest.mark.parametrize("reason", VERIFY_REASONS)
def test_each_verify_reason_counts_under_its_own_label(reason: Reason) -> None:
    tele = RecordingTelemetry()
    counter = TransitionCounter(tele)  # type: ignore[arg-type]
    counter(Transition("u1", State.VERIFYING, State.REJECTED, reason, latency_seconds=1.5))
    assert tele.counts[("typecheck_rejections", "verify", reason.value)] == 1
    assert tele.counts[("upload_transitions", "verifying", "rejected")] == 1
    assert tele.latencies == [("rejected", 1.5)]
    # The exporter knows the series before it ever happens (alerts see a zero, not a gap).
    assert ("verify", reason.value) in _KNOWN["typecheck_rejections"]


def test_labels_are_one_to_one_with_reasons() -> None:
    labels = _KNOWN["typecheck_rejections"]
    assert len(labels) == len(set(labels))
    assert {r for stage, r in labels if stage == "verify"} == {r.value for r in VERIFY_REASONS}
    assert {r for stage, r in labels if stage == "intake"} == {r.value for r in INTAKE_REASONS}
    assert "other" not in {r for _, r in labels}


def test_scan_outcomes_follow_the_move_out_of_scanning() -> None:
    tele = RecordingTelemetry()
    counter = TransitionCounter(tele)  # type: ignore[arg-type]
    counter(Transition("u1", State.SCANNING, State.VERIFYING))
    counter(Transition("u2", State.SCANNING, State.INFECTED, Reason.INFECTED, 0.2))
    counter(Transition("u3", State.SCANNING, State.REJECTED, Reason.SCAN_LIMIT, 0.2))
    counter(Transition("u4", State.STAGED, State.SCANNING))
    outcomes = {k[1]: v for k, v in tele.counts.items() if k[0] == "scan_outcomes"}
    assert outcomes == {"clean": 1, "infected": 1, "over_limit": 1}
    # A scan-limit rejection is the scanner's, not the type checker's.
    assert not any(k[0] == "typecheck_rejections" for k in tele.counts)
