"""The process-wide callback listener shared by every pending login.

One loopback listener serves all pending flows of the process, multiplexed by ``state``. It is
bound on first use and closes itself (freeing its port) when its last flow ends; the next login
binds a fresh one. After ``fork()`` the child forgets the parent's listener.
"""

from __future__ import annotations

import os
import threading

from fedbearer._core import CallbackListener, PendingFlow
from fedbearer.exceptions import ListenerError

_lock = threading.Lock()
_listener: CallbackListener | None = None


def _forget_after_fork() -> None:
    global _listener, _lock
    _listener = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def shared_listener() -> CallbackListener:
    """The open shared listener, binding one if needed."""
    global _listener
    with _lock:
        listener = _listener
        if listener is None or listener.closed:
            listener = _listener = CallbackListener.bind()
        return listener


def register_flow(state: str, expected_issuer: str | None = None) -> PendingFlow:
    """Register a flow on the shared listener."""
    global _listener
    for _ in range(3):
        listener = shared_listener()
        try:
            return listener.register(state, expected_issuer)
        except ListenerError:
            # It closed between our check and the registration (its last flow just ended).
            with _lock:
                if _listener is listener:
                    _listener = None
    raise ListenerError("could not register the login on a callback listener")


def deliver_pasted_url(pasted_url: str) -> bool:
    """Complete a pending flow from a redirect URL the user pasted (remote mode)."""
    listener = _listener
    if listener is None or listener.closed:
        raise ValueError("no login is in progress")
    return listener.deliver(pasted_url)


def current_listener() -> CallbackListener | None:
    """The shared listener if one is open (for diagnostics and tests)."""
    listener = _listener
    return None if listener is None or listener.closed else listener
