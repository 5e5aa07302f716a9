"""RedisCache against a real redis-server: entries with PX, the SET NX PX lock with a
compare-and-delete release, Redis going away mid-run, several "hosts" sharing one Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bearer_helpers import HELPERS, AutoBrowser, forget_process_state, spawn_lock_holder, subprocess_env
from fedbearer.cache import CacheEntry, FileCache, LayeredCache, LoginProgress, MemoryCache, RedisCache
from fedbearer.cache.base import CacheUnavailable
from fedbearer.federation import Bearer
from fedbearer.federation import bearer as bearer_module
from fedbearer.testing import IdentityProvider
from redis_server import RedisServer, running_redis

pytestmark = pytest.mark.timeout(60)

KEY = "federation/https://auth.example/fed/p#c"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def entry(token: str, lifetime: float = 3600.0, refresh: str | None = "rt") -> CacheEntry:
    now = time.time()
    return CacheEntry(token, now + lifetime, refresh, now)


async def raw(server: RedisServer):  # type: ignore[no-untyped-def]
    import redis.asyncio

    return redis.asyncio.Redis.from_url(server.url)


@pytest.mark.asyncio
async def test_entries_round_trip_and_expire_with_the_token(redis_server: RedisServer) -> None:
    cache = RedisCache(redis_server.url)
    client = await raw(redis_server)
    try:
        stored = entry("at", lifetime=120)
        await cache.put(KEY, stored)
        assert await cache.get(KEY) == stored
        pttl = await client.pttl(f"fedbearer:tok:{KEY}")
        assert 115_000 < pttl <= 120_000
        await cache.put(KEY, entry("gone", lifetime=-1))  # already expired: not stored at all
        assert await cache.get(KEY) is None
        await cache.put(KEY, stored)
        await client.set(f"fedbearer:tok:{KEY}", b"{damaged")
        assert await cache.get(KEY) is None
        assert await client.exists(f"fedbearer:tok:{KEY}") == 0  # removed
        await cache.put(KEY, stored)
        assert [k for k, _ in await cache.entries()] == [KEY]
        await cache.delete(KEY)
        assert await cache.get(KEY) is None
    finally:
        await client.aclose()
        await cache.aclose()


@pytest.mark.asyncio
async def test_lock_is_set_nx_px_and_release_never_deletes_a_successors_lock(
    redis_server: RedisServer,
) -> None:
    a, b = RedisCache(redis_server.url), RedisCache(redis_server.url)
    client = await raw(redis_server)
    try:
        held = await a.try_lock(KEY, 0.3)
        assert held is not None
        assert await b.try_lock(KEY, 10) is None
        assert 0 < await client.pttl(f"fedbearer:lock:{KEY}") <= 300
        await asyncio.sleep(0.4)  # a's lock expired (a holder that hung or died)
        successor = await b.try_lock(KEY, 10)
        assert successor is not None
        await held.release()  # compare-and-delete: not a's token any more -> untouched
        assert await a.try_lock(KEY, 10) is None
        await successor.release()
        again = await a.try_lock(KEY, 10)
        assert again is not None
        await again.release()
        record = LoginProgress.mine("http://127.0.0.1:1/oauth2/authorize?x", 30)
        await a.put_progress(KEY, record)
        assert await b.get_progress(KEY) == record
        await b.delete_progress(KEY, "not-the-owner")
        assert await a.get_progress(KEY) == record
        await b.delete_progress(KEY, record.owner)
        assert await a.get_progress(KEY) is None
    finally:
        await client.aclose()
        await a.aclose()
        await b.aclose()


@pytest.mark.asyncio
async def test_redis_down_is_a_miss_with_one_warning_and_recovers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisCache(redis_server.url, retry_after=0.3, socket_timeout=0.5)
    await cache.put(KEY, entry("at"))
    redis_server.stop()
    with caplog.at_level(logging.WARNING, "fedbearer.cache.redis"):
        start = time.monotonic()
        assert await cache.get(KEY) is None
        await cache.put(KEY, entry("at2"))
        await cache.delete(KEY)
        with pytest.raises(CacheUnavailable):
            await cache.try_lock(KEY, 5)
        async with cache.lock(KEY, 5):  # degrades to running unlocked
            pass
        assert time.monotonic() - start < 2.0
    unavailable = [
        r for r in caplog.records if r.name == "fedbearer.cache.redis" and "unavailable" in r.getMessage()
    ]
    assert len(unavailable) == 1, caplog.text
    assert not cache.available
    redis_server.start()  # same port
    await asyncio.sleep(0.35)
    await cache.put(KEY, entry("back"))
    assert (await cache.get(KEY)).access_token == "back"  # type: ignore[union-attr]
    assert "reachable again" in caplog.text
    await cache.aclose()


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(RedisCache("redis://user:hunter2@127.0.0.1:6379/0"))


@pytest.mark.asyncio
@pytest.mark.identity_provider(token_ttl=3600)
async def test_callers_keep_working_when_redis_stops_mid_run(
    identity_provider: IdentityProvider,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp = identity_provider
    monkeypatch.setenv("FEDBEARER_REDIS_URL", redis_server.url)
    user = AutoBrowser()

    def make() -> Bearer:
        bearer = Bearer("p", "client", idp.endpoint, "fed", writer=user, no_browser_open=True)
        redis_layer = bearer.cache.layers[-1]  # type: ignore[attr-defined]
        assert isinstance(redis_layer, RedisCache)
        redis_layer.retry_after, redis_layer.socket_timeout = 0.2, 0.5
        return bearer

    bearer = make()
    token = await bearer.receiver().fetch()
    client = await raw(redis_server)
    stored = json.loads(await client.get(f"fedbearer:tok:{bearer.key}"))
    assert stored["entry"]["access_token"] == token.token
    assert 3_590_000 < await client.pttl(f"fedbearer:tok:{bearer.key}") <= 3_600_000
    await client.aclose()

    redis_server.stop()
    with caplog.at_level(logging.WARNING):
        assert await bearer.receiver().fetch() is token  # the hot path never noticed
        forget_process_state()  # a new process on this host: the file layer answers
        again = make()
        assert (await again.receiver().fetch()).token == token.token
        # Expiry: renewal with the refresh token works without Redis.
        real = time.time
        monkeypatch.setattr(bearer_module, "_time", lambda: real() + 3600 - 30)
        renewed = await again.receiver().fetch()
    assert renewed.token != token.token
    assert "unavailable" in caplog.text
    stats = idp.stats
    assert (stats.logins, stats.refreshes, user.prompts) == (1, 1, 1)


def _spawn_worker(env: dict[str, str], args: dict[str, object]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HELPERS), "worker", json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.identity_provider(auto_approve=True)
def test_replicas_on_several_hosts_share_one_login_through_redis(
    identity_provider: IdentityProvider, redis_server: RedisServer, tmp_path: Path
) -> None:
    idp = identity_provider
    browser_log = tmp_path / "browser.log"
    go = tmp_path / "go"
    procs = []
    for i in range(3):  # three "hosts": each its own cache directory, one Redis
        env = subprocess_env(
            tmp_path / f"host{i}",
            browser_log,
            FEDBEARER_REDIS_URL=redis_server.url,
            FAKE_BROWSER_DELAY="1.0",
        )
        args = {
            "client_id": "client",
            "endpoint": idp.endpoint,
            "federation_id": "fed",
            "ready": str(tmp_path / f"ready{i}"),
            "go": str(go),
        }
        procs.append(_spawn_worker(env, args))
    _release_when_ready(tmp_path, 3, go)
    outputs = [p.communicate(timeout=40) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    tokens = {json.loads(out)["token"] for out, _ in outputs}
    assert len(tokens) == 1
    assert idp.stats.logins == 1
    assert len(browser_log.read_text().splitlines()) == 1
    waiting = [err for _, err in outputs if "login in progress — open: http" in err]
    assert len(waiting) == 2, [err for _, err in outputs]


def _release_when_ready(directory: Path, count: int, go: Path) -> None:
    deadline = time.monotonic() + 30
    while len(list(directory.glob("ready*"))) < count:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    go.touch()


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_a_killed_lock_owner_is_taken_over_before_its_redis_lock_expires(
    identity_provider: IdentityProvider,
    redis_server: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    idp = identity_provider
    user = AutoBrowser()
    cache = LayeredCache(MemoryCache(), FileCache(tmp_path / "c"), RedisCache(redis_server.url))
    bearer = Bearer("p", "client", idp.endpoint, "fed", writer=user, no_browser_open=True, cache=cache)
    url = f"{idp.endpoint}/oauth2/authorize?owner=dead"
    holder = spawn_lock_holder(tmp_path / "holder", bearer.key, url, 300, redis_url=redis_server.url, ttl=300)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        token = await bearer.receiver().fetch()
    assert time.monotonic() - start < 10  # not the lock's 300 s
    assert token.token in idp.issued_tokens and idp.stats.logins == 1
    assert "process gone" in caplog.text
    await cache.layers[2].aclose()  # type: ignore[attr-defined]
