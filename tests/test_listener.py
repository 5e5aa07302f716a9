"""The loopback callback listener (RFC 8252 §7.3, §8.3): real sockets, raw HTTP, many flows."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import secrets
import select
import signal
import socket
import string
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbearer import (
    AuthError,
    Authorization,
    AuthorizationDenied,
    CallbackListener,
    IssuerMismatch,
    ListenerError,
    LoginTimeout,
    PendingFlow,
    new_state,
)

IO_TIMEOUT = 5.0
DEFAULT_HOST = object()


class Closed(ConnectionError):
    """The listener closed the connection without an answer."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    @classmethod
    def parse(cls, raw: bytes) -> Reply:
        if not raw:
            raise Closed("the listener closed the connection without answering")
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return cls(status, headers, body.decode("utf-8", "replace"))


async def http(
    port: int,
    target: str = "/",
    *,
    method: str = "GET",
    host: object = DEFAULT_HOST,
    addr: str = "127.0.0.1",
    version: str = "HTTP/1.1",
    extra: str = "",
) -> Reply:
    """One raw HTTP request on a fresh connection; the listener closes it after answering."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), IO_TIMEOUT)
    try:
        lines = [f"{method} {target} {version}"]
        if host is DEFAULT_HOST:
            lines.append(f"Host: 127.0.0.1:{port}")
        elif host is not None:
            lines.append(f"Host: {host}")
        if method in ("POST", "PUT"):
            lines.append("Content-Length: 0")
        request = "\r\n".join(lines) + "\r\n" + extra + "\r\n"
        writer.write(request.encode("utf-8"))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return Reply.parse(raw)


def redirect(state: str, code: str | None = None, **extra: str) -> str:
    params = {"state": state, **({"code": code} if code is not None else {}), **extra}
    return "/?" + urllib.parse.urlencode(params)


def port_accepts(port: int, family: int = socket.AF_INET) -> bool:
    addr = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect((addr, port))
        except ConnectionRefusedError:
            return False
        except ConnectionResetError:
            return True  # the handshake raced the listener closing: still settling, ask again
        return True


async def until(predicate: Callable[[], bool], seconds: float = 1.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def bound(**kwargs: object) -> Iterator[CallbackListener]:
    listener = CallbackListener.bind(**kwargs)  # type: ignore[arg-type]
    try:
        yield listener
    finally:
        listener.close()


async def settle(*tasks: asyncio.Future[Any]) -> None:
    """Cancel what is left so no Rust future outlives the test's event loop."""
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- identity --------------------------------------------------------------------------------


def test_redirect_uri_is_ipv4_loopback_with_the_port() -> None:
    with bound() as listener:
        port = listener.port
        assert 0 < port < 65536
        assert listener.redirect_uri == f"http://127.0.0.1:{port}"
        flow = listener.register("s1")
        assert isinstance(flow, PendingFlow)
        assert flow.redirect_uri == f"http://127.0.0.1:{port}"
        assert flow.state == "s1"
        assert flow.registered
        assert listener.addresses[0] == f"127.0.0.1:{port}"
        assert listener.pending == 1
        assert not listener.closed
        flow.cancel()


def test_listener_never_binds_a_non_loopback_address() -> None:
    with bound() as listener:
        for address in listener.addresses:
            host = address.rsplit(":", 1)[0]
            assert host in ("127.0.0.1", "[::1]")


# --- many flows, stray requests --------------------------------------------------------------


