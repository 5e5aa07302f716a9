"""MemoryCache and LayeredCache: LRU bounds, read-through with back-fill, newest entry wins,
write to all, the widest layer's lock with fallback, the default cache's composition."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedbearer.cache import (
    CacheEntry,
    CacheUnavailable,
    FileCache,
    LayeredCache,
    LockHandle,
    MemoryCache,
    RedisCache,
    TokenCache,
    default_cache,
    default_cache_dir,
)
from fedbearer.cache.base import NoLock

pytestmark = [pytest.mark.timeout(30), pytest.mark.asyncio]

KEY = "federation/https://auth.example/fed/p#c"


def entry(
    token: str, *, issued_ago: float = 0.0, lifetime: float = 3600.0, refresh: str | None = None
) -> CacheEntry:
    issued = time.time() - issued_ago
    return CacheEntry(token, issued + lifetime, refresh, issued)


class BrokenLayer:
    """A layer whose backend is down: raises on everything."""

    async def get(self, key: str) -> CacheEntry | None:
        raise ConnectionError("down")

    async def put(self, key: str, entry: CacheEntry) -> None:
        raise ConnectionError("down")

    async def delete(self, key: str) -> None:
        raise ConnectionError("down")

    def lock(self, key: str, timeout: float):  # type: ignore[no-untyped-def]
        raise ConnectionError("down")

    async def try_lock(self, key: str, ttl: float) -> LockHandle | None:
        raise CacheUnavailable("down")


async def test_memory_cache_is_a_bounded_lru() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.put("a", entry("a"))
    await cache.put("b", entry("b"))
    await cache.get("a")  # a is now the most recently used
    await cache.put("c", entry("c"))
    assert cache.keys() == ["a", "c"]
    assert isinstance(cache, TokenCache)
    with pytest.raises(ValueError):
        MemoryCache(max_entries=0)


async def test_memory_lock_spans_the_process() -> None:
    cache = MemoryCache()
    first = await cache.try_lock(KEY, 1)
    assert first is not None and await cache.try_lock(KEY, 1) is None
    assert await cache.try_lock("other", 1) is not None
    await first.release()
    assert await cache.try_lock(KEY, 1) is not None


async def test_read_through_back_fills_upper_layers(tmp_path: Path) -> None:
    memory, file = MemoryCache(), FileCache(tmp_path)
    layered = LayeredCache(memory, file)
    stored = entry("at")
    await file.put(KEY, stored)
    assert await layered.get(KEY) == stored
    assert memory.get_nowait(KEY) == stored


async def test_a_fresh_memory_entry_answers_without_reading_lower_layers(tmp_path: Path) -> None:
    memory = MemoryCache()
    layered = LayeredCache(memory, BrokenLayer())  # type: ignore[arg-type]
    await memory.put(KEY, entry("fresh"))
    assert (await layered.get(KEY)).access_token == "fresh"  # type: ignore[union-attr]


async def test_newest_entry_wins_when_upper_layers_are_stale(tmp_path: Path) -> None:
    # Another host refreshed (and rotated the refresh token): Redis/file has the newer entry.
    memory, file = MemoryCache(), FileCache(tmp_path)
    layered = LayeredCache(memory, file)
    old = entry("old", issued_ago=3590, refresh="rt-old")  # 10 s left: not fresh for 60 s
    new = entry("new", refresh="rt-new")
    await memory.put(KEY, old)
    await file.put(KEY, new)
    assert await layered.get(KEY) == new
    assert memory.get_nowait(KEY) == new
    await memory.put(KEY, entry("fresh-but-older", issued_ago=10))
    assert (await layered.get(KEY)).access_token == "fresh-but-older"  # type: ignore[union-attr]
    assert await layered.get_deep(KEY) == new  # under the lock: every layer, the newest


async def test_writes_and_deletes_reach_every_layer_and_survive_a_broken_one(tmp_path: Path) -> None:
    memory, file = MemoryCache(), FileCache(tmp_path)
    layered = LayeredCache(memory, BrokenLayer(), file)  # type: ignore[arg-type]
    stored = entry("at")
    await layered.put(KEY, stored)
    assert memory.get_nowait(KEY) == stored and file.read(KEY) == stored
    assert await layered.get_deep(KEY) == stored
    await layered.delete(KEY)
    assert memory.get_nowait(KEY) is None and file.read(KEY) is None


async def test_lock_is_the_widest_available_layers(tmp_path: Path) -> None:
    memory, file = MemoryCache(), FileCache(tmp_path)
    layered = LayeredCache(memory, file, BrokenLayer())  # type: ignore[arg-type]
    handle = await layered.try_lock(KEY, 5)
    assert handle is not None
    assert await file.try_lock(KEY, 5) is None  # the file lock was taken (Redis is down)
    assert await memory.try_lock(KEY, 5) is not None  # the narrower memory lock was not
    await handle.release()
    only_broken = LayeredCache(BrokenLayer())  # type: ignore[arg-type]
    assert isinstance(await only_broken.try_lock(KEY, 5), NoLock)
    async with only_broken.lock(KEY, 1):
        pass


async def test_default_cache_is_memory_and_file_plus_redis_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDBEARER_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    cache = default_cache()
    assert cache is default_cache()
    kinds = [type(layer) for layer in cache.layers]
    assert kinds == [MemoryCache, FileCache]
    assert cache.layers[1].directory == tmp_path / "c"  # type: ignore[attr-defined]
    monkeypatch.setenv("FEDBEARER_REDIS_URL", "redis://127.0.0.1:1/0")
    with_redis = default_cache()
    assert [type(layer) for layer in with_redis.layers] == [MemoryCache, FileCache, RedisCache]
    assert with_redis.layers[0] is cache.layers[0]  # one memory layer per process


async def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FEDBEARER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "fedbearer"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert default_cache_dir() == Path.home() / ".cache" / "fedbearer"


async def test_entries_hide_tokens_in_repr() -> None:
    e = CacheEntry("secret-access", time.time() + 10, "secret-refresh", time.time())
    assert "secret" not in repr(e)
    assert CacheEntry.from_dict(e.to_dict()) == e
    for bad in (
        {"access_token": ""},
        {"access_token": "x", "expires_at": "soon"},
        {"access_token": "x", "expires_at": True},
    ):
        with pytest.raises(ValueError):
            CacheEntry.from_dict(bad)
