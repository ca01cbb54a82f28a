"""Logging set-up shared by the API, workers and CLI: one JSON object per line, carrying the ids
that tie a line to its HTTP request, its upload and its Celery task; or, for a person at a
terminal, one short line of text with the same ids abbreviated (`auto` picks by the stream).

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


# The ids a person follows an upload by, in the order they read them; 8 characters tell one
# upload or task from another on a screen (the full ids are in the JSON lines and the store).
_SHORT_IDS = (("upload_id", "upload"), ("task_id", "task"), ("request_id", "req"))
_SHORT = 8


class TextFormatter(logging.Formatter):
    """One line for a person: `09:41:07 INFO  api[4242] upload 3f2a9c1e: the message`. The
    logger's last name stands for the process (api, pipeline, celery...), the ids are cut short,
    and the task's short name is shown beside its id."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        ids = {**_context.get()}
        data = getattr(record, "data", None)
        if isinstance(data, Mapping) and "id" in data:
            ids.setdefault("task_id", str(data["id"]))
            ids.setdefault("task", str(data.get("name") or ""))
        message = record.getMessage()
        tags = []
        for key, label in _SHORT_IDS:
            value = ids.get(key)
            if not value:
                continue
            if value in message:
                # "upload 3f2a9c1e… scanned clean" says it already: shortened there, not repeated.
                message = message.replace(value, value[:_SHORT])
                continue
            if key == "task_id" and ids.get("task"):
                label = ids["task"].rsplit(".", 1)[-1]
            tags.append(f"{label} {value[:_SHORT]}")
        line = f"{when} {record.levelname:<5} {_process(record)}"
        if tags:
            line += " " + " ".join(tags)
        line += ": " + message
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _process(record: logging.LogRecord) -> str:
    # Who speaks, in a word: gunicorn's "error" logger is its general one, and Celery's many
    # loggers (strategy, trace, mingle...) are all Celery to a reader.
    name = record.name
    if name == "gunicorn.error":
        name = "gunicorn"
    elif name.startswith("celery."):
        name = "celery"
    return f"{name.rsplit('.', 1)[-1]}[{record.process}]"


def resolve(fmt: str, stream: Any = None) -> str:
    """`json` or `text`: `auto` is text when `stream` (default stderr) is a terminal, JSON when
    it goes to a file, a pipe or a log shipper."""
    if fmt != "auto":
        return fmt
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no isatty, or already closed
        return "json"


def formatter(fmt: str = "json", stream: Any = None) -> logging.Formatter:
    return JsonFormatter() if resolve(fmt, stream) == "json" else TextFormatter()


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    """Root logging to stderr in `fmt` (auto, json or text). Replaces any handler set up before,
    so a process configured twice (gunicorn, then the app) logs each line once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt, sys.stderr))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def gunicorn_config(level: str, fmt: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error and access logs in the same format as the app's."""
    name = resolve(fmt, sys.stderr)
    cls = "core.logs.JsonFormatter" if name == "json" else "core.logs.TextFormatter"
    handler = {"class": "logging.StreamHandler", "formatter": name, "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {name: {"()": cls}},
        "handlers": {name: handler},
        "root": {"level": level.upper(), "handlers": [name]},
        "loggers": {
            logger: {
                "level": level.upper() if logger == "gunicorn.error" else "INFO",
                "handlers": [name],
                "propagate": False,
            }
            for logger in ("gunicorn.error", "gunicorn.access")
        },
    }
