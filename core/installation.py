"""A local installation's settings file: what `make run` / `make up` chose (ports, the webhook
networks it allows, where its secrets are kept, insecure defaults), written to
`<ATTACHD_VAR_DIR>/attachd.env` by deploy/scripts/stack.sh and read under the environment by
every process of this checkout: the API, the workers, beat, Flower and the `attachd` command.
So the command an operator runs beside the stack sees exactly what the stack's services see.

The environment wins, variable by variable. A secret is recorded by the file that holds it,
`NAME_FILE=path`, never by its value; the file is still made readable by its owner only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from core.errors import ConfigError

FILE_NAME = "attachd.env"
FILE_SUFFIX = "_FILE"


def location(environ: Mapping[str, str]) -> Path:
    """Where this environment's installation file is: in its var dir (relative to the working
    directory, as every other path under var/ is)."""
    return Path(environ.get("ATTACHD_VAR_DIR") or "var") / FILE_NAME


def read(path: Path) -> dict[str, str]:
    """The file's variables, each `NAME_FILE=path` replaced by NAME with that file's content
    (without its final newline, as the shell's `$(cat path)` reads it); NAME itself, if the file
    also gives it, wins."""
    values = {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}
    for key in [k for k in values if k.endswith(FILE_SUFFIX)]:
        name, secret = key.removesuffix(FILE_SUFFIX), Path(values.pop(key))
        if name in values:
            continue
        try:
            values[name] = secret.read_text().rstrip("\n")
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ConfigError(f"{key} in {path}: {secret} cannot be read ({why})") from None
    return values


def environ(process: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment over its installation file (when there is one)."""
    process = os.environ if process is None else process
    path = location(process)
    if not path.is_file():
        return dict(process)
    return {**read(path), **process}


def _quoted(value: str) -> str:
    # Single quotes: nothing in the value is expanded; only \\ and \' are escapes there.
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def write(path: Path, values: Mapping[str, str], header: str) -> None:
    """The whole file at once (a process starting meanwhile reads the old one or the new one),
    created readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write("".join(f"# {line}\n" for line in header.splitlines()))
        out.write("".join(f"{key}={_quoted(value)}\n" for key, value in sorted(values.items())))
    tmp.replace(path)
