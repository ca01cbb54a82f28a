"""A bounded soak: thousands of uploads through the real stack while a worker is SIGKILLed, Redis
restarts empty and pool processes die, then a count of what was accepted, where every upload
ended, and what was left behind (target: nothing).

    python -m bench.soak [--uploads 10000] [--concurrency 8]

Runs on its own services (deploy/env/soak.env) and rewrites the soak section of
docs/RELIABILITY.md with the figures of the run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import requests
from PIL import Image

from bench.stack import REPO, BenchStack, load_env
from bench.target import Target
from bench.webhooks import SoakReceiver
from core.domain import ACTIVE, State
from core.settings import Settings
from storage.broker import make_celery
from storage.objects import staging_key
from storage.secretbox import SecretBox
from storage.webhooks import Webhooks
from workers.tasks import build_works
from workers.webhooks import build_courier

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SCRIPT_SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(120)
REPORT = REPO / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"


def png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16 + i % 16, 16), (i % 256, 80, 160)).save(buf, "PNG")
    return buf.getvalue()


def sample(i: int) -> tuple[str, bytes, str]:
    """(file name, bytes, what should become of it)."""
    kind = i % 50
    if kind == 0:
        return f"virus-{i}.png", png(i) + EICAR, "infected"
    if kind == 1:
        return f"script-{i}.svg", SCRIPT_SVG, "rejected"
    if kind == 2:
        return f"elf-{i}.png", ELF, "refused"  # 415 at the door
    if kind in (3, 4):
        return "again.png", png(i), "attached-or-superseded"  # the same name, many times
    return f"clean-{i}.png", png(i), "attached"


class SoakStack(BenchStack):
    def start_worker(self) -> None:
        """The default fleet, as production runs it: `attachd worker` supervises a pool per
        queue group and starts again one that dies."""
        self._wait_worker(self._start("worker", "attachd", "worker"))

    def kill_worker(self) -> None:
        """SIGKILL the whole node: supervisor, pools and their processes, mid-task."""
        proc = self._procs.pop("worker")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def kill_pool_children(self) -> int:
        """SIGKILL the processes running tasks (the pools' children), not the pools."""
        pools = _children(self._procs["worker"].pid)
        victims = [pid for pool in pools for pid in _children(pool)]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        return len(victims)

    def restart_redis_empty(self) -> None:
        script = str(REPO / "deploy" / "scripts" / "services.sh")
        subprocess.run([script, "stop", "redis"], cwd=REPO, env=self.env, check=True)
        subprocess.run([script, "start", "redis"], cwd=REPO, env=self.env, check=True)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@dataclass
class Figures:
    uploads_sent: int = 0
    responses: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)
    final_states: dict[str, int] = field(default_factory=dict)
    upload_rows: int = 0
    leftovers: dict[str, int] = field(default_factory=dict)
    seconds_to_drain: float = 0.0
    seconds_total: float = 0.0
    webhooks: dict[str, int] = field(default_factory=dict)


