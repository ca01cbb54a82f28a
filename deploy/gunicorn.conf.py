"""gunicorn settings for the API, derived from attachd's settings (one place for configuration)."""

from core.logs import gunicorn_config
from core.settings import Settings

_s = Settings.from_env()

# Behind the local nginx (ATTACHD_API_PROXY, make run/up) on loopback only: clients reach nginx.
bind = f"127.0.0.1:{_s.api_backend_port}" if _s.api_proxy else f"{_s.api_host}:{_s.api_port}"
# Threads, not sync workers: a long streaming upload must not be killed by the worker timeout,
# and slow clients are cut off by the API's own upload deadline and idle timeout instead.
worker_class = "gthread"
workers = _s.api_workers
threads = _s.api_threads
timeout = 60
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"
# The path without its query string: accessTokenId is a bearer secret and is never logged.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'
# The same line format as the app's (JSON by default), request id included.
logconfig_dict = gunicorn_config(_s.log_level, _s.log_format)
proc_name = "attachd-api"
