"""The nginx in front of gunicorn for `make run` / `make up` (ATTACHD_API_PROXY): its
configuration, written from attachd's settings into var/run/nginx/, and the command that runs it
in the foreground as one more component of the stack."""

from __future__ import annotations

import hashlib
import os
import shutil
import string
import tempfile
from pathlib import Path

from api.form import body_cap
from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "nginx" / "front.conf.in"
# Above the largest body the API reads (api/form.py's body_cap): nginx's own 413 (not in Crafter's
# shape) then only meets bodies the API would refuse from their Content-Length anyway.
_MARGIN = 1024 * 1024


def nginx_binary() -> str:
    # Debian keeps it in /usr/sbin, which a person's PATH may lack.
    return shutil.which("nginx") or "/usr/sbin/nginx"


def run_dir(settings: Settings) -> Path:
    var = settings.var_dir if settings.var_dir.is_absolute() else REPO / settings.var_dir
    return var / "run" / "nginx"


def _temp_path(where: Path) -> Path:
    if os.geteuid() != 0:
        return where / "tmp"
    tag = hashlib.sha256(str(where).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"attachd-nginx-{tag}"


def temp_dir(where: Path) -> Path:
    """Where nginx's workers buffer bodies and answers. Started as root, nginx runs its workers
    as `nobody`, which cannot enter a private var dir (the tests' is under a 0700 directory):
    then a directory of /tmp of this stack's own, that they can reach."""
    path = _temp_path(where)
    path.mkdir(mode=0o755, exist_ok=True)
    path.chmod(0o755)
    return path


def remove_temp(settings: Settings) -> None:
    """Once nginx has stopped: its buffers are of no use to the next start."""
    shutil.rmtree(_temp_path(run_dir(settings)), ignore_errors=True)


def write_config(settings: Settings) -> Path:
    """var/run/nginx/nginx.conf for these settings (rewritten at every start)."""
    where = run_dir(settings)
    where.mkdir(parents=True, exist_ok=True)
    host = settings.api_host
    listen = f"[{host}]:{settings.api_port}" if ":" in host else f"{host}:{settings.api_port}"
    text = string.Template(TEMPLATE.read_text()).substitute(
        run_dir=str(where),
        temp_dir=str(temp_dir(where)),
        listen=listen,
        backend_port=settings.api_backend_port,
        header_timeout=f"{settings.api_header_timeout:g}",
        body_timeout=f"{settings.upload_idle_timeout:g}",
        max_body=body_cap(settings) + _MARGIN,
    )
    conf = where / "nginx.conf"
    conf.write_text(text)
    return conf


def argv(settings: Settings) -> tuple[str, ...]:
    conf = write_config(settings)
    # -e: the start-up's own error log to stderr, not /var/log/nginx (not writable unprivileged).
    return (nginx_binary(), "-e", "stderr", "-p", str(conf.parent), "-c", str(conf))
