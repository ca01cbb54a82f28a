"""All settings, read once from the environment at start-up.

Every variable is listed in README.md's settings table. A missing or malformed value stops start-up
with a message that names the variable, never the first request.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from core import installation, redisurl
from core.errors import ConfigError

_PREFIX = "ATTACHD_"


def _int(value: str) -> int:
    return int(value.replace("_", ""))


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _sizes(value: str) -> tuple[int, ...]:
    """A comma-separated list of positive pixel sizes, ascending and without repeats."""
    sizes = sorted({_int(item) for item in _csv(value)})
    if any(size < 1 for size in sizes):
        raise ValueError("sizes must be positive")
    return tuple(sizes)


def _fernet_keys(value: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys: each the url-safe base64 of 32 bytes (a 44-character text)."""
    keys = _csv(value)
    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key.encode())
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise ValueError("every key must be the url-safe base64 of 32 bytes (a Fernet key)")
    return keys


def _size(value: str) -> int:
    """Bytes, with an optional KiB/MiB/GiB suffix (5MiB, 2GiB) for readability."""
    text = value.strip().replace("_", "")
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
    for suffix, factor in units.items():
        if text.lower().endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(text)


@dataclass(frozen=True)
class WorkerPool:
    """One entry of ATTACHD_WORKER_POOLS: which queues a worker serves, with how many processes."""

    queues: tuple[str, ...]
    min_concurrency: int
    max_concurrency: int

    @property
    def name(self) -> str:
        return "+".join(self.queues)

    @property
    def autoscaled(self) -> bool:
        return self.min_concurrency != self.max_concurrency


def parse_pool(entry: str) -> WorkerPool:
    queues, sep, size = entry.partition("=")
    names = tuple(q.strip() for q in queues.split("+") if q.strip())
    if not sep or not names:
        raise ValueError(f"{entry!r} is not queues=concurrency")
    low, dash, high = size.strip().partition("-")
    lo = _int(low)
    hi = _int(high) if dash else lo
    if not 1 <= lo <= hi:
        raise ValueError(f"{entry!r}: concurrency must be N or MIN-MAX with 1 <= MIN <= MAX")
    return WorkerPool(names, lo, hi)


def _pools(value: str) -> tuple[str, ...]:
    entries = _csv(value)
    for entry in entries:
        parse_pool(entry)
    return entries


def _networks(value: str) -> tuple[str, ...]:
    nets = _csv(value)
    for net in nets:
        ipaddress.ip_network(net, strict=False)
    return nets


def _prefix(value: str) -> str:
    text = value.strip().rstrip("/")
    if text and not text.startswith("/"):
        raise ValueError("must start with '/'")
    return text