@pytest.mark.asyncio
async def test_hundred_concurrent_flows_each_get_their_own_code_amid_stray_requests() -> None:
    rng = random.Random(2026)
    with bound() as listener:
        port = listener.port
        sentinel = listener.register(new_state())  # keeps the listener open for late replays
        states = [new_state() for _ in range(100)]
        codes = [f"code-{i}-{secrets.token_urlsafe(12)}" for i in range(100)]
        flows = [listener.register(s) for s in states]
        waits = [asyncio.ensure_future(f.wait(30)) for f in flows]
        strays = [
            "/",
            "/favicon.ico",
            "/robots.txt",
            "/?code=stray",
            "/?state=&code=x",
            f"/?state={new_state()}&code=forged",
            f"/?state={states[0]}x&code=nearly",
            f"/?state={states[1][:-1]}&code=nearly",
            f"/?STATE={states[2]}&code=case",
            f"/?state={states[3]}&state={states[4]}&code=dup",
            f"/?state={states[5]}&code=c&error=access_denied",
            f"/?state={states[6]}",
            f"/favicon.ico?state={states[7]}&code=wrong-path",
            f"/?state={new_state()}&error=access_denied",
        ]
        try:
            half = 50
            first = [(i, redirect(states[i], codes[i])) for i in range(half)]
            batch: list[tuple[int | None, str]] = [*first, *[(None, s) for s in strays * 3]]
            rng.shuffle(batch)
            replies = await asyncio.gather(*(http(port, target) for _, target in batch))
            for (i, target), reply in zip(batch, replies, strict=True):
                if i is None:
                    assert reply.status in (400, 404), (target, reply.status)
                else:
                    assert reply.status == 200, (target, reply.status)
            for i in range(half):
                auth = await asyncio.wait_for(waits[i], IO_TIMEOUT)
                assert auth.code == codes[i]
                assert auth.state == states[i]
            assert not any(w.done() for w in waits[half:])
            assert listener.pending == 1 + 100 - half

            # Replays of finished flows (with a different code) interleaved with the rest.
            replays = [(None, redirect(states[i], "replayed-" + codes[i])) for i in range(half)]
            second = [(i, redirect(states[i], codes[i])) for i in range(half, 100)]
            batch = [*second, *replays, *[(None, s) for s in strays]]
            rng.shuffle(batch)
            replies = await asyncio.gather(*(http(port, target) for _, target in batch))
            for (i, target), reply in zip(batch, replies, strict=True):
                assert reply.status == (400 if i is None or i < half else 200) or (
                    i is None and reply.status == 404
                ), (target, reply.status)
            results = await asyncio.wait_for(asyncio.gather(*waits[half:]), IO_TIMEOUT)
            assert [r.code for r in results] == codes[half:]
            assert listener.pending == 1
            assert not listener.closed
        finally:
            await settle(*waits)
            sentinel.cancel()
    assert listener.closed


@pytest.mark.asyncio
async def test_stray_request_does_not_end_pending_flow() -> None:
    with bound() as listener:
        flow = listener.register("the-state")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            for target in ("/", "/?code=abc", "/?state=other&code=abc", "/favicon.ico", "/?state=the-state"):
                reply = await http(listener.port, target)
                assert reply.status in (400, 404)
                assert "No login in progress" in reply.body
            await asyncio.sleep(0.05)
            assert not task.done()
            assert listener.pending == 1
            reply = await http(listener.port, redirect("the-state", "real-code"))
            assert reply.status == 200
            assert "Login complete" in reply.body
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "real-code"
        finally:
            await settle(task)


# --- provider errors and issuers -------------------------------------------------------------


@pytest.mark.asyncio
async def test_denied_flow_fails_fast_with_the_providers_text_escaped_on_the_page() -> None:
    description = 'The user said <script>alert("no")</script> & left'
    with bound() as listener:
        keep = listener.register(new_state())
        flow = listener.register("deny-me")
        task = asyncio.ensure_future(flow.wait(30))
        started = time.monotonic()
        try:
            wrong = await http(listener.port, redirect("not-me", error="access_denied"))
            assert wrong.status == 400
            assert not task.done()
            reply = await http(
                listener.port, redirect("deny-me", error="access_denied", error_description=description)
            )
            with pytest.raises(AuthorizationDenied) as info:
                await asyncio.wait_for(task, IO_TIMEOUT)
            assert time.monotonic() - started < 5
        finally:
            await settle(task)
            keep.cancel()
    err = info.value
    assert err.error == "access_denied"
    assert err.description == description
    assert description in str(err)
    assert isinstance(err, AuthError)
    assert "Login failed" in reply.body
    assert "access_denied" in reply.body
    assert "<script>" not in reply.body
    assert "&lt;script&gt;alert(&quot;no&quot;)&lt;/script&gt; &amp; left" in reply.body


