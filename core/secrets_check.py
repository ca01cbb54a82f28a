"""The secrets start-up refuses: the built-in development ones, and operator secrets too short to
stand a guess. The API, the workers, beat and `attachd check-config` all call `check_secrets`, so
what the command reports is what start-up does.

`ATTACHD_INSECURE_DEFAULTS=1` (make run, the tests, the benchmarks) turns each refusal into a
warning: a local stack may run on the keys its own scripts made up.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger(__name__)

# The development values: the defaults of core/settings.py and of the old docker-compose.yml.
BUILTIN_S3_SECRET = Settings.s3_secret_key
BUILTIN_DB_PASSWORDS = frozenset({"attachd", "postgres"})
# An operator password or metrics token shorter than this falls to a patient guesser; 16
# characters of token_urlsafe are 96 bits.
MIN_SECRET_LENGTH = 16

# Fields whose values are never printed; URLs have their password masked instead.
SECRET_FIELDS = frozenset(
    {
        "s3_secret_key",
        "ops_password",
        "metrics_token",
        "flower_password",
        "url_secret",
        "webhook_secret_key",
    }
)
URL_FIELDS = frozenset({"database_url", "redis_url"})
MASK = "********"


def problems(settings: Settings) -> list[str]:
    """What start-up refuses in these settings, one line each, naming the variable."""
    found = []
    if settings.s3_secret_key == BUILTIN_S3_SECRET:
        found.append("ATTACHD_S3_SECRET_KEY is the built-in development key")
    password = urlsplit(settings.database_url).password
    if password is not None and password in BUILTIN_DB_PASSWORDS:
        found.append("ATTACHD_DATABASE_URL holds the built-in development password")
    for field, var in (
        ("ops_password", "ATTACHD_OPS_PASSWORD"),
        ("metrics_token", "ATTACHD_METRICS_TOKEN"),
        ("flower_password", "ATTACHD_FLOWER_PASSWORD"),
    ):
        value = getattr(settings, field)
        # Empty means the door stays closed (403), which is safe; short means it opens to a guess.
        if value and len(value) < MIN_SECRET_LENGTH:
            found.append(f"{var} is shorter than {MIN_SECRET_LENGTH} characters")
    return found


def _log_warning(line: str) -> None:
    log.warning("insecure defaults allowed (ATTACHD_INSECURE_DEFAULTS): %s", line)


def check_secrets(settings: Settings, warn: Callable[[str], None] = _log_warning) -> list[str]:
    """Refuse (ConfigError) what `problems` finds, unless insecure defaults are allowed: then
    warn of each (in the log, by default) and return them."""
    found = problems(settings)
    if found and not settings.insecure_defaults:
        raise ConfigError(
            "refusing to start with development secrets: "
            + "; ".join(found)
            + " (set real ones, or ATTACHD_INSECURE_DEFAULTS=1 for a local stack)"
        )
    for line in found:
        warn(line)
    return found


def _mask_url(url: str) -> str:
    if ";" in url:  # a sentinel:// list: each piece may carry the password
        return ";".join(_mask_url(piece) for piece in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    return parts._replace(netloc=netloc).geturl()


def effective(settings: Settings) -> dict[str, str]:
    """Every setting as ATTACHD_<NAME> -> its value as text, with the secrets masked."""
    shown = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in SECRET_FIELDS:
            text = MASK if value else ""
        elif f.name in URL_FIELDS:
            text = _mask_url(str(value))
        elif isinstance(value, tuple):
            text = ",".join(str(item) for item in value)
        else:
            text = str(value)
        shown["ATTACHD_" + f.name.upper()] = text
    return shown