def soak(uploads: int, concurrency: int, drain_timeout: float) -> Figures:
    env = {
        **os.environ,
        **load_env(REPO / "deploy" / "env" / "soak.env"),
        # The receiver listens on loopback; its 500s are retried within seconds, not minutes.
        "ATTACHD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "ATTACHD_WEBHOOK_RETRY_BASE_SECONDS": "1",
        "ATTACHD_WEBHOOK_RETRY_MAX_SECONDS": "10",
    }
    figures = Figures()
    started = time.monotonic()
    stack = SoakStack(env)
    with stack as target:
        account = target.account("soak")
        url = target.upload_url(account)
        receiver = SoakReceiver().start()
        hooks = Webhooks(target.records.engine, SecretBox(target.settings.webhook_secret_key))
        receiver.secret = hooks.add_subscription(receiver.url, None, None).secret
        stack.start_worker()
        lock = threading.Lock()
        done = 0
        local = threading.local()

        def send(i: int) -> None:
            nonlocal done
            name, data, expect = sample(i)
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            try:
                resp = session.post(
                    url,
                    params={"accessTokenId": account.token},
                    files={"attachment": (name, data)},
                    timeout=60,
                )
                outcome = str(resp.status_code)
            except requests.RequestException as exc:
                outcome = f"client error: {type(exc).__name__}"
            with lock:
                figures.responses[outcome] += 1
                figures.expected[expect] += 1
                done += 1

        def chaos() -> None:
            plan = [
                (0.25, "kill -9 the worker"),
                (0.5, "restart Redis empty"),
                (0.75, "kill -9 the pool processes"),
            ]
            for at, what in plan:
                while done < uploads * at:
                    time.sleep(0.05)
                when = done
                if what == "kill -9 the worker":
                    stack.kill_worker()
                    time.sleep(2)
                    stack.start_worker()
                elif what == "restart Redis empty":
                    stack.restart_redis_empty()
                else:
                    stack.kill_pool_children()
                figures.faults.append(f"{what} after {when} uploads")
                print(f"[soak] {what} after {when} uploads", file=sys.stderr)

        chaos_thread = threading.Thread(target=chaos, daemon=True)
        chaos_thread.start()
        with ThreadPoolExecutor(concurrency) as pool:
            for n, _ in enumerate(pool.map(send, range(uploads)), 1):
                if n % 500 == 0:
                    print(f"[soak] {n}/{uploads} sent", file=sys.stderr)
        chaos_thread.join(timeout=60)
        figures.uploads_sent = uploads

        # Drain: the reconciler re-sends what the emptied broker and the killed workers lost.
        settings = stack.settings
        celery = make_celery(settings)
        works = build_works(settings, celery)
        courier = build_courier(settings, celery, works.pipeline.records)
        drain_start = time.monotonic()
        while True:
            counts = target.records.count_by_state()
            active = sum(counts[s] for s in tuple(ACTIVE))
            pending = hooks.stats().by_state["pending"]
            if (active == 0 and pending == 0) or time.monotonic() - drain_start > drain_timeout:
                break
            works.upkeep.reconcile()
            courier.sweep()  # what beat's reconcile does too: webhooks whose message was lost
            time.sleep(5)
        figures.seconds_to_drain = round(time.monotonic() - drain_start, 1)
        figures.final_states = dict(counts)
        figures.upload_rows = sum(counts.values())
        figures.leftovers = leftovers(target, settings)
        figures.webhooks = webhook_figures(hooks, receiver)
        receiver.stop()
        celery.close()
    figures.seconds_total = round(time.monotonic() - started, 1)
    return figures


def webhook_figures(hooks: Webhooks, receiver: SoakReceiver) -> dict[str, int]:
    """Every event the store holds, received once after de-duplication by webhook-id."""
    events = {d.event_id for d in hooks.deliveries(limit=10**7)}
    stats = hooks.stats().by_state
    received = set(receiver.accepted)
    return {
        "events written": len(events),
        "deliveries delivered": stats["delivered"],
        "deliveries still pending": stats["pending"],
        "deliveries given up (failed)": stats["failed"],
        "requests received": receiver.requests,
        "answered 500 on purpose (retried)": receiver.refused,
        "signatures refused by standardwebhooks": receiver.bad_signatures,
        "distinct events accepted": len(received),
        "duplicate 2xx deliveries (removed by de-duplication)": sum(receiver.accepted.values())
        - len(received),
        "events missing at the receiver": len(events - received),
        "events received that the store does not hold": len(received - events),
    }


