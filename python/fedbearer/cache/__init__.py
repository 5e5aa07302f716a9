"""Token caches behind one small protocol (get/put/delete/lock by tenant key).

- :class:`MemoryCache`: in-process, bounded LRU;
- :class:`FileCache`: a private directory, one 0600 file per tenant, atomic replace, ``flock``;
- :class:`RedisCache`: shared by replicas on several hosts, distributed lock (``redis`` loads lazily);
- :class:`LayeredCache`: read through, write to all, lock with the widest layer.

:func:`default_cache` is what a Bearer uses with ``cache=None``.
"""

from fedbearer.cache.base import CacheEntry, CacheUnavailable, LockHandle, TokenCache
from fedbearer.cache.defaults import default_cache, default_cache_dir
from fedbearer.cache.file import FileCache
from fedbearer.cache.layered import LayeredCache
from fedbearer.cache.memory import MemoryCache
from fedbearer.cache.progress import LoginProgress
from fedbearer.cache.redis import RedisCache

__all__ = [
    "CacheEntry",
    "CacheUnavailable",
    "FileCache",
    "LayeredCache",
    "LockHandle",
    "LoginProgress",
    "MemoryCache",
    "RedisCache",
    "TokenCache",
    "default_cache",
    "default_cache_dir",
]
