"""The small protocol every cache layer speaks, and the entry it stores.

Required of a layer: ``get``/``put``/``delete``/``lock`` by tenant key. Optional, and used when
present (every layer shipped here has them):

- ``try_lock(key, ttl) -> LockHandle | None``: one non-blocking attempt (None: held elsewhere;
  raises :class:`CacheUnavailable` when the backend cannot be reached). The Bearer polls it so it can
  watch for another process's login while it waits.
- ``get_deep(key)``: an authoritative read (every layer, the newest entry), used under the lock.
- ``get_progress``/``put_progress``/``delete_progress``: the cross-process "login in progress"
  record (:class:`~fedbearer.cache.progress.LoginProgress`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from fedbearer.token import Token

log = logging.getLogger(__name__)

__all__ = [
    "CacheEntry",
    "CacheUnavailable",
    "LockHandle",
    "NoLock",
    "TokenCache",
    "newest",
    "null_lock",
    "polling_lock",
]


@dataclass(frozen=True)
class CacheEntry:
    """One tenant's tokens. ``expires_at`` is a POSIX time (None: no expiry given); ``issued_at``
    is when the login or refresh that produced it started — the newest entry (largest
    ``issued_at``) carries the current refresh token when the provider rotates them.
    ``repr`` hides the tokens."""

    access_token: str
    expires_at: float | None
    refresh_token: str | None = None
    issued_at: float = 0.0

    def is_fresh(self, margin: float, now: float | None = None) -> bool:
        """Usable for at least ``margin`` more seconds."""
        if self.expires_at is None:
            return True
        return (time.time() if now is None else now) < self.expires_at - margin

    def to_token(self) -> Token:
        exp = None if self.expires_at is None else datetime.fromtimestamp(self.expires_at, tz=timezone.utc)
        return Token(self.access_token, exp)

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "refresh_token": self.refresh_token,
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_dict(cls, data: Any) -> CacheEntry:
        """Raises ValueError for anything that is not a well-formed entry."""
        if not isinstance(data, dict):
            raise ValueError("a cache entry must be a mapping")
        token = data.get("access_token")
        exp = data.get("expires_at")
        refresh = data.get("refresh_token")
        issued = data.get("issued_at", 0.0)
        if not isinstance(token, str) or not token:
            raise ValueError("a cache entry needs a non-empty access_token")
        if exp is not None and (isinstance(exp, bool) or not isinstance(exp, (int, float))):
            raise ValueError("expires_at must be a number or null")
        if refresh is not None and not isinstance(refresh, str):
            raise ValueError("refresh_token must be a string or null")
        if isinstance(issued, bool) or not isinstance(issued, (int, float)):
            raise ValueError("issued_at must be a number")
        if exp is not None and exp != exp:  # NaN
            raise ValueError("expires_at must be a number")
        return cls(token, None if exp is None else float(exp), refresh, float(issued))

    def __repr__(self) -> str:
        return (
            f"CacheEntry(access_token=<redacted>, expires_at={self.expires_at!r}, "
            f"refresh_token={'<redacted>' if self.refresh_token else None}, issued_at={self.issued_at!r})"
        )


def newest(entries: list[CacheEntry | None]) -> CacheEntry | None:
    """The entry written last (largest ``issued_at``, then the latest expiry), or None."""
    best: CacheEntry | None = None
    for entry in entries:
        if entry is None:
            continue
        if best is None or _order(entry) > _order(best):
            best = entry
    return best


def _order(entry: CacheEntry) -> tuple[float, float]:
    return (entry.issued_at, float("inf") if entry.expires_at is None else entry.expires_at)


class CacheUnavailable(Exception):
    """A shared backend (Redis) cannot be reached right now; callers fall back to other layers."""


class LockHandle(Protocol):
    """A held lock; ``release`` is idempotent and never raises for a broken backend."""

    async def release(self) -> None: ...


class NoLock:
    """The handle of a lock that spans nothing (no layer could lock)."""

    async def release(self) -> None:
        return None


@runtime_checkable
class TokenCache(Protocol):
    """get/put/delete/lock by tenant key. Layers never raise for a broken backend on get/put
    (they log a warning and behave as a miss); ``lock`` serialises logins and refreshes of one key
    across whatever the layer spans (a process, a host, a fleet)."""

    async def get(self, key: str) -> CacheEntry | None: ...

    async def put(self, key: str, entry: CacheEntry) -> None: ...

    async def delete(self, key: str) -> None: ...

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]: ...


@asynccontextmanager
async def null_lock() -> AsyncIterator[None]:
    """A lock that spans nothing (the in-process single-flight already covers one process)."""
    yield


@asynccontextmanager
async def polling_lock(cache: Any, key: str, timeout: float) -> AsyncIterator[None]:
    """``lock()`` built on ``try_lock``: poll until held (TimeoutError after ``timeout`` s). A
    backend that is down (CacheUnavailable) is logged and the block runs unlocked: callers keep
    working, as with a cache miss."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    handle: LockHandle | None = None
    while True:
        try:
            handle = await cache.try_lock(key, timeout)
        except CacheUnavailable as err:
            log.warning("cache lock unavailable (%s); continuing without it", err)
            handle = NoLock()
        if handle is not None:
            break
        if time.monotonic() >= deadline:
            raise TimeoutError(f"could not lock the cache entry within {timeout:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield
    finally:
        await handle.release()
