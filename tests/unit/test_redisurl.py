"""ATTACHD_REDIS_URL's two forms (core/redisurl.py): one Redis, or the Sentinels of one, with
the master's name in the URL so one string tells every process the whole target."""

from __future__ import annotations

import pytest

from core import redisurl
from core.errors import ConfigError
from core.secrets_check import _mask_url
from core.settings import Settings
from storage import redisconn

SENTINELS = "sentinel://:p%40ss@s1:26379;sentinel://s2;sentinel://s3:26380/2?master_name=attachd"


def test_a_redis_url_is_one_redis() -> None:
    target = redisurl.parse("redis://:pw@redis:6379/0")
    assert not target.sentinel and target.kombu_url() == "redis://:pw@redis:6379/0"


def test_a_sentinel_url_names_every_sentinel_the_master_and_its_password() -> None:
    target = redisurl.parse(SENTINELS)
    assert target.sentinels == (("s1", 26379), ("s2", 26379), ("s3", 26380))
    assert target.master_name == "attachd" and target.password == "p@ss" and target.db == 2
    # kombu's form: the password and database on every piece, the master name left out.
    assert target.kombu_url() == (
        "sentinel://:p%40ss@s1:26379/2;sentinel://:p%40ss@s2:26379/2;sentinel://:p%40ss@s3:26380/2"
    )
    url, options = redisconn.celery_transport(SENTINELS)
    assert url == target.kombu_url() and options["master_name"] == "attachd"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sentinel://s1:26379;sentinel://s2:26379/0", "master_name"),
        ("sentinel://s1:26379;redis://s2:6379/0?master_name=a", "is not sentinel://"),
        ("sentinel://s1:26379/zero?master_name=a", "not a number"),
        ("memcached://x", "must be redis://"),
    ],
)
def test_a_bad_url_is_refused_at_start_up_naming_the_variable(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        redisurl.parse(url)
    with pytest.raises(ConfigError, match=f"ATTACHD_REDIS_URL: .*{why}"):
        Settings(redis_url=url, database_url="sqlite:///x.db").validate()


def test_the_password_is_masked_on_every_piece() -> None:
    shown = _mask_url("sentinel://:secret@s1:26379;sentinel://:secret@s2:26379/0?master_name=a")
    assert "secret" not in shown and shown.count("********") == 2