@pytest.mark.asyncio
async def test_issuer_mismatch_ends_the_flow_with_issuer_mismatch() -> None:
    with bound() as listener:
        flow = listener.register("iss-state", expected_issuer="https://idp.example")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            reply = await http(listener.port, redirect("iss-state", "c", iss="https://evil.example"))
            assert reply.status == 200
            assert "Login failed" in reply.body
            with pytest.raises(IssuerMismatch) as info:
                await asyncio.wait_for(task, IO_TIMEOUT)
        finally:
            await settle(task)
    assert info.value.expected == "https://idp.example"
    assert info.value.received == "https://evil.example"


@pytest.mark.asyncio
async def test_issuer_mismatch_also_applies_to_error_responses() -> None:
    with bound() as listener:
        flow = listener.register("iss-state", expected_issuer="https://idp.example")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            await http(
                listener.port, redirect("iss-state", error="access_denied", iss="https://evil.example")
            )
            with pytest.raises(IssuerMismatch):
                await asyncio.wait_for(task, IO_TIMEOUT)
        finally:
            await settle(task)


@pytest.mark.asyncio
@pytest.mark.parametrize("iss", ["https://idp.example", None])
async def test_matching_or_absent_issuer_completes_the_flow(iss: str | None) -> None:
    with bound() as listener:
        flow = listener.register("iss-ok", expected_issuer="https://idp.example")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            extra = {"iss": iss} if iss else {}
            reply = await http(listener.port, redirect("iss-ok", "the-code", **extra))
            assert reply.status == 200
            auth = await asyncio.wait_for(task, IO_TIMEOUT)
        finally:
            await settle(task)
    assert isinstance(auth, Authorization)
    assert auth.code == "the-code"
    assert auth.iss == iss
    assert "the-code" not in repr(auth)


# --- cancellation, timeouts, closing ---------------------------------------------------------


@pytest.mark.asyncio
async def test_cancelled_flow_deregisters_and_the_last_one_frees_the_port() -> None:
    listener = CallbackListener.bind()
    port = listener.port
    a = listener.register("a")
    b = listener.register("b")

    async def login() -> str:
        return (await a.wait()).code

    task_a = asyncio.create_task(login())  # a task awaiting the flow
    task_b = asyncio.ensure_future(b.wait(60))  # the flow's future itself
    await asyncio.sleep(0.02)
    assert listener.pending == 2
    task_a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task_a
    assert await until(lambda: listener.pending == 1)
    assert not listener.closed
    assert port_accepts(port)
    reply = await http(port, redirect("a", "late"))
    assert reply.status == 400
    task_b.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task_b
    assert await until(lambda: listener.pending == 0)
    assert listener.closed
    assert await until(lambda: not port_accepts(port))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    if f"[::1]:{port}" in listener.addresses:
        assert await until(lambda: not port_accepts(port, socket.AF_INET6))


@pytest.mark.asyncio
async def test_cancelling_right_after_wait_starts_frees_the_port() -> None:
    listener = CallbackListener.bind()
    port = listener.port
    task = asyncio.ensure_future(listener.register("quick").wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await until(lambda: listener.closed and not port_accepts(port))


def test_flow_cancel_and_garbage_collection_deregister() -> None:
    listener = CallbackListener.bind()
    a = listener.register("a")
    b = listener.register("b")
    a.cancel()
    a.cancel()  # idempotent
    assert not a.registered
    assert listener.pending == 1
    del b
    gc.collect()
    assert listener.pending == 0
    assert listener.closed


@pytest.mark.asyncio
async def test_timeout_raises_login_timeout_which_is_a_timeout_error() -> None:
    listener = CallbackListener.bind()
    port = listener.port
    flow = listener.register("slow")
    started = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        await flow.wait(0.2)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, LoginTimeout)
    assert isinstance(info.value, AuthError)
    assert info.value.timeout == pytest.approx(0.2)
    assert "0.2" in str(info.value)
    assert 0.15 < elapsed < 3
    assert await until(lambda: listener.pending == 0 and listener.closed)
    assert await until(lambda: not port_accepts(port))


