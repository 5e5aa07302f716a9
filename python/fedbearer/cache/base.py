"""The small protocol every cache layer speaks, and the entry it stores."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from fedbearer.token import Token

__all__ = ["CacheEntry", "TokenCache", "null_lock"]


@dataclass(frozen=True)
class CacheEntry:
    """One tenant's tokens. ``expires_at`` is a POSIX time (None: no expiry given).
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
        return cls(token, None if exp is None else float(exp), refresh, float(issued))

    def __repr__(self) -> str:
        return (
            f"CacheEntry(access_token=<redacted>, expires_at={self.expires_at!r}, "
            f"refresh_token={'<redacted>' if self.refresh_token else None}, issued_at={self.issued_at!r})"
        )


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
