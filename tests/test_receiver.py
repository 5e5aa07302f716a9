"""``fedbearer.federation.Receiver``: the seed's receiver over real logins, and what it forwards to
``authorize`` (the wait limit above all: ``timeout=None`` is 300 s, never unbounded)."""

from __future__ import annotations

import asyncio
import io
import ssl
import time
from typing import Any

import pytest

from fedbearer import AuthorizationDenied, LoginTimeout, Token, TokenEndpointError
from fedbearer import Receiver as BaseReceiver
from fedbearer.federation import GetTokenResult, Receiver, auth
from fedbearer.federation.receiver import token_from_result
from fedbearer.testing import IdentityProvider, complete_login

CLIENT_ID = "receiver-client"
FEDERATION_ID = "federation-receiver"

pytestmark = pytest.mark.timeout(60)


async def link_from(writer: io.StringIO, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in writer.getvalue().splitlines():
            if "/oauth2/authorize?" in line:
                return line.strip()
        await asyncio.sleep(0.005)
    raise AssertionError(f"no authorization URL on the writer: {writer.getvalue()!r}")


def receiver_for(idp: IdentityProvider, **kwargs: Any) -> tuple[Receiver, io.StringIO]:
    writer = io.StringIO()
    ssl_ctx = idp.ssl_context() if idp.tls else None
    return Receiver(CLIENT_ID, idp.endpoint, FEDERATION_ID, writer, True, ssl_ctx, **kwargs), writer


async def fetch_as_user(
    receiver: Receiver, writer: io.StringIO, idp: IdentityProvider, **kwargs: Any
) -> Token:
    fetch = asyncio.ensure_future(receiver.fetch(**kwargs))
    try:
        url = await link_from(writer)
        writer.truncate(0)
        writer.seek(0)
        await complete_login(url, ssl_context=idp.ssl_context() if idp.tls else None)
        return await asyncio.wait_for(fetch, 10)
    finally:
        fetch.cancel()


# -- real logins -------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["http", "tls", "ipv6"])
async def test_fetch_returns_a_token_and_records_latest(make_identity_provider: Any, kind: str) -> None:
    idp = make_identity_provider(
        tls=kind == "tls", host="::1" if kind == "ipv6" else "127.0.0.1", token_ttl=1800
    )
    receiver, writer = receiver_for(idp)
    assert isinstance(receiver, BaseReceiver)
    assert receiver.latest is None
    before = time.time()
    token = await fetch_as_user(receiver, writer, idp)
    after = time.time()
    assert isinstance(token, Token)
    assert token.token in idp.issued_tokens
    assert receiver.latest is token
    assert token.expiration is not None
    # expires_in counted from the start of the login (the reference does the same): errs early.
    assert before + 1800 <= token.expiration.timestamp() <= after + 1800
    assert token.token not in repr(token) and token.token not in str(token)
    assert token.token not in repr(receiver)

    second = await fetch_as_user(receiver, writer, idp)
    assert second.token != token.token
    assert receiver.latest is second


@pytest.mark.asyncio
async def test_failed_fetch_keeps_the_previous_latest(identity_provider: IdentityProvider) -> None:
    receiver, writer = receiver_for(identity_provider)
    token = await fetch_as_user(receiver, writer, identity_provider)
    fetch = asyncio.ensure_future(receiver.fetch(timeout=10))
    try:
        await complete_login(await link_from(writer), approve=False)
        with pytest.raises(AuthorizationDenied):
            await asyncio.wait_for(fetch, 5)
    finally:
        fetch.cancel()
    assert receiver.latest is token
    assert receiver.can_retry(AuthorizationDenied("access_denied")) is True


@pytest.mark.asyncio
async def test_fetch_with_a_short_timeout_raises_login_timeout(identity_provider: IdentityProvider) -> None:
    receiver, _ = receiver_for(identity_provider)
    started = time.monotonic()
    with pytest.raises(LoginTimeout):
        await receiver.fetch(timeout=0.2)
    assert time.monotonic() - started < 3
    assert receiver.latest is None


@pytest.mark.asyncio
async def test_ssl_ctx_is_used_for_the_token_request(tls_identity_provider: IdentityProvider) -> None:
    idp = tls_identity_provider
    writer = io.StringIO()
    untrusting = ssl.create_default_context()  # system CAs only
    receiver = Receiver(CLIENT_ID, idp.endpoint, FEDERATION_ID, writer, True, untrusting)
    with pytest.raises(TokenEndpointError) as failed:
        await fetch_as_user(receiver, writer, idp)
    assert failed.value.error == "tls_error"


# -- what _fetch forwards ----------------------------------------------------------------------------
@pytest.fixture
def authorize_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def fake_authorize(*args: Any, **kwargs: Any) -> GetTokenResult:
        names = ["client_id", "federation_endpoint", "federation_id", "writer", "no_browser_open"]
        calls.append({**dict(zip(names, args, strict=False)), **kwargs})
        return GetTokenResult(access_token="fake-token", expires_in=60)

    monkeypatch.setattr(auth, "authorize", fake_authorize)
    return calls


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("receiver_kwargs", "fetch_timeout", "expected"),
    [
        ({}, None, 300.0),
        ({}, 7, 7),
        ({"login_timeout": 42.0}, None, 42.0),
        ({"login_timeout": 42.0}, 3, 3),
    ],
)
async def test_timeout_none_means_the_default_login_timeout(
    authorize_calls: list[dict[str, Any]],
    receiver_kwargs: dict[str, Any],
    fetch_timeout: Any,
    expected: float,
) -> None:
    receiver = Receiver(CLIENT_ID, "auth.example.com", FEDERATION_ID, **receiver_kwargs)
    await receiver.fetch(timeout=fetch_timeout)
    assert authorize_calls[-1]["timeout"] == expected
    await receiver._fetch()
    assert authorize_calls[-1]["timeout"] == receiver_kwargs.get("login_timeout", 300.0)


