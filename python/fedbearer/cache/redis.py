"""The fleet layer: Redis shared by replicas on several hosts (``redis`` package, imported lazily).

Keys (``prefix`` defaults to ``fedbearer:``)::

    <prefix>tok:<tenant key>     the entry (JSON, schema 1), PX = the access token's lifetime
    <prefix>lock:<tenant key>    the distributed lock: SET NX PX with a random token; released by
                                 a Lua compare-and-delete, so a holder whose lock expired never
                                 deletes its successor's
    <prefix>login:<tenant key>   the "login in progress" record, PX = until its deadline

Redis is an optimisation, never a dependency of the login: when it cannot be reached, a warning is
logged once per outage, every operation behaves as a miss for ``retry_after`` seconds (no connect
timeout per call), and the other layers (memory, file) carry on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from fedbearer.cache.base import CacheEntry, CacheUnavailable, LockHandle, polling_lock
from fedbearer.cache.progress import LoginProgress

if TYPE_CHECKING:
    import redis.asyncio

log = logging.getLogger(__name__)

__all__ = ["RedisCache"]

SCHEMA_VERSION = 1
_T = TypeVar("_T")

# KEYS[1] = lock key, ARGV[1] = our token: delete only if it is still ours.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def redact_url(url: str) -> str:
    """``url`` without its password (for logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}:***@{netloc}", parts.path, parts.query, ""))


async def _closer(client: Any) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


