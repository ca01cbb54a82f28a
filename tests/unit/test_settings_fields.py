"""One list of settings: the dataclass's fields. Each is read from its ATTACHD_ variable by the
parser its type (or its metadata) gives, and the README's defaults are the fields' own."""

from __future__ import annotations

import re
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from tests.conftest import REPO

# A value other than the default, as it is written in the environment, and as it is read; for
# the fields whose values are checked (URLs, names from a set, lists read item by item). The
# rest follow from the default's type in _sample.
SAMPLES: dict[str, tuple[str, Any]] = {
    "database_url": ("postgresql+psycopg://db/attachd", "postgresql+psycopg://db/attachd"),
    "redis_url": ("rediss://cache:6380/2", "rediss://cache:6380/2"),
    "url_prefix": ("/crafter-profile/", "/crafter-profile"),
    "log_level": ("WARNING", "WARNING"),
    "log_format": ("json", "json"),
    "image_sanitize": ("reencode", "reencode"),
    "image_renditions": ("512, 64,64", (64, 512)),
    "image_rendition_formats": ("webp", ("webp",)),
    "heif_serve": ("original", "original"),
    "demo_hosts": ("demo.local, x", ("demo.local", "x")),
    "webhook_secret_key": (
        "dGVzdC1vbmx5LXdlYmhvb2sta2V5LTAxMjM0NTY3ODk=",
        ("dGVzdC1vbmx5LXdlYmhvb2sta2V5LTAxMjM0NTY3ODk=",),
    ),
    "tus_cors_origins": (
        "https://a.example, https://b.example",
        ("https://a.example", "https://b.example"),
    ),
    "allowed_types": ("image/png, image/gif", ("image/png", "image/gif")),
    "worker_pools": ("scan=2, verify=1-3", ("scan=2", "verify=1-3")),
    "webhook_allowed_networks": ("10.0.0.0/8,::1/128", ("10.0.0.0/8", "::1/128")),
    "url_secret": ("k" * 32 + "," + "l" * 40, ("k" * 32, "l" * 40)),
    "max_upload_size": ("3MiB", 3 * 1024**2),
    "upload_part_size": ("6MiB", 6 * 1024**2),
}


def _sample(f: Field[Any]) -> tuple[str, Any]:
    if f.name in SAMPLES:
        return SAMPLES[f.name]
    default = f.default
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int):
        return f"{default + 1:_}", default + 1  # with the separator the parser allows
    if isinstance(default, float):
        return str(default + 1.5), default + 1.5
    if isinstance(default, Path):
        return "elsewhere", Path("elsewhere")
    if isinstance(default, str):
        return f"sample-{f.name}", f"sample-{f.name}"
    raise AssertionError(f"no sample for Settings.{f.name} ({f.type}): add one to SAMPLES")


@pytest.mark.parametrize("f", fields(Settings), ids=lambda f: f.name)
def test_every_field_is_read_from_its_variable(f: Field[Any]) -> None:
    raw, expected = _sample(f)
    assert expected != f.default, "the sample must differ from the default to show it was read"
    settings = Settings.from_env({"ATTACHD_" + f.name.upper(): raw})
    assert getattr(settings, f.name) == expected


def test_every_size_the_readme_writes_with_a_suffix_reads_as_its_default() -> None:
    readme = (REPO / "README.md").read_text()
    sizes = re.findall(r"^\| `ATTACHD_([A-Z0-9_]+)` \| `(\d+[KMG]iB)` \|", readme, re.MULTILINE)
    assert len(sizes) >= 5
    defaults = Settings()
    for name, text in sizes:
        read = Settings.from_env({"ATTACHD_" + name: text})
        assert getattr(read, name.lower()) == getattr(defaults, name.lower()), name
