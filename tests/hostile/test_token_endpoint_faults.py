"""A hostile or broken token endpoint: it hangs, resets, answers 500/503 HTML, truncated JSON, a
portal page, an error with status 200, or presents a certificate that does not verify. Each is a
typed error within the configured timeout — on the code exchange and on refresh alike — and the
retry policy (``fedbearer.retry``) does what it documents with each."""

from __future__ import annotations

import asyncio
import io
import json
import ssl
import time
from typing import Any

import pytest
import trustme

from bearer_helpers import AutoBrowser
from fedbearer import AuthError, InvalidTokenResponse, TokenEndpointError
from fedbearer.cache import MemoryCache
from fedbearer.federation import Bearer, auth
from fedbearer.retry import RetryPolicy
from fedbearer.testing import IdentityProvider

from ._probe import get_request, link_from, provider_redirect, raw_request, status_of, target_of

pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio]

HTTP_TIMEOUT = 0.5
# fault -> (error type, HTTP status, RFC 6749 error code or ours)
FAULTS: dict[str, tuple[type[AuthError], int | None, str | None]] = {
    "hang": (TokenEndpointError, 0, "timeout"),
    "slow:5": (TokenEndpointError, 0, "timeout"),
    "reset": (TokenEndpointError, 0, "connection_error"),
    "500_html": (TokenEndpointError, 500, None),
    "503_html": (TokenEndpointError, 503, None),
    "truncated_json": (InvalidTokenResponse, None, None),
    "non_json_200": (InvalidTokenResponse, None, None),
    "error_body_200": (TokenEndpointError, 200, "invalid_grant"),
}


def check(err: BaseException, fault: str, elapsed: float) -> None:
    kind, status, code = FAULTS[fault]
    assert type(err) is kind, (fault, repr(err))
    if status is not None:
        assert err.status == status, (fault, err.status)  # type: ignore[attr-defined]
    if code is not None:
        assert err.error == code, (fault, err.error)  # type: ignore[attr-defined]
    # Within the configured timeout (plus scheduling slack), never the 30 s default.
    assert elapsed < HTTP_TIMEOUT + 3, (fault, elapsed)
    text = str(err)
    assert len(text) < 600 and "<html" not in text.lower() and "CANARY" not in text, text


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_fault_on_refresh_is_a_typed_error_in_time_and_spends_nothing(fault: str) -> None:
    with IdentityProvider(auto_approve=True, rotate_refresh_tokens=True, refresh_prefix="CANARY-RT-") as idp:
        writer = io.StringIO()
        login = asyncio.ensure_future(auth.authorize("c", idp.endpoint, "f", writer, True, timeout=20))
        port, target = target_of(await provider_redirect(await link_from(writer)))
        assert status_of(await raw_request(port, get_request(target))) == 200
        refresh_token = (await asyncio.wait_for(login, 10)).refresh_token
        assert refresh_token is not None

        idp.set_fault(fault, times=1)
        started = time.monotonic()
        with pytest.raises(AuthError) as failed:
            await auth.refresh("c", idp.endpoint, refresh_token, http_timeout=HTTP_TIMEOUT)
        check(failed.value, fault, time.monotonic() - started)
        # The faulty answer did not spend the refresh token: the next try works.
        renewed = await auth.refresh("c", idp.endpoint, refresh_token, http_timeout=10)
        assert renewed.access_token in idp.issued_tokens


@pytest.mark.parametrize("fault", ["slow:5", "hang"])
async def test_a_slow_or_hung_code_exchange_times_out_at_http_timeout(fault: str) -> None:
    with IdentityProvider(auto_approve=True) as idp:
        idp.set_fault(fault, times=1)
        writer = io.StringIO()
        login = asyncio.ensure_future(
            auth.authorize("c", idp.endpoint, "f", writer, True, timeout=20, http_timeout=HTTP_TIMEOUT)
        )
        port, target = target_of(await provider_redirect(await link_from(writer)))
        started = time.monotonic()
        assert status_of(await raw_request(port, get_request(target))) == 200
        with pytest.raises(AuthError) as failed:
            await asyncio.wait_for(login, 10)
        check(failed.value, fault, time.monotonic() - started)


