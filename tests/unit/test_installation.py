"""One settings source for a local installation (core/installation.py): var/attachd.env, which
`make run`/`make up` write, under the environment of every process of the checkout."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from attachd.stack.__main__ import installation_values
from core import installation
from core.errors import ConfigError
from core.settings import Settings
from storage.migrate import upgrade
from tests.conftest import REPO

ATTACHD = Path(sys.executable).with_name("attachd")
LOOPBACK = "127.0.0.0/8,::1/128"


def _installed(var: Path, text: str) -> Path:
    var.mkdir(parents=True, exist_ok=True)
    path = var / installation.FILE_NAME
    path.write_text(text)
    return path


def test_the_file_fills_in_what_the_environment_does_not_say(tmp_path: Path) -> None:
    _installed(tmp_path, "ATTACHD_API_PORT=8090\nATTACHD_DEMO=true\nATTACHD_LOG_LEVEL=DEBUG\n")
    env = {"ATTACHD_VAR_DIR": str(tmp_path), "ATTACHD_API_PORT": "9000"}
    merged = installation.environ(env)
    assert merged["ATTACHD_API_PORT"] == "9000"  # the environment wins, variable by variable
    assert (merged["ATTACHD_DEMO"], merged["ATTACHD_LOG_LEVEL"]) == ("true", "DEBUG")
    assert merged["ATTACHD_VAR_DIR"] == str(tmp_path)


def test_no_file_is_the_environment_alone(tmp_path: Path) -> None:
    env = {"ATTACHD_VAR_DIR": str(tmp_path / "none"), "ATTACHD_DEMO": "1"}
    assert installation.environ(env) == env


def test_the_file_is_found_in_the_var_dir_the_environment_names_else_in_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert installation.location({"ATTACHD_VAR_DIR": "/srv/x"}) == Path("/srv/x/attachd.env")
    monkeypatch.chdir(tmp_path)
    _installed(tmp_path / "var", "ATTACHD_FLOWER_PORT=5999\n")
    assert installation.environ({})["ATTACHD_FLOWER_PORT"] == "5999"


def test_a_secret_is_read_from_the_file_the_installation_names(tmp_path: Path) -> None:
    (tmp_path / "ops-password").write_text("from-the-file-0123456789\n")
    (tmp_path / "url-secret").write_text("k" * 40)
    _installed(
        tmp_path,
        f"ATTACHD_OPS_PASSWORD_FILE={tmp_path / 'ops-password'}\n"
        f"ATTACHD_URL_SECRET_FILE={tmp_path / 'url-secret'}\n"
        "ATTACHD_URL_SECRET=given-in-the-file-by-value-0123456789\n",
    )
    merged = installation.environ({"ATTACHD_VAR_DIR": str(tmp_path)})
    assert merged["ATTACHD_OPS_PASSWORD"] == "from-the-file-0123456789"
    # Its value, when the installation file gives it too, wins over its file.
    assert merged["ATTACHD_URL_SECRET"] == "given-in-the-file-by-value-0123456789"
    assert not any(k.endswith("_FILE") for k in merged)
    # And the environment's value wins over both.
    env = {"ATTACHD_VAR_DIR": str(tmp_path), "ATTACHD_OPS_PASSWORD": "env-0123456789abcdef"}
    assert installation.environ(env)["ATTACHD_OPS_PASSWORD"] == "env-0123456789abcdef"


def test_a_secret_file_that_cannot_be_read_stops_start_up_naming_it(tmp_path: Path) -> None:
    _installed(tmp_path, f"ATTACHD_OPS_PASSWORD_FILE={tmp_path / 'gone'}\n")
    with pytest.raises(ConfigError, match="ATTACHD_OPS_PASSWORD_FILE"):
        installation.environ({"ATTACHD_VAR_DIR": str(tmp_path)})


def test_settings_from_the_process_read_the_file_and_a_given_mapping_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _installed(tmp_path, f"ATTACHD_WEBHOOK_ALLOWED_NETWORKS={LOOPBACK}\nATTACHD_API_PORT=8090\n")
    for name in [k for k in os.environ if k.startswith("ATTACHD_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ATTACHD_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("ATTACHD_API_PORT", "8091")
    settings = Settings.from_env()
    assert settings.webhook_allowed_networks == ("127.0.0.0/8", "::1/128")
    assert settings.api_port == 8091
    assert Settings.from_env({"ATTACHD_VAR_DIR": str(tmp_path)}).webhook_allowed_networks == ()


@pytest.mark.parametrize(
    "value", ["plain", "with spaces # and a hash", 'it\'s "quoted"', "back\\slash\\'", "$HOME"]
)
def test_what_is_written_reads_back_as_it_was(tmp_path: Path, value: str) -> None:
    path = tmp_path / "var" / installation.FILE_NAME
    installation.write(path, {"ATTACHD_S3_REGION": value}, "a header\non two lines")
    assert installation.read(path) == {"ATTACHD_S3_REGION": value}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("# a header\n# on two lines\n")


def test_the_stack_records_settings_and_secrets_files_never_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "ops-password"
    env = {
        "ATTACHD_VAR_DIR": str(tmp_path),
        "ATTACHD_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK,
        "ATTACHD_INSECURE_DEFAULTS": "1",
        "ATTACHD_OPS_PASSWORD": "made-by-stack-sh-0123456789",
        "ATTACHD_OPS_PASSWORD_FILE": str(secret),
        "ATTACHD_S3_SECRET_KEY": "given-by-the-person-0123456789",
        "ATTACHD_DATABASE_URL": "postgresql+psycopg://app:pw@db/attachd",
        "ATTACHD_REDIS_PORT": "6390",  # the services script's, not a setting
        "ATTACHD_NOT_A_SETTING_FILE": "/x",
        "HOME": "/root",
    }
    values, left_out = installation_values(env)
    assert values == {
        "ATTACHD_VAR_DIR": str(tmp_path),
        "ATTACHD_WEBHOOK_ALLOWED_NETWORKS": LOOPBACK,
        "ATTACHD_INSECURE_DEFAULTS": "1",
        "ATTACHD_OPS_PASSWORD_FILE": str(secret),
    }
    assert left_out == ["ATTACHD_DATABASE_URL", "ATTACHD_S3_SECRET_KEY"]


def _attachd(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ATTACHD_")}
    return subprocess.run(
        [str(ATTACHD), *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_beside_a_stack_takes_its_settings_from_the_file(tmp_path: Path) -> None:
    """The issue's case: `attachd webhook add --url http://127.0.0.1:…` beside a `make up`
    stack that allows loopback receivers, with nothing in the command's environment but where
    the installation is (from the checkout, var/ is found without it)."""
    env = {"ATTACHD_VAR_DIR": str(tmp_path), "ATTACHD_LOG_FORMAT": "text"}
    upgrade(Settings.from_env(env).database_url)
    url = "http://127.0.0.1:9999/hook"
    refused = _attachd("webhook", "add", "--url", url, env=env)
    assert refused.returncode == 2 and "Invalid value for --url" in refused.stderr
    # What stack.sh records: the networks it allows, and the webhook key it keeps in var/.
    key = tmp_path / "webhook-key"
    key.write_text("dGVzdC1vbmx5LXdlYmhvb2sta2V5LTAxMjM0NTY3ODk=\n")
    _installed(
        tmp_path,
        f"ATTACHD_WEBHOOK_ALLOWED_NETWORKS='{LOOPBACK}'\nATTACHD_WEBHOOK_SECRET_KEY_FILE={key}\n",
    )
    added = _attachd("webhook", "add", "--url", url, "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["secret"].startswith("whsec_")
