"""Files that hold a secret (var/demo.json's token) are never readable by others, not even for a
moment between writing and chmod."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attachd.cli.provision import write_secret


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_secret_file_is_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_secret(tmp_path / "demo.json", '{"token": "t"}')
    finally:
        os.umask(old)
    assert _mode(tmp_path / "demo.json") == 0o600
    assert (tmp_path / "demo.json").read_text() == '{"token": "t"}'


def test_an_existing_wider_file_is_narrowed_before_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    path.write_text("old, longer content")
    path.chmod(0o644)
    write_secret(path, "new")
    assert _mode(path) == 0o600
    assert path.read_text() == "new"
