"""Blocking access for code without ``async``: ``Bearer.fetch_sync()`` and :func:`get_token`.

Coroutines run on one private event loop in a daemon helper thread, whether or not the calling
thread runs a loop of its own (``asyncio.run`` cannot be nested, and a new loop per call would throw
away pooled connections and split the single-flight). Every synchronous caller of the process
therefore shares one loop: concurrent ``fetch_sync`` calls for a tenant start one login. A cached
token is returned without touching the helper thread at all.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fedbearer.federation.bearer import Bearer

__all__ = ["get_token", "run_sync"]

_T = TypeVar("_T")
_guard = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def _helper_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread
    with _guard:
        if _loop is not None and _thread is not None and _thread.is_alive():
            return _loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=_serve, args=(loop, ready), name="fedbearer-sync", daemon=True)
        thread.start()
        ready.wait()
        _loop, _thread = loop, thread
        return loop


def run_sync(make_coro: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``make_coro()`` on the helper loop and block until it finishes. Interrupting the
    waiting thread (KeyboardInterrupt) cancels this caller only: a login shared with other callers
    goes on for them."""
    loop = _helper_loop()
    if threading.current_thread() is _thread:
        raise RuntimeError("fetch_sync() was called on fedbearer's own loop thread; await fetch() instead")
    future = asyncio.run_coroutine_threadsafe(make_coro(), loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def get_token(bearer: Bearer, *, timeout: float | None = None) -> str:
    """The tenant's access token as a string, blocking (cache, refresh or login as needed)."""
    return bearer.fetch_sync(timeout=timeout).token


def _shutdown() -> None:
    """At exit: close the helper loop's pooled connections, then stop it."""
    loop, thread = _loop, _thread
    if loop is None or thread is None or not thread.is_alive():
        return
    future = asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop)
    with contextlib.suppress(Exception, concurrent.futures.TimeoutError):
        future.result(timeout=2.0)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=2.0)
    if not thread.is_alive():
        loop.close()


def _after_fork() -> None:
    global _loop, _thread, _guard
    _loop, _thread = None, None  # the thread does not exist in the child
    _guard = threading.Lock()


atexit.register(_shutdown)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
