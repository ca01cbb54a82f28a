"""Worker entrypoint: `celery -A workers.app worker`. Settings are read here, once."""

from core.logs import configure as configure_logging
from core.secrets_check import check_secrets
from core.settings import Settings
from storage.broker import make_celery
from workers.signals import install as install_signals
from workers.tasks import register

settings = Settings.from_env()
configure_logging(settings.log_level, settings.log_format)
# Development secrets stop start-up here, as `attachd check-config` reports them.
check_secrets(settings)
app = make_celery(settings)
register(app, settings)
install_signals(app, settings)
