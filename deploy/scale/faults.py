"""make scale-test, load and faults: the uploads sent through the load balancer, and the faults of
the topology's hosts at fixed points of that load."""

from __future__ import annotations

import argparse
import hashlib
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from startup import Stack, log

# The soak's mix of uploads (clean, infected, refused, rejected, re-uploaded), so the two runs'
# counts mean the same thing.
from bench.soak import sample

ACTIVE = ("staged", "scanning", "verifying")


@dataclass
class Figures:
    uploads: int = 0
    concurrency: int = 0
    responses: dict[str, int] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    partition: dict[str, Any] = field(default_factory=dict)
    final_states: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    leftovers: dict[str, int] = field(default_factory=dict)
    answers_lost_but_kept: int = 0
    downloads_checked: int = 0
    seconds_setup: float = 0.0
    seconds_load: float = 0.0
    seconds_drain: float = 0.0
    seconds_pipeline_done: float | None = None
    seconds_total: float = 0.0
    dashboard: int = 0
    flower: int = 0


@dataclass
class Sent:
    i: int
    name: str
    expect: str
    sha256: str
    status: str = ""
    t_start: float = 0.0
    t_end: float = 0.0


def load(stack: Stack, args: argparse.Namespace, fig: Figures) -> list[Sent]:
    url = f"{stack.api_url}/api/1/profile/{stack.profile}/uploadAttachment"
    sent: list[Sent] = []
    for i in range(args.uploads):
        name, data, expect = sample(i)
        sent.append(Sent(i, name, expect, hashlib.sha256(data).hexdigest()))
    done = 0
    lock = threading.Lock()
    local = threading.local()

    def send(s: Sent) -> None:
        nonlocal done
        _, data, _ = sample(s.i)
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.trust_env = False
        s.t_start = time.time()
        try:
            resp = session.post(
                url,
                params={"accessTokenId": stack.token},
                files={"attachment": (s.name, data)},
                # Longer than lb's 120 s read timeout: an upload slowed by a MinIO node's death
                # is answered by the load balancer, never abandoned by the client first.
                timeout=150,
            )
            s.status = str(resp.status_code)
        except requests.RequestException as exc:
            s.status = f"error {type(exc).__name__}"
        s.t_end = time.time()
        with lock:
            done += 1

    def at(fraction: float) -> None:
        while done < args.uploads * fraction:
            time.sleep(0.02)

    def chaos() -> None:
        try:
            # The partition runs beside the other faults: they come at their own points.
            cut = threading.Thread(target=partition, args=(stack, args, fig, at), daemon=True)
            cut.start()
            at(0.35)
            api = stack.topo.of_kind("api")[-1].name
            t = time.time()
            stack.rig.send(api, signal.SIGKILL)
            fig.faults.append(
                {
                    "fault": f"SIGKILL {api} (gunicorn and its workers)",
                    "at": t,
                    "after_uploads": done,
                }
            )
            log(f"SIGKILL {api} after {done} uploads")
            at(0.55)
            s3 = stack.topo.of_kind("minio")[2].name
            t = time.time()
            stack.rig.send(s3, signal.SIGKILL)
            fig.faults.append({"fault": f"SIGKILL MinIO on {s3}", "at": t, "after_uploads": done})
            log(f"SIGKILL MinIO on {s3} after {done} uploads")
            at(0.65)
            fig.faults.append(kill_redis_master(stack, done))
            at(0.75)
            t = time.time()
            n = done
            down = stack.restart_postgres()
            fig.faults.append(
                {
                    "fault": "PostgreSQL restarted (fast shutdown, start)",
                    "at": t,
                    "after_uploads": n,
                    "seconds_down": round(down, 1),
                }
            )
            log(f"PostgreSQL restarted after {n} uploads, {down:.1f}s down")
            cut.join()
        except Exception as exc:
            fig.faults.append({"fault": f"chaos failed: {exc!r}", "at": time.time()})
            log(f"chaos failed: {exc!r}")

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    t0 = time.monotonic()
    chaos_thread.start()
    with ThreadPoolExecutor(args.concurrency) as pool:
        for n, _ in enumerate(pool.map(send, sent), 1):
            if n % 250 == 0:
                log(f"{n}/{args.uploads} sent")
    chaos_thread.join(timeout=args.partition_seconds + 120)
    fig.seconds_load = round(time.monotonic() - t0, 1)
    fig.responses = dict(Counter(s.status for s in sent))
    # What the clients saw of each fault: the requests that failed between it and the next.
    points = [*sorted([f["at"] for f in fig.faults] + [fig.partition.get("at", 0)]), 1e12]
    for f in fig.faults:
        until = min(t for t in points if t > f["at"])
        bad = [s for s in sent if f["at"] <= s.t_end < until and s.status not in ("200", "415")]
        f["failed_requests"] = len(bad)
        f["failed_for_seconds"] = round(max((s.t_end for s in bad), default=f["at"]) - f["at"], 1)
        f["statuses"] = dict(Counter(s.status for s in bad))
        # A fault may also show as answers that are slow rather than failed.
        answered = [s.t_end - s.t_start for s in sent if f["at"] <= s.t_end < until]
        f["slowest_answer_seconds"] = round(max(answered, default=0.0), 1)
    return sent


def kill_redis_master(stack: Stack, done: int) -> dict[str, Any]:
    """The Redis master is SIGKILLed and left down: the Sentinels must promote the replica, and
    every process find it through them."""
    before = stack.redis.master()
    t = time.time()
    stack.rig.send(stack.redis.master_service(), signal.SIGKILL)
    log(f"SIGKILL the Redis master ({before}) after {done} uploads; left down")
    deadline = t + 60
    after = before
    while after in (before, None) and time.time() < deadline:
        time.sleep(0.2)
        after = stack.redis.master()
    promoted = time.time()
    log(f"the Sentinels name {after} master {promoted - t:.1f}s after the kill")
    return {
        "fault": f"SIGKILL the Redis master ({before}), left down",
        "at": t,
        "after_uploads": done,
        "master_before": before,
        "master_after": after,
        "seconds_to_promotion": round(promoted - t, 1) if after not in (before, None) else None,
    }


def partition(stack: Stack, args: argparse.Namespace, fig: Figures, at: Any) -> None:
    """worker-1's link goes down while it runs a task, for longer than a task takes."""
    victim = stack.topo.of_kind("worker")[0].name
    at(0.15)
    # At its fixed point, whatever the host is doing: under this load it always holds tasks,
    # and which ones is read from its own log afterwards (held_at_cut).
    t_cut = time.time()
    stack.rig.link(victim, up=False)
    log(f"{victim}'s link down")
    time.sleep(args.partition_seconds)
    stack.rig.link(victim, up=True)
    t_up = time.time()
    log(f"{victim}'s link up after {t_up - t_cut:.1f}s")
    fig.partition = {
        "host": victim,
        "at": t_cut,
        "link_up_at": t_up,
        "seconds_down": round(t_up - t_cut, 1),
    }
