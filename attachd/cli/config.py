"""`attachd check-config`: the effective settings, secrets masked, and what start-up would refuse.

It runs the very check the API, the workers and beat run at start (core/secrets_check.py), so a
deployment can be checked before it is started.
"""

from __future__ import annotations

import sys

import click

from core.errors import ConfigError
from core.secrets_check import check_secrets, effective
from core.settings import Settings


@click.command("check-config")
def check_config() -> None:
    """Print the effective settings (secrets masked); exit 1 on anything start-up would refuse."""
    # Read here rather than through the shared Context: a malformed value is reported like a
    # refused secret, not as a traceback of the first command that needs settings.
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
    for name, value in effective(settings).items():
        click.echo(f"{name}={value}")
    try:
        check_secrets(
            settings,
            warn=lambda line: click.echo(
                f"warning: {line} (allowed by ATTACHD_INSECURE_DEFAULTS)", err=True
            ),
        )
    except ConfigError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(1)
    click.echo("configuration accepted", err=True)


@click.command("minio-user")
@click.option("--root-user", envvar="MINIO_ROOT_USER", required=True, help="MinIO's root user.")
@click.option(
    "--root-password",
    envvar="MINIO_ROOT_PASSWORD",
    required=True,
    help="MinIO's root password (from the environment: never on a command line).",
)
def minio_user(root_user: str, root_password: str) -> None:
    """Create attachd's own MinIO user (ATTACHD_S3_ACCESS_KEY / ATTACHD_S3_SECRET_KEY), allowed
    attachd's buckets only. Run once with MinIO's root credentials; the services never get them."""
    from storage.minio_users import attachd_buckets, ensure_app_user

    settings = Settings.from_env()
    check_secrets(settings)
    policy = ensure_app_user(settings, root_user, root_password)
    buckets = ", ".join(attachd_buckets(settings))
    click.echo(f"minio user {settings.s3_access_key} has policy {policy}: {buckets}", err=True)


COMMANDS: tuple[click.Command, ...] = (check_config, minio_user)