class RedisCache:
    """Entries, locks and login records in Redis at ``url`` (``redis://``, ``rediss://``,
    ``unix://``). One client per event loop (redis.asyncio connections belong to a loop), closed
    when the loop shuts down or by :meth:`aclose`.

    ``socket_timeout`` bounds every command; ``retry_after`` is how long a failed Redis is left
    alone before the next attempt.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "fedbearer:",
        socket_timeout: float = 1.0,
        retry_after: float = 5.0,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.socket_timeout = socket_timeout
        self.retry_after = retry_after
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._down_until = 0.0
        self._outage = False

    def __repr__(self) -> str:
        return f"RedisCache({redact_url(self.url)!r})"

    # -- connection and failure handling --------------------------------------------------------
    async def _client(self) -> redis.asyncio.Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        import redis.asyncio
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = redis.asyncio.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry=Retry(NoBackoff(), 0),  # our own breaker decides when to try again
            decode_responses=False,
        )
        self._clients[loop] = client
        keeper = _closer(client)  # finalized by loop.shutdown_asyncgens(): closes the pool
        await keeper.__anext__()
        client._fedbearer_keeper = keeper  # type: ignore[attr-defined]  # lives as long as the client
        return client

    async def _call(self, what: str, op: Callable[[Any], Awaitable[_T]]) -> _T:
        if self._down_until > time.monotonic():
            raise CacheUnavailable(f"redis at {redact_url(self.url)} is unavailable")
        import redis.exceptions

        try:
            client = await self._client()
            result = await op(client)
        except (redis.exceptions.RedisError, OSError, asyncio.TimeoutError) as err:
            self._down_until = time.monotonic() + self.retry_after
            if not self._outage:
                self._outage = True
                log.warning(
                    "redis at %s is unavailable (%s during %s); using the other cache layers, "
                    "retrying in %g s",
                    redact_url(self.url),
                    type(err).__name__,
                    what,
                    self.retry_after,
                )
            raise CacheUnavailable(f"redis unavailable: {type(err).__name__}") from None
        if self._outage:
            self._outage = False
            log.warning("redis at %s is reachable again", redact_url(self.url))
        return result

    @property
    def available(self) -> bool:
        """False while the breaker keeps a failed Redis out of the way."""
        return self._down_until <= time.monotonic()

    async def aclose(self) -> None:
        """Close this loop's connection pool."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def _k(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    # -- entries --------------------------------------------------------------------------------
    async def _get_raw(self, name: str) -> bytes | None:
        """GET, with an unavailable Redis read as a miss."""
        try:
            return await self._call("GET", lambda c: c.get(name))
        except CacheUnavailable:
            return None

    async def get(self, key: str) -> CacheEntry | None:
        name = self._k("tok", key)
        raw = await self._get_raw(name)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION or doc.get("key") != key:
                raise ValueError("unexpected document")
            return CacheEntry.from_dict(doc.get("entry"))
        except ValueError:
            log.warning("damaged token entry in redis for one tenant; removing it")
            try:
                await self._call("DEL", lambda c: c.delete(name))
            except CacheUnavailable:
                pass
            return None

    async def get_deep(self, key: str) -> CacheEntry | None:
        return await self.get(key)

    async def put(self, key: str, entry: CacheEntry) -> None:
        name = self._k("tok", key)
        doc = {"schema": SCHEMA_VERSION, "key": key, "written_at": time.time(), "entry": entry.to_dict()}
        data = json.dumps(doc, separators=(",", ":"))
        px = None if entry.expires_at is None else int((entry.expires_at - time.time()) * 1000)
        try:
            if px is not None and px <= 0:
                await self._call("DEL", lambda c: c.delete(name))
            else:
                await self._call("SET", lambda c: c.set(name, data, px=px))
        except CacheUnavailable:
            pass

    async def delete(self, key: str) -> None:
        names = (self._k("tok", key), self._k("login", key))
        try:
            await self._call("DEL", lambda c: c.delete(*names))
        except CacheUnavailable:
            pass

    async def entries(self) -> list[tuple[str, CacheEntry]]:
        """Every (key, entry) under the prefix (SCAN; for ``fedbearer status``)."""
        pattern = self._k("tok", "*")
        start = len(self._k("tok", ""))

        async def scan(c: Any) -> list[bytes]:
            return [name async for name in c.scan_iter(match=pattern, count=500)]

        try:
            names = await self._call("SCAN", scan)
        except CacheUnavailable:
            return []
        found = []
        for name in names:
            key = name.decode("utf-8", "replace")[start:]
            entry = await self.get(key)
            if entry is not None:
                found.append((key, entry))
        return sorted(found, key=lambda item: item[0])

    # -- the distributed lock -------------------------------------------------------------------
    async def try_lock(self, key: str, ttl: float) -> LockHandle | None:
        """One ``SET lock token NX PX ttl``. Raises CacheUnavailable when Redis is down."""
        name = self._k("lock", key)
        token = secrets.token_hex(16)
        px = max(1, int(ttl * 1000))
        got = await self._call("SET NX", lambda c: c.set(name, token, nx=True, px=px))
        return _RedisLock(self, name, token) if got else None

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return polling_lock(self, key, timeout)

    async def _release(self, name: str, token: str) -> None:
        try:
            await self._call("EVAL release", lambda c: c.eval(_RELEASE, 1, name, token))
        except CacheUnavailable:
            pass  # it expires by itself (PX)

    # -- the login-in-progress record -----------------------------------------------------------
    async def get_progress(self, key: str) -> LoginProgress | None:
        raw = await self._get_raw(self._k("login", key))
        if raw is None:
            return None
        try:
            return LoginProgress.from_dict(json.loads(raw))
        except ValueError:
            return None

    async def put_progress(self, key: str, progress: LoginProgress) -> None:
        name = self._k("login", key)
        px = max(1, int(progress.ttl() * 1000) + 5000)  # outlive the deadline: stale, not missing
        data = json.dumps(progress.to_dict())
        try:
            await self._call("SET", lambda c: c.set(name, data, px=px))
        except CacheUnavailable:
            pass

    async def delete_progress(self, key: str, owner: str | None = None) -> None:
        name = self._k("login", key)
        try:
            if owner is None:
                await self._call("DEL", lambda c: c.delete(name))
                return
            current = await self.get_progress(key)
            if current is not None and current.owner == owner:
                await self._call("DEL", lambda c: c.delete(name))
        except CacheUnavailable:
            pass


class _RedisLock:
    __slots__ = ("_cache", "_name", "_token")

    def __init__(self, cache: RedisCache, name: str, token: str) -> None:
        self._cache: RedisCache | None = cache
        self._name = name
        self._token = token

    async def release(self) -> None:
        cache, self._cache = self._cache, None
        if cache is not None:
            await cache._release(self._name, self._token)
