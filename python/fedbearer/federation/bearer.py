"""``fedbearer.federation.Bearer``: the federation bearer with in-process caching, single-flight
logins, refresh tokens and retries.

The hot path — a cached token — is one attribute read, one clock read and one comparison; no
lock, no allocation, no call into Rust. Everything else (cache layers, locks, refresh, the
browser) happens on the slow path, once per tenant however many callers wait.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from datetime import timedelta
from typing import TextIO

from fedbearer.cache.base import CacheEntry, TokenCache
from fedbearer.exceptions import AuthorizationDenied, TokenEndpointError
from fedbearer.federation import auth
from fedbearer.federation._http import DEFAULT_HTTP_TIMEOUT
from fedbearer.federation.receiver import Receiver
from fedbearer.retry import RetryPolicy
from fedbearer.token import Bearer as ParentBearer
from fedbearer.token import Receiver as ParentReceiver
from fedbearer.token import Token

log = logging.getLogger(__name__)

__all__ = ["Bearer", "tenant_key"]

_time = time.time

DEFAULT_SAFETY_MARGIN = 60.0
"""Seconds before expiry at which a token stops being served (capped at 10% of its lifetime)."""


def tenant_key(federation_endpoint: str, federation_id: str, client_id: str, profile: str) -> str:
    """The cache key of a tenant: ``(federation_endpoint, federation_id, client_id, profile)``."""
    return f"federation/{federation_endpoint}/{federation_id}/{profile}#{client_id}"


class _Slot:
    """The in-process state of one tenant, shared by every Bearer of that key."""

    __slots__ = ("deadline", "entry", "inflight", "token")

    def __init__(self) -> None:
        self.token: Token | None = None
        self.entry: CacheEntry | None = None
        self.deadline = 0.0  # serve `token` while time() < deadline
        self.inflight: asyncio.Task[Token] | None = None


_MAX_SLOTS = 100_000
_slots: OrderedDict[str, _Slot] = OrderedDict()


def _slot_for(key: str) -> _Slot:
    slot = _slots.get(key)
    if slot is None:
        slot = _slots[key] = _Slot()
        while len(_slots) > _MAX_SLOTS:
            _slots.popitem(last=False)
    else:
        _slots.move_to_end(key)
    return slot


def _consume(task: asyncio.Task[Token]) -> None:
    # Retrieve the outcome so an error nobody awaited is not reported as "never retrieved".
    if not task.cancelled():
        task.exception()


class _CachedReceiver(ParentReceiver):
    """The Receiver a Bearer hands out: serves the tenant's cached token, else joins the one
    login/refresh in flight for the tenant."""

    __slots__ = ("_bearer", "_latest", "_slot")

    def __init__(self, bearer: Bearer, slot: _Slot) -> None:
        self._bearer = bearer
        self._slot = slot
        self._latest: Token | None = None

    async def fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        slot = self._slot
        if _time() < slot.deadline:
            tok = slot.token
            self._latest = tok
            return tok  # type: ignore[return-value]  # deadline > 0 implies a token
        tok = await self._bearer._obtain(timeout, options)
        self._latest = tok
        return tok

    async def _fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        return await self._bearer._obtain(timeout, options)

    def can_retry(self, err: Exception, options: dict[str, str] | None = None) -> bool:
        return self._bearer._login.can_retry(err, options)


class Bearer(ParentBearer):
    """The federation bearer: ``receiver().fetch()`` returns the tenant's token, logging in
    interactively only when no cached, refreshable token exists.

    The seed's parameters come first and mean the same; keyword-only extras: ``cache`` (a
    :class:`~fedbearer.cache.TokenCache` layer below the in-process memory; None: memory only),
    ``retry`` (a :class:`~fedbearer.retry.RetryPolicy`), ``safety_margin`` (seconds before expiry
    a token stops being served), ``login_timeout``, ``expected_issuer``, ``paste_input``,
    ``http_timeout``.
    """

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
        self._cache = cache
        self._retry = retry or RetryPolicy()
        self._safety_margin = safety_margin
        self._login_timeout = login_timeout
        self._http_timeout = http_timeout
        self._key = tenant_key(federation_endpoint, federation_id, client_id, profile_name)
        self._slot = _slot_for(self._key)
        self._login = Receiver(
            client_id,
            federation_endpoint,
            federation_id,
            writer,
            no_browser_open,
            ssl_ctx,
            login_timeout=login_timeout,
            expected_issuer=expected_issuer,
            paste_input=paste_input,
            http_timeout=http_timeout,
        )
        self._receiver = _CachedReceiver(self, self._slot)

    # -- the seed's Bearer API ---------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"federation/{self._federation_endpoint}/{self._federation_id}/{self._profile_name}"

    @property
    def key(self) -> str:
        """This tenant's cache key."""
        return self._key

    @property
    def acquisition_budget(self) -> timedelta | None:
        return timedelta(seconds=self._login_timeout)

    def receiver(self) -> ParentReceiver:
        return self._receiver

    async def close(self, grace: float | None = None) -> None:
        task = self._slot.inflight
        if task is not None and not task.done():
            if grace:
                await asyncio.wait([task], timeout=grace)
            task.cancel()

    def __repr__(self) -> str:
        return f"Bearer(name={self.name!r}, client_id={self._client_id!r})"

    # -- the slow path -----------------------------------------------------------------------
    def _install(self, entry: CacheEntry) -> Token:
        slot = self._slot
        token = entry.to_token()
        if entry.expires_at is None:
            deadline = float("inf")
        else:
            lifetime = max(0.0, entry.expires_at - (entry.issued_at or _time()))
            deadline = entry.expires_at - min(self._safety_margin, 0.1 * lifetime)
        slot.token = token
        slot.entry = entry
        slot.deadline = deadline
        return token

    def _serves(self, entry: CacheEntry | None) -> bool:
        if entry is None:
            return False
        if entry.expires_at is None:
            return True
        lifetime = max(0.0, entry.expires_at - (entry.issued_at or _time()))
        return _time() < entry.expires_at - min(self._safety_margin, 0.1 * lifetime)

    def invalidate(self) -> None:
        """Forget the in-process token (the next fetch goes to the cache layers or logs in)."""
        slot = self._slot
        slot.deadline = 0.0
        slot.token = None
        slot.entry = None

    async def _obtain(self, timeout: float | None, options: dict[str, str] | None) -> Token:
        slot = self._slot
        if _time() < slot.deadline and slot.token is not None:
            return slot.token
        loop = asyncio.get_running_loop()
        task = slot.inflight
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._acquire(timeout, options, interactive=True))
            task.add_done_callback(_consume)
            slot.inflight = task
        # A caller cancelled while waiting does not cancel the login for the others.
        return await asyncio.shield(task)

    async def _acquire(
        self, timeout: float | None, options: dict[str, str] | None, *, interactive: bool
    ) -> Token:
        cache = self._cache
        if cache is None:
            return await self._renew_or_login(None, timeout, options, interactive=interactive)
        entry = await cache.get(self._key)
        if self._serves(entry):
            return self._install(entry)  # type: ignore[arg-type]
        async with cache.lock(self._key, self._login_timeout + 30.0):
            # Someone else (another process, another host) may have logged in meanwhile.
            entry = await cache.get(self._key)
            if self._serves(entry):
                return self._install(entry)  # type: ignore[arg-type]
            return await self._renew_or_login(entry, timeout, options, interactive=interactive)

    async def _renew_or_login(
        self,
        cached: CacheEntry | None,
        timeout: float | None,
        options: dict[str, str] | None,
        *,
        interactive: bool,
    ) -> Token:
        refresh_token = (cached.refresh_token if cached else None) or (
            self._slot.entry.refresh_token if self._slot.entry else None
        )
        if refresh_token:
            entry = await self._refresh(refresh_token)
            if entry is not None:
                return await self._store(entry)
        if not interactive:
            raise TokenEndpointError(0, "login_required", "the token cannot be renewed without the browser")
        entry = await self._login_with_retries(timeout, options)
        return await self._store(entry)

    async def _store(self, entry: CacheEntry) -> Token:
        if self._cache is not None:
            await self._cache.put(self._key, entry)
        return self._install(entry)

    async def _refresh(self, refresh_token: str) -> CacheEntry | None:
        started = _time()
        try:
            result = await auth.refresh(
                self._client_id,
                self._federation_endpoint,
                refresh_token,
                self._ssl_ctx,
                http_timeout=self._http_timeout,
            )
        except TokenEndpointError as err:
            if err.error == "invalid_grant" and self._cache is not None:
                # Rotation race: another process may have refreshed first; take its result.
                latest = await self._cache.get(self._key)
                if self._serves(latest) and latest.refresh_token != refresh_token:  # type: ignore[union-attr]
                    return latest
            log.info("refresh failed (%s); a new login is needed", err.error or f"HTTP {err.status}")
            return None
        except Exception as err:
            log.warning("refresh failed: %s", type(err).__name__)
            return None
        log.info("token refreshed without the browser (expires in %s s)", result.expires_in)
        return _entry_from(result, started, fallback_refresh=refresh_token)

    async def _login_with_retries(self, timeout: float | None, options: dict[str, str] | None) -> CacheEntry:
        attempt = denials = 0
        while True:
            attempt += 1
            try:
                result, started = await self._login.login(timeout)
                return _entry_from(result, started)
            except Exception as err:
                if isinstance(err, AuthorizationDenied):
                    denials += 1
                allowed = self._login.can_retry(err, options)
                if not self._retry.should_retry(err, attempt, denials, allowed):
                    log.warning("login failed after %d attempt(s): %s", attempt, err)
                    raise
                delay = self._retry.delay(attempt)
                log.warning(
                    "login attempt %d failed (%s); retrying in %.1f s", attempt, type(err).__name__, delay
                )
                await asyncio.sleep(delay)


def _entry_from(
    result: auth.GetTokenResult, started: float, fallback_refresh: str | None = None
) -> CacheEntry:
    expires_at = None if result.expires_in is None else started + result.expires_in
    return CacheEntry(
        access_token=result.access_token,
        expires_at=expires_at,
        refresh_token=result.refresh_token or fallback_refresh,
        issued_at=started,
    )