@pytest.mark.asyncio
async def test_invalid_timeout_is_value_error_and_the_flow_can_still_be_awaited() -> None:
    with bound() as listener:
        flow = listener.register("t")
        for bad in (-1.0, float("nan")):
            with pytest.raises(ValueError):
                flow.wait(bad)
        assert flow.registered
        listener.deliver("state=t&code=ok")
        assert (await asyncio.wait_for(flow.wait(5), IO_TIMEOUT)).code == "ok"


@pytest.mark.asyncio
async def test_wait_twice_raises_runtime_error() -> None:
    with bound() as listener:
        flow = listener.register("twice")
        first = asyncio.ensure_future(flow.wait(10))
        try:
            with pytest.raises(RuntimeError):
                flow.wait(10)
            # Still pending: the first wait() owns it until the redirect arrives.
            assert flow.registered
            listener.deliver("state=twice&code=once")
            assert (await asyncio.wait_for(first, IO_TIMEOUT)).code == "once"
            assert not flow.registered
            with pytest.raises(RuntimeError):
                flow.wait()
        finally:
            await settle(first)


def test_wait_after_cancel_raises_runtime_error() -> None:
    with bound() as listener:
        flow = listener.register("gone")
        flow.cancel()
        with pytest.raises(RuntimeError):
            flow.wait()


@pytest.mark.asyncio
async def test_closing_the_listener_fails_pending_flows_with_listener_error() -> None:
    listener = CallbackListener.bind()
    port = listener.port
    task = asyncio.ensure_future(listener.register("c").wait(30))
    await asyncio.sleep(0.01)
    listener.close()
    with pytest.raises(ListenerError):
        await asyncio.wait_for(task, IO_TIMEOUT)
    assert listener.closed
    assert await until(lambda: not port_accepts(port))


def test_registering_on_a_closed_listener_raises_listener_error() -> None:
    listener = CallbackListener.bind()
    listener.close()
    with pytest.raises(ListenerError, match="closed"):
        listener.register("late")
    # Closing with its last flow is closing too.
    auto = CallbackListener.bind()
    auto.register("only").cancel()
    assert auto.closed
    with pytest.raises(ListenerError):
        auto.register("later")


def test_duplicate_or_empty_state_is_refused() -> None:
    with bound() as listener:
        flow = listener.register("dup")
        with pytest.raises(ValueError):
            listener.register("dup")
        with pytest.raises(ValueError):
            listener.register("")
        flow.cancel()


# --- pasted URLs (remote mode) ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_deliver_of_a_pasted_url_completes_the_flow() -> None:
    with bound() as listener:
        keep = listener.register(new_state())
        state = new_state()
        flow = listener.register(state)
        task = asyncio.ensure_future(flow.wait(10))
        try:
            with pytest.raises(ValueError, match="no login in progress"):
                listener.deliver(f"{listener.redirect_uri}/?state=unknown&code=x")
            with pytest.raises(ValueError, match="not a login redirect"):
                listener.deliver(f"{listener.redirect_uri}/?code=x")
            with pytest.raises(ValueError):
                listener.deliver("hello")
            assert not task.done()
            pasted = f'  "{listener.redirect_uri}/?code=pasted-code&state={state}#frag"\n'
            assert listener.deliver(pasted) is True
            auth = await asyncio.wait_for(task, IO_TIMEOUT)
            assert auth.code == "pasted-code"
            with pytest.raises(ValueError):
                listener.deliver(pasted)  # a replay belongs to no pending flow
        finally:
            await settle(task)
            keep.cancel()


# --- HTTP manners ----------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil", "10.0.0.1", "[::2]:1"],
)
async def test_non_loopback_host_gets_403_and_the_flow_stays_pending(host: str) -> None:
    with bound() as listener:
        flow = listener.register("h")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            reply = await http(listener.port, redirect("h", "rebound"), host=host)
            assert reply.status == 403
            await asyncio.sleep(0.02)
            assert not task.done()
            assert listener.pending == 1
            assert (await http(listener.port, redirect("h", "good"))).status == 200
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "good"
        finally:
            await settle(task)


