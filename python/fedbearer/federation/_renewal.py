"""How a Bearer gets a new token on its slow path: refresh (rotation-safe, retried), interactive
login (retried, recorded beside the cache for other processes), background renewal (never a
browser). A mixin of :class:`fedbearer.federation.Bearer`, kept apart to keep each file short."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING

from fedbearer.cache.base import CacheEntry, TokenCache
from fedbearer.cache.progress import LoginProgress
from fedbearer.exceptions import AuthError, AuthorizationDenied, TokenEndpointError
from fedbearer.federation import auth
from fedbearer.hooks import Hooks, emit
from fedbearer.retry import RetryPolicy
from fedbearer.token import Token

if TYPE_CHECKING:
    from fedbearer.federation._coordination import LinkWatcher
    from fedbearer.federation.bearer import _Slot
    from fedbearer.federation.receiver import Receiver

log = logging.getLogger("fedbearer.federation.bearer")

RENEW_AT = 0.75
"""Background renewal starts when this fraction of the time left until the serving deadline has
passed (measured when the token was installed)."""
_TRANSIENT_ERRORS = frozenset(
    {"timeout", "connection_error", "tls_error", "server_error", "temporarily_unavailable"}
)


def _consume(task: asyncio.Task[Token | None]) -> None:
    # Retrieve the outcome so an error nobody awaited is not reported as "never retrieved".
    if not task.cancelled():
        task.exception()


def _rejected(err: BaseException) -> bool:
    """The provider refused the grant itself (RFC 6749 §5.2): retrying the same one is pointless."""
    return (
        isinstance(err, TokenEndpointError)
        and bool(err.error)
        and err.error not in _TRANSIENT_ERRORS
        and 0 < err.status < 500
    )


class _Renewal:
    """The refresh/login/renewal half of a Bearer (see bearer.py for the attributes it uses)."""

    _key: str
    _slot: _Slot
    _cache: TokenCache
    _hooks: Hooks | None
    _retry: RetryPolicy
    _login: Receiver
    _link: LinkWatcher
    _client_id: str
    _federation_endpoint: str
    _ssl_ctx: ssl.SSLContext | None
    _http_timeout: float
    _login_timeout: float
    _renew_in_background: bool

    if TYPE_CHECKING:  # provided by Bearer

        def _now(self) -> float: ...

        def _serves(self, entry: CacheEntry | None) -> bool: ...

        def _install(self, entry: CacheEntry, deadline: float | None = None) -> Token: ...

        async def _read(self, deep: bool) -> CacheEntry | None: ...

        async def _acquire(
            self, timeout: float | None, options: dict[str, str] | None, *, interactive: bool
        ) -> Token | None: ...

    async def _renew_or_login(
        self,
        cached: CacheEntry | None,
        timeout: float | None,
        options: dict[str, str] | None,
        *,
        interactive: bool,
    ) -> Token | None:
        source = cached
        mine = self._slot.entry
        if mine is not None and mine.refresh_token and (source is None or mine.issued_at > source.issued_at):
            source = mine
        if source is not None and source.refresh_token:
            token = await self._refresh_rotation_safe(source, interactive=interactive)
            if token is not None:
                return token
        if not interactive:
            return None
        entry = await self._login_with_retries(timeout, options)
        return await self._store(entry)

    async def _store(self, entry: CacheEntry) -> Token:
        await self._cache.put(self._key, entry)
        return self._install(entry)

    async def _refresh_rotation_safe(self, source: CacheEntry, *, interactive: bool) -> Token | None:
        """Refresh with ``source``'s refresh token. On a rejected grant (revoked, expired, or
        rotated by someone else) re-read the cache once: take a newer token if one appeared, or
        try the newer refresh token found there. None: only a login would do. Transient failures
        are retried by the policy; if they persist, a foreground caller is served the current
        token a little longer when it has not expired yet (background renewal just fails)."""
        used = source.refresh_token
        assert used is not None
        try:
            return await self._store(await self._refresh(used))
        except Exception as err:
            if not _rejected(err):
                return self._transient_fallback(source, err, interactive)
        latest = await self._read(deep=True)
        if latest is not None and latest.refresh_token != used and latest.issued_at >= source.issued_at:
            if self._serves(latest):
                return self._install(latest)
            if latest.refresh_token:
                try:
                    return await self._store(await self._refresh(latest.refresh_token))
                except Exception as err:
                    if not _rejected(err):
                        return self._transient_fallback(latest, err, interactive)
        log.info("the refresh token was rejected; an interactive login is needed")
        return None

    def _transient_fallback(self, source: CacheEntry, err: Exception, interactive: bool) -> Token:
        now = self._now()
        if interactive and source.expires_at is not None and source.expires_at - now > 1.0:
            left = source.expires_at - now
            # Serve the still-valid token briefly; the next fetch after that tries again.
            log.warning("refresh failed (%s); serving the current token a few more seconds", _describe(err))
            return self._install(source, deadline=now + min(5.0, left / 2))
        raise err

    async def _refresh(self, refresh_token: str) -> CacheEntry:
        """One refresh, with the retry policy's attempts for transient failures."""
        attempt = 0
        while True:
            attempt += 1
            started = self._now()
            t0 = time.perf_counter()
            try:
                result = await auth.refresh(
                    self._client_id,
                    self._federation_endpoint,
                    refresh_token,
                    self._ssl_ctx,
                    http_timeout=self._http_timeout,
                )
            except Exception as err:
                emit(self._hooks, "refresh_failed", self._key, err, time.perf_counter() - t0)
                if _rejected(err) or not self._retry.should_retry(err, attempt, 0, True):
                    log.info("refresh attempt %d failed: %s", attempt, _describe(err))
                    raise
                delay = self._retry.delay(attempt)
                log.warning(
                    "refresh attempt %d failed (%s); retrying in %.1f s", attempt, _describe(err), delay
                )
                await asyncio.sleep(delay)
                continue
            emit(self._hooks, "refreshed", self._key, time.perf_counter() - t0)
            log.info("token refreshed without the browser (expires in %s s)", result.expires_in)
            return _entry_from(result, started, fallback_refresh=refresh_token)

    async def _login_with_retries(self, timeout: float | None, options: dict[str, str] | None) -> CacheEntry:
        attempt = denials = 0
        while True:
            attempt += 1
            try:
                return await self._login_once(timeout)
            except Exception as err:
                if isinstance(err, AuthorizationDenied):
                    denials += 1
                allowed = self._login.can_retry(err, options)
                if not self._retry.should_retry(err, attempt, denials, allowed):
                    log.warning("login failed after %d attempt(s): %s", attempt, _describe(err))
                    raise
                delay = self._retry.delay(attempt)
                log.warning(
                    "login attempt %d failed (%s); retrying in %.1f s", attempt, _describe(err), delay
                )
                await asyncio.sleep(delay)

    async def _login_once(self, timeout: float | None) -> CacheEntry:
        """One interactive login; while it runs, its URL is recorded beside the cache so other
        processes show it instead of opening their own browser tab."""
        loop = asyncio.get_running_loop()
        limit = self._login_timeout if timeout is None else timeout
        records: list[LoginProgress] = []
        writes: list[asyncio.Task[None]] = []
        put_progress = getattr(self._cache, "put_progress", None)

        def on_url(url: str) -> None:
            emit(self._hooks, "login_started", self._key, url)
            if put_progress is not None:
                record = LoginProgress.mine(url, limit + 5.0)
                records.append(record)
                writes.append(loop.create_task(put_progress(self._key, record)))

        started = self._now()
        t0 = time.perf_counter()
        self._link.on_url = on_url
        try:
            result, _ = await self._login.login(timeout)
        except Exception as err:
            emit(self._hooks, "login_failed", self._key, err, time.perf_counter() - t0)
            raise
        finally:
            self._link.on_url = None
            if writes:
                await asyncio.gather(*writes, return_exceptions=True)
            for record in records:
                await self._cache.delete_progress(self._key, record.owner)  # type: ignore[attr-defined]
        emit(self._hooks, "login_finished", self._key, time.perf_counter() - t0)
        return _entry_from(result, started)

    # -- background renewal ------------------------------------------------------------------
    def _schedule_renewal(self, entry: CacheEntry) -> None:
        slot = self._slot
        if slot.renewal is not None:
            slot.renewal.cancel()
            slot.renewal = None
        if not self._renew_in_background or not entry.refresh_token or entry.expires_at is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        left = slot.deadline - self._now()
        if left <= 1.0:
            return
        slot.renewal = loop.call_later(RENEW_AT * left, self._renewal_due)

    def _renewal_due(self) -> None:
        slot = self._slot
        slot.renewal = None
        task = slot.inflight
        if task is not None and not task.done():
            return  # a login or refresh is already in flight
        task = asyncio.get_running_loop().create_task(self._renew_in_background_once())
        task.add_done_callback(_consume)
        slot.inflight = task
        slot.interactive = False

    async def _renew_in_background_once(self) -> Token | None:
        """Never opens a browser: refresh, or leave the token to expire."""
        try:
            token = await self._acquire(None, None, interactive=False)
        except Exception as err:
            left = self._slot.deadline - self._now()
            log.warning("background renewal failed (%s)", _describe(err))
            if left > 2.0 and self._slot.renewal is None:
                self._slot.renewal = asyncio.get_running_loop().call_later(
                    min(30.0, left / 2), self._renewal_due
                )
            return None
        if token is None:
            log.info("background renewal needs an interactive login; the token is served until it expires")
        return token


def _describe(err: BaseException) -> str:
    """A log-safe description (our errors never carry secrets; others: the type only)."""
    if isinstance(err, AuthError):
        return f"{type(err).__name__}: {err}"
    return type(err).__name__


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
