"""What a person sees in `make run`'s terminal for one upload: the API and a worker started by
attachd.stack, their lines prefixed onto one stream as `make run` shows them, in the text format
`auto` picks on a terminal. The upload's story is told at INFO, in order, by its short id."""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import pytest
import requests

from attachd.stack import Component, StackError, workers_ready
from attachd.stack import Stack as ProcessStack
from tests.conftest import _free_port, png_bytes, png_with_chunk
from tests.integration.conftest import Stack, Tenant
from tests.integration.ops_support import start_redis, stop_process

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


def _story(out: io.BytesIO, upload_id: str) -> list[str]:
    """The lines that name this upload (by its short id), in the order they were shown."""
    short = upload_id[:8]
    return [
        line
        for line in out.getvalue().decode(errors="replace").splitlines()
        if f"upload {short}" in line
    ]


def test_one_upload_reads_as_a_story(
    stack: Stack, tenant: Tenant, tmp_path: Path, eicar: bytes
) -> None:
    # A Redis of its own, so that this worker, not the session's, runs these uploads.
    redis_url, redis = start_redis(tmp_path)
    env = {
        **stack.env,
        "ATTACHD_REDIS_URL": redis_url,
        "ATTACHD_API_PORT": str(_free_port()),
        # What deploy/scripts/stack.sh decides for `auto` when make run's output is a terminal.
        "ATTACHD_LOG_FORMAT": "text",
    }
    worker = Component(
        "worker",
        (
            str(BIN / "celery"),
            "-A",
            "workers.app",
            "worker",
            "-Q",
            "scan,verify,attach,maintenance",
            "--concurrency=1",
            f"--hostname=story-{os.getpid()}@%h",
        ),
        workers_ready(redis_url),
    )
    out = io.BytesIO()
    processes = ProcessStack(env, ("api", worker), echo=out, start_timeout=30, stop_timeout=20)
    try:
        try:
            processes.start()
        except StackError as exc:
            pytest.fail(str(exc))
        base = f"{processes.base_url}/api/1/profile/{tenant.profile_id}"
        token = {"accessTokenId": tenant.token}
        ids = {}
        for name, data in (
            ("story.png", png_bytes(20, 10)),
            ("story-virus.png", png_with_chunk(eicar)),
        ):
            resp = requests.post(
                base + "/uploadAttachment",
                params=token,
                files={"attachment": (name, data)},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            upload_id = stack.records.latest_upload(resp.json()["id"]).id  # type: ignore[union-attr]
            ids[name] = upload_id
            stack.wait_for_state(upload_id, ("attached", "infected"))
    finally:
        processes.stop()
        stop_process(redis)

    clean = _story(out, ids["story.png"])
    short = ids["story.png"][:8]
    expected = [
        rf"^\d\d:\d\d:\d\d api +\| \d\d:\d\d:\d\d INFO  intake\[\d+\] req \w{{8}}: upload {short} "
        r"received: 'story.png' \(image/png, \d+ bytes\) for profile \w{24}; sending it to scan$",
        rf"^.* worker +\| .* INFO  pipeline\[\d+\] scan \w{{8}} req \w{{8}}: upload {short} "
        r"scanned clean \(ClamAV [^)]+\); checking its content next$",
        # A small file's verify and attach run in its scan task (workers/fused.py).
        rf"^.* INFO  pipeline\[\d+\] scan \w{{8}} req \w{{8}}: upload {short} verified: "
        r"it is image/png; attaching next$",
        rf"^.* INFO  pipeline\[\d+\] scan \w{{8}} req \w{{8}}: upload {short} attached: "
        r"served from now on$",
    ]
    told = [line for line in clean if " INFO  intake[" in line or " INFO  pipeline[" in line]
    assert len(told) == len(expected), "\n".join(clean)
    for line, pattern in zip(told, expected, strict=True):
        assert re.match(pattern, line), line
    # Every id on screen is a short one.
    assert ids["story.png"] not in out.getvalue().decode()
    # Not a JSON object in sight.
    assert not [line for line in out.getvalue().decode().splitlines() if '{"ts"' in line]

    virus = _story(out, ids["story-virus.png"])
    assert any(" WARNING pipeline[" in line and "infected: " in line for line in virus), "\n".join(
        virus
    )
