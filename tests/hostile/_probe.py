"""Measurements and raw clients shared by the hostile suite."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import re
import socket
import time
import traceback
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

IO_TIMEOUT = 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20

CANARIES = {"token_prefix": "CANARY-AT-", "code_prefix": "CANARY-CODE-", "refresh_prefix": "CANARY-RT-"}
CANARY = "CANARY-"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


@dataclass(frozen=True)
class Usage:
    """What a process holds: open fds, resident memory, OS threads, asyncio tasks."""

    fds: int
    rss: int
    threads: int
    tasks: int

    @classmethod
    def now(cls) -> Usage:
        gc.collect()
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # no running loop
            tasks = 0
        return cls(open_fds(), rss(), threads(), tasks)

    def figures(self, later: Usage) -> str:
        return (
            f"fds {self.fds}->{later.fds}, threads {self.threads}->{later.threads}, "
            f"tasks {self.tasks}->{later.tasks}, RSS {self.rss / MIB:.1f}->{later.rss / MIB:.1f} MiB"
        )


async def settled_usage(baseline: Usage, *, fd_slack: int = 2, timeout: float = 15.0) -> Usage:
    """Usage once the fds are back near ``baseline`` (sockets closing on the other side take a
    moment), or whatever it is after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        usage = Usage.now()
        if usage.fds <= baseline.fds + fd_slack or time.monotonic() > deadline:
            return usage
        await asyncio.sleep(0.05)


def report(name: str, text: str) -> None:
    """Figures for the suite's report (shown with ``pytest -s``; kept in the run's output)."""
    print(f"\n[hostile] {name}: {text}")


def port_refuses(port: int, host: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def raw_request(
    port: int, data: bytes, *, host: str = "127.0.0.1", timeout: float = IO_TIMEOUT
) -> bytes:
    """Send ``data`` on a fresh connection and read until the listener closes it. A reset (the
    listener refusing what it read) reads as ``b""``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            pass
        try:
            return await asyncio.wait_for(reader.read(), timeout)
        except (ConnectionResetError, BrokenPipeError):
            return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def status_of(raw: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", raw)
    return int(match.group(1)) if match else None


def get_request(
    target: str, host: str | None = "127.0.0.1", *, method: str = "GET", version: str = "1.1"
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    if method in ("POST", "PUT"):
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def link_from(writer: io.StringIO, timeout: float = IO_TIMEOUT) -> str:
    """The authorization URL a login wrote to ``writer``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in writer.getvalue().splitlines():
            if "/oauth2/authorize?" in line:
                return line.strip()
        await asyncio.sleep(0.01)
    raise AssertionError(f"no login link was written: {writer.getvalue()!r}")


async def provider_redirect(url: str, ssl_context: Any = None) -> str:
    """The redirect an auto-approving provider answers ``url`` with (not followed): the address
    the browser would land on, carrying the code and the state."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(url, allow_redirects=False, ssl=ssl_context if ssl_context is not None else True) as resp,
    ):
        assert resp.status == 302, resp.status
        return resp.headers["Location"]


def target_of(redirect: str) -> tuple[int, str]:
    """(port, origin-form target) of a loopback redirect URI."""
    parts = urllib.parse.urlsplit(redirect)
    assert parts.port is not None
    return parts.port, f"{parts.path or '/'}?{parts.query}"


class Gather(logging.Handler):
    """Every record of every logger, formatted with its traceback, at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def all_logs_at_debug() -> Iterator[Gather]:
    root = logging.getLogger()
    handler = Gather()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def exception_texts(exc: BaseException) -> str:
    """str, repr, args, attributes and the formatted traceback (with its whole chain)."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *(repr(a) for a in current.args)]
        with contextlib.suppress(TypeError):
            parts.append(repr(vars(current)))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


async def expect_error(awaitable: Awaitable[Any]) -> BaseException:
    try:
        await awaitable
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return exc
    raise AssertionError("expected an error")


# -- the command line in a subprocess ---------------------------------------------------------------
def cli_env(home: Any, **extra: str) -> dict[str, str]:
    """No display, no browser, no proxy, a private home and cache directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "TERM")
        and not k.lower().endswith("_proxy")
        and not k.startswith("FEDBEARER_")
    }
    os.makedirs(home, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        FEDBEARER_CACHE_DIR=os.path.join(home, "tokens"),
    )
    env.update(extra)
    return env


class Lines:
    """The lines of a subprocess's text stream, read by a thread, awaited with a deadline."""

    def __init__(self, stream: Any) -> None:
        import queue
        import threading

        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._done = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        import queue

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen; so far: {''.join(self.seen)!r}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the stream ended before {needle!r}: {''.join(self.seen)!r}"
            self.seen.append(line)
            if needle in line:
                return line.strip()

    def rest(self, timeout: float = 20.0) -> str:
        import queue

        deadline = time.monotonic() + timeout
        while not self._done and time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                self._done = True
                break
            self.seen.append(line)
        return "".join(self.seen)
