"""The broker: the Celery application, configured for at-least-once delivery with idempotent
effects, and the stamp every published message carries.

Every process builds its app here: the API and the CLI only to send tasks by name (core.tasks),
the workers to consume them (workers/app.py registers the tasks on it).
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu import Queue as KombuQueue
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from core import logs
from core.errors import ServiceUnavailable
from core.settings import Settings
from core.tasks import PRIORITY_STEPS, ROUTES, Dispatch, Queue, TaskName
from storage import redisconn
from storage.telemetry import REQUEST_ID_HEADER, SENT_AT_HEADER

# The tenant whose count of work in flight a scan message holds (storage/fairshare.py).
TENANT_HEADER = "attachd_tenant"

# The longest task (a multi-GiB scan) must finish well inside the broker's visibility timeout,
# or Redis would hand the same message to a second worker while the first still runs it.
TASK_TIME_LIMIT = 1800
VISIBILITY_TIMEOUT = 2 * TASK_TIME_LIMIT


def make_celery(settings: Settings) -> Celery:
    # One Redis, or its Sentinels (storage/redisconn.py): then kombu's Sentinel transport finds
    # the master, and finds the promoted replica after a failover.
    url, sentinel_options = redisconn.celery_transport(settings.redis_url)
    app = Celery("attachd", broker=url, backend=url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A lost broker connection (a Redis failover is one) must not kill the tasks running:
        # terminated after its commit, an attach left the replaced version's objects behind
        # (and, before storage/versions.py superseded it in the same transaction, two versions
        # served: make scale-test, "1 duplicated"). Left running, a task finishes its step;
        # its ack is lost with the connection, and a redelivery (after the visibility timeout)
        # finds the step done.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_TIME_LIMIT - 60,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # A list per lane (core.tasks.Lane), popped in lane order: fair share between
            # tenants, and bulk work behind everyone's.
            "priority_steps": list(PRIORITY_STEPS),
            **sentinel_options,
        },
        result_backend_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            **sentinel_options,
        },
        broker_connection_retry_on_startup=True,
        # An API request must not hang on a dead broker: fail fast, the reconciler re-sends.
        broker_connection_timeout=2,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        task_queues=[KombuQueue(q.value) for q in Queue],
        task_default_queue=Queue.MAINTENANCE.value,
        task_routes={name.value: {"queue": queue.value} for name, queue in ROUTES.items()},
        # Task events only when asked for: Flower asks (it broadcasts enable_events while it
        # runs, so its task views are whole), `celery events` and `celery control
        # enable_events` too. Without a listener each task paid three event publishes for
        # nothing (make bench, B3).
        worker_send_task_events=False,
        # No task-sent events: publishing one per task cost the API ~8% of its CPU per upload
        # (make bench, B2), and what they would tell (queued work, its age) the metrics read
        # from Redis itself.
        task_send_sent_event=False,
        beat_schedule={
            "reconcile": {"task": TaskName.RECONCILE.value, "schedule": 60.0},
            # Picks up a new signature version within minutes; each sweep queues a bounded batch.
            "rescan": {"task": TaskName.RESCAN.value, "schedule": 300.0},
            "reap-resumable": {"task": TaskName.REAP_RESUMABLE.value, "schedule": 300.0},
        },
        timezone="UTC",
        # Recycle a pool process after N tasks or once it holds M KiB: image decoding can leak.
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_per_child // 1024,
    )
    # Stamps every message with its send time and request id (queue age, log correlation).
    before_task_publish.connect(_stamp, weak=False, dispatch_uid="attachd.stamp")
    return app


def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    headers[SENT_AT_HEADER] = time.time()
    request_id = logs.current().get("request_id")
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id


def publish(app: Celery, dispatch: Dispatch) -> None:
    """The one way a message reaches the workers, from the API, the workers and the CLI alike:
    the task on its queue, in its lane. A broker that cannot be reached is ServiceUnavailable;
    callers decide what that means for them (the record store still holds the work)."""
    headers = {TENANT_HEADER: dispatch.tenant} if dispatch.tenant is not None else None
    try:
        app.send_task(
            dispatch.task.value,
            args=[dispatch.target],
            queue=ROUTES[dispatch.task].value,
            priority=int(dispatch.lane),
            headers=headers,
            countdown=dispatch.countdown or None,
            ignore_result=True,
        )
    except (KombuError, RedisError, OSError) as exc:
        raise ServiceUnavailable("redis", str(exc)) from exc


def send(app: Celery, task: TaskName, *args: Any) -> None:
    """Publish a task that takes no upload (the maintenance sweeps) on its queue."""
    try:
        app.send_task(task.value, args=list(args), queue=ROUTES[task].value, ignore_result=True)
    except (KombuError, RedisError, OSError) as exc:
        raise ServiceUnavailable("redis", str(exc)) from exc
