"""Where attachd's Redis is, read from the one setting ATTACHD_REDIS_URL, in one of two forms:

- `redis://[:password@]host:port/db` (or `rediss://`): one Redis, the `make run` default;
- `sentinel://[:password@]host:port;sentinel://host:port;…/db?master_name=NAME`: the master
  that the listed Sentinels currently name, so a failover moves every process to the promoted
  replica. This is kombu's own broker URL form; the master name, which kombu takes in its
  transport options, rides in the URL so that one string tells every process (API, workers,
  beat, Flower, the CLI) the whole target. The password and the database number may stand on
  any of the pieces; they are the master's (the Sentinels themselves ask for none).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    url: str
    # Empty for a plain redis:// URL.
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    username: str | None = None
    password: str | None = None
    db: int = 0

    @property
    def sentinel(self) -> bool:
        return bool(self.sentinels)

    def kombu_url(self) -> str:
        """The URL kombu, Celery's result backend and Flower understand: every piece carries the
        password and the database, and no query (the master name goes in transport options)."""
        if not self.sentinel:
            return self.url
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        pieces = (f"sentinel://{auth}{host}:{port}/{self.db}" for host, port in self.sentinels)
        return ";".join(pieces)


def parse(url: str) -> RedisTarget:
    """The target `url` names; ValueError says what is wrong with it."""
    scheme = url.split(":", 1)[0]
    if scheme in ("redis", "rediss"):
        return RedisTarget(url)
    if scheme != "sentinel":
        raise ValueError("must be redis://, rediss:// or sentinel://…;sentinel://…")
    sentinels, master, username, password, db = [], "", None, None, 0
    for piece in url.split(";"):
        parts = urlsplit(piece.strip())
        if parts.scheme != "sentinel" or not parts.hostname:
            raise ValueError(f"{piece!r} is not sentinel://host:port")
        sentinels.append((parts.hostname, parts.port or SENTINEL_PORT))
        if parts.password is not None and password is None:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password)
        if parts.path.strip("/"):
            try:
                db = int(parts.path.strip("/"))
            except ValueError:
                raise ValueError(f"the database in {piece!r} is not a number") from None
        master = parse_qs(parts.query).get("master_name", [master])[0]
    if not master:
        raise ValueError("a sentinel:// URL needs ?master_name=NAME (the Sentinels' name for it)")
    return RedisTarget(url, tuple(sentinels), master, username, password, db)
