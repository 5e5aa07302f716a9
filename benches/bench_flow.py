"""The pieces of one login: secrets, flow registration, redirect latency, token response parsing.

Reference pieces: `nebius.aio.token.federation_bearer.pkce.PKCE`, `.server.CallbackHandler` (one
aiohttp listener per flow), and its token-response path (`json.loads` of the body and the checks
of `auth.get_token`). fedbearer: `new_login_secrets`, the shared `CallbackListener` (as
`auth.authorize` uses it, through `_listener.register_flow`), `parse_token_response`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _procs import BrowserProcess
from _timing import Figure, ainterleave, interleave

# A typical token endpoint answer of about 1 KB: a JWT-sized access token, a refresh token, an ID
# token.
TOKEN_BODY = json.dumps(
    {
        "access_token": "eyJhbGciOiJSUzI1NiJ9." + "a" * 420 + ".sig" + "s" * 40,
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "r1." + "r" * 120,
        "id_token": "eyJhbGciOiJSUzI1NiJ9." + "i" * 300 + ".sig" + "t" * 40,
        "scope": "openid",
    }
).encode()


# -- per-login secrets --------------------------------------------------------------------------
def _time_reference_secrets(n: int) -> float:
    from nebius.aio.token.federation_bearer.pkce import PKCE

    start = time.perf_counter()
    for _ in range(n):
        pkce = PKCE()  # auth.authorize: the verifier...
        pkce.challenge  # noqa: B018 -- ...its challenge, computed on access
        PKCE().verifier  # noqa: B018 -- CallbackHandler(): the state
    return (time.perf_counter() - start) / n


def _time_fedbearer_secrets(n: int) -> float:
    from fedbearer._core import new_login_secrets

    start = time.perf_counter()
    for _ in range(n):
        pkce, _state = new_login_secrets()
        pkce.challenge  # noqa: B018 -- auth.authorize reads it for the URL
    return (time.perf_counter() - start) / n


# -- parsing ------------------------------------------------------------------------------------
def _reference_parse(body: bytes) -> Any:
    """What the reference's `get_token` does with a 200 body after aiohttp read it:
    `resp.json()` (decode + json.loads) and its checks, into its GetTokenResult."""
    from nebius.aio.token.federation_bearer.auth import GetTokenResult

    ret = json.loads(body.decode("utf-8"))
    if not isinstance(ret, dict):
        raise RuntimeError("Unexpected response format")
    tok = ret.get("access_token", "")
    expires_in = ret.get("expires_in", None)
    if not isinstance(tok, str):
        raise RuntimeError("Invalid token response")
    if expires_in is not None and not isinstance(expires_in, int):
        raise RuntimeError("Invalid token response")
    return GetTokenResult(access_token=tok, expires_in=expires_in)


def _time_reference_parse(n: int) -> float:
    body = TOKEN_BODY
    start = time.perf_counter()
    for _ in range(n):
        _reference_parse(body)
    return (time.perf_counter() - start) / n


def _time_fedbearer_parse(n: int) -> float:
    from fedbearer._core import parse_token_response

    body = TOKEN_BODY
    start = time.perf_counter()
    for _ in range(n):
        parse_token_response(body, 200)
    return (time.perf_counter() - start) / n


# -- registering one more flow --------------------------------------------------------------------
async def _time_reference_register(n: int) -> float:
    from nebius.aio.token.federation_bearer.server import CallbackHandler

    handlers = []
    start = time.perf_counter()
    for _ in range(n):
        handler = CallbackHandler()
        await handler.listen_and_serve()
        handlers.append(handler)
    elapsed = time.perf_counter() - start
    for handler in handlers:
        await handler.shutdown()
    return elapsed / n


async def _time_fedbearer_register(n: int) -> float:
    from fedbearer._core import new_state
    from fedbearer.federation import _listener

    states = [new_state() for _ in range(n)]
    start = time.perf_counter()
    flows = [_listener.register_flow(state) for state in states]
    elapsed = time.perf_counter() - start
    for flow in flows:
        flow.cancel()
    return elapsed / n


# -- redirect latency ---------------------------------------------------------------------------
async def _redirect(
    browser: BrowserProcess, port: int, state: str, wait: Callable[[], Awaitable[str]]
) -> float:
    """Time from the browser process starting its GET to the waiting task holding the code."""
    resumed: list[float] = []

    async def waiter() -> None:
        code = await wait()
        resumed.append(time.perf_counter())
        assert code == "bench-code", code

    task = asyncio.ensure_future(waiter())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    browser.send(f"get {port} /?code=bench-code&state={state}")
    await task
    started, status = (await browser.answer()).split()
    assert status == "200", status
    return resumed[0] - float(started)


async def _one_reference_redirect(browser: BrowserProcess) -> float:
    from nebius.aio.token.federation_bearer.server import CallbackHandler

    handler = CallbackHandler()
    await handler.listen_and_serve()

    async def wait() -> str:
        return await handler.wait_for_code(5.0) or ""

    try:
        return await _redirect(browser, handler.port or 0, handler.state, wait)
    finally:
        await handler.shutdown()


async def _one_fedbearer_redirect(browser: BrowserProcess) -> float:
    from fedbearer._core import new_state
    from fedbearer.federation import _listener

    state = new_state()
    flow = _listener.register_flow(state)

    async def wait() -> str:
        return (await flow.wait(5.0)).code

    return await _redirect(browser, _listener.shared_listener().port, state, wait)


async def _async_figures(quick: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    from fedbearer._core import new_state
    from fedbearer.federation import _listener

    # "The listener already up": a login of another tenant keeps it open throughout.
    anchor = _listener.register_flow(new_state())
    try:
        async with BrowserProcess() as browser:
            for _ in range(5):  # warm both paths up (imports, first bind, aiohttp's app machinery)
                await _one_reference_redirect(browser)
                await _one_fedbearer_redirect(browser)
            register = await ainterleave(
                9 if quick else 15,
                {
                    "reference": lambda: _time_reference_register(40),
                    "fedbearer": lambda: _time_fedbearer_register(2_000),
                },
            )
            redirect = await ainterleave(
                100 if quick else 300,
                {
                    "reference": lambda: _one_reference_redirect(browser),
                    "fedbearer": lambda: _one_fedbearer_redirect(browser),
                },
            )
    finally:
        anchor.cancel()
    return register, redirect


def run(quick: bool = False) -> list[Figure]:
    rounds = 9 if quick else 15
    secrets = interleave(
        rounds,
        {
            "reference": lambda: _time_reference_secrets(5_000),
            "fedbearer": lambda: _time_fedbearer_secrets(20_000),
        },
    )
    parse = interleave(
        rounds,
        {
            "reference": lambda: _time_reference_parse(5_000),
            "fedbearer": lambda: _time_fedbearer_parse(20_000),
        },
    )
    register, redirect = asyncio.run(_async_figures(quick))
    redirect_ratio = redirect["fedbearer"].median / redirect["reference"].median
    return [
        Figure(
            "secrets",
            "PKCE pair + state per login",
            "s",
            secrets["reference"],
            secrets["fedbearer"],
            target="≤ 1.2 µs",
            met=secrets["fedbearer"].median <= 1.2e-6,
            note="reference: `PKCE()` + `.challenge` + `PKCE().verifier` (its state); "
            "fedbearer: `new_login_secrets()` + `.challenge`",
        ),
        Figure(
            "register",
            "registering one more pending flow (listener already up)",
            "s",
            register["reference"],
            register["fedbearer"],
            target="≤ 10 µs",
            met=register["fedbearer"].median <= 10e-6,
            note="reference: `CallbackHandler()` + `listen_and_serve()` (a listener per flow); "
            "fedbearer: `_listener.register_flow(state)` on the shared listener",
        ),
        Figure(
            "redirect",
            "redirect received → awaiting coroutine has the code (loopback GET)",
            "s",
            redirect["reference"],
            redirect["fedbearer"],
            target="≤ 0.75× the reference",
            met=redirect_ratio <= 0.75,
            note="from the browser process starting its GET (a fresh TCP connection) to the awaiting task "
            "resuming with the code",
        ),
        Figure(
            "parse",
            "token response parse (typical 1 KB body)",
            "s",
            parse["reference"],
            parse["fedbearer"],
            target="≤ 1.5 µs",
            met=parse["fedbearer"].median <= 1.5e-6,
            note="reference: decode + `json.loads` + `get_token`'s checks + GetTokenResult (aiohttp's "
            "own overhead not counted); fedbearer: `parse_token_response(body, 200)`",
        ),
    ]
