"""WSGI entrypoint for gunicorn: `gunicorn api.wsgi:app`."""

from api.app import create_app
from attachd.logs import configure as configure_logging
from attachd.settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_format)
app = create_app(settings)