def leftovers(target: Target, settings: Settings) -> dict[str, int]:
    """Objects without a record and records without their object, bucket by bucket."""
    records, objects = target.records, target.objects
    uploads = [u for s in tuple(State) for u in records.uploads_in_state(s, limit=10**7)]
    staged = {k for k, _ in objects.list_keys(settings.bucket_staging)}
    attached = {k for k, _ in objects.list_keys(settings.bucket_attachments)}
    quarantined = {k for k, _ in objects.list_keys(settings.bucket_quarantine)}
    want_staged = {u.staging_key for u in uploads if u.staging_key}
    # An attached version's renditions are served beside it (storage/served.py).
    want_attached = {k for u in uploads if u.state == State.ATTACHED for k in u.served_keys()}
    want_quarantined = {u.quarantine_key for u in uploads if u.quarantine_key}
    served = {u.id for u in uploads if u.state == State.ATTACHED}
    return {
        "staged objects without an upload": len(staged - want_staged),
        "uploads whose staged object is missing": len(want_staged - staged),
        "attached objects not served": len(
            # Renditions made on demand sit beside their version's file: <key>@<px>.<ext>.
            {k for k in attached - want_attached if k.split("@", 1)[0] not in want_attached}
        ),
        "attached uploads without their object": len(want_attached - attached),
        "quarantined objects without a record": len(quarantined - want_quarantined),
        "infected uploads without quarantined evidence": len(want_quarantined - quarantined),
        "uploads still in the pipeline": sum(1 for u in uploads if u.state in tuple(ACTIVE)),
        "attached uploads in staging": sum(
            1 for u in uploads if u.id in served and staging_key(u.id) in staged
        ),
    }


def markdown(f: Figures, uploads: int, concurrency: int) -> str:
    accepted = f.responses.get("200", 0)
    lines = [
        BEGIN,
        f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
        f"({platform.machine()}), `python -m bench.soak --uploads {uploads} "
        f"--concurrency {concurrency}`: {f.seconds_total} s in all, "
        f"{f.seconds_to_drain} s to drain after the last upload.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| uploads sent | {f.uploads_sent} |",
        *(f"| answered {k} | {v} |" for k, v in sorted(f.responses.items())),
        f"| accepted (200) | {accepted} |",
        f"| upload records | {f.upload_rows} (one per accepted upload: "
        f"{'yes' if f.upload_rows == accepted else 'NO'}) |",
        *(f"| final state `{k}` | {v} |" for k, v in f.final_states.items() if v),
        *(f"| faults injected | {x} |" for x in f.faults),
        *(f"| leftover: {k} | {v} |" for k, v in f.leftovers.items()),
        *(f"| webhooks: {k} | {v} |" for k, v in f.webhooks.items()),
        "",
        "Expected by construction: "
        + ", ".join(f"{v} {k}" for k, v in sorted(f.expected.items()))
        + ".",
        END,
    ]
    return "\n".join(lines)


def write_report(section: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text += "\n" + section + "\n"
    REPORT.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--uploads", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--drain-timeout", type=float, default=900)
    parser.add_argument("--no-report", action="store_true", help="do not rewrite RELIABILITY.md")
    args = parser.parse_args(argv)
    figures = soak(args.uploads, args.concurrency, args.drain_timeout)
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    # asdict() would rebuild the Counters from (key, value) pairs: copy them as plain dicts.
    data = {
        **asdict(figures),
        "responses": dict(figures.responses),
        "expected": dict(figures.expected),
    }
    path.write_text(json.dumps(data, indent=2))
    section = markdown(figures, args.uploads, args.concurrency)
    print(section)
    if not args.no_report:
        write_report(section)
    lost = sum(figures.leftovers.values())
    accepted = figures.responses.get("200", 0)
    # Every fault here is one the pipeline must ride out: an upload given up on (`failed`) is
    # as much a defect as one left behind.
    given_up = figures.final_states.get("failed", 0)
    # Webhooks: each event accepted once after de-duplication, none missing, none forged.
    w = figures.webhooks
    hooks_ok = (
        w["events missing at the receiver"] == 0
        and w["events received that the store does not hold"] == 0
        and w["signatures refused by standardwebhooks"] == 0
        and w["deliveries given up (failed)"] == 0
    )
    return 0 if lost == 0 and given_up == 0 and figures.upload_rows == accepted and hooks_ok else 1


if __name__ == "__main__":
    sys.exit(main())
