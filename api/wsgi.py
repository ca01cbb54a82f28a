"""WSGI entrypoint for gunicorn: `gunicorn api.wsgi:app`."""

from api.app import create_app
from core.logs import configure as configure_logging
from core.secrets_check import check_secrets
from core.settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_format)
# Development secrets stop start-up here, as `attachd check-config` reports them.
check_secrets(settings)
app = create_app(settings)