# How a variable is read follows from its field's type; a field whose type does not say it all
# (a size with a suffix, a list checked item by item) names its parser in its metadata.
PARSE = "parse"
_BY_TYPE: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: _int,
    float: float,
    bool: _bool,
    Path: Path,
    tuple[str, ...]: _csv,
}
_SIZE = {PARSE: _size}


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Field names map to ATTACHD_<NAME> (upper case)."""

    # Where the local services and the embedded SQLite store keep data and logs.
    var_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite file under var_dir, filled in by from_env
    # One Redis, or the Sentinels that name its current master (core/redisurl.py).
    redis_url: str = "redis://127.0.0.1:6379/0"
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "attachd"
    # The local MinIO that services.sh starts uses this too; production sets its own.
    s3_secret_key: str = "attachd-secret-key"  # noqa: S105
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    bucket_staging: str = "attachd-staging"
    bucket_attachments: str = "attachd-attachments"
    bucket_quarantine: str = "attachd-quarantine"
    # Staged objects older than this are removed by a MinIO lifecycle rule: the last backstop.
    staging_expiry_days: int = 2
    clamd_host: str = "127.0.0.1"
    clamd_port: int = 3310
    clamd_timeout: float = 60.0
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # nginx in front of gunicorn (make run and make up set it): nginx answers on api_host:api_port
    # and gunicorn listens on 127.0.0.1:api_backend_port. gunicorn's threads read a request line
    # as slowly as a client sends it, so a few dozen clients sending one byte each froze it; nginx
    # holds such clients at no cost and drops them after api_header_timeout seconds.
    api_proxy: bool = False
    api_backend_port: int = 8079
    api_header_timeout: float = 10.0
    api_workers: int = 2
    api_threads: int = 8
    url_prefix: str = field(default="", metadata={PARSE: _prefix})
    flower_port: int = 5555
    flower_user: str = ""
    flower_password: str = ""
    max_upload_size: int = field(default=5 * 1024 * 1024, metadata=_SIZE)
    max_parts: int = 16
    max_part_header_size: int = field(default=8 * 1024, metadata=_SIZE)
    max_filename_length: int = 255
    allowed_types: tuple[str, ...] = (
        "image/bmp",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/tiff",
        "image/svg+xml",
        # Beyond Crafter's list (docs/DECISIONS.md, issue 21): what phones and browsers save.
        "image/webp",
        "image/avif",
        "image/heic",
        "image/heif",
    )
    # Bytes sent to MinIO per multipart part; also the most the API holds in memory per upload.
    upload_part_size: int = field(default=8 * 1024 * 1024, metadata=_SIZE)
    # A client that sends slowly cannot hold a server thread forever: the whole body must arrive
    # within grace + size / min_rate seconds, and no read may wait longer than the idle timeout.
    upload_grace_seconds: float = 30.0
    upload_min_rate: int = field(default=64 * 1024, metadata=_SIZE)
    upload_idle_timeout: float = 30.0
    max_image_pixels: int = 40_000_000
    max_svg_size: int = field(default=5 * 1024 * 1024, metadata=_SIZE)
    # Files up to this size go through scan, verify and attach in one task, read once
    # (workers/fused.py); 0: every file takes the three queues.
    small_file_size: int = field(default=1024 * 1024, metadata=_SIZE)
    # Raster pictures before attach (workers/sanitize): strip metadata (location, camera, text)
    # and apply orientation, reencode always, or off; renditions' longest sides in pixels; days
    # the uploaded original is kept in its private bucket (0: deleted once the sanitized one is).
    image_sanitize: str = "strip"
    image_renditions: tuple[int, ...] = field(default=(128, 512), metadata={PARSE: _sizes})
    # Formats a rendition is negotiated into from the client's Accept, most preferred first
    # (api/renditions.py); empty: renditions keep the picture's own web format.
    image_rendition_formats: tuple[str, ...] = ("avif", "webp")
    # A HEIC/HEIF upload is served as `jpeg` (every browser shows it) or as the `original`
    # container (for native apps), stripped either way.
    heif_serve: str = "jpeg"
    keep_originals_days: int = 0
    bucket_originals: str = "attachd-originals"
    # Seconds an API process keeps the upload route's token and profile reads: a revoked token
    # or a deleted profile stops working for uploads within this bound (0: read every time).
    auth_cache_seconds: float = 5.0
    # Fair share between tenants (storage/fairshare.py): a tenant's first N uploads in flight
    # wait in the first lane, the next ones up to M in the second, the rest in the third, so
    # one tenant's burst never holds back another tenant's single upload.
    fair_interactive: int = 8
    fair_busy: int = 64
    # Resumable (tus) uploads: how long an unfinished one lives before it is reaped (kept under
    # MinIO's own 24 h drop of stale multipart uploads), where incomplete parts wait, and which
    # browser origins may call the tus routes (none: no CORS headers at all).
    tus_expiry_seconds: int = 12 * 3600
    bucket_tus: str = "attachd-tus"
    tus_cors_origins: tuple[str, ...] = ()
    # Uploads in a non-terminal state for longer than this are re-sent by the reconciler.
    reconcile_after_seconds: int = 300
    # Rescans after a signature update: files queued per sweep, and Celery's per-worker rate.
    rescan_batch: int = 200
    rescan_rate_limit: str = "10/s"
    log_level: str = "INFO"
    # json: one JSON object per line, with request, upload and task ids (docs/OPERATIONS.md);
    # text: one short line for reading by eye; auto: text on a terminal, JSON anywhere else.
    log_format: str = "auto"
    # The demo page (/demo) uploads with `attachd demo`'s token, held server-side, for anyone
    # who reaches the API: make run turns it on; nothing else should.
    demo: bool = False
    # Host names the demo answers to besides loopback and ATTACHD_API_HOST: a page reached
    # under any other name (DNS rebinding) gets nothing from it.
    demo_hosts: tuple[str, ...] = ()
    # Flower binds to loopback unless told otherwise; `attachd flower` refuses any other address
    # without basic auth.
    flower_host: str = "127.0.0.1"
    # The operator's HTTP basic credentials for the dashboard (and /metrics unless it is public).
    # No password, no dashboard: nothing operational is exposed until an operator sets one.
    ops_user: str = "ops"
    ops_password: str = ""
    # Prometheus may authenticate with this bearer token instead of the operator's password.
    metrics_token: str = ""
    metrics_public: bool = False
    # The built-in development secrets (MinIO's key, PostgreSQL's password, short operator
    # secrets) are refused at start-up unless this says the installation is a local one
    # (core/secrets_check.py); make run, the tests and the benchmarks set it.
    insecure_defaults: bool = False
    # Worker pools, one Celery worker each: "queues=concurrency", queues joined with '+',
    # concurrency N (fixed) or MIN-MAX (autoscaled). `attachd worker` runs them all.
    worker_pools: tuple[str, ...] = field(
        default=(
            "scan=1-4",
            "verify=1-2",
            "attach+maintenance=1",
            # Webhook deliveries wait on other people's servers: a pool of their own, so a slow
            # receiver never holds a process the pipeline needs.
            "webhooks=1-4",
        ),
        metadata={PARSE: _pools},
    )
    # A pool process is replaced after this many tasks or once it holds this much memory: image
    # decoding can leave a process bigger than it needs to stay.
    worker_max_tasks_per_child: int = 500
    worker_max_memory_per_child: int = field(default=512 * 1024 * 1024, metadata=_SIZE)
    # Webhooks: seconds per delivery attempt (connect and each read), the retry schedule (first
    # retry within `base`, doubling up to `max`, given up `give_up` after the event), and the
    # networks receivers may be in although private (none: only public addresses).
    webhook_timeout: float = 10.0
    webhook_retry_base_seconds: float = 15.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_give_up_seconds: float = 86400.0
    webhook_allowed_networks: tuple[str, ...] = field(default=(), metadata={PARSE: _networks})
    # Attempts in flight to one subscription at once: a receiver that answers slowly holds at
    # most this many webhook processes, the rest serve every other receiver.
    webhook_receiver_concurrency: int = 2
    # Fernet keys (32 url-safe base64 bytes) that encrypt webhook secrets at rest: the first
    # encrypts, every one decrypts (rotation: new,old, then `attachd webhook reseal`).
    webhook_secret_key: tuple[str, ...] = field(default=(), metadata={PARSE: _fernet_keys})
    # Signed download links (api/signing.py): HMAC keys, the first signs and every one verifies
    # (rotation); none set, the link routes answer 503. Links live at most this many seconds.
    url_secret: tuple[str, ...] = ()
    signed_url_max_seconds: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """From `environ` alone, or by default from the process environment over the local
        installation's file (var/attachd.env, core/installation.py), as every entry point reads
        them."""
        env = installation.environ() if environ is None else environ
        values: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            var = _PREFIX + name.upper()
            raw = env.get(var)
            if raw is None:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{var}={raw!r} is not valid: {exc}") from None
        settings = cls(**values)
        if not settings.database_url:
            db_path = (settings.var_dir / "attachd.db").resolve()
            settings = cls(**{**values, "database_url": f"sqlite:///{db_path}"})
        settings.validate()
        return settings

    def validate(self) -> None:
        def need(ok: bool, var: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"{_PREFIX}{var}: {why}")

        need(self.max_upload_size > 0, "MAX_UPLOAD_SIZE", "must be positive")
        # S3 multipart parts must be 5 MiB..5 GiB.
        need(
            5 * 1024 * 1024 <= self.upload_part_size <= 5 * 1024**3,
            "UPLOAD_PART_SIZE",
            "must be between 5MiB and 5GiB (S3 multipart limits)",
        )
        need(self.max_parts >= 1, "MAX_PARTS", "must be at least 1")
        need(bool(self.allowed_types), "ALLOWED_TYPES", "must list at least one type")
        need(
            self.database_url.split(":", 1)[0].split("+")[0] in {"sqlite", "postgresql"},
            "DATABASE_URL",
            "must be a sqlite:/// or postgresql+psycopg:// URL",
        )
        try:
            redisurl.parse(self.redis_url)
        except ValueError as exc:
            need(False, "REDIS_URL", str(exc))
        need(0 < self.clamd_port < 65536, "CLAMD_PORT", "must be a TCP port")
        need(0 < self.api_backend_port < 65536, "API_BACKEND_PORT", "must be a TCP port")
        need(
            not self.api_proxy or self.api_backend_port != self.api_port,
            "API_BACKEND_PORT",
            "must differ from ATTACHD_API_PORT (nginx listens there)",
        )
        need(self.api_header_timeout > 0, "API_HEADER_TIMEOUT", "must be positive")
        need(
            self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
            "LOG_LEVEL",
            "must be DEBUG, INFO, WARNING or ERROR",
        )
        need(
            self.log_format in {"auto", "json", "text"}, "LOG_FORMAT", "must be auto, json or text"
        )
        need(bool(self.worker_pools), "WORKER_POOLS", "must list at least one pool")
        need(bool(self.ops_user), "OPS_USER", "must not be empty")
        need(
            self.image_sanitize in {"strip", "reencode", "off"},
            "IMAGE_SANITIZE",
            "must be strip, reencode or off",
        )
        need(self.tus_expiry_seconds >= 60, "TUS_EXPIRY_SECONDS", "must be at least 60")
        # Incomplete parts expire by the tus bucket's lifecycle rule of STAGING_EXPIRY_DAYS.
        need(
            self.tus_expiry_seconds <= self.staging_expiry_days * 86400,
            "TUS_EXPIRY_SECONDS",
            "must not outlive ATTACHD_STAGING_EXPIRY_DAYS (the incomplete parts' expiry rule)",
        )
        need(self.keep_originals_days >= 0, "KEEP_ORIGINALS_DAYS", "must not be negative")
        need(self.auth_cache_seconds >= 0, "AUTH_CACHE_SECONDS", "must not be negative")
        need(self.fair_interactive >= 1, "FAIR_INTERACTIVE", "must be at least 1")
        need(
            self.fair_busy >= self.fair_interactive,
            "FAIR_BUSY",
            "must be at least FAIR_INTERACTIVE",
        )
        need(
            set(self.image_rendition_formats) <= {"avif", "webp"},
            "IMAGE_RENDITION_FORMATS",
            "must list avif and/or webp",
        )
        need(self.heif_serve in {"jpeg", "original"}, "HEIF_SERVE", "must be jpeg or original")
        need(self.webhook_timeout > 0, "WEBHOOK_TIMEOUT", "must be positive")
        need(self.webhook_retry_base_seconds > 0, "WEBHOOK_RETRY_BASE_SECONDS", "must be positive")
        need(
            self.webhook_retry_max_seconds >= self.webhook_retry_base_seconds,
            "WEBHOOK_RETRY_MAX_SECONDS",
            "must be at least WEBHOOK_RETRY_BASE_SECONDS",
        )
        need(
            self.webhook_receiver_concurrency >= 1,
            "WEBHOOK_RECEIVER_CONCURRENCY",
            "must be at least 1",
        )
        need(
            self.worker_max_tasks_per_child >= 1, "WORKER_MAX_TASKS_PER_CHILD", "must be at least 1"
        )
        # A short key can be guessed offline from one link; 32 characters is what `make run` and
        # `openssl rand -hex 16` give.
        need(
            all(len(key) >= 32 for key in self.url_secret),
            "URL_SECRET",
            "every key must be at least 32 characters",
        )
        need(self.signed_url_max_seconds >= 1, "SIGNED_URL_MAX_SECONDS", "must be at least 1")

    def pools(self) -> tuple[WorkerPool, ...]:
        return tuple(parse_pool(entry) for entry in self.worker_pools)


def _parsers() -> dict[str, Callable[[str], Any]]:
    """Each field's parser, from its metadata or else its type; a field with neither is a
    mistake caught at import, not at the first start-up that sets its variable."""
    types = get_type_hints(Settings)
    parsers = {}
    for f in fields(Settings):
        parse = f.metadata.get(PARSE) or _BY_TYPE.get(types[f.name])
        if parse is None:
            raise TypeError(f"Settings.{f.name}: no parser for {types[f.name]}; add metadata")
        parsers[f.name] = parse
    return parsers


_PARSERS = _parsers()
