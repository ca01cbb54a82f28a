"""Prometheus metrics, computed at scrape time from the durable sources (api/overview.py).

A custom collector instead of module-level gauges: under gunicorn each worker process would
otherwise hold its own numbers, and a restart would zero them. Here every process reads the same
store and the same Redis, so any of them answers any scrape with the same values. The counters
only workers witness are kept in Redis by workers/metrics.py and workers/signals.py (see
storage/telemetry.py).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from api.overview import OpsSources, Probe
from core.clamd import EngineVersion
from core.domain import ACTIVE, INTAKE_REASONS, VERIFY_REASONS, State
from storage.telemetry import COUNTERS, LATENCY_BUCKETS
from storage.webhooks import OutboxStats

SCAN_OUTCOMES = ("clean", "infected", "over_limit", "error")
WEBHOOK_OUTCOMES = ("delivered", "http_error", "connection_error", "refused")

_HELP = {
    "upload_transitions": "Upload state changes made by pipeline tasks",
    "scan_outcomes": "clamd scans by outcome (error: clamd unreachable or failing, per attempt)",
    "typecheck_rejections": "Uploads refused for their content, by stage and reason",
    "task_retries": "Task retries after a transient error",
    "task_failures": "Tasks that raised an unexpected error",
    "webhook_attempts": "Webhook delivery attempts by outcome",
    "quarantine_actions": "Quarantined files released or purged by an operator",
    "images_sanitized": "Pictures attached by the sanitize step, changed or left byte for byte",
    "image_bytes_removed": "Bytes the sanitize step removed from pictures (metadata, thumbnails)",
    "renditions_made": "Renditions made at their first request, by format (then served stored)",
    "resumable_uploads": "Resumable (tus) uploads created, completed, terminated or expired",
}

# Label values always exported, at zero until they happen, so rate() and alerts see them.
_KNOWN: dict[str, list[tuple[str, ...]]] = {
    "scan_outcomes": [(o,) for o in SCAN_OUTCOMES],
    "webhook_attempts": [(o,) for o in WEBHOOK_OUTCOMES],
    "quarantine_actions": [("release",), ("purge",)],
    "resumable_uploads": [(e,) for e in ("created", "completed", "terminated", "expired")],
    "typecheck_rejections": [
        *(("verify", r.value) for r in VERIFY_REASONS),
        *(("intake", r.value) for r in INTAKE_REASONS),
    ],
}


class AttachdCollector(Collector):
    def __init__(self, sources: OpsSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        src = self.sources
        attempt = Probe()
        now = src.clock()
        up = GaugeMetricFamily(
            "attachd_metrics_source_up", "Whether a source answered this scrape", labels=["source"]
        )

        states = attempt("database", src.stats.counts_by_state)
        moved = attempt("database", src.stats.last_moved)
        if states is not None:
            g = GaugeMetricFamily(
                "attachd_uploads", "Uploads in the record store by state", labels=["state"]
            )
            for state in tuple(State):
                g.add_metric([state], states.get(state, 0))
            yield g
        if moved is not None:
            g = GaugeMetricFamily(
                "attachd_uploads_stalled_seconds",
                "Seconds since the least recently updated upload in this state last moved",
                labels=["state"],
            )
            for state in tuple(ACTIVE):
                g.add_metric([state], (now - moved[state]).total_seconds() if state in moved else 0)
            yield g

        outbox = attempt("database", src.stats.webhooks)
        if outbox is not None:
            yield from webhook_metrics(outbox)

        queues = attempt("redis", lambda: src.telemetry.queues(src.queues))
        workers = attempt("redis", src.telemetry.workers)
        counters = attempt("redis", src.telemetry.counters)
        latency = attempt("redis", src.telemetry.latency)
        if queues is not None:
            depth = GaugeMetricFamily(
                "attachd_queue_messages", "Messages waiting in a Celery queue", labels=["queue"]
            )
            age = GaugeMetricFamily(
                "attachd_queue_oldest_message_age_seconds",
                "Age of the oldest waiting message (0 when empty)",
                labels=["queue"],
            )
            unacked = GaugeMetricFamily(
                "attachd_queue_unacked_messages",
                "Messages delivered to a worker and not yet acknowledged (running or held)",
                labels=["queue"],
            )
            for q in queues:
                depth.add_metric([q.name], q.depth)
                age.add_metric([q.name], q.oldest_age_seconds or 0.0)
                unacked.add_metric([q.name], q.unacked)
            yield from (depth, age, unacked)
        if workers is not None:
            yield GaugeMetricFamily(
                "attachd_workers_online", "Workers with a fresh heartbeat", value=len(workers)
            )
            consumers = GaugeMetricFamily(
                "attachd_queue_consumers", "Online workers consuming a queue", labels=["queue"]
            )
            for name in src.queues:
                consumers.add_metric([name], sum(1 for w in workers if name in w.queues))
            yield consumers
        if counters is not None:
            for name, label_names in COUNTERS.items():
                c = CounterMetricFamily(f"attachd_{name}", _HELP[name], labels=list(label_names))
                values = dict.fromkeys(_KNOWN.get(name, []), 0.0)
                values.update(counters.get(name, {}))
                for labels, value in sorted(values.items()):
                    c.add_metric(list(labels), value)
                yield c
        if latency is not None:
            h = HistogramMetricFamily(
                "attachd_upload_latency_seconds",
                "Time from upload to a terminal state",
                labels=["state"],
            )
            for state, hist in sorted(latency.items()):
                buckets = [("+Inf" if b == float("inf") else repr(b), c) for b, c in hist.buckets]
                h.add_metric([state], buckets, hist.total)
            if not latency:
                h.add_metric(
                    [State.ATTACHED],
                    [("+Inf" if b == float("inf") else repr(b), 0.0) for b in LATENCY_BUCKETS],
                    0.0,
                )
            yield h

        version = attempt("clamd", src.clamd.version)
        if version:
            sig = EngineVersion.parse(version)
            info = GaugeMetricFamily(
                "attachd_clamd_info",
                "clamd engine and signature version",
                labels=["engine", "signatures"],
            )
            info.add_metric([sig.engine, str(sig.signatures or "")], 1)
            yield info
            if sig.signatures is not None:
                yield GaugeMetricFamily(
                    "attachd_clamd_signature_version",
                    "Version of clamd's signature database",
                    value=sig.signatures,
                )
            sig_age = sig.age_seconds(now)
            if sig_age is not None:
                yield GaugeMetricFamily(
                    "attachd_clamd_signature_age_seconds",
                    "Age of clamd's signature database",
                    value=sig_age,
                )

        for source in ("database", "redis", "clamd"):
            up.add_metric([source], 0 if source in attempt.errors else 1)
        yield up


def webhook_metrics(outbox: OutboxStats) -> Iterator[Metric]:
    g = GaugeMetricFamily(
        "attachd_webhook_deliveries",
        "Webhook deliveries in the outbox by state (pending, delivered, failed: given up)",
        labels=["state"],
    )
    for state, n in outbox.by_state.items():
        g.add_metric([state], n)
    yield g
    yield GaugeMetricFamily(
        "attachd_webhook_outbox_oldest_age_seconds",
        "Age of the oldest pending webhook delivery (0 when none is pending)",
        value=outbox.oldest_pending_age_seconds,
    )


def registry(sources: OpsSources) -> CollectorRegistry:
    """A registry of our own: the default one would add this one process's CPU and memory,
    which differ between gunicorn workers and mislead more than they tell."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(AttachdCollector(sources))
    return reg
