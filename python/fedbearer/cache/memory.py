"""The in-process layer: a bounded LRU shared by every Bearer of the process."""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from contextlib import AbstractAsyncContextManager

from fedbearer.cache.base import CacheEntry, LockHandle, polling_lock

__all__ = ["MemoryCache", "shared_memory_cache"]


class MemoryCache:
    """At most ``max_entries`` tenants, least recently used evicted first. O(1) operations.

    Its lock spans the process (every thread and event loop of it), which the Bearer's per-tenant
    single-flight already covers within one loop; it matters for ``fetch_sync`` callers, whose
    coroutines run on a private loop.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        _instances.add(self)

    async def get(self, key: str) -> CacheEntry | None:
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: CacheEntry) -> None:
        self.put_nowait(key, entry)

    def put_nowait(self, key: str, entry: CacheEntry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    async def try_lock(self, key: str, ttl: float) -> LockHandle | None:
        with self._held_lock:
            if key in self._held:
                return None
            self._held.add(key)
        return _MemoryLock(self, key)

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return polling_lock(self, key, timeout)

    def _release(self, key: str) -> None:
        with self._held_lock:
            self._held.discard(key)

    def _forget_locks(self) -> None:
        self._held = set()
        self._held_lock = threading.Lock()

    def keys(self) -> list[str]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(entries={len(self._entries)}, max_entries={self.max_entries})"


class _MemoryLock:
    __slots__ = ("_cache", "_key")

    def __init__(self, cache: MemoryCache, key: str) -> None:
        self._cache: MemoryCache | None = cache
        self._key = key

    async def release(self) -> None:
        cache, self._cache = self._cache, None
        if cache is not None:
            cache._release(self._key)


_instances: weakref.WeakSet[MemoryCache] = weakref.WeakSet()
_shared: MemoryCache | None = None


def shared_memory_cache() -> MemoryCache:
    """The process-wide memory layer of the default cache."""
    global _shared
    if _shared is None:
        _shared = MemoryCache()
    return _shared


def _after_fork() -> None:
    # A lock held by a thread of the parent is not held by anyone in the child.
    for cache in list(_instances):
        cache._forget_locks()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
