"""WSGI entrypoint for gunicorn: `gunicorn api.wsgi:app`."""

from api.app import create_app
from core.logs import configure as configure_logging
from core.settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_format)
app = create_app(settings)
