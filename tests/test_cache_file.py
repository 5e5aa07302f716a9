"""FileCache: permissions, schema, atomic replace, locking, damaged files, a writer killed mid-write."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bearer_helpers import HELPERS, files, spawn_lock_holder, subprocess_env
from fedbearer.cache import CacheEntry, FileCache, LoginProgress
from fedbearer.cache.file import SCHEMA_VERSION

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

KEY_A = "federation/https://auth.example/fed/a#client"
KEY_B = "federation/https://auth.example/fed/b#client"


def entry(value: str = "at-1", lifetime: float = 3600.0, refresh: str | None = "rt-1") -> CacheEntry:
    now = time.time()
    return CacheEntry(value, now + lifetime, refresh, now)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_round_trip_with_private_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "cache" / "nested"
    cache = FileCache(directory)
    assert await cache.get(KEY_A) is None
    written = entry()
    await cache.put(KEY_A, written)
    assert await cache.get(KEY_A) == written
    assert mode(directory) == 0o700
    assert mode(cache.path_for(KEY_A)) == 0o600
    doc = json.loads(cache.path_for(KEY_A).read_text())
    assert doc["schema"] == SCHEMA_VERSION and doc["key"] == KEY_A
    handle = await cache.try_lock(KEY_A, 10)
    assert handle is not None
    await handle.release()
    assert all(mode(p) == 0o600 for p in directory.iterdir())


async def test_one_file_per_tenant_and_delete_touches_only_that_tenant(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    await cache.put(KEY_A, entry("at-a"))
    await cache.put(KEY_B, entry("at-b"))
    assert cache.path_for(KEY_A) != cache.path_for(KEY_B)
    await cache.delete(KEY_A)
    assert await cache.get(KEY_A) is None
    assert (await cache.get(KEY_B)).access_token == "at-b"  # type: ignore[union-attr]
    assert [k for k, _ in cache.entries()] == [KEY_B]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"",
        json.dumps({"schema": 1, "key": KEY_A, "entry": {"access_token": 5}}).encode(),
        json.dumps({"schema": 0, "key": KEY_A, "entry": {}}).encode(),
        json.dumps(["a list"]).encode(),
    ],
    ids=["truncated", "binary", "empty", "bad-entry", "old-schema", "not-a-mapping"],
)
async def test_damaged_file_is_moved_aside_with_a_warning_and_others_survive(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FileCache(tmp_path)
    await cache.put(KEY_A, entry("at-a"))
    await cache.put(KEY_B, entry("at-b"))
    cache.path_for(KEY_A).write_bytes(content)
    with caplog.at_level(logging.WARNING, "fedbearer.cache.file"):
        assert await cache.get(KEY_A) is None
    assert "damaged" in caplog.text
    aside = files(tmp_path, "*.corrupt-*")
    assert len(aside) == 1 and aside[0].read_bytes() == content
    assert not cache.path_for(KEY_A).exists()
    assert (await cache.get(KEY_B)).access_token == "at-b"  # type: ignore[union-attr]
    await cache.put(KEY_A, entry("at-a2"))  # the tenant can store again
    assert (await cache.get(KEY_A)).access_token == "at-a2"  # type: ignore[union-attr]


async def test_a_file_holding_another_tenants_entry_is_never_served(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    await cache.put(KEY_B, entry("at-b"))
    cache.path_for(KEY_A).write_bytes(cache.path_for(KEY_B).read_bytes())  # copied or planted
    assert await cache.get(KEY_A) is None
    assert (await cache.get(KEY_B)).access_token == "at-b"  # type: ignore[union-attr]


async def test_newer_schema_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FileCache(tmp_path)
    doc = {"schema": SCHEMA_VERSION + 1, "key": KEY_A, "entry": {"whatever": 1}}
    cache.path_for(KEY_A).parent.mkdir(exist_ok=True)
    cache.path_for(KEY_A).write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        assert await cache.get(KEY_A) is None
    assert cache.path_for(KEY_A).exists() and not files(tmp_path, "*.corrupt-*")
    assert "newer fedbearer" in caplog.text


async def test_damaged_file_is_not_moved_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    # The lock holder is about to replace it; moving it could race with that write.
    cache = FileCache(tmp_path)
    await cache.put(KEY_A, entry())
    holder = spawn_lock_holder(tmp_path, KEY_A, "http://127.0.0.1:1/oauth2/authorize?x", 60)
    try:
        cache.path_for(KEY_A).write_bytes(b"{broken")
        assert await cache.get(KEY_A) is None
        assert cache.path_for(KEY_A).exists() and not files(tmp_path, "*.corrupt-*")
    finally:
        holder.kill()
        holder.wait()


async def test_lock_is_exclusive_across_processes_and_freed_when_the_holder_dies(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    holder = spawn_lock_holder(tmp_path, KEY_A, "http://127.0.0.1:1/oauth2/authorize?x", 60)
    try:
        assert await cache.try_lock(KEY_A, 10) is None
        other = await cache.try_lock(KEY_B, 10)  # tenants never wait on each other
        assert other is not None
        await other.release()
        record = await cache.get_progress(KEY_A)
        assert record is not None and record.pid == holder.pid and not record.is_stale()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    handle = await cache.try_lock(KEY_A, 10)  # the kernel released the dead holder's flock
    assert handle is not None
    record = await cache.get_progress(KEY_A)
    assert record is not None and record.is_stale()  # pid gone
    await handle.release()


async def test_lock_is_exclusive_within_the_process_too(tmp_path: Path) -> None:
    cache, other_instance = FileCache(tmp_path), FileCache(tmp_path)
    first = await cache.try_lock(KEY_A, 10)
    assert first is not None
    assert await other_instance.try_lock(KEY_A, 10) is None
    await first.release()
    await first.release()  # idempotent
    async with other_instance.lock(KEY_A, 1.0):
        with pytest.raises(TimeoutError):
            async with cache.lock(KEY_A, 0.1):
                pass


async def test_progress_record_round_trip_and_owner_checked_delete(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    mine = LoginProgress.mine("http://127.0.0.1:9/oauth2/authorize?a=b", 30)
    await cache.put_progress(KEY_A, mine)
    assert await cache.get_progress(KEY_A) == mine
    await cache.delete_progress(KEY_A, "someone-else")
    assert await cache.get_progress(KEY_A) == mine
    await cache.delete_progress(KEY_A, mine.owner)
    assert await cache.get_progress(KEY_A) is None
    expired = LoginProgress.mine("http://127.0.0.1:9/oauth2/authorize?a=b", -1)
    assert expired.is_stale() and not mine.is_stale()


async def test_unwritable_directory_is_a_warning_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    cache = FileCache(blocker / "cache")
    with caplog.at_level(logging.WARNING):
        await cache.put(KEY_A, entry())
        assert await cache.get(KEY_A) is None
    assert "cannot write the token cache" in caplog.text


def _spawn_writer(directory: Path, key: str, **extra: object) -> subprocess.Popen[str]:
    args = {"dir": str(directory), "key": key, **extra}
    return subprocess.Popen(
        [sys.executable, str(HELPERS), "cache-writer", json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(directory),
    )


def _assert_readable(cache: FileCache, directory: Path) -> None:
    got = cache.read(KEY_A)
    assert got is not None and got.access_token.startswith("tok-"), got
    assert (cache.read(KEY_B) or entry("missing")).access_token == "at-b"
    assert not files(directory, "*.corrupt-*")


async def test_kill_9_inside_a_write_leaves_a_readable_cache(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    await cache.put(KEY_B, entry("at-b"))
    await cache.put(KEY_A, entry("tok-before"))
    # Deterministic: killed after writing the temp file, before renaming it.
    proc = _spawn_writer(tmp_path, KEY_A, hang_in_fsync=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "in-fsync"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert cache.read(KEY_A).access_token == "tok-before"  # type: ignore[union-attr]
    assert files(tmp_path, ".tmp-*"), "the killed writer's temp file is left behind"
    _assert_readable(cache, tmp_path)
    # Random moments: killed anywhere in the write loop, ten times.
    for i in range(10):
        proc = _spawn_writer(tmp_path, KEY_A, size=300_000)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        await asyncio.sleep(0.005 + 0.007 * i)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_readable(cache, tmp_path)
    # Stale temp files are cleaned once old enough.
    old = time.time() - 3600
    for tmp in files(tmp_path, ".tmp-*"):
        os.utime(tmp, (old, old))
    assert [k for k, _ in FileCache(tmp_path).entries()] == sorted([KEY_A, KEY_B])
    assert not files(tmp_path, ".tmp-*")
