"""Observability hooks: subclass :class:`Hooks`, override what you need, pass it to a Bearer.

Every method runs on the event loop's thread, on the slow path only (a token served from the
in-process hot path is not reported: that path stays one comparison). A hook must not block; an
exception it raises is logged and ignored — metrics never break a login. ``key`` is the tenant key;
``seconds`` is wall time measured with ``time.perf_counter``. No token is ever passed to a hook.

Example, counting with Prometheus::

    class Metrics(Hooks):
        def login_finished(self, key, seconds):
            LOGIN_SECONDS.observe(seconds)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["CallbackHooks", "Hooks"]


class Hooks:
    """No-op base: the events of a Bearer's slow path."""

    def cache_hit(self, key: str, seconds: float) -> None:
        """The cache layers had a usable token (a new Bearer, another process's login)."""

    def cache_miss(self, key: str, seconds: float) -> None:
        """No usable token in any layer: a refresh or a login follows."""

    def login_started(self, key: str, url: str) -> None:
        """An interactive login showed its authorization URL (the writer, the log, the browser)."""

    def browser_failed(self, key: str) -> None:
        """The browser could not be opened; the user has to open the printed link by hand."""

    def callback_received(self, key: str) -> None:
        """The redirect (or a pasted URL) delivered the login's code; the exchange follows."""

    def login_waiting(self, key: str, url: str) -> None:
        """Another process is logging this tenant in; this one waits for the cache to change."""

    def login_finished(self, key: str, seconds: float) -> None:
        """An interactive login produced a token."""

    def login_failed(self, key: str, error: BaseException, seconds: float) -> None:
        """An interactive login attempt failed (the retry policy may try again)."""

    def refreshed(self, key: str, seconds: float) -> None:
        """A token was renewed with a refresh token, without the browser."""

    def refresh_failed(self, key: str, error: BaseException, seconds: float) -> None:
        """A refresh attempt failed (rejected grant, unreachable endpoint)."""


class CallbackHooks(Hooks):
    """Routes every event to one callable: ``on_event(name, **fields)``, e.g. for logging or tests."""

    def __init__(self, on_event: Callable[..., Any]) -> None:
        self._on_event = on_event

    def cache_hit(self, key: str, seconds: float) -> None:
        self._on_event("cache_hit", key=key, seconds=seconds)

    def cache_miss(self, key: str, seconds: float) -> None:
        self._on_event("cache_miss", key=key, seconds=seconds)

    def login_started(self, key: str, url: str) -> None:
        self._on_event("login_started", key=key, url=url)

    def browser_failed(self, key: str) -> None:
        self._on_event("browser_failed", key=key)

    def callback_received(self, key: str) -> None:
        self._on_event("callback_received", key=key)

    def login_waiting(self, key: str, url: str) -> None:
        self._on_event("login_waiting", key=key, url=url)

    def login_finished(self, key: str, seconds: float) -> None:
        self._on_event("login_finished", key=key, seconds=seconds)

    def login_failed(self, key: str, error: BaseException, seconds: float) -> None:
        self._on_event("login_failed", key=key, error=error, seconds=seconds)

    def refreshed(self, key: str, seconds: float) -> None:
        self._on_event("refreshed", key=key, seconds=seconds)

    def refresh_failed(self, key: str, error: BaseException, seconds: float) -> None:
        self._on_event("refresh_failed", key=key, error=error, seconds=seconds)


def emit(hooks: Hooks | None, event: str, *args: Any) -> None:
    """Call ``hooks.<event>(*args)``, logging (never raising) what it raises."""
    if hooks is None:
        return
    try:
        getattr(hooks, event)(*args)
    except Exception:
        log.warning("hook %s raised; ignored", event, exc_info=True)
