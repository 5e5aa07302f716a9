"""Token caches: memory (in-process LRU), and the layers built on the same protocol."""

from fedbearer.cache.base import CacheEntry, TokenCache
from fedbearer.cache.memory import MemoryCache

__all__ = ["CacheEntry", "MemoryCache", "TokenCache"]
