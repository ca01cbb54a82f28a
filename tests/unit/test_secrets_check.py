"""Start-up's refusal of development secrets, and `attachd check-config`, which runs the same
check as a separate process would at start."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.secrets_check import check_secrets, effective, problems
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
STRONG = "k3-very-long-and-random-secret"
REAL = {
    "ATTACHD_S3_SECRET_KEY": STRONG,
    "ATTACHD_DATABASE_URL": f"postgresql+psycopg://attachd:{STRONG}@db:5432/attachd",
    "ATTACHD_OPS_PASSWORD": STRONG,
    "ATTACHD_METRICS_TOKEN": STRONG,
}


def test_real_secrets_pass() -> None:
    assert problems(Settings.from_env(REAL)) == []
    assert check_secrets(Settings.from_env(REAL)) == []


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ATTACHD_S3_SECRET_KEY", "attachd-secret-key"),
        ("ATTACHD_DATABASE_URL", "postgresql+psycopg://attachd:attachd@db:5432/attachd"),
        ("ATTACHD_OPS_PASSWORD", "fifteen-chars!!"),
        ("ATTACHD_METRICS_TOKEN", "short"),
        ("ATTACHD_FLOWER_PASSWORD", "short"),
    ],
)
def test_each_development_secret_is_refused_naming_its_variable(var: str, value: str) -> None:
    settings = Settings.from_env({**REAL, var: value})
    with pytest.raises(ConfigError, match=var):
        check_secrets(settings)
    # The flag turns the refusal into a warning, and says which.
    allowed = Settings.from_env({**REAL, var: value, "ATTACHD_INSECURE_DEFAULTS": "1"})
    assert [line.split()[0] for line in check_secrets(allowed)] == [var]


def test_an_unset_operator_password_is_no_problem() -> None:
    # No password keeps the dashboard closed (403): safe, unlike a short one.
    env = {k: v for k, v in REAL.items() if k != "ATTACHD_OPS_PASSWORD"}
    assert problems(Settings.from_env(env)) == []


def test_the_defaults_are_refused() -> None:
    with pytest.raises(ConfigError, match="ATTACHD_S3_SECRET_KEY"):
        check_secrets(Settings.from_env({}))


def test_secrets_are_masked() -> None:
    shown = effective(
        Settings.from_env({**REAL, "ATTACHD_REDIS_URL": f"redis://:{STRONG}@r:6379/0"})
    )
    assert STRONG not in "\n".join(shown.values())
    assert shown["ATTACHD_DATABASE_URL"] == "postgresql+psycopg://attachd:********@db:5432/attachd"
    assert shown["ATTACHD_OPS_PASSWORD"] == "********"
    assert shown["ATTACHD_S3_ENDPOINT"] == "127.0.0.1:9000"
    # Issue 23: the key that decrypts every webhook secret.
    key = "dGVzdC1vbmx5LXdlYmhvb2sta2V5LTAxMjM0NTY3ODk="
    with_key = effective(Settings.from_env({**REAL, "ATTACHD_WEBHOOK_SECRET_KEY": key}))
    assert with_key["ATTACHD_WEBHOOK_SECRET_KEY"] == "********"
    assert key not in "\n".join(with_key.values())


def _check_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ATTACHD_")}
    # A var dir with no installation file: not what `make up` recorded in this checkout's var/.
    with tempfile.TemporaryDirectory() as var:
        return subprocess.run(
            [sys.executable, "-m", "attachd.cli", "check-config"],
            cwd=REPO,
            env={**clean, "ATTACHD_VAR_DIR": var, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def test_check_config_refuses_the_defaults_without_the_flag() -> None:
    done = _check_config({})
    assert done.returncode == 1, done.stderr
    assert "ATTACHD_S3_SECRET_KEY" in done.stderr
    assert "attachd-secret-key" not in done.stdout + done.stderr


def test_check_config_warns_with_the_flag_and_passes_with_real_secrets() -> None:
    flagged = _check_config({"ATTACHD_INSECURE_DEFAULTS": "1"})
    assert flagged.returncode == 0, flagged.stderr
    assert "warning: ATTACHD_S3_SECRET_KEY" in flagged.stderr
    real = _check_config(REAL)
    assert real.returncode == 0, real.stderr
    assert "warning" not in real.stderr
    assert "ATTACHD_OPS_PASSWORD=********" in real.stdout.splitlines()
    assert STRONG not in real.stdout + real.stderr
