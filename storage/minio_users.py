"""The MinIO user attachd runs as: its own access key, allowed attachd's buckets and nothing else,
made once with the root credentials through MinIO's admin API (the SDK's MinioAdmin; no `mc`).

The root user stays with whoever runs MinIO; the API and the workers only ever hold this one, so
a leaked application key cannot touch other buckets, users or the server's configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import urllib3
from minio import MinioAdmin
from minio.credentials import StaticProvider
from minio.error import MinioAdminException

from core.errors import ConfigError, ServiceUnavailable
from core.settings import Settings

POLICY_NAME = "attachd-buckets"


def attachd_buckets(settings: Settings) -> tuple[str, ...]:
    """Every bucket setting (ATTACHD_BUCKET_*): a bucket added later is covered as well."""
    return tuple(
        getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if f.name.startswith("bucket_")
    )


def bucket_policy(buckets: Iterable[str]) -> dict[str, object]:
    """Everything on these buckets and their objects (create, lifecycle, tags, multipart), and
    no other resource."""
    names = sorted(set(buckets))
    resources = [f"arn:aws:s3:::{b}" for b in names] + [f"arn:aws:s3:::{b}/*" for b in names]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": resources}],
    }


def ensure_app_user(settings: Settings, root_user: str, root_password: str) -> str:
    """Create (or update) the user of ATTACHD_S3_ACCESS_KEY / ATTACHD_S3_SECRET_KEY with a policy
    limited to attachd's buckets; returns the policy's name. Idempotent."""
    if root_user == settings.s3_access_key:
        raise ConfigError(
            "ATTACHD_S3_ACCESS_KEY is MinIO's root user: give attachd a user of its own"
        )
    admin = MinioAdmin(
        endpoint=settings.s3_endpoint,
        credentials=StaticProvider(root_user, root_password),
        region=settings.s3_region,
        secure=settings.s3_secure,
    )
    try:
        admin.policy_add(POLICY_NAME, policy=bucket_policy(attachd_buckets(settings)))
        admin.user_add(settings.s3_access_key, settings.s3_secret_key)
        try:
            admin.attach_policy([POLICY_NAME], user=settings.s3_access_key)
        except MinioAdminException as exc:
            # Attached already (a second run): MinIO refuses to attach a policy twice.
            if "already" not in str(exc).lower():
                raise
    except MinioAdminException as exc:
        raise ServiceUnavailable("minio", f"admin API refused: {str(exc)[:300]}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ServiceUnavailable("minio", str(exc)) from exc
    return POLICY_NAME
