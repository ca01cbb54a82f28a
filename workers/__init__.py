"""Celery app and the pipeline tasks: scan, verify, attach, reconcile."""
