"""Cross-process coordination of one tenant's login: the cache lock, the "login in progress"
record, and waiting for another process's login instead of opening a second browser tab."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from fedbearer.cache.base import CacheEntry, LockHandle, NoLock, TokenCache
from fedbearer.cache.progress import LoginProgress
from fedbearer.exceptions import LoginTimeout

log = logging.getLogger(__name__)

LOGIN_IN_PROGRESS = "login in progress — open: {url}"
"""What a process waiting for another process's login writes (once per URL)."""

_MAX_POLL = 0.25


class LinkWatcher:
    """The writer given to the login Receiver: passes everything through to the user's writer
    (or nowhere, for ``writer=None``) and reports each authorization URL it sees."""

    __slots__ = ("_pending", "_target", "on_url")

    def __init__(self, target: TextIO | None) -> None:
        self._target = target
        self._pending = ""
        self.on_url: Callable[[str], None] | None = None

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            self._inspect(line)
        if len(self._pending) > 8192:
            self._pending = ""
        target = self._target
        return target.write(text) if target is not None else len(text)

    def _inspect(self, line: str) -> None:
        line = line.strip()
        if (
            self.on_url is not None
            and line.startswith(("http://", "https://"))
            and "/oauth2/authorize?" in line
        ):
            try:
                self.on_url(line)
            except Exception:
                log.warning("recording the login URL failed", exc_info=True)

    def flush(self) -> None:
        if self._pending:
            self._inspect(self._pending)
            self._pending = ""
        if self._target is not None:
            self._target.flush()


class _ContextLock:
    """A LockHandle over a plain ``lock()`` context manager (caches without ``try_lock``)."""

    def __init__(self, cm: Any) -> None:
        self._cm = cm

    async def release(self) -> None:
        cm, self._cm = self._cm, None
        if cm is not None:
            await cm.__aexit__(None, None, None)


async def lock_or_wait(
    cache: TokenCache,
    key: str,
    *,
    ttl: float,
    wait: float,
    read: Callable[[], Awaitable[CacheEntry | None]],
    usable: Callable[[CacheEntry | None], bool],
    announce: Callable[[LoginProgress], None] | None,
) -> tuple[LockHandle | None, CacheEntry | None]:
    """Take ``key``'s lock, or notice that whoever holds it has produced a usable entry.

    Returns ``(handle, None)`` holding the lock; ``(None, entry)`` when another process's login or
    refresh produced ``entry`` meanwhile; ``(None, None)`` when the holder looks dead — its login
    record is stale (pid gone, deadline passed) or it held the lock for ``wait`` s without any
    login record — and this process takes the login over. After ``wait`` s behind another
    process's live login, raises LoginTimeout (opening a second prompt is what this avoids).
    ``ttl`` is how long our own lock may live. ``announce`` is called once per URL of another
    process's login (None: stay quiet, as background renewal does).
    """
    try_lock = getattr(cache, "try_lock", None)
    if try_lock is None:
        cm = cache.lock(key, ttl)
        await cm.__aenter__()
        return _ContextLock(cm), None
    get_progress = getattr(cache, "get_progress", None)
    give_up = time.monotonic() + wait
    announced: str | None = None
    delay = 0.005
    while True:
        handle = await try_lock(key, ttl)
        if handle is not None:
            return handle, None
        entry = await read()
        if usable(entry):
            return None, entry
        record = await get_progress(key) if get_progress is not None else None
        if record is not None:
            if record.is_stale():
                log.warning(
                    "the login of process %d on %s is abandoned (%s); taking it over",
                    record.pid,
                    record.host,
                    "deadline passed" if time.time() >= record.deadline else "process gone",
                )
                return None, None
            if announce is not None and record.url != announced and not record.is_mine():
                announced = record.url
                announce(record)
        if time.monotonic() >= give_up:
            if record is not None:
                raise LoginTimeout(wait)
            log.warning(
                "the cache lock of a tenant was held for more than %g s; going ahead without it", wait
            )
            return None, None
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_POLL)


async def clear_stale_progress(cache: TokenCache, key: str) -> None:
    """With the lock held, any record left is a previous owner's: drop it so nobody waits on it."""
    get_progress = getattr(cache, "get_progress", None)
    if get_progress is None:
        return
    record = await get_progress(key)
    if record is not None and record.is_stale():
        await cache.delete_progress(key, record.owner)  # type: ignore[attr-defined]


__all__ = ["LOGIN_IN_PROGRESS", "LinkWatcher", "NoLock", "clear_stale_progress", "lock_or_wait"]
