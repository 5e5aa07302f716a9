"""The cross-process "login in progress" record, kept beside the cache (a file, a Redis key).

The process that owns a tenant's interactive login writes who it is (host, pid, the process's
start time) and where the user has to go (the authorization URL), with a deadline. Another process
that needs the same tenant shows that URL instead of opening a second browser tab, and waits for
the cache to change. A record whose owner is gone (same host, pid no longer running or reused) or
whose deadline has passed is stale: its login is taken over.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["LoginProgress", "process_start_ticks"]


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after ``comm`` (field 3 onwards); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    return stat[stat.rfind(b")") + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (Linux ``/proc``), telling a live owner
    from an unrelated process that reused its pid; None where unknown."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None  # field 22 overall
    except (IndexError, ValueError):
        return None


def _pid_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0].decode("ascii", "replace") if fields else None


def _pid_alive(pid: int, start_ticks: int | None) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    except OSError:
        return True
    if _pid_state(pid) in ("Z", "X"):  # killed, not yet reaped
        return False
    if start_ticks is not None:
        now_ticks = process_start_ticks(pid)
        if now_ticks is not None and now_ticks != start_ticks:
            return False  # the pid was reused by another process
    return True


_HOST = socket.gethostname()


@dataclass(frozen=True)
class LoginProgress:
    """Who is logging a tenant in, where the user should go, and until when."""

    url: str
    deadline: float  # POSIX time after which the login is abandoned
    pid: int
    host: str
    started: float
    owner: str  # a random id: tells this login's record from a later one
    start_ticks: int | None = None

    @classmethod
    def mine(cls, url: str, timeout: float) -> LoginProgress:
        """A record for a login of this process that shows ``url`` and lasts ``timeout`` s."""
        now = time.time()
        pid = os.getpid()
        return cls(
            url=url,
            deadline=now + timeout,
            pid=pid,
            host=_HOST,
            started=now,
            owner=secrets.token_hex(8),
            start_ticks=process_start_ticks(pid),
        )

    def is_mine(self) -> bool:
        return self.host == _HOST and self.pid == os.getpid()

    def is_stale(self, now: float | None = None) -> bool:
        """The deadline has passed, or the owner (on this host) is no longer running."""
        if (time.time() if now is None else now) >= self.deadline:
            return True
        if self.host == _HOST:
            return not _pid_alive(self.pid, self.start_ticks)
        return False  # another host: only the deadline can tell

    def ttl(self, now: float | None = None) -> float:
        return self.deadline - (time.time() if now is None else now)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LoginProgress:
        """Raises ValueError for anything that is not a well-formed record."""
        if not isinstance(data, dict):
            raise ValueError("a login record must be a mapping")
        try:
            record = cls(
                url=str(data["url"]),
                deadline=float(data["deadline"]),
                pid=int(data["pid"]),
                host=str(data["host"]),
                started=float(data["started"]),
                owner=str(data["owner"]),
                start_ticks=None if data.get("start_ticks") is None else int(data["start_ticks"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"malformed login record: {type(err).__name__}") from None
        return record
