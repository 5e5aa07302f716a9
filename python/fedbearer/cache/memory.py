"""The in-process layer: a bounded LRU shared by every Bearer of the process."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fedbearer.cache.base import CacheEntry

__all__ = ["MemoryCache"]


class MemoryCache:
    """At most ``max_entries`` tenants, least recently used evicted first. O(1) operations."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

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

    def lock(self, key: str, timeout: float) -> AbstractAsyncContextManager[None]:
        return _no_lock()

    def keys(self) -> list[str]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"MemoryCache(entries={len(self._entries)}, max_entries={self.max_entries})"


@asynccontextmanager
async def _no_lock() -> AsyncIterator[None]:
    yield
