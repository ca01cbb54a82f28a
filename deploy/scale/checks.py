"""make scale-test, checks: where every upload ended (the record store's table as the migrations
define it, and the buckets), what was left behind, and the summary line."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
import urllib.parse
from collections import Counter
from datetime import datetime
from typing import Any

import requests
from faults import ACTIVE, Figures, Sent
from minio import Minio
from startup import Stack, _get, log


def uploads(stack: Stack) -> list[dict[str, Any]]:
    cols = [
        "id",
        "state",
        "original_name",
        "attachment_id",
        "seq",
        "created_at",
        "finished_at",
        "updated_at",
        "staging_key",
        "object_key",
        "quarantine_key",
        "attempts",
        "reason",
        "sha256",
    ]
    # Served beside an attached version when the schema has them: the sanitized file's
    # digest and the renditions (storage/served.py).
    have = set(
        stack.must(
            stack.psql(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'uploads'"
            ),
            "columns",
        ).stdout.split()
    )
    cols += [c for c in ("served_sha256", "renditions") if c in have]
    epoch = {"created_at", "finished_at", "updated_at"}
    sel = ", ".join(
        f"extract(epoch from {c})"
        if c in epoch
        else f"replace(replace({c}::text, E'\\t', ' '), E'\\n', ' ')"
        if c == "reason"
        else f"{c}::text"
        if c == "renditions"
        else c
        for c in cols
    )
    # Column names from this file and the catalogue only: no value is interpolated.
    query = f"SELECT {sel} FROM uploads ORDER BY seq"  # noqa: S608
    res = stack.must(stack.psql(query), "SELECT uploads")
    rows = []
    for line in res.stdout.splitlines():
        vals = line.split("\t")
        row: dict[str, Any] = dict(zip(cols, [v if v != "" else None for v in vals], strict=False))
        for c in epoch:
            row[c] = float(row[c]) if row[c] else None
        renditions = json.loads(row.get("renditions") or "null") or []
        # A rendition no smaller than the file is the file itself ("stored": false).
        row["served_keys"] = [
            row["object_key"],
            *(f"{row['object_key']}@{r['px']}" for r in renditions if r.get("stored", True)),
        ]
        row["served_sha256"] = row.get("served_sha256") or row["sha256"]
        rows.append(row)
    return rows


def bucket_keys(stack: Stack) -> dict[str, set[str]]:
    client = Minio(stack.s3_endpoint, "attachd", stack.s3_secret, secure=False)
    return {
        b: {o.object_name for o in client.list_objects(f"attachd-{b}", recursive=True)}
        for b in ("staging", "attachments", "quarantine")
    }


def drain(stack: Stack, args: argparse.Namespace, fig: Figures) -> None:
    """Until every upload has ended and staging holds nothing without a record (what a request
    cut off by a fault staged), as beat's reconciler gets there; with --sweep, the drain also
    runs `attachd reconcile` itself every few seconds once the uploads have ended."""
    t0 = time.monotonic()
    counts: Counter[str] = Counter()
    orphans = -1
    host = stack.topo.of_kind("api")[0].name
    while time.monotonic() - t0 < args.drain_timeout:
        rows = uploads(stack)
        counts = Counter(r["state"] for r in rows)
        if not any(counts[s] for s in ACTIVE):
            if fig.seconds_pipeline_done is None:
                fig.seconds_pipeline_done = round(time.monotonic() - t0, 1)
            staged = bucket_keys(stack)["staging"]
            orphans = len(staged - {r["staging_key"] for r in rows if r["staging_key"]})
            if orphans == 0:
                break
            if args.sweep:
                stack.must(
                    stack.rig.run(host, ["attachd", "reconcile"], stack.env(host)),
                    "attachd reconcile",
                )
        time.sleep(2)
    fig.seconds_drain = round(time.monotonic() - t0, 1)
    log(
        f"drained in {fig.seconds_drain}s (pipeline done after {fig.seconds_pipeline_done}s, "
        f"{orphans} orphaned staged objects left): {dict(counts)}"
    )


def check(stack: Stack, sent: list[Sent], fig: Figures) -> None:
    rows = uploads(stack)
    keys = bucket_keys(stack)
    fig.final_states = dict(Counter(r["state"] for r in rows))
    by_name: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_name.setdefault(r["original_name"], []).append(r)
    # One record per accepted upload; a request whose answer was lost to a fault (502, a
    # reset) may have been recorded all the same, and must then end like any other.
    for s in sent:
        if s.name == "again.png":
            continue
        mine = by_name.get(s.name, [])
        if s.status == "200":
            if not mine:
                fig.lost.append(f"{s.name}: accepted, no record")
            elif len(mine) > 1:
                fig.duplicated.append(f"{s.name}: {len(mine)} records")
        elif mine:
            fig.answers_lost_but_kept += 1
        for r in mine:
            want = {"refused": "(no record)", "attached-or-superseded": "attached"}.get(
                s.expect, s.expect
            )
            if r["state"] != want:
                fig.lost.append(f"{s.name}: {r['state']} ({r['reason']}), expected {want}")
    again_ok = sum(1 for s in sent if s.name == "again.png" and s.status == "200")
    again = by_name.get("again.png", [])
    if len(again) < again_ok:
        fig.lost.append(f"again.png: {again_ok} accepted, {len(again)} records")
    fig.answers_lost_but_kept += max(0, len(again) - again_ok)
    # Never two versions served, never an older one attached after a newer one.
    by_attachment: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_attachment.setdefault(r["attachment_id"], []).append(r)
    for att, versions in by_attachment.items():
        attached = [r for r in versions if r["state"] == "attached"]
        newest_ok = max(
            (int(r["seq"]) for r in versions if r["state"] in ("attached", "superseded")),
            default=None,
        )
        detail = ", ".join(
            f"{r['id']} seq {r['seq']} {r['state']} at {r['finished_at']}"
            for r in versions
            if r["state"] in ("attached", "superseded")
        )
        if len(attached) > 1:
            fig.duplicated.append(f"attachment {att}: {len(attached)} versions attached: {detail}")
        elif attached and int(attached[0]["seq"]) != newest_ok:
            fig.duplicated.append(
                f"attachment {att}: an older version attached over a newer: {detail}"
            )
        if not attached and newest_ok is not None:
            fig.lost.append(f"attachment {att}: verified versions but none attached")
    for r in again:
        if r["state"] not in ("attached", "superseded"):
            fig.lost.append(f"again.png {r['id']}: {r['state']} ({r['reason']})")
    # Leftovers, counted as the soak counts them (bench/soak.py, leftovers()).
    want_staged = {r["staging_key"] for r in rows if r["staging_key"]}
    want_attached = {k for r in rows if r["state"] == "attached" for k in r["served_keys"]}
    want_quarantined = {r["quarantine_key"] for r in rows if r["quarantine_key"]}
    fig.leftovers = {
        "staged objects without an upload": len(keys["staging"] - want_staged),
        "uploads whose staged object is missing": len(want_staged - keys["staging"]),
        "attached objects not served": len(keys["attachments"] - want_attached),
        "attached uploads without their object": len(want_attached - keys["attachments"]),
        "quarantined objects without a record": len(keys["quarantine"] - want_quarantined),
        "infected uploads without quarantined evidence": len(want_quarantined - keys["quarantine"]),
        "uploads still in the pipeline": sum(1 for r in rows if r["state"] in ACTIVE),
    }
    # Downloads go on with a MinIO node down: the bytes served are the bytes the record says
    # were verified (as received, or sanitized), of the upload that was sent.
    base = f"{stack.api_url}/api/1/profile/{stack.profile}/attachment"
    clean = [s for s in sent if s.expect == "attached" and s.status == "200"][
        :: max(1, len(sent) // 40)
    ]
    for s in clean:
        if len(by_name.get(s.name, [])) != 1:
            continue  # counted above
        (row,) = by_name[s.name]
        name = urllib.parse.quote(s.name.rsplit(".", 1)[0])
        resp = requests.get(f"{base}/{name}", params={"accessTokenId": stack.token}, timeout=30)
        digest = hashlib.sha256(resp.content).hexdigest()
        if resp.status_code != 200 or row["sha256"] != s.sha256 or digest != row["served_sha256"]:
            fig.lost.append(f"{s.name}: download {resp.status_code}, not the bytes verified")
        fig.downloads_checked += 1
    # The operator's views, through lb.
    fig.dashboard = _get(
        f"{stack.api_url}/ops/dashboard", auth=("ops", stack.ops_password)
    ).status_code
    fig.flower = _get(
        f"{stack.flower_url}/api/workers", auth=("ops", stack.ops_password)
    ).status_code
    for f in fig.faults:
        if "master_before" in f:
            f.update(attach_stall(rows, f["at"]))
            f["handoffs_failed"] = handoffs_failed(stack, f["at"], f["at"] + 60)
    # The partitioned worker's tasks: when their uploads ended, and who ended them.
    p = fig.partition
    if p:
        ends = {r["id"]: r for r in rows}
        held = held_at_cut(stack, p)
        held = [u for u in held if u in ends and not (ends[u]["finished_at"] or 1e12) < p["at"]]
        p["held"] = held
        done_at = [ends[u]["finished_at"] for u in held if ends[u]["finished_at"]]
        p["held_finished"] = len(done_at)
        p["seconds_to_finish_held"] = round(max(done_at) - p["at"], 1) if done_at else None
        by = finished_by(stack, held, p["at"])
        p["finished"] = {
            u: {
                "by": by.get(u),
                "state": ends[u]["state"],
                "seconds_after_cut": round((ends[u]["finished_at"] or 0) - p["at"], 1),
            }
            for u in held
        }


def worker_log(stack: Stack, host: str) -> list[dict[str, Any]]:
    lines = []
    path = stack.rig.log(host)
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "ts" in entry:
            entry["t"] = datetime.fromisoformat(entry["ts"]).timestamp()
            lines.append(entry)
    return lines


def held_at_cut(stack: Stack, p: dict[str, Any]) -> list[str]:
    """The uploads whose tasks the partitioned host had received and not finished at the cut:
    from its own log: received before the cut, and its last line at or after it (or none)."""
    tasks: dict[str, dict[str, Any]] = {}
    for e in worker_log(stack, p["host"]):
        tid = e.get("task_id")
        if not tid:
            continue
        t = tasks.setdefault(tid, {"received": None, "last": None, "upload": None})
        if "received" in e.get("msg", "") and t["received"] is None:
            t["received"] = e["t"]
        elif e.get("logger") == "celery.app.trace":
            t["last"] = e["t"]
        t["upload"] = t["upload"] or e.get("upload_id")
    held = {
        t["upload"]
        for t in tasks.values()
        if t["upload"]
        and t["received"] is not None
        and t["received"] < p["at"]
        and (t["last"] is None or t["last"] >= p["at"])
    }
    return sorted(held)


def finished_by(stack: Stack, uploads: list[str], after: float) -> dict[str, str]:
    """Which worker host logged the last successful step of each upload, after the cut."""
    who: dict[str, tuple[float, str]] = {}
    for h in stack.topo.of_kind("worker"):
        for e in worker_log(stack, h.name):
            u = e.get("upload_id")
            if (
                u in uploads
                and e["t"] >= after
                and "succeeded" in e.get("msg", "")
                and (u not in who or who[u][0] < e["t"])
            ):
                who[u] = (e["t"], h.name)
    return {u: w for u, (_, w) in who.items()}


def attach_stall(rows: list[dict[str, Any]], at: float) -> dict[str, Any]:
    """How long attaching stopped around a fault at `at`: the longest gap between two
    consecutive attaches that ends after it and begins within 90 s of it (which takes in the
    reconciler's re-sending of what could not be handed over); the longest that begins within
    5 s of it (the failover itself: the workers finding the new master); and for scale the
    longest in the 30 s before it (the load's own rhythm; None when nothing was attached yet)."""
    times = sorted(r["finished_at"] for r in rows if r["state"] == "attached" and r["finished_at"])
    pairs = list(itertools.pairwise(times))
    around = [(b - a, b) for a, b in pairs if b > at and a <= at + 90]
    before = [b - a for a, b in pairs if at - 30 <= a and b <= at]
    gap, ended = max(around, default=(0.0, at))
    # A gap the failover caused begins before the new master is named (seconds, here).
    failover = [g for g, b in around if b - g <= at + 5]
    first = next((t for t in times if t > at), None)
    return {
        "attach_stall_seconds": round(gap, 1),
        "attach_stall_ended_seconds_after": round(ended - at, 1),
        "attach_gap_at_failover_seconds": round(max(failover, default=0.0), 1),
        "first_attach_seconds_after": None if first is None else round(first - at, 1),
        "attach_gap_before_seconds": round(max(before), 1) if before else None,
    }


def handoffs_failed(stack: Stack, since: float, until: float) -> int:
    """Uploads the API accepted but could not hand to the broker (left to the reconciler)."""
    n = 0
    for h in stack.topo.of_kind("api"):
        for e in worker_log(stack, h.name):
            if since <= e["t"] < until and "enqueue of upload" in e.get("msg", ""):
                n += 1
    return n


def summary(fig: Figures) -> str:
    accepted = fig.responses.get("200", 0)
    p = fig.partition
    held = p.get("held", [])
    faults = [
        f"{p.get('host')}'s link down {p.get('seconds_down')}s holding {len(held)} "
        f"task(s), finished {p.get('seconds_to_finish_held')}s after the cut"
    ]
    for f in fig.faults:
        line = (
            f"{f['fault']}: {f.get('failed_requests', 0)} requests failed "
            f"over {f.get('failed_for_seconds', 0)}s"
        )
        if "master_before" in f:
            line += (
                f" ({f.get('statuses') or 'none'}), slowest answer "
                f"{f.get('slowest_answer_seconds')}s; {f.get('master_after')} promoted after "
                f"{f.get('seconds_to_promotion')}s; attaches stopped "
                f"{f.get('attach_gap_at_failover_seconds')}s at the failover (at most "
                f"{f.get('attach_gap_before_seconds')}s apart before it); "
                f"{f.get('handoffs_failed')} hand-offs left to the reconciler, the longest gap "
                f"in attaches {f.get('attach_stall_seconds')}s"
            )
        faults.append(line)
    return (
        f"scale-test: {fig.uploads} uploads through lb, {accepted} accepted; "
        + "; ".join(faults)
        + f"; drained {fig.seconds_drain}s after the load, {fig.seconds_total}s in all: "
        f"{len(fig.lost)} lost, {len(fig.duplicated)} duplicated, "
        f"{sum(fig.leftovers.values())} leftovers"
    )
