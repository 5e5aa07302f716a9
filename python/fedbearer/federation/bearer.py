"""``fedbearer.federation.Bearer``: the federation bearer for multi-tenant services — layered
caches, single-flight logins, refresh tokens, background renewal, retries, a blocking API.

The hot path — a cached token — is one attribute read, one clock read and one comparison; no
lock, no allocation, no call into Rust, no cache layer. Everything else (layers, locks, refresh,
the browser) happens on the slow path, once per tenant however many callers wait.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
import time
import weakref
from datetime import timedelta
from typing import TextIO

from fedbearer.cache.base import CacheEntry, TokenCache
from fedbearer.cache.defaults import default_cache
from fedbearer.cache.progress import LoginProgress
from fedbearer.exceptions import LoginRequired
from fedbearer.federation import auth
from fedbearer.federation._coordination import (
    LOGIN_IN_PROGRESS,
    LinkWatcher,
    clear_stale_progress,
    lock_or_wait,
)
from fedbearer.federation._http import DEFAULT_HTTP_TIMEOUT
from fedbearer.federation._renewal import RENEW_AT, _consume, _describe, _Renewal
from fedbearer.federation.receiver import Receiver
from fedbearer.hooks import Hooks, emit
from fedbearer.retry import RetryPolicy
from fedbearer.token import Bearer as ParentBearer
from fedbearer.token import Receiver as ParentReceiver
from fedbearer.token import Token

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_SAFETY_MARGIN", "RENEW_AT", "Bearer", "LoginRequired", "tenant_key"]

_time = time.time

DEFAULT_SAFETY_MARGIN = 60.0
"""Seconds before expiry at which a token stops being served (capped at 10% of its lifetime)."""
_LOCK_GRACE = 30.0  # the lock outlives the login it protects by this much (token exchange, writes)


def tenant_key(federation_endpoint: str, federation_id: str, client_id: str, profile: str) -> str:
    """The cache key of a tenant: ``(federation_endpoint, federation_id, client_id, profile)``."""
    return f"federation/{federation_endpoint}/{federation_id}/{profile}#{client_id}"


class _Slot:
    """The in-process state of one tenant, shared by every Bearer of that key."""

    __slots__ = ("deadline", "entry", "inflight", "interactive", "receivers", "renewal", "token")

    def __init__(self) -> None:
        self.token: Token | None = None
        self.entry: CacheEntry | None = None
        self.deadline = 0.0  # serve `token` while time() < deadline
        self.inflight: asyncio.Task[Token | None] | None = None
        self.interactive = True  # whether `inflight` may log in (False: a background renewal)
        self.renewal: asyncio.TimerHandle | None = None
        # The receivers serving this tenant keep their own copy of (token, deadline): the hot path
        # then touches one object less, which is what spread over 10,000 tenants costs.
        self.receivers: list[weakref.ref[_CachedReceiver]] = []

    def publish(self, token: Token | None, deadline: float) -> None:
        """Set what the hot path serves, here and in every live receiver of the tenant."""
        self.token = token
        self.deadline = deadline
        alive = []
        for ref in self.receivers:
            receiver = ref()
            if receiver is not None:
                receiver._token = token
                receiver._deadline = deadline
                alive.append(ref)
        self.receivers = alive


# One slot per tenant key while any Bearer of it lives: the single-flight point of the process.
# A plain dict, pruned of slots no Bearer holds once it grows past _prune_at (a weak-value dict
# scatters the hot objects of 10,000 tenants over more memory: +100 ns per spread fetch).
# Entries outlive their Bearers in the memory cache layer.
_slots: dict[str, _Slot] = {}
_PRUNE_AT = 10_000
_prune_at = _PRUNE_AT


def _slot_for(key: str) -> _Slot:
    slot = _slots.get(key)
    if slot is None:
        if len(_slots) >= _prune_at:
            _prune_slots()
        slot = _slots.setdefault(key, _Slot())
    return slot


def _prune_slots() -> None:
    """Forget the slots no Bearer references any more; prune again at twice the survivors."""
    global _prune_at
    for key in list(_slots):
        if sys.getrefcount(_slots[key]) <= 2:  # the dict's reference and getrefcount's argument
            del _slots[key]
    _prune_at = max(_PRUNE_AT, 2 * len(_slots))


class _CachedReceiver(ParentReceiver):
    """The Receiver a Bearer hands out: serves the tenant's cached token, else joins the one
    login/refresh in flight for the tenant."""

    __slots__ = ("_bearer", "_deadline", "_latest", "_slot", "_token")

    def __init__(self, bearer: Bearer, slot: _Slot) -> None:
        self._deadline = slot.deadline
        self._token = slot.token
        self._latest: Token | None = None
        self._bearer = bearer
        self._slot = slot
        slot.receivers.append(weakref.ref(self))

    async def fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        if _time() < self._deadline:
            tok = self._token
            self._latest = tok
            return tok  # type: ignore[return-value]  # deadline > 0 implies a token
        tok = await self._bearer._obtain(timeout, options)
        self._latest = tok
        return tok

    async def _fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        return await self._bearer._obtain(timeout, options)

    def fetch_sync(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        tok = self._bearer.fetch_sync(timeout, options)
        self._latest = tok
        return tok

    def can_retry(self, err: Exception, options: dict[str, str] | None = None) -> bool:
        return self._bearer._login.can_retry(err, options)


class Bearer(_Renewal, ParentBearer):
    """The federation bearer: ``receiver().fetch()`` returns the tenant's token, logging in
    interactively only when no cached, refreshable token exists.

    The seed's parameters come first and mean the same. Keyword-only extras:

    - ``cache``: the layers below the in-process hot path (a :class:`~fedbearer.cache.TokenCache`,
      e.g. ``MemoryCache()``, ``FileCache(dir)``, ``RedisCache(url)`` or a ``LayeredCache`` of
      them). None: :func:`~fedbearer.cache.default_cache` — memory + a file cache in the user's
      cache directory (``FEDBEARER_CACHE_DIR``), + Redis when ``FEDBEARER_REDIS_URL`` is set;
    - ``retry``: a :class:`~fedbearer.retry.RetryPolicy` for logins and refreshes;
    - ``safety_margin``: seconds before expiry a token stops being served (at most 10% of its
      lifetime);
    - ``renew_in_background``: refresh shortly before expiry so callers stay on the hot path;
      background renewal never opens a browser;
    - ``hooks``: a :class:`~fedbearer.hooks.Hooks` receiving slow-path events with timings;
    - ``login_timeout``, ``expected_issuer``, ``paste_input``, ``http_timeout``: as for
      :class:`~fedbearer.federation.Receiver`.
    """

    # `_receiver` lives in the object itself, not in its __dict__: `bearer.receiver()` is on the
    # hot path, and over 10,000 tenants every object it touches is a likely cache miss.
    __slots__ = ("_receiver",)

    def __init__(
        self,
        profile_name: str,
        client_id: str,
        federation_endpoint: str,
        federation_id: str,
        writer: TextIO | None = None,
        no_browser_open: bool = False,
        ssl_ctx: ssl.SSLContext | None = None,
        *,
        cache: TokenCache | None = None,
        retry: RetryPolicy | None = None,
        safety_margin: float = DEFAULT_SAFETY_MARGIN,
        renew_in_background: bool = False,
        hooks: Hooks | None = None,
        login_timeout: float = auth.DEFAULT_LOGIN_TIMEOUT,
        expected_issuer: str | None = None,
        paste_input: TextIO | None = None,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    ) -> None:
        self._profile_name = profile_name
        self._client_id = client_id
        self._federation_endpoint = federation_endpoint
        self._federation_id = federation_id
        self._writer = writer
        self._no_browser_open = no_browser_open
        self._ssl_ctx = ssl_ctx
        self._cache: TokenCache = cache if cache is not None else default_cache()
        self._retry = retry or RetryPolicy()
        self._safety_margin = safety_margin
        self._renew_in_background = renew_in_background
        self._hooks = hooks
        self._login_timeout = login_timeout
        self._http_timeout = http_timeout
        self._key = tenant_key(federation_endpoint, federation_id, client_id, profile_name)
        self._slot = _slot_for(self._key)
        self._link = LinkWatcher(writer)
        self._login = Receiver(
            client_id,
            federation_endpoint,
            federation_id,
            self._link,  # type: ignore[arg-type]  # a TextIO-like pass-through
            no_browser_open,
            ssl_ctx,
            login_timeout=login_timeout,
            expected_issuer=expected_issuer,
            paste_input=paste_input,
            http_timeout=http_timeout,
            observer=self._observe,
        )
        self._receiver = _CachedReceiver(self, self._slot)

    def _observe(self, event: str) -> None:
        """Flow events of this tenant's logins (browser_failed, callback_received) -> hooks."""
        emit(self._hooks, event, self._key)

    # -- the seed's Bearer API ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"federation/{self._federation_endpoint}/{self._federation_id}/{self._profile_name}"

    @property
    def key(self) -> str:
        """This tenant's cache key."""
        return self._key

    @property
    def cache(self) -> TokenCache:
        """The cache layers below the in-process hot path."""
        return self._cache

    @property
    def acquisition_budget(self) -> timedelta | None:
        return timedelta(seconds=self._login_timeout)

    def receiver(self) -> ParentReceiver:
        return self._receiver

    async def close(self, grace: float | None = None) -> None:
        slot = self._slot
        if slot.renewal is not None:
            slot.renewal.cancel()
            slot.renewal = None
        task = slot.inflight
        if task is not None and not task.done():
            if grace:
                await asyncio.wait([task], timeout=grace)
            task.cancel()

    def __repr__(self) -> str:
        return f"Bearer(name={self.name!r}, client_id={self._client_id!r})"

    # -- more public API ---------------------------------------------------------------------
    def fetch_sync(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        """``receiver().fetch()`` for code without ``async``; works whether or not the calling
        thread runs an event loop (the slow path runs on a private loop in a helper thread)."""
        slot = self._slot
        if _time() < slot.deadline:
            return slot.token  # type: ignore[return-value]
        from fedbearer.sync import run_sync

        return run_sync(lambda: self._obtain(timeout, options))

    def invalidate(self) -> None:
        """Forget the in-process token (the next fetch goes to the cache layers or logs in)."""
        slot = self._slot
        slot.publish(slot.token, 0.0)
        slot.entry = None
        if slot.renewal is not None:
            slot.renewal.cancel()
            slot.renewal = None

    async def logout(self) -> None:
        """Remove this tenant's tokens from this process and from every cache layer."""
        self.invalidate()
        self._slot.publish(None, 0.0)
        await self._cache.delete(self._key)
        delete_progress = getattr(self._cache, "delete_progress", None)
        if delete_progress is not None:
            await delete_progress(self._key, None)

    async def renew(self) -> Token:
        """Renew now without the browser (refresh token), or take a newer token another process
        stored. Raises :class:`LoginRequired` when only an interactive login would do."""
        task = asyncio.get_running_loop().create_task(self._acquire(None, None, interactive=False))
        task.add_done_callback(_consume)
        token = await asyncio.shield(task)
        if token is None:
            raise LoginRequired("the token cannot be renewed without an interactive login")
        return token

    # -- the slow path -----------------------------------------------------------------------
    def _now(self) -> float:
        return _time()

    async def _obtain(self, timeout: float | None, options: dict[str, str] | None) -> Token:
        slot = self._slot
        if _time() < slot.deadline and slot.token is not None:
            return slot.token
        loop = asyncio.get_running_loop()
        task = slot.inflight
        if task is not None and not task.done() and not slot.interactive and task.get_loop() is loop:
            # A background renewal is running: wait for it; log in below only if it could not renew.
            try:
                await asyncio.shield(task)
            except Exception as err:
                log.debug("background renewal failed: %s", _describe(err))
            if _time() < slot.deadline and slot.token is not None:
                return slot.token
            task = slot.inflight
        if task is None or task.done() or task.get_loop() is not loop or not slot.interactive:
            task = loop.create_task(self._acquire(timeout, options, interactive=True))
            task.add_done_callback(_consume)
            slot.inflight = task
            slot.interactive = True
        # A caller cancelled while waiting does not cancel the login for the others.
        token = await asyncio.shield(task)
        assert token is not None  # an interactive acquisition returns a token or raises
        return token

    def _deadline_of(self, entry: CacheEntry) -> float:
        if entry.expires_at is None:
            return float("inf")
        lifetime = max(0.0, entry.expires_at - (entry.issued_at or _time()))
        return entry.expires_at - min(self._safety_margin, 0.1 * lifetime)

    def _serves(self, entry: CacheEntry | None) -> bool:
        return entry is not None and _time() < self._deadline_of(entry)

    def _install(self, entry: CacheEntry, deadline: float | None = None) -> Token:
        slot = self._slot
        token = entry.to_token()
        slot.entry = entry
        slot.publish(token, self._deadline_of(entry) if deadline is None else deadline)
        self._schedule_renewal(entry)
        return token

    async def _read(self, deep: bool) -> CacheEntry | None:
        cache = self._cache
        getter = getattr(cache, "get_deep", None) if deep else None
        try:
            return await (getter or cache.get)(self._key)
        except Exception as err:  # a custom cache raising is a miss
            log.warning("cache read failed: %s", type(err).__name__)
            return None

    async def _acquire(
        self, timeout: float | None, options: dict[str, str] | None, *, interactive: bool
    ) -> Token | None:
        """Cache layers, then (under the tenant's lock) refresh, then — if ``interactive`` — an
        interactive login. Non-interactive: returns None when only a login would do."""
        key = self._key
        current = None if interactive else self._slot.entry

        def usable(entry: CacheEntry | None) -> bool:
            # Background renewal wants a newer token than the one it is renewing.
            if not self._serves(entry):
                return False
            return current is None or (
                entry.access_token != current.access_token  # type: ignore[union-attr]
                and entry.issued_at >= current.issued_at  # type: ignore[union-attr]
            )

        t0 = time.perf_counter()
        entry = await self._read(deep=False)
        if usable(entry):
            emit(self._hooks, "cache_hit", key, time.perf_counter() - t0)
            return self._install(entry)  # type: ignore[arg-type]
        emit(self._hooks, "cache_miss", key, time.perf_counter() - t0)

        handle, entry = await lock_or_wait(
            self._cache,
            key,
            ttl=self._login_timeout + _LOCK_GRACE,
            wait=self._login_timeout + _LOCK_GRACE if timeout is None else timeout,
            read=lambda: self._read(deep=True),
            usable=usable,
            announce=self._announce if interactive else None,
        )
        try:
            if entry is not None:  # another process or host logged in or refreshed meanwhile
                return self._install(entry)
            if handle is not None:
                await clear_stale_progress(self._cache, key)
            # Re-read under the lock: someone may have refreshed (and rotated the refresh token).
            entry = await self._read(deep=True)
            if usable(entry):
                return self._install(entry)  # type: ignore[arg-type]
            return await self._renew_or_login(entry, timeout, options, interactive=interactive)
        finally:
            if handle is not None:
                await handle.release()

    def _announce(self, record: LoginProgress) -> None:
        log.info("another process (pid %d on %s) is logging in: %s", record.pid, record.host, record.url)
        if self._writer is not None:
            try:
                print(LOGIN_IN_PROGRESS.format(url=record.url), file=self._writer)
                self._writer.flush()
            except Exception as err:
                log.warning("could not write to the writer: %s", type(err).__name__)
        emit(self._hooks, "login_waiting", self._key, record.url)