@pytest.mark.asyncio
@pytest.mark.parametrize("second", ["evil.example", "127.0.0.1"])
async def test_two_host_headers_get_400_and_the_flow_stays_pending(second: str) -> None:
    with bound() as listener:
        flow = listener.register("h")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            reply = await http(listener.port, redirect("h", "smuggled"), extra=f"Host: {second}\r\n")
            assert reply.status == 400
            await asyncio.sleep(0.02)
            assert not task.done()
            assert listener.pending == 1
        finally:
            await settle(task)


@pytest.mark.asyncio
async def test_missing_host_on_http11_is_400_and_the_flow_stays_pending() -> None:
    with bound() as listener:
        flow = listener.register("h")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            reply = await http(listener.port, redirect("h", "x"), host=None)
            assert reply.status == 400
            assert not task.done()
            reply = await http(listener.port, redirect("h", "http10"), host=None, version="HTTP/1.0")
            assert reply.status == 200
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "http10"
        finally:
            await settle(task)


@pytest.mark.asyncio
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
async def test_methods_other_than_get_and_head_get_405(method: str) -> None:
    with bound() as listener:
        flow = listener.register("m")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            reply = await http(listener.port, redirect("m", "posted"), method=method)
            assert reply.status == 405
            assert reply.headers["allow"] == "GET, HEAD"
            await asyncio.sleep(0.02)
            assert not task.done()
            assert listener.pending == 1
        finally:
            await settle(task)


@pytest.mark.asyncio
async def test_head_never_consumes_the_code() -> None:
    with bound() as listener:
        flow = listener.register("head")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            for _ in range(3):
                reply = await http(listener.port, redirect("head", "c1"), method="HEAD")
                assert reply.status == 200
                assert reply.body == ""
                assert reply.headers["cache-control"] == "no-store"
            await asyncio.sleep(0.02)
            assert not task.done()
            assert listener.pending == 1
            await http(listener.port, redirect("head", "c1"))
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "c1"
        finally:
            await settle(task)


@pytest.mark.asyncio
async def test_every_response_carries_no_store_and_no_referrer() -> None:
    with bound() as listener:
        keep = listener.register(new_state())
        ok = listener.register("ok")  # completed below; dropping it would deregister it
        denied = listener.register("denied")
        try:
            replies = [
                await http(listener.port, redirect("ok", "c")),  # 200 success
                await http(listener.port, redirect("denied", error="access_denied")),  # failure page
                await http(listener.port, "/?state=nobody&code=c"),  # 400
                await http(listener.port, "/favicon.ico"),  # 404
                await http(listener.port, "/", host="evil.example"),  # 403
                await http(listener.port, "/", method="POST"),  # 405
                await http(listener.port, "/", method="HEAD"),  # HEAD
            ]
            assert [r.status for r in replies] == [200, 200, 400, 404, 403, 405, 200]
            for r in replies:
                assert r.headers["cache-control"] == "no-store"
                assert r.headers["referrer-policy"] == "no-referrer"
                assert r.headers["content-type"].startswith("text/html")
                assert "http://" not in r.body and "https://" not in r.body
        finally:
            for flow in (ok, denied, keep):
                flow.cancel()


@pytest.mark.asyncio
async def test_success_page_never_shows_the_code() -> None:
    with bound() as listener:
        flow = listener.register("s")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            code = "CODE-" + secrets.token_urlsafe(24)
            reply = await http(listener.port, redirect("s", code))
            assert code not in reply.body
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == code
        finally:
            await settle(task)


async def oversized(port: int, target: str, extra: str) -> int | None:
    """Status of the answer to an oversized request, or None when the listener just closed it."""
    try:
        return (await http(port, target, extra=extra)).status
    except (ConnectionResetError, BrokenPipeError, Closed):
        return None