# -- TLS that does not verify -----------------------------------------------------------------------
class TlsTokenEndpoint:
    """An HTTPS token endpoint on 127.0.0.1 presenting ``cert`` (trustme), answering a token."""

    def __init__(self, cert: Any) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.requests = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            body = json.dumps({"access_token": "at", "expires_in": 60}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


def client_trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize("case", ["certificate for another name", "client trusts another CA", "control"])
@pytest.mark.parametrize("call", ["exchange", "refresh"])
async def test_a_certificate_that_does_not_verify_is_a_tls_error_at_once(case: str, call: str) -> None:
    ca = trustme.CA()
    cert = (
        ca.issue_cert("auth.other.example")
        if case == "certificate for another name"
        else ca.issue_cert("127.0.0.1")
    )
    trusted = client_trusting(trustme.CA() if case == "client trusts another CA" else ca)
    endpoint = TlsTokenEndpoint(cert)
    async with endpoint as origin:
        started = time.monotonic()
        if call == "exchange":
            attempt = auth.exchange_code(
                f"{origin}/oauth2/token", "c", "code", "http://127.0.0.1:1", "v" * 43, trusted
            )
        else:
            attempt = auth.refresh("c", origin, "CANARY-RT-x", trusted)
        if case == "control":
            assert (await attempt).access_token == "at"
            assert endpoint.requests == 1
            return
        with pytest.raises(TokenEndpointError) as failed:
            await attempt
    assert time.monotonic() - started < 5
    assert (failed.value.status, failed.value.error) == (0, "tls_error")
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value) or "certificate" in str(failed.value).lower()
    assert endpoint.requests == 0  # nothing was sent over the unverified connection


# -- the retry policy, as documented ------------------------------------------------------------------
FAST = RetryPolicy(max_attempts=3, initial_delay=0.05, multiplier=2.0, max_delay=1.0, jitter=0.0)


def bearer_for(idp: IdentityProvider, user: AutoBrowser, **kw: Any) -> Bearer:
    kw.setdefault("retry", FAST)
    kw.setdefault("http_timeout", HTTP_TIMEOUT)
    return Bearer("p", "c", idp.endpoint, "f", writer=user, no_browser_open=True, cache=MemoryCache(), **kw)


@pytest.mark.parametrize("fault", ["hang", "reset", "500_html", "503_html", "truncated_json", "non_json_200"])
async def test_a_transient_exchange_fault_costs_one_retry_and_one_more_prompt(fault: str) -> None:
    with IdentityProvider(auto_approve=True) as idp:
        user = AutoBrowser()
        idp.set_fault(fault, times=1)
        token = await asyncio.wait_for(bearer_for(idp, user).receiver().fetch(), 20)
        assert token.token in idp.issued_tokens
        assert (user.prompts, idp.stats.token_requests, idp.stats.tokens_issued) == (2, 2, 1)


async def test_a_persistent_fault_stops_after_max_attempts_with_the_documented_backoff() -> None:
    with IdentityProvider(auto_approve=True) as idp:
        user = AutoBrowser()
        idp.set_fault("503_html")
        started = time.monotonic()
        with pytest.raises(TokenEndpointError) as failed:
            await asyncio.wait_for(bearer_for(idp, user).receiver().fetch(), 30)
        elapsed = time.monotonic() - started
    assert failed.value.status == 503
    assert user.prompts == FAST.max_attempts == idp.stats.token_requests
    assert elapsed >= FAST.delay(1) + FAST.delay(2)  # 0.05 + 0.1 s of backoff, jitter 0


async def test_a_rejected_exchange_is_retried_with_a_fresh_login() -> None:
    """``invalid_grant`` on a code exchange (here with status 200) means that code is spent, not
    that logging in is hopeless: the policy retries with a new login (only client-level errors and
    TLS failures are final)."""
    with IdentityProvider(auto_approve=True) as idp:
        user = AutoBrowser()
        idp.set_fault("error_body_200", times=1)
        token = await asyncio.wait_for(bearer_for(idp, user).receiver().fetch(), 20)
        assert token.token in idp.issued_tokens
    assert user.prompts == 2


async def test_a_tls_failure_is_not_retried() -> None:
    """A certificate that does not verify will not verify on the next try: one prompt, then the
    TLS error (not a LoginTimeout after several prompts that hides the cause)."""
    with IdentityProvider(tls=True, auto_approve=True) as idp:
        user = AutoBrowser(ssl_context=idp.ssl_context())
        bearer = bearer_for(idp, user, ssl_ctx=client_trusting(trustme.CA()))
        with pytest.raises(TokenEndpointError) as failed:
            await asyncio.wait_for(bearer.receiver().fetch(), 20)
    assert failed.value.error == "tls_error" and user.prompts == 1
