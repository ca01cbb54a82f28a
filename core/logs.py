"""Logging set-up shared by the API, workers and CLI: one JSON object per line, carrying the ids
that tie a line to its HTTP request, its upload and its Celery task.

The ids live in a context variable: the API binds the request id for the length of a request,
a worker binds the request, upload and task ids for the length of a task (workers/signals.py),
and the request id travels from one to the other in a message header.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "attachd_log_context", default=_EMPTY
)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def current() -> Mapping[str, str]:
    """The ids bound to this thread or task right now."""
    return _context.get()


def bind(**ids: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Add ids to the context; returns a token for `reset`. None values are ignored."""
    merged = {**_context.get(), **{k: v for k, v in ids.items() if v is not None}}
    return _context.set(merged)


def reset(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    token = bind(**ids)
    try:
        yield
    finally:
        reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, process, the bound ids, any
    `extra=` fields, and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        entry.update(_context.get())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry.setdefault(key, value)
        data = entry.get("data")
        if isinstance(data, Mapping) and "id" in data:
            # Celery's own lines ("received", "succeeded") carry the task in `extra={"data"}`;
            # the worker's main process logs them outside any task context.
            entry.setdefault("task_id", data["id"])
            entry.setdefault("task", data.get("name"))
            del entry["data"]
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            entry.update(_access_fields(record.args))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    # gunicorn passes its access-log atoms as the record's args; the query string is left out on
    # purpose (accessTokenId is a bearer secret).
    fields = {
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "status": atoms.get("s"),
        "bytes": atoms.get("B"),
        "duration_ms": atoms.get("M"),
        "remote": atoms.get("h"),
    }
    request_id = atoms.get("{x-request-id}o")
    if request_id and request_id != "-":
        fields["request_id"] = request_id
    return fields


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter(fmt: str = "json") -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Root logging to stderr in `fmt` (json or text). Replaces any handler set up before, so a
    process configured twice (gunicorn, then the app) logs each line once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def gunicorn_config(level: str, fmt: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs in the same format as the app's.
    Empty for text, which keeps gunicorn's own format."""
    if fmt != "json":
        return {}
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "core.logs.JsonFormatter"}},
        "handlers": {"json": handler},
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {
            name: {
                "level": level.upper() if name == "gunicorn.error" else "INFO",
                "handlers": ["json"],
                "propagate": False,
            }
            for name in ("gunicorn.error", "gunicorn.access")
        },
    }
