"""Memory and file descriptors per pending login, measured in a fresh process.

Usage: ``python _memory_worker.py LIBRARY N`` with LIBRARY one of ``reference``, ``fedbearer``,
``bare`` (a bare asyncio task awaiting a future: the floor). Prints one JSON line.

N `Receiver(...).fetch()` tasks are started (the callers' own tasks and the Receivers included in
the count) and left waiting for their redirect; RSS and open fds are read before and after, with
both libraries' one-time machinery (the I/O runtime, aiohttp's app classes) warmed up first.
fedbearer's flows are then completed: the first 1,000 by real loopback GETs, the rest with
`listener.deliver(url)`, and every fetch must return its token. The token endpoint is stubbed for
that part (N real code exchanges would time the provider, not the listener).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

ENDPOINT = "https://auth.bench.example"
CLIENT_ID = "bench-client"
FEDERATION_ID = "federation-bench"
REAL_GETS = 1_000
TOKEN_BODY = b'{"access_token":"tok-bench","token_type":"Bearer","expires_in":3600}'


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _CountingWriter:
    """Counts the authorization URLs printed; keeps nothing."""

    def __init__(self) -> None:
        self.urls = 0

    def write(self, text: str) -> int:
        if "/oauth2/authorize" in text:
            self.urls += 1
        return len(text)

    def flush(self) -> None:
        pass


def _frame_local(task: asyncio.Task[Any], function: str, name: str) -> Any:
    """A local of the coroutine `function` somewhere down `task`'s await chain."""
    coro: Any = task.get_coro()
    while coro is not None:
        code = getattr(coro, "cr_code", None)
        if code is not None and code.co_name == function:
            return coro.cr_frame.f_locals[name]
        coro = getattr(coro, "cr_await", None)
    raise LookupError(f"{function} not found in the task's await chain")


def _loopback_get(port: int, state: str) -> int:
    request = (
        f"GET /?code=code-{state[:8]}&state={state} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1])


async def _warm_up(library: str) -> None:
    if library == "fedbearer":
        from fedbearer._core import CallbackListener

        listener = CallbackListener.bind()
        listener.close()
    elif library == "reference":
        from nebius.aio.token.federation_bearer.server import CallbackHandler

        handler = CallbackHandler()
        await handler.listen_and_serve()
        await handler.shutdown()
    else:
        fut = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(fut)
        fut.set_result(None)
        await task


def _receivers(library: str, n: int, writer: _CountingWriter) -> list[Any]:
    if library == "fedbearer":
        from fedbearer.federation import Receiver

        return [
            Receiver(CLIENT_ID, ENDPOINT, FEDERATION_ID, writer, True, login_timeout=600.0) for _ in range(n)
        ]
    if library == "reference":
        from nebius.aio.token.federation_bearer import Receiver as ReferenceReceiver

        return [ReferenceReceiver(CLIENT_ID, ENDPOINT, FEDERATION_ID, writer, True) for _ in range(n)]
    return []


async def _pending(library: str, receivers: list[Any], writer: _CountingWriter, n: int) -> list[Any]:
    loop = asyncio.get_running_loop()
    if library == "bare":
        futures = [loop.create_future() for _ in range(n)]
        tasks = [asyncio.ensure_future(_await(f)) for f in futures]
        await asyncio.sleep(0.05)
        return tasks
    tasks = [asyncio.ensure_future(r.fetch(timeout=600.0)) for r in receivers]
    deadline = time.monotonic() + 120
    while writer.urls < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {writer.urls} of {n} logins reached the browser step")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    return tasks


async def _await(fut: asyncio.Future[None]) -> None:
    await fut


async def _complete_fedbearer(tasks: list[Any]) -> dict[str, Any]:
    from fedbearer._core import parse_token_response
    from fedbearer.federation import _listener

    async def stub_post(token_url: str, form: Any, *, ssl_ctx: Any, timeout: float = 30.0) -> Any:
        return parse_token_response(TOKEN_BODY, 200)

    from fedbearer.federation import _http

    _http.post_token_request = stub_post  # type: ignore[assignment]
    listener = _listener.current_listener()
    assert listener is not None
    states = [_frame_local(t, "fetch", "login").flow.state for t in tasks]
    started = time.perf_counter()
    real = states[:REAL_GETS]
    with ThreadPoolExecutor(8) as pool:
        statuses = await asyncio.gather(
            *[asyncio.get_running_loop().run_in_executor(pool, _loopback_get, listener.port, s) for s in real]
        )
    delivered = sum(1 for s in statuses if s == 200)
    for state in states[REAL_GETS:]:
        if listener.deliver(f"{listener.redirect_uri}/?code=code-{state[:8]}&state={state}"):
            delivered += 1
    results = await asyncio.gather(*tasks, return_exceptions=True)
    completed = sum(1 for r in results if getattr(r, "token", None) == "tok-bench")
    errors = {type(r).__name__ for r in results if isinstance(r, BaseException)}
    return {
        "real_gets_ok": sum(1 for s in statuses if s == 200),
        "delivered": delivered,
        "completed": completed,
        "errors": sorted(errors),
        "complete_seconds": time.perf_counter() - started,
        "listener_closed_after": listener.closed,
    }


async def main(library: str, n: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.disable(logging.CRITICAL)  # neither library's INFO lines are part of the figure
    if library == "reference":
        import nebius.aio.token.federation_bearer  # noqa: F401
    elif library == "fedbearer":
        import fedbearer.federation  # noqa: F401
    await _warm_up(library)
    writer = _CountingWriter()
    gc.collect()
    rss0, fds0 = _rss(), _fds()
    started = time.perf_counter()
    receivers = _receivers(library, n, writer)
    tasks = await _pending(library, receivers, writer, n)
    setup_seconds = time.perf_counter() - started
    gc.collect()
    rss1, fds1 = _rss(), _fds()
    out: dict[str, Any] = {
        "library": library,
        "n": n,
        "rss_delta": rss1 - rss0,
        "bytes_per_flow": (rss1 - rss0) / n,
        "fd_delta": fds1 - fds0,
        "fds_per_flow": (fds1 - fds0) / n,
        "setup_seconds": setup_seconds,
        "fd_limit": hard,
    }
    if library == "fedbearer":
        out.update(await _complete_fedbearer(tasks))
    print(json.dumps(out), flush=True)
    # Leave at once: tearing down 10,000 reference listeners one by one adds nothing to the figure.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
