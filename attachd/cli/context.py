"""What every `attachd` command shares: settings read once, and the stores built from them.

The stores are imported where they are built, not here: `attachd --help` and a usage error then
load neither SQLAlchemy, Celery nor MinIO's SDK (tests/unit/test_cli_speed.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from core.logs import configure
from core.settings import Settings

if TYPE_CHECKING:
    from storage.objects import ObjectStore
    from storage.records import RecordStore
    from workers.tasks import Works


class Context:
    """Built lazily: `attachd --help` and a usage error need no settings and no connection."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
            # The CLI logs like the services (JSON by default); its output for people is echoed.
            configure(self._settings.log_level, self._settings.log_format)
        return self._settings

    def records(self) -> RecordStore:
        from storage.records import RecordStore

        return RecordStore.from_url(self.settings.database_url)

    def objects(self) -> ObjectStore:
        from storage.objects import ObjectStore

        return ObjectStore.from_settings(self.settings)

    def works(self) -> Works:
        from storage.broker import make_celery
        from workers.tasks import build_works

        return build_works(self.settings, make_celery(self.settings))


pass_ctx = click.make_pass_decorator(Context, ensure=True)
