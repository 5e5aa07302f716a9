"""A full interactive login against the embedded identity provider over TLS, scripted browser.

The provider (`IdentityProvider(tls=True, auto_approve=True)`) and the browser (`_browser.py`)
each run in their own process. Each library's `Receiver(...).fetch()` prints the authorization URL
to a writer; the browser GETs it on a kept-alive HTTPS connection, gets the provider's 302 and
follows it to the library's loopback listener; the library then POSTs the code to the token
endpoint over TLS (the reference: a new aiohttp session per login; fedbearer: its pooled client)
and returns the Token. Timed: the whole `await receiver.fetch()`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

from _procs import BrowserProcess, BrowserWriter, ProviderProcess
from _timing import Figure, ainterleave

CLIENT_ID = "bench-client"
FEDERATION_ID = "federation-bench"


async def _login(receiver: Any, browser: BrowserProcess) -> float:
    start = time.perf_counter()
    token = await receiver.fetch(timeout=10)
    elapsed = time.perf_counter() - start
    answer = await browser.answer()
    assert answer == "ok 200", answer
    assert token.token, token
    return elapsed


async def _run(endpoint: str, ca_pem: str, quick: bool) -> dict[str, Any]:
    from nebius.aio.token import federation_bearer as reference

    from fedbearer.federation import Receiver

    async with BrowserProcess(ca_pem) as browser:
        writer = BrowserWriter(browser)
        ref_ctx = ssl.create_default_context(cafile=ca_pem)
        fed_ctx = ssl.create_default_context(cafile=ca_pem)
        ref = reference.Receiver(
            CLIENT_ID, endpoint, FEDERATION_ID, writer=writer, no_browser_open=True, ssl_ctx=ref_ctx
        )
        fed = Receiver(
            CLIENT_ID, endpoint, FEDERATION_ID, writer=writer, no_browser_open=True, ssl_ctx=fed_ctx
        )
        for _ in range(5):  # warm-up: imports, first TLS handshakes, the browser's connection
            await _login(ref, browser)
            await _login(fed, browser)
        return await ainterleave(
            40 if quick else 100,
            {"reference": lambda: _warm_login(ref, browser), "fedbearer": lambda: _warm_login(fed, browser)},
        )


async def _warm_login(receiver: Any, browser: BrowserProcess) -> float:
    """One untimed login, then the timed one. `ainterleave` runs `gc.collect()` before each
    sample (so neither library pays for the other's garbage); that pause lets the provider and
    browser processes go idle, and on these VMs waking an idle vCPU adds ~1 ms to whatever runs
    next, for both libraries alike. The untimed login wakes them."""
    await _login(receiver, browser)
    return await _login(receiver, browser)


def run(quick: bool = False) -> list[Figure]:
    with ProviderProcess() as provider:
        samples = asyncio.run(_run(provider.endpoint, provider.ca_pem, quick))
    return [
        Figure(
            "login",
            "full login against a local HTTPS provider (scripted browser)",
            "s",
            samples["reference"],
            samples["fedbearer"],
            target="≤ 1.6 ms",
            met=samples["fedbearer"].median <= 1.6e-3,
            note="`await Receiver(...).fetch()`; provider and browser in their own processes; "
            "auto-approve; each timed login follows an untimed one (warm processes); "
            "fedbearer's listener is bound per login (no other flow keeps it up)",
        )
    ]
