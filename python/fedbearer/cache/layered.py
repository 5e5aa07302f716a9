"""Layers stacked narrowest first (memory -> file -> Redis): read through, write to all, lock with
the widest layer that can lock."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractAsyncContextManager
from typing import Any

from fedbearer.cache.base import (
    CacheEntry,
    CacheUnavailable,
    LockHandle,
    NoLock,
    TokenCache,
    newest,
    polling_lock,
)
from fedbearer.cache.progress import LoginProgress

log = logging.getLogger(__name__)

__all__ = ["LayeredCache"]


class LayeredCache:
    """``LayeredCache(MemoryCache(), FileCache(dir), RedisCache(url))``.

    ``get`` stops at the first layer whose entry is good for more than ``fresh_for`` seconds (the
    cheap case: memory answers); otherwise it asks every layer and returns the newest entry (the
    one carrying the current refresh token when the provider rotates them), copying it into the
    layers that had an older one or none. ``get_deep`` always asks every layer (the Bearer uses it
    under the lock). ``put``/``delete`` go to every layer; a failing layer is logged and skipped.
    ``try_lock`` uses the widest layer that can lock and falls back to the next when it is down.
    """

    def __init__(self, *layers: TokenCache, fresh_for: float = 60.0) -> None:
        if not layers:
            raise ValueError("LayeredCache needs at least one layer")
        self.layers: tuple[TokenCache, ...] = tuple(layers)
        self.fresh_for = fresh_for

    def __repr__(self) -> str:
        return f"LayeredCache({', '.join(repr(layer) for layer in self.layers)})"

    async def _get_one(self, layer: TokenCache, key: str, deep: bool) -> CacheEntry | None:
        try:
            if deep:
                getter = getattr(layer, "get_deep", None)
                if getter is not None:
                    return await getter(key)
            return await layer.get(key)
        except Exception as err:  # a custom layer misbehaving is a miss, not an outage of all
            log.warning("cache layer %r failed on get: %s", layer, type(err).__name__)
            return None

    async def _lookup(self, key: str, deep: bool) -> CacheEntry | None:
        found: list[CacheEntry | None] = []
        now = time.time()
        for layer in self.layers:
            entry = await self._get_one(layer, key, deep)
            found.append(entry)
            if not deep and entry is not None and entry.is_fresh(self.fresh_for, now):
                break
        best = newest(found)
        if best is None:
            return None
        usable = best.refresh_token is not None or best.expires_at is None or best.expires_at > now
        if usable:
            for layer, entry in zip(self.layers, found, strict=False):
                if entry is None or entry != best:
                    await self._put_one(layer, key, best)
        return best

    async def get(self, key: str) -> CacheEntry | None:
        return await self._lookup(key, deep=False)

    async def get_deep(self, key: str) -> CacheEntry | None:
        return await self._lookup(key, deep=True)

    async def _put_one(self, layer: TokenCache, key: str, entry: CacheEntry) -> None:
        try:
            await layer.put(key, entry)
        except Exception as err:
            log.warning("cache layer %r failed on put: %s", layer, type(err).__name__)

    async def put(self, key: str, entry: CacheEntry) -> None:
        for layer in self.layers:
            await self._put_one(layer, key, entry)

    async def delete(self, key: str) -> None:
        for layer in self.layers:
            try:
                await layer.delete(key)
            except Exception as err:
                log.warning("cache layer %r failed on delete: %s", layer, type(err).__name__)

    # -- locking --------------------------------------------------------------------------------
    async def try_lock(self, key: str, ttl: float) -> LockHandle | None:
        for layer in reversed(self.layers):
            attempt = getattr(layer, "try_lock", None)
            if attempt is None:
                continue
            try:
                return await attempt(key, ttl)
            except CacheUnavailable as err:
                log.debug("lock of %r unavailable (%s); using a narrower layer's", layer, err)
        return NoLock()

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return polling_lock(self, key, timeout)

    # -- the login-in-progress record -----------------------------------------------------------
    def _progress_layers(self) -> list[Any]:
        return [layer for layer in self.layers if hasattr(layer, "get_progress")]

    async def get_progress(self, key: str) -> LoginProgress | None:
        stale: LoginProgress | None = None
        for layer in self._progress_layers():
            try:
                record = await layer.get_progress(key)
            except Exception as err:
                log.warning("cache layer %r failed to read the login record: %s", layer, type(err).__name__)
                continue
            if record is None:
                continue
            if not record.is_stale():
                return record
            stale = stale or record
        return stale

    async def put_progress(self, key: str, progress: LoginProgress) -> None:
        for layer in self._progress_layers():
            try:
                await layer.put_progress(key, progress)
            except Exception as err:
                log.warning("cache layer %r failed to record the login: %s", layer, type(err).__name__)

    async def delete_progress(self, key: str, owner: str | None = None) -> None:
        for layer in self._progress_layers():
            try:
                await layer.delete_progress(key, owner)
            except Exception as err:
                log.warning("cache layer %r failed to clear the login record: %s", layer, type(err).__name__)
