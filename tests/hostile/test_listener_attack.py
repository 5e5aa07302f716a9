"""The loopback listener under attack while a real login completes (RFC 8252 §7.3, §8.3).

Whoever can reach 127.0.0.1 — a scanner, a malicious web page (DNS rebinding, forged links), a
local process — may flood the listener; the real redirect must still complete its login at once,
nothing hostile may touch the pending flow, and afterwards nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import socket
import time

import pytest

from fedbearer import CallbackListener
from fedbearer.federation import _listener, auth
from fedbearer.testing import IdentityProvider

from ._probe import (
    CANARIES,
    MIB,
    Usage,
    get_request,
    link_from,
    port_refuses,
    provider_redirect,
    raw_request,
    report,
    settled_usage,
    status_of,
    target_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

CLIENT = "attack-client"
STRAYS = 1000
SLOWLORIS = 200
IDLE = 200


def start_login(idp: IdentityProvider, writer: io.StringIO) -> asyncio.Task[auth.GetTokenResult]:
    return asyncio.ensure_future(
        auth.authorize(
            CLIENT, idp.endpoint, "fed", writer, no_browser_open=True, timeout=120, http_timeout=10
        )
    )


async def full_login(idp: IdentityProvider) -> tuple[auth.GetTokenResult, str]:
    """A whole login; returns its result and the redirect the browser landed on."""
    writer = io.StringIO()
    task = start_login(idp, writer)
    redirect = await provider_redirect(await link_from(writer))
    port, target = target_of(redirect)
    assert status_of(await raw_request(port, get_request(target))) == 200
    return await asyncio.wait_for(task, 10), redirect


async def open_raw(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    if first:
        sock.send(first)
    return sock


async def drip(socks: list[socket.socket], stop: asyncio.Event) -> None:
    """Slowloris: one more header byte on every connection every 200 ms, never finishing."""
    while not stop.is_set():
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.send(b"a")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


def strays(port: int, replays: list[str], count: int) -> list[tuple[str, bytes]]:
    """Requests that belong to no pending login: favicons, scanners, forged links, replays."""
    rng = random.Random(6)
    kinds = [
        ("no state", lambda: get_request("/")),
        ("no state, a code", lambda: get_request(f"/?code=forged{rng.randrange(10**6)}")),
        ("favicon", lambda: get_request("/favicon.ico")),
        ("wrong state", lambda: get_request(f"/?state=s{rng.randrange(10**9)}&code=forged")),
        ("wrong state, error", lambda: get_request(f"/?state=s{rng.randrange(10**9)}&error=access_denied")),
        ("scanner path", lambda: get_request(rng.choice(["/admin", "/.env", "/wp-login.php", "/../../etc"]))),
        ("replay", lambda: get_request(target_of(rng.choice(replays))[1])),
    ]
    made = []
    for i in range(count):
        kind, make = kinds[i % len(kinds)]
        made.append((kind, make()))
    return made


def hostile_with_the_real_code(port: int, target: str) -> list[tuple[str, bytes, set[int | None]]]:
    """Requests that carry the real state and code but must be refused: (what, bytes, statuses)."""
    head = f"GET {target} HTTP/1.1\r\n"
    return [
        ("DNS rebinding Host", get_request(target, f"rebind.attacker.example:{port}"), {403}),
        ("Host of a LAN address", get_request(target, f"192.168.1.1:{port}"), {403}),
        ("absolute-form to another host", get_request(f"http://attacker.example{target}"), {403}),
        (
            "two Host headers",
            (head + f"Host: 127.0.0.1:{port}\r\nHost: evil.example\r\n\r\n").encode(),
            {400},
        ),
        ("HTTP/1.1 without Host", get_request(target, None), {400}),
        ("POST", get_request(target, method="POST"), {405}),
        ("PUT", get_request(target, method="PUT"), {405}),
        ("DELETE", get_request(target, method="DELETE"), {405}),
        ("HEAD (a prefetcher)", get_request(target, method="HEAD"), {200}),
        ("wrong path", get_request("/callback" + target[1:]), {404}),
        ("pipelined behind a favicon", get_request("/favicon.ico") + get_request(target), {404}),
    ]


def malformed() -> list[tuple[str, bytes, set[int | None]]]:
    """Oversized heads and bytes that are not HTTP/1.x: refused or dropped, never served."""
    pad = "GET /?state=x&code=y HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n"
    rng = random.Random(7)
    return [
        ("head of 8 KiB + 1", pad.format("a" * (8192 + 1 - len(pad.format("")))).encode(), {431, None}),
        ("head of 64 KiB", pad.format("a" * 65536).encode(), {431, None}),
        ("head of 1 MiB", pad.format("a" * MIB).encode(), {431, None}),
        ("request line of 64 KiB", get_request("/?state=" + "s" * 65536), {414, 431, None}),
        ("random bytes", bytes(rng.randrange(256) for _ in range(512)), {400, None}),
        ("NUL bytes", b"\0" * 4096, {400, None}),
        ("TLS ClientHello", bytes.fromhex("16030100a5010000a10303") + os.urandom(160), {400, None}),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {400, 505, None}),
        ("HTTP/0.9", b"GET /?state=x&code=y\r\n", {400, None}),
        ("bare LF and a missing state", b"GET /?code=x HTTP/1.1\nHost: 127.0.0.1\n\n", {400}),
        (
            "HTTP/1.0 without Host, unknown state",
            get_request("/?state=nope&code=x", None, version="1.0"),
            {400},
        ),
        (
            "HTTP/1.0 with a foreign Host",
            get_request("/?state=nope&code=x", "evil.example", version="1.0"),
            {403},
        ),
        ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", {400, 403, 405}),
        (
            "huge Content-Length on GET",
            get_request("/?state=nope&code=x")[:-2] + b"Content-Length: 99999999\r\n\r\n",
            {400},
        ),
    ]


@pytest.mark.asyncio
async def test_real_login_completes_promptly_while_the_listener_is_under_attack() -> None:
    with IdentityProvider(auto_approve=True, **CANARIES) as idp:
        await full_login(idp)  # warm-up: runtime, notifier, connection pool are in the baseline
        assert await wait_until(lambda: _listener.current_listener() is None)
        before = Usage.now()

        # Finished logins, to replay their redirects later, and the real login, left pending.
        replays = [(await full_login(idp))[1] for _ in range(3)]
        writer = io.StringIO()
        real = start_login(idp, writer)
        real_redirect = await provider_redirect(await link_from(writer))
        # The replayed logins ended, so the listener the real login uses may be a new one.
        port, real_target = target_of(real_redirect)
        listener = _listener.current_listener()
        assert listener is not None and listener.port == port and listener.pending == 1

        idle = [await open_raw(port) for _ in range(IDLE)]
        slow = [
            await open_raw(port, b"GET /?state=x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            for _ in range(SLOWLORIS)
        ]
        stop = asyncio.Event()
        dripping = asyncio.ensure_future(drip(slow, stop))
        try:
            gate = asyncio.Semaphore(32)

            async def send(data: bytes) -> int | None:
                async with gate:
                    return status_of(await raw_request(port, data))

            stray_requests = strays(port, replays, STRAYS)
            answers = await asyncio.gather(*(send(data) for _, data in stray_requests))
            by_kind: dict[str, set[int | None]] = {}
            for (kind, _), status in zip(stray_requests, answers, strict=True):
                by_kind.setdefault(kind, set()).add(status)
            assert by_kind["favicon"] == {404} and by_kind["scanner path"] == {404}, by_kind
            assert all(s == {400} for k, s in by_kind.items() if k not in ("favicon", "scanner path")), (
                by_kind
            )

            for what, data, allowed in [*hostile_with_the_real_code(port, real_target), *malformed()]:
                status = status_of(await raw_request(port, data))
                assert status in allowed, (what, status)
                assert not real.done(), f"{what} ended the real login"
            assert listener.pending == 1 and idp.stats.token_requests == 4  # 1 warm-up + 3 replayed

            # The real redirect, with every attacker still connected.
            started = time.monotonic()
            assert status_of(await raw_request(port, get_request(real_target))) == 200
            result = await asyncio.wait_for(real, 10)
            elapsed = time.monotonic() - started
        finally:
            stop.set()
            await dripping
            for sock in idle + slow:
                sock.close()
            if not real.done():
                real.cancel()
        assert result.access_token in idp.issued_tokens
        assert elapsed < 5.0, f"the real redirect took {elapsed:.1f} s under attack"
        assert await wait_until(lambda: port_refuses(port), 5), "the listener still holds its port"
        assert _listener.current_listener() is None

        after = await settled_usage(before)
        report(
            "listener attack",
            f"{STRAYS} strays, {SLOWLORIS} slowloris, {IDLE} idle, {len(malformed())} malformed and "
            f"{len(hostile_with_the_real_code(port, real_target))} refused carriers of the real code; "
            f"real login in {elapsed * 1000:.0f} ms; {before.figures(after)}",
        )
        assert after.fds <= before.fds + 2, before.figures(after)
        assert after.threads <= before.threads, before.figures(after)
        assert after.tasks <= before.tasks, before.figures(after)
        assert after.rss - before.rss < 48 * MIB, before.figures(after)


@pytest.mark.asyncio
async def test_connections_an_attacker_never_closes_are_dropped_once_the_login_ends() -> None:
    """Idle and slowloris connections left open by the attacker: the listener stops accepting when
    its last flow ends and drops every connection within the head timeout; no fd stays behind."""
    before = Usage.now()
    listener = CallbackListener.bind(header_read_timeout=0.5)
    flow = listener.register("only")
    port = listener.port
    idle = [await open_raw(port) for _ in range(IDLE)]
    slow = [await open_raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(SLOWLORIS)]
    stop = asyncio.Event()
    dripping = asyncio.ensure_future(drip(slow, stop))
    try:
        loaded = Usage.now()
        assert loaded.fds >= before.fds + 2 * (IDLE + SLOWLORIS)  # ours and the listener's ends
        flow.cancel()
        await asyncio.wait_for(listener.wait_closed(), 5)
        assert port_refuses(port)

        def all_dropped() -> bool:
            dropped = 0
            for sock in idle + slow:
                try:
                    dropped += sock.recv(1) == b""
                except BlockingIOError:
                    pass
                except OSError:
                    dropped += 1
            return dropped == len(idle) + len(slow)

        assert await wait_until(all_dropped, 10), "the listener kept attacker connections open"
        # Our ends are still open; the listener's ends must be gone.
        held = Usage.now()
        assert held.fds <= before.fds + IDLE + SLOWLORIS + 2, before.figures(held)
    finally:
        stop.set()
        await dripping
        for sock in idle + slow:
            sock.close()
    after = await settled_usage(before)
    report("never-closed attacker connections", f"{IDLE + SLOWLORIS} connections; {before.figures(after)}")
    assert after.fds <= before.fds + 2, before.figures(after)
