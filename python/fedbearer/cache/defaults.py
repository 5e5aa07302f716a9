"""The default cache: the process's memory layer, a file cache in the user's cache directory, and
Redis when ``FEDBEARER_REDIS_URL`` is set."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from fedbearer.cache.file import FileCache
from fedbearer.cache.layered import LayeredCache
from fedbearer.cache.memory import shared_memory_cache

__all__ = ["CACHE_DIR_ENV", "REDIS_URL_ENV", "default_cache", "default_cache_dir"]

CACHE_DIR_ENV = "FEDBEARER_CACHE_DIR"
REDIS_URL_ENV = "FEDBEARER_REDIS_URL"

_built: dict[tuple[str, str], LayeredCache] = {}
_guard = threading.Lock()


def default_cache_dir() -> Path:
    """``$FEDBEARER_CACHE_DIR``, else the platform's per-user cache directory + ``fedbearer``:
    ``$XDG_CACHE_HOME`` or ``~/.cache`` (Linux), ``~/Library/Caches`` (macOS),
    ``%LOCALAPPDATA%`` (Windows)."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "fedbearer" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "fedbearer"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base_dir = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base_dir / "fedbearer"


def default_cache() -> LayeredCache:
    """The cache a Bearer gets with ``cache=None`` (one instance per directory and Redis URL, so
    every Bearer of the process shares its memory layer and Redis connections)."""
    directory = str(default_cache_dir())
    redis_url = os.environ.get(REDIS_URL_ENV, "")
    with _guard:
        cache = _built.get((directory, redis_url))
        if cache is None:
            layers: list = [shared_memory_cache(), FileCache(directory)]
            if redis_url:
                from fedbearer.cache.redis import RedisCache  # redis itself loads on first use

                layers.append(RedisCache(redis_url))
            cache = _built[(directory, redis_url)] = LayeredCache(*layers)
        return cache
