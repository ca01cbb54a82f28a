"""All settings, read once from the environment at start-up.

Every variable is listed in README.md's settings table. A missing or malformed value stops start-up
with a message that names the variable, never the first request.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Settings:
    """The whole configuration. Field names map to ATTACHD_<NAME> (upper case)."""

    # Where the local services and the embedded SQLite store keep data and logs.
    var_dir: Path = Path("var")
    database_url: str = ""  # default: sqlite file under var_dir, filled in by from_env
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
    url_prefix: str = ""
    flower_port: int = 5555
    flower_user: str = ""
    flower_password: str = ""
    max_upload_size: int = 5 * 1024 * 1024
    max_parts: int = 16
    max_part_header_size: int = 8 * 1024
    max_filename_length: int = 255
    allowed_types: tuple[str, ...] = (
        "image/bmp",
        "image/gif",
        "image/jpeg",
        "image/png",
        "image/tiff",
        "image/svg+xml",
    )
    # Bytes sent to MinIO per multipart part; also the most the API holds in memory per upload.
    upload_part_size: int = 8 * 1024 * 1024
    # A client that sends slowly cannot hold a server thread forever: the whole body must arrive
    # within grace + size / min_rate seconds, and no read may wait longer than the idle timeout.
    upload_grace_seconds: float = 30.0
    upload_min_rate: int = 64 * 1024
    upload_idle_timeout: float = 30.0
    max_image_pixels: int = 40_000_000
    max_svg_size: int = 5 * 1024 * 1024
    # Files up to this size go through scan, verify and attach in one task, read once
    # (workers/fused.py); 0: every file takes the three queues.
    small_file_size: int = 1024 * 1024
    # Raster pictures before attach (workers/sanitize): strip metadata (location, camera, text)
    # and apply orientation, reencode always, or off; renditions' longest sides in pixels; days
    # the uploaded original is kept in its private bucket (0: deleted once the sanitized one is).
    image_sanitize: str = "strip"
    image_renditions: tuple[int, ...] = (128, 512)
    keep_originals_days: int = 0
    bucket_originals: str = "attachd-originals"
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
    worker_pools: tuple[str, ...] = (
        "scan=1-4",
        "verify=1-2",
        "attach+maintenance=1",
        # Webhook deliveries wait on other people's servers: a pool of their own, so a slow
        # receiver never holds a process the pipeline needs.
        "webhooks=1-4",
    )
    # A pool process is replaced after this many tasks or once it holds this much memory: image
    # decoding can leave a process bigger than it needs to stay.
    worker_max_tasks_per_child: int = 500
    worker_max_memory_per_child: int = 512 * 1024 * 1024
    # Webhooks: seconds per delivery attempt (connect and each read), the retry schedule (first
    # retry within `base`, doubling up to `max`, given up `give_up` after the event), and the
    # networks receivers may be in although private (none: only public addresses).
    webhook_timeout: float = 10.0
    webhook_retry_base_seconds: float = 15.0
    webhook_retry_max_seconds: float = 3600.0
    webhook_give_up_seconds: float = 86400.0
    webhook_allowed_networks: tuple[str, ...] = ()
    # Attempts in flight to one subscription at once: a receiver that answers slowly holds at
    # most this many webhook processes, the rest serve every other receiver.
    webhook_receiver_concurrency: int = 2
    # Fernet keys (32 url-safe base64 bytes) that encrypt webhook secrets at rest: the first
    # encrypts, every one decrypts (rotation: new,old, then `attachd webhook reseal`).
    webhook_secret_key: tuple[str, ...] = ()
    # Signed download links (api/signing.py): HMAC keys, the first signs and every one verifies
    # (rotation); none set, the link routes answer 503. Links live at most this many seconds.
    url_secret: tuple[str, ...] = ()
    signed_url_max_seconds: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        parsers: dict[str, Callable[[str], Any]] = {
            "var_dir": Path,
            "database_url": str,
            "redis_url": str,
            "s3_endpoint": str,
            "s3_access_key": str,
            "s3_secret_key": str,
            "s3_secure": _bool,
            "s3_region": str,
            "bucket_staging": str,
            "bucket_attachments": str,
            "bucket_quarantine": str,
            "staging_expiry_days": _int,
            "clamd_host": str,
            "clamd_port": _int,
            "clamd_timeout": float,
            "api_host": str,
            "api_port": _int,
            "api_proxy": _bool,
            "api_backend_port": _int,
            "api_header_timeout": float,
            "api_workers": _int,
            "api_threads": _int,
            "url_prefix": _prefix,
            "flower_port": _int,
            "flower_user": str,
            "flower_password": str,
            "max_upload_size": _size,
            "max_parts": _int,
            "max_part_header_size": _size,
            "max_filename_length": _int,
            "allowed_types": _csv,
            "upload_part_size": _size,
            "upload_grace_seconds": float,
            "upload_min_rate": _size,
            "upload_idle_timeout": float,
            "max_image_pixels": _int,
            "max_svg_size": _size,
            "small_file_size": _size,
            "image_sanitize": str,
            "image_renditions": _sizes,
            "keep_originals_days": _int,
            "bucket_originals": str,
            "reconcile_after_seconds": _int,
            "rescan_batch": _int,
            "rescan_rate_limit": str,
            "log_level": str,
            "log_format": str,
            "demo": _bool,
            "demo_hosts": _csv,
            "flower_host": str,
            "ops_user": str,
            "ops_password": str,
            "metrics_token": str,
            "metrics_public": _bool,
            "insecure_defaults": _bool,
            "worker_pools": _pools,
            "worker_max_tasks_per_child": _int,
            "worker_max_memory_per_child": _size,
            "webhook_timeout": float,
            "webhook_retry_base_seconds": float,
            "webhook_retry_max_seconds": float,
            "webhook_give_up_seconds": float,
            "webhook_allowed_networks": _networks,
            "webhook_receiver_concurrency": _int,
            "webhook_secret_key": _fernet_keys,
            "url_secret": _csv,
            "signed_url_max_seconds": _int,
        }
        values: dict[str, Any] = {}
        for name, parse in parsers.items():
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
        need(self.redis_url.startswith(("redis://", "rediss://")), "REDIS_URL", "must be redis://")
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
        need(self.keep_originals_days >= 0, "KEEP_ORIGINALS_DAYS", "must not be negative")
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