@pytest.mark.asyncio
async def test_request_head_over_8kib_is_refused_and_the_listener_still_serves() -> None:
    with bound() as listener:
        flow = listener.register("big")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            padded = await oversized(
                listener.port, redirect("big", "padded"), "X-Pad: " + "a" * 9000 + "\r\n"
            )
            assert padded in (431, None)
            long_url = await oversized(listener.port, redirect("big", "u" * 9000), "")
            assert long_url in (414, 431, None)
            many = "".join(f"X-H{i}: {'v' * 60}\r\n" for i in range(200))
            assert await oversized(listener.port, redirect("big", "many"), many) in (431, None)
            # A code longer than any real one, in a head under the cap, is refused by the parser.
            reply = await http(listener.port, redirect("big", "c" * 5000))
            assert reply.status == 400
            await asyncio.sleep(0.02)
            assert not task.done()
            assert listener.pending == 1
            assert (await http(listener.port, redirect("big", "real"))).status == 200
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "real"
        finally:
            await settle(task)


@pytest.mark.asyncio
async def test_idle_connections_do_not_block_the_real_redirect() -> None:
    with bound() as listener:
        flow = listener.register("idle")
        task = asyncio.ensure_future(flow.wait(10))
        idle = []
        try:
            for _ in range(5):
                idle.append(await asyncio.open_connection("127.0.0.1", listener.port))
            # And one that starts a request and never finishes it.
            _, half_writer = idle[-1]
            half_writer.write(b"GET /?state=idle&code=half HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            await half_writer.drain()
            started = time.monotonic()
            reply = await http(listener.port, redirect("idle", "real"))
            assert reply.status == 200
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "real"
            assert time.monotonic() - started < 2
        finally:
            for _, writer in idle:
                writer.close()
            await settle(task)


@pytest.mark.asyncio
async def test_slow_client_is_cut_off_after_the_header_read_timeout() -> None:
    with bound(header_read_timeout=0.3) as listener:
        flow = listener.register("slow")
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        try:
            writer.write(b"GET /?state=slow&code=x HTTP/1.1\r\n")
            await writer.drain()
            started = time.monotonic()
            data = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
            assert time.monotonic() - started < 3
            assert b"Login complete" not in data
            assert listener.pending == 1
        finally:
            writer.close()
            flow.cancel()


@pytest.mark.asyncio
async def test_redirect_works_over_ipv6_loopback_and_localhost() -> None:
    with bound() as listener:
        port = listener.port
        keep = listener.register(new_state())
        if has_ipv6_loopback():
            assert f"[::1]:{port}" in listener.addresses
            flow6 = listener.register("v6")
            task6 = asyncio.ensure_future(flow6.wait(10))
            try:
                reply = await http(port, redirect("v6", "over-v6"), addr="::1", host=f"[::1]:{port}")
                assert reply.status == 200
                assert (await asyncio.wait_for(task6, IO_TIMEOUT)).code == "over-v6"
            finally:
                await settle(task6)
        flow = listener.register("lh")
        task = asyncio.ensure_future(flow.wait(10))
        try:
            reply = await http(
                port, redirect("lh", "over-localhost"), addr="localhost", host=f"localhost:{port}"
            )
            assert reply.status == 200
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "over-localhost"
        finally:
            await settle(task)
            keep.cancel()


def test_ipv6_can_be_turned_off() -> None:
    with bound(bind_ipv6=False) as listener:
        assert listener.addresses == [f"127.0.0.1:{listener.port}"]


@pytest.mark.asyncio
async def test_at_the_cap_the_oldest_connection_makes_room_for_the_redirect() -> None:
    with bound(max_connections=2) as listener:
        flow = listener.register("cap")
        task = asyncio.ensure_future(flow.wait(10))
        hogs = []
        try:
            for _ in range(2):
                hogs.append(await asyncio.open_connection("127.0.0.1", listener.port))
            await asyncio.sleep(0.2)
            # Both hogs hold the cap; the real redirect still goes through at once, not after
            # the hogs' header timeout, because the oldest connection is closed to admit it.
            reply = await asyncio.wait_for(http(listener.port, redirect("cap", "after")), IO_TIMEOUT)
            assert reply.status == 200
            assert (await asyncio.wait_for(task, IO_TIMEOUT)).code == "after"
            oldest_reader, _ = hogs[0]
            assert await asyncio.wait_for(oldest_reader.read(), IO_TIMEOUT) == b""
        finally:
            for _, writer in hogs:
                writer.close()
            await settle(task)


# --- fork ------------------------------------------------------------------------------------


def _child_after_fork(listener: CallbackListener, flow: PendingFlow) -> dict[str, object]:
    report: dict[str, object] = {}
    for name, action in (
        ("register", lambda: listener.register("in-child")),
        ("deliver", lambda: listener.deliver("state=parent&code=stolen")),
        ("wait", lambda: flow.wait(1)),
    ):
        try:
            action()
            report[name] = "no error"
        except Exception as exc:
            report[name] = [type(exc).__name__, str(exc)]

    async def fresh_login() -> str:
        child_listener = CallbackListener.bind()
        child_flow = child_listener.register("child-state")
        task = asyncio.ensure_future(child_flow.wait(5))
        reply = await http(child_listener.port, redirect("child-state", "child-code"))
        assert reply.status == 200
        return (await task).code

    report["fresh"] = asyncio.run(fresh_login())
    return report


def test_parent_listener_refuses_to_work_after_fork_and_a_new_one_in_the_child_works() -> None:
    listener = CallbackListener.bind()
    flow = listener.register("parent")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            os.close(read_end)
            payload = _child_after_fork(listener, flow)
            status = 0
        except BaseException as exc:
            payload = {"crash": repr(exc)}
        finally:
            try:
                os.write(write_end, json.dumps(payload).encode())
            finally:
                os._exit(status)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child hung after fork()")
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    for name in ("register", "deliver", "wait"):
        kind, message = report[name]
        assert kind == "ListenerError", (name, report[name])
        assert "fork()" in message and str(pid) in message
    assert report["fresh"] == "child-code"

    # The parent's listener is unharmed.
    async def finish() -> str:
        task = asyncio.ensure_future(flow.wait(5))
        reply = await http(listener.port, redirect("parent", "parent-code"))
        assert reply.status == 200
        return (await task).code

    assert asyncio.run(finish()) == "parent-code"
    assert listener.closed


# --- property: pasted URLs never complete a flow without its exact state ---------------------

STATES = ["abc", "state-1.dots_~", "a b", "x&y=z", "ünï", "1", "A" * 64]
KEYS = ["state", "code", "error", "error_description", "error_uri", "iss", "State", "state ", " state", "x"]


def near_misses(state: str) -> list[str]:
    return [
        state,
        state[:-1],
        state + "x",
        "x" + state,
        state.upper(),
        f" {state}",
        f"{state} ",
        state + "\0",
    ]


values = (
    st.sampled_from([m for s in STATES for m in near_misses(s)])
    | st.text(max_size=12)
    | st.text(string.ascii_letters + string.digits + "-_.~%+&=#?", max_size=12)
)
Encoding = Callable[[str], str]
encodings: st.SearchStrategy[Encoding] = st.sampled_from(
    [
        lambda v: urllib.parse.quote(v, safe=""),
        urllib.parse.quote_plus,
        lambda v: v,
        lambda v: "".join(f"%{b:02X}" for b in v.encode()),
    ]
)


state_values = st.sampled_from(STATES) | values


def render(draw: st.DrawFn, key: str, value: str, forms: tuple[str, ...] = ("kv", "kv", "k", "k=")) -> str:
    encode = draw(encodings)
    form = draw(st.sampled_from(forms))
    return {"kv": f"{encode(key)}={encode(value)}", "k": encode(key), "k=": f"{encode(key)}="}[form]


@st.composite
def queries(draw: st.DrawFn) -> str:
    parts: list[str] = []
    if draw(st.integers(min_value=0, max_value=3)):  # mostly shaped like a redirect
        parts.append(render(draw, "state", draw(state_values), ("kv",)))
        parts.append(render(draw, draw(st.sampled_from(["code", "error"])), draw(values), ("kv",)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        parts.append(render(draw, draw(st.sampled_from(KEYS) | st.text(max_size=6)), draw(values)))
    query = "&".join(draw(st.permutations(parts)))
    noise = draw(st.integers(min_value=0, max_value=5))
    if noise == 0:
        query = draw(st.text(max_size=40))
    elif noise == 1:
        query += draw(st.text(max_size=10))
    return query


@st.composite
def pasted_urls(draw: st.DrawFn) -> str:
    query = draw(queries())
    form = draw(st.sampled_from(["url", "?", "bare", "quoted", "fragment"]))
    return {
        "url": f"http://127.0.0.1:1/?{query}",
        "?": f"?{query}",
        "bare": query,
        "quoted": f' "http://localhost:1/?{query}"\n',
        "fragment": f"http://127.0.0.1:1/?{query}#code=frag&state=abc",
    }[form]


def python_query_of(pasted: str) -> str:
    """An independent model of how a pasted URL reduces to its query."""
    s = pasted.strip().strip("\"'<>")
    s = s.split("#", 1)[0]
    if "?" in s:
        return s.split("?", 1)[1]
    return s if "=" in s else ""


def test_deliver_never_completes_a_flow_without_its_exact_state() -> None:
    listener = CallbackListener.bind()
    sentinel = listener.register(new_state())
    live = {s: listener.register(s) for s in STATES}

    @settings(max_examples=4 * settings().max_examples)
    @given(pasted_urls())
    def check(pasted: str) -> None:
        before = listener.pending
        try:
            completed = listener.deliver(pasted)
        except ValueError:
            completed = False
        # Which flows ended? A state registers again only once its flow is gone.
        ended = []
        for s in STATES:
            try:
                fresh = listener.register(s)
            except ValueError:
                continue
            ended.append(s)
            live[s] = fresh
        if not completed:
            assert ended == []
            assert listener.pending == before
            return
        assert completed is True
        assert len(ended) == 1, (pasted, ended)
        pairs = urllib.parse.parse_qsl(python_query_of(pasted), keep_blank_values=True)
        carried = [v for k, v in pairs if k == "state"]
        assert carried == ended, (pasted, carried, ended)
        assert any(k in ("code", "error") for k, _ in pairs)

    try:
        check()
        assert listener.pending == len(STATES) + 1
    finally:
        listener.close()
    assert sentinel.state not in STATES


@pytest.mark.asyncio
async def test_one_timer_expires_many_flows_and_frees_the_port() -> None:
    listener = CallbackListener.bind()
    flows = [listener.register(f"t{i}") for i in range(2000)]
    waits = [flow.wait(0.05 + (i % 10) * 0.01) for i, flow in enumerate(flows)]
    results = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 10)
    assert all(isinstance(r, LoginTimeout) for r in results)
    assert listener.pending == 0
    await asyncio.wait_for(listener.wait_closed(), 5)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", listener.port), timeout=1).close()


@pytest.mark.asyncio
async def test_cancelled_waits_leave_no_registered_state() -> None:
    listener = CallbackListener.bind()
    keep = listener.register("keep")
    tasks = []
    for i in range(1000):
        flow = listener.register(f"c{i}")
        tasks.append(asyncio.ensure_future(flow.wait(60)))
    await asyncio.sleep(0)
    assert listener.pending == 1001
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # Done-callbacks run on the loop's next iteration (gather of already-cancelled futures may
    # not yield at all, as on Python 3.13).
    await asyncio.sleep(0)
    assert listener.pending == 1
    keep.cancel()
    await asyncio.wait_for(listener.wait_closed(), 5)
    assert listener.closed


@pytest.mark.asyncio
async def test_wait_without_cancel_callback_leaves_deregistration_to_cancel() -> None:
    listener = CallbackListener.bind()
    keep = listener.register("keep")
    flow = listener.register("manual")
    waiter = flow.wait(30, deregister_on_cancel=False)
    waiter.cancel()
    await asyncio.sleep(0)
    # Nobody deregistered it yet: the caller promised to.
    assert flow.registered
    flow.cancel()
    assert not flow.registered
    assert listener.pending == 1
    keep.cancel()
    await asyncio.wait_for(listener.wait_closed(), 5)


@pytest.mark.parametrize("limit", [0, -1])
def test_bind_refuses_a_connection_cap_below_one(limit: int) -> None:
    with pytest.raises(ValueError, match="max_connections"):
        CallbackListener.bind(max_connections=limit)
