"""ATTACHD_LOG_FORMAT: `auto` (the default) gives a person at a terminal short text lines and
anything else (a file, a pipe, a log shipper) JSON; `json` and `text` force one."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from core import logs
from core.errors import ConfigError
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
UPLOAD = "3f2a9c1e5b7d4e0fa1b2c3d4e5f60718"
TASK = "7b1c2d3e-0000-4000-8000-000000000001"


@pytest.fixture
def terminal() -> Iterator[IO[str]]:
    """The writing end of a real pseudo-terminal."""
    leader, follower = pty.openpty()
    stream = os.fdopen(follower, "w")
    try:
        yield stream
    finally:
        stream.close()
        os.close(leader)


def record(msg: str, *args: object, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("workers.pipeline", level, __file__, 1, msg, args, None)


def test_auto_is_text_on_a_terminal_and_json_anywhere_else(terminal: IO[str]) -> None:
    assert logs.resolve("auto", terminal) == "text"
    assert logs.resolve("auto", io.StringIO()) == "json"
    with open(os.devnull, "w") as devnull:
        assert logs.resolve("auto", devnull) == "json"
    closed = io.StringIO()
    closed.close()
    assert logs.resolve("auto", closed) == "json"
    # Forced either way, whatever the stream is.
    assert logs.resolve("json", terminal) == "json"
    assert logs.resolve("text", io.StringIO()) == "text"
    assert isinstance(logs.formatter("auto", terminal), logs.TextFormatter)
    assert isinstance(logs.formatter("auto", io.StringIO()), logs.JsonFormatter)


def test_a_text_line_has_time_level_process_short_ids_and_the_message() -> None:
    with logs.bound(upload_id=UPLOAD, task_id=TASK, task="attachd.scan", request_id="r" * 32):
        line = logs.TextFormatter().format(record("scanned clean (%s)", "ClamAV 1.4"))
    # Time, level, the logger's last name with the process id.
    assert re.match(rf"\d\d:\d\d:\d\d INFO  pipeline\[{os.getpid()}\] ", line), line
    # The ids a person follows, cut to 8 characters; the task by its short name.
    assert f"upload {UPLOAD[:8]} scan {TASK[:8]} req rrrrrrrr: scanned clean (ClamAV 1.4)" in line
    assert UPLOAD not in line and TASK not in line


def test_an_id_the_message_names_is_shortened_there_not_repeated() -> None:
    with logs.bound(upload_id=UPLOAD, task_id=TASK, task="attachd.verify"):
        line = logs.TextFormatter().format(record("upload %s verified", UPLOAD))
    assert line.endswith(f"] verify {TASK[:8]}: upload {UPLOAD[:8]} verified"), line


def test_gunicorn_and_celery_speak_as_themselves() -> None:
    for logger, shown in (
        ("gunicorn.error", "gunicorn"),
        ("gunicorn.access", "access"),
        ("celery.app.trace", "celery"),
        ("api.intake", "intake"),
    ):
        rec = logging.LogRecord(logger, logging.INFO, __file__, 1, "x", (), None)
        assert f" {shown}[{os.getpid()}]: x" in logs.TextFormatter().format(rec)


def test_a_text_line_without_ids_and_celerys_task_lines() -> None:
    plain = logs.TextFormatter().format(record("ready", level=logging.WARNING))
    assert plain.endswith(f" WARNING pipeline[{os.getpid()}]: ready")
    # Celery's "received"/"succeeded" lines carry the task in `extra={"data"}`, outside any
    # task context (the worker's main process).
    celery = record("Task %s received", "attachd.verify")
    celery.data = {"id": TASK, "name": "attachd.verify"}
    assert f"verify {TASK[:8]}: Task attachd.verify received" in logs.TextFormatter().format(celery)


def test_a_text_line_keeps_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = logs.TextFormatter().format(rec)
    assert line.splitlines()[0].endswith(": failed") and "RuntimeError: boom" in line


def test_gunicorn_logs_in_the_same_format_as_the_app() -> None:
    text = logs.gunicorn_config("INFO", "text")
    assert text["formatters"] == {"text": {"()": "core.logs.TextFormatter"}}
    assert text["loggers"]["gunicorn.access"]["handlers"] == ["text"]
    as_json = logs.gunicorn_config("INFO", "json")
    assert as_json["formatters"] == {"json": {"()": "core.logs.JsonFormatter"}}


def test_the_setting_defaults_to_auto_and_refuses_anything_else() -> None:
    assert Settings.from_env({}).log_format == "auto"
    for fmt in ("auto", "json", "text"):
        assert Settings.from_env({"ATTACHD_LOG_FORMAT": fmt}).log_format == fmt
    with pytest.raises(ConfigError, match=r"ATTACHD_LOG_FORMAT.*auto, json or text"):
        Settings.from_env({"ATTACHD_LOG_FORMAT": "pretty"})


_PROGRAM = (
    "import logging; from core import logs; from core.settings import Settings; "
    "s = Settings.from_env(); logs.configure(s.log_level, s.log_format); "
    "logging.getLogger('attachd.demo').info('upload received')"
)


def _run(stderr: int | IO[str], fmt: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTACHD_")}
    if fmt:
        env["ATTACHD_LOG_FORMAT"] = fmt
    # A var dir with no installation file: not what `make up` recorded in this checkout's var/.
    with tempfile.TemporaryDirectory() as var:
        return subprocess.run(
            [sys.executable, "-c", _PROGRAM],
            cwd=REPO,
            env={**env, "ATTACHD_VAR_DIR": var},
            stderr=stderr,
            text=True,
            timeout=60,
            check=True,
        )


def test_a_process_logs_text_to_a_terminal_and_json_to_a_pipe() -> None:
    piped = _run(subprocess.PIPE, None).stderr.strip()
    assert json.loads(piped)["msg"] == "upload received"

    leader, follower = pty.openpty()
    try:
        with os.fdopen(os.dup(follower), "w") as tty:
            _run(tty, None)
        os.close(follower)
        seen = b""
        while b"upload received" not in seen:
            seen += os.read(leader, 4096)
    finally:
        os.close(leader)
    line = seen.decode().strip()
    assert " INFO  demo[" in line and line.endswith(": upload received")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    # Forced JSON on a terminal too.
    assert json.loads(_run(subprocess.PIPE, "json").stderr)["level"] == "INFO"
