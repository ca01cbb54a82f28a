"""What operators look at, gathered from the durable sources: the record store (uploads and their
states), the broker's Redis (queues, worker heartbeats, counters) and clamd (signatures).

Nothing here is held in a process's memory between calls, so the dashboard and the metrics
say the same thing from every API process and after any restart. A source that is down is
reported as down; the rest of the picture is still drawn.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.clamd import ClamdClient, EngineVersion
from core.domain import TERMINAL, State
from core.errors import AttachdError
from storage.records import utcnow
from storage.stats import StoreStats
from storage.telemetry import QueueState, Telemetry


@dataclass(frozen=True)
class OpsSources:
    stats: StoreStats
    telemetry: Telemetry
    clamd: ClamdClient
    queues: tuple[str, ...]
    clock: Callable[[], datetime] = utcnow


@dataclass
class Probe:
    """Runs reads against the sources for one request, remembering which sources were down.
    One per request: API threads share the sources, never a Probe."""

    errors: dict[str, str] = field(default_factory=dict)

    def __call__(self, source: str, fn: Callable[[], Any]) -> Any:
        """fn(), or None when its source is down (then not asked again: each would time out)."""
        if source in self.errors:
            return None
        try:
            return fn()
        except (AttachdError, OSError) as exc:
            self.errors.setdefault(source, str(exc))
            return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _total(counters: dict[str, dict[tuple[str, ...], float]], name: str, *last: str) -> int:
    """A counter summed over its first label (the format), for the given last labels."""
    return int(sum(v for labels, v in counters.get(name, {}).items() if labels[1:] == last))


def snapshot(sources: OpsSources, window_minutes: int = 15) -> dict[str, Any]:
    """Everything the dashboard shows, as plain data (also served as JSON)."""
    attempt = Probe()
    now = sources.clock()
    since = (now - timedelta(minutes=window_minutes)).replace(second=0, microsecond=0)
    st = sources.stats

    states = attempt("database", st.counts_by_state)
    moved = attempt("database", st.last_moved) or {}
    finished = attempt("database", lambda: st.finished_since(since)) or []
    rejected_by_reason = (
        attempt("database", lambda: st.rejections_since(now - timedelta(hours=24))) or {}
    )
    problems = attempt("database", st.recent_problems) or []
    outbox = attempt("database", st.webhooks)
    queues: list[QueueState] = (
        attempt("redis", lambda: sources.telemetry.queues(sources.queues)) or []
    )
    workers = attempt("redis", sources.telemetry.workers) or []
    counters = attempt("redis", sources.telemetry.counters) or {}
    master = attempt("redis", sources.telemetry.master)
    outage = attempt("redis", sources.telemetry.last_outage)
    version = attempt("clamd", sources.clamd.version)
    signatures = EngineVersion.parse(version) if version else None

    minutes = [since + timedelta(minutes=i) for i in range(window_minutes + 1)]
    per_minute = {m: dict.fromkeys(tuple(TERMINAL), 0) for m in minutes}
    for f in finished:
        bucket = f.finished_at.replace(second=0, microsecond=0)
        if bucket in per_minute:
            per_minute[bucket][f.state] += 1
    latencies = sorted((f.finished_at - f.created_at).total_seconds() for f in finished)

    consumers: dict[str, int] = {}
    for w in workers:
        for q in w.queues:
            consumers[q] = consumers.get(q, 0) + 1
    ts = now.timestamp()
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "window_minutes": window_minutes,
        "down": dict(attempt.errors),
        "states": states,
        "stalled_seconds": {s: round((now - t).total_seconds(), 1) for s, t in moved.items()},
        # The Redis every process reaches now: after a Sentinel failover, the promoted replica.
        "broker": None
        if master is None
        else {"master": master.address, "failover": "sentinel" if master.sentinel else "none"},
        # The last broker outage, by the hand-offs it held back (storage/handoffs.py).
        "last_outage": None
        if outage is None
        else {
            "ended": datetime.fromtimestamp(outage.ended, UTC).isoformat(timespec="seconds"),
            "stalled_seconds": round(outage.stalled_seconds, 1),
            "handoffs": outage.handoffs,
        },
        "queues": [
            {
                "name": q.name,
                "depth": q.depth,
                "oldest_age_seconds": None
                if q.oldest_age_seconds is None
                else round(q.oldest_age_seconds, 1),
                "unacked": q.unacked,
                "consumers": consumers.get(q.name, 0),
            }
            for q in queues
        ],
        "workers": [
            {
                "hostname": w.hostname,
                "pool": w.pool,
                "queues": list(w.queues),
                "draining": not w.queues,
                "concurrency": w.concurrency,
                "seen_seconds_ago": round(max(0.0, ts - w.seen_at), 1),
                "up_seconds": round(max(0.0, ts - w.started_at)),
            }
            for w in workers
        ],
        "throughput": [
            {"minute": m.strftime("%H:%M"), "total": sum(c.values()), **c}
            for m, c in per_minute.items()
        ],
        "latency": {
            "count": len(latencies),
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "max": latencies[-1] if latencies else None,
        },
        "rejections_24h": {
            str(reason): n
            for reason, n in sorted(rejected_by_reason.items(), key=lambda kv: -kv[1])
        },
        "problems": [
            {
                "id": p.id,
                "state": p.state,
                "name": p.original_name,
                "reason": p.reason,
                "reason_class": p.reason_code if p.state == State.REJECTED else None,
                "attempts": p.attempts,
                "when": p.updated_at.isoformat(timespec="seconds"),
            }
            for p in problems
        ],
        "scan_outcomes": {
            labels[0]: int(v) for labels, v in counters.get("scan_outcomes", {}).items()
        },
        # The sanitize step (workers/sanitize), all formats together.
        "sanitized": {
            "changed": _total(counters, "images_sanitized", "changed"),
            "unchanged": _total(counters, "images_sanitized", "unchanged"),
            "bytes_removed": _total(counters, "image_bytes_removed"),
        },
        "webhooks": None
        if outbox is None
        else {
            "deliveries": outbox.by_state,
            "oldest_pending_seconds": round(outbox.oldest_pending_age_seconds, 1),
            "attempts": {
                labels[0]: int(v) for labels, v in counters.get("webhook_attempts", {}).items()
            },
            "failed": [
                {
                    "id": d.id,
                    "type": d.event_type,
                    "url": d.url,
                    "attempts": d.attempts,
                    "error": d.last_error,
                    "when": d.created_at.isoformat(timespec="seconds"),
                }
                for d in outbox.recent_failures
            ],
        },
        "signatures": None
        if signatures is None
        else {
            "engine": signatures.engine,
            "version": signatures.signatures,
            "built_at": signatures.published.isoformat() if signatures.published else None,
            "age_seconds": signatures.age_seconds(now),
        },
    }