@pytest.mark.asyncio
async def test_fetch_forwards_the_seed_arguments_and_the_extras(
    authorize_calls: list[dict[str, Any]],
) -> None:
    writer, paste = io.StringIO(), io.StringIO()
    context = ssl.create_default_context()
    receiver = Receiver(
        CLIENT_ID,
        "auth.example.com",
        FEDERATION_ID,
        writer=writer,
        no_browser_open=True,
        ssl_ctx=context,
        expected_issuer="https://auth.example.com",
        paste_input=paste,
        http_timeout=4.0,
    )
    token = await receiver.fetch(options={"unused": "option"})
    (call,) = authorize_calls
    assert call == {
        "client_id": CLIENT_ID,
        "federation_endpoint": "auth.example.com",
        "federation_id": FEDERATION_ID,
        "writer": writer,
        "no_browser_open": True,
        "timeout": 300.0,
        "ssl_ctx": context,
        "paste_input": paste,
        "expected_issuer": "https://auth.example.com",
        "http_timeout": 4.0,
        "observer": None,
    }
    assert token.token == "fake-token"
    assert receiver.latest is token


def test_token_without_expires_in_has_no_expiration() -> None:
    token = token_from_result(GetTokenResult(access_token="abc"), time.time())
    assert token.expiration is None
    assert not token.is_expired()
    started = 1_700_000_000.0
    token = token_from_result(GetTokenResult(access_token="abc", expires_in=90), started)
    assert token.expiration is not None and token.expiration.timestamp() == started + 90
    assert token.expiration.tzinfo is not None


def test_can_retry_is_always_true() -> None:
    receiver = Receiver(CLIENT_ID, "auth.example.com", FEDERATION_ID)
    for err in (
        LoginTimeout(1),
        AuthorizationDenied("access_denied"),
        TokenEndpointError(500),
        RuntimeError(),
    ):
        assert receiver.can_retry(err) is True
        assert receiver.can_retry(err, {"k": "v"}) is True
