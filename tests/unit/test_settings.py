from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import Settings


def test_defaults_are_the_documented_ones() -> None:
    s = Settings.from_env({})
    assert (s.api_host, s.api_port, s.flower_port) == ("127.0.0.1", 8080, 5555)
    assert s.s3_endpoint == "127.0.0.1:9000"
    assert s.max_upload_size == 5 * 1024 * 1024
    assert s.database_url == f"sqlite:///{(Path('var') / 'attachd.db').resolve()}"
    assert "image/svg+xml" in s.allowed_types
    # Beyond Crafter's list: what phones and browsers save (issue 21).
    assert {"image/webp", "image/avif", "image/heic", "image/heif"} <= set(s.allowed_types)
    assert (s.image_rendition_formats, s.heif_serve) == (("avif", "webp"), "jpeg")


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "ATTACHD_MAX_UPLOAD_SIZE": "2GiB",
            "ATTACHD_ALLOWED_TYPES": "image/png, image/gif",
            "ATTACHD_URL_PREFIX": "/crafter-profile/",
            "ATTACHD_S3_SECURE": "yes",
        }
    )
    assert s.max_upload_size == 2 * 1024**3
    assert s.allowed_types == ("image/png", "image/gif")
    assert s.url_prefix == "/crafter-profile"
    assert s.s3_secure is True


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ATTACHD_API_PORT", "eighty"),
        ("ATTACHD_MAX_UPLOAD_SIZE", "-1"),
        ("ATTACHD_S3_SECURE", "maybe"),
        ("ATTACHD_DATABASE_URL", "mysql://x"),
        ("ATTACHD_UPLOAD_PART_SIZE", "1MiB"),
        ("ATTACHD_URL_PREFIX", "crafter"),
        ("ATTACHD_IMAGE_RENDITION_FORMATS", "avif,jxl"),
        ("ATTACHD_HEIF_SERVE", "png"),
    ],
)
def test_bad_values_stop_startup_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        Settings.from_env({var: value})


def test_issue_23_settings_are_checked_at_start() -> None:
    with pytest.raises(ConfigError, match="ATTACHD_WEBHOOK_SECRET_KEY"):
        Settings.from_env({"ATTACHD_WEBHOOK_SECRET_KEY": "not-a-fernet-key"})
    key = "dGVzdC1vbmx5LXdlYmhvb2sta2V5LTAxMjM0NTY3ODk="
    assert Settings.from_env(
        {"ATTACHD_WEBHOOK_SECRET_KEY": f"{key}, {key}"}
    ).webhook_secret_key == (
        key,
        key,
    )
    with pytest.raises(ConfigError, match="ATTACHD_API_BACKEND_PORT"):
        Settings.from_env({"ATTACHD_API_PROXY": "1", "ATTACHD_API_BACKEND_PORT": "8080"})
    with pytest.raises(ConfigError, match="ATTACHD_WEBHOOK_RECEIVER_CONCURRENCY"):
        Settings.from_env({"ATTACHD_WEBHOOK_RECEIVER_CONCURRENCY": "0"})
    assert Settings.from_env({"ATTACHD_DEMO_HOSTS": "demo.local, x"}).demo_hosts == (
        "demo.local",
        "x",
    )
