"""``fedbearer.federation.auth.authorize``: endpoints, writer, browser, remote paste mode, the wait
limit, proxies, secrets in logs and messages, and the token endpoint's faults.

Logins run against the embedded provider over real loopback sockets; the user is the headless
agent (``complete_login``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fedbearer import (
    AuthError,
    AuthorizationDenied,
    InvalidTokenResponse,
    IssuerMismatch,
    LoginTimeout,
    TokenEndpointError,
)
from fedbearer.federation import _http, _listener, auth
from fedbearer.federation._paste import PROMPT
from fedbearer.testing import IdentityProvider, complete_login

CLIENT_ID = "auth-client"
FEDERATION_ID = "federation-auth"
CANARIES = {"token_prefix": "CANARY-AT-", "code_prefix": "CANARY-CODE-", "refresh_prefix": "CANARY-RT-"}
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")

pytestmark = pytest.mark.timeout(60)


# -- helpers -----------------------------------------------------------------------------------------
async def link_from(writer: io.StringIO, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in writer.getvalue().splitlines():
            if "/oauth2/authorize?" in line:
                return line.strip()
        await asyncio.sleep(0.005)
    raise AssertionError(f"no authorization URL on the writer: {writer.getvalue()!r}")


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def start(idp: IdentityProvider, writer: Any = None, **kwargs: Any) -> asyncio.Task[auth.GetTokenResult]:
    kwargs.setdefault("no_browser_open", True)
    if idp.tls:
        kwargs.setdefault("ssl_ctx", idp.ssl_context())
    return asyncio.ensure_future(
        auth.authorize(
            CLIENT_ID, idp.endpoint, FEDERATION_ID, writer, timeout=kwargs.pop("timeout", 20), **kwargs
        )
    )


async def login(
    idp: IdentityProvider, *, approve: bool = True, **kwargs: Any
) -> tuple[auth.GetTokenResult, str]:
    writer = kwargs.pop("writer", None) or io.StringIO()
    task = start(idp, writer, **kwargs)
    try:
        url = await link_from(writer)
        ssl_ctx = idp.ssl_context() if idp.tls else None
        await complete_login(url, username="tester", approve=approve, ssl_context=ssl_ctx)
        return await asyncio.wait_for(task, 10), writer.getvalue()
    finally:
        task.cancel()


async def redirect_location(url: str) -> str:
    """The provider's redirect (auto_approve/auto_deny), not followed: what the browser's address
    bar would show on a machine without the listener."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url, allow_redirects=False) as resp:
        assert resp.status in (302, 303), resp.status
        return resp.headers["Location"]


def port_refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


async def wait_port_refused(port: int, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_refused(port):
        assert time.monotonic() < deadline, f"port {port} is still open"
        await asyncio.sleep(0.02)


@pytest.fixture
def secrets_seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every (Pkce, state) pair authorize() draws, to look for the verifier afterwards."""
    seen: list[Any] = []
    real = auth.new_login_secrets

    def recording() -> Any:
        pair = real()
        seen.append(pair)
        return pair

    monkeypatch.setattr(auth, "new_login_secrets", recording)
    return seen


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


# -- endpoint normalisation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("auth.example.com", "https://auth.example.com"),
        ("auth.example.com/some/path", "https://auth.example.com"),
        ("auth.example.com:8443", "https://auth.example.com:8443"),
        ("https://auth.example.com", "https://auth.example.com"),
        ("https://auth.example.com/base/?x=1", "https://auth.example.com"),
        ("  auth.example.com  ", "https://auth.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/x", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://127.5.6.7", "http://127.5.6.7"),
    ],
)
def test_https_url_normalises_endpoints(given: str, expected: str) -> None:
    assert auth.https_url(given) == expected
    url = auth.build_authorization_url(given, "c", "s", "http://127.0.0.1:1", "x" * 43, "f")
    assert url.startswith(f"{expected}/oauth2/authorize?response_type=code&")


@pytest.mark.parametrize(
    "given",
    [
        "http://auth.example.com",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example:80",
        "http://10.0.0.1",
        "ftp://auth.example.com",
        "",
        "   ",
        "https://",
    ],
)
def test_https_url_refuses_plain_http_and_other_schemes(given: str) -> None:
    with pytest.raises(ValueError):
        auth.https_url(given)


@pytest.mark.asyncio
async def test_authorize_refuses_a_non_loopback_http_endpoint_before_listening() -> None:
    writer = io.StringIO()
    with pytest.raises(ValueError, match="plain http"):
        await auth.authorize(CLIENT_ID, "http://auth.example.com", FEDERATION_ID, writer, True, timeout=1)
    assert writer.getvalue() == ""
    assert _listener.current_listener() is None


# -- writer, log and browser -------------------------------------------------------------------------
class FlushRecorder(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())
        super().flush()


@pytest.mark.asyncio
async def test_writer_gets_the_message_and_the_url_flushed(
    identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fedbearer")
    writer = FlushRecorder()
    result, text = await login(identity_provider, writer=writer)
    assert result.access_token
    lines = text.splitlines()
    assert lines[0] == auth.NO_BROWSER_MESSAGE
    url = lines[1]
    assert url.startswith(f"{identity_provider.endpoint}/oauth2/authorize?")
    # Flushed once the URL was written, so a pipe or a block-buffered stdout shows it at once.
    assert any(url in flushed for flushed in writer.flushed)
    # The URL is in the log at INFO too.
    assert any(url in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


@pytest.mark.asyncio
async def test_broken_writer_does_not_end_the_login(
    identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(io.StringIO):
        def write(self, s: str) -> int:
            raise OSError("the terminal went away")

    caplog.set_level(logging.INFO, logger="fedbearer")
    task = start(identity_provider, Broken())
    try:
        url = ""
        while not url:
            await asyncio.sleep(0.01)
            url = next((w for r in caplog.records for w in r.getMessage().split() if "/oauth2/" in w), "")
        await complete_login(url)
        assert (await asyncio.wait_for(task, 10)).access_token
    finally:
        task.cancel()


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", ["false", "raises"])
async def test_browser_that_cannot_be_opened_is_reported_on_the_writer(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    import webbrowser

    from fedbearer.federation import browser

    opened: list[str] = []

    def fake_open(url: str, new: int = 0, autoraise: bool = True) -> bool:
        opened.append(url)
        if outcome == "raises":
            raise webbrowser.Error("could not locate runnable browser")
        return False

    monkeypatch.setattr(webbrowser, "open", fake_open)
    monkeypatch.setattr(browser, "is_wsl", lambda: False)
    writer = io.StringIO()
    task = start(identity_provider, writer, no_browser_open=False)
    try:
        url = await link_from(writer)
        deadline = time.monotonic() + 5
        while auth.BROWSER_FAILED_MESSAGE not in writer.getvalue():
            assert time.monotonic() < deadline, writer.getvalue()
            await asyncio.sleep(0.01)
        assert not task.done()  # it goes on waiting for the link to be used by hand
        await complete_login(url)
        assert (await asyncio.wait_for(task, 10)).access_token
    finally:
        task.cancel()
    assert opened == [url]
    assert writer.getvalue().splitlines() == [auth.BROWSER_MESSAGE, url, auth.BROWSER_FAILED_MESSAGE]


@pytest.mark.asyncio
async def test_wsl_opens_through_cmd_exe_with_escaped_ampersands(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import subprocess

    from fedbearer.federation import browser

    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(browser, "is_wsl", lambda: True)
    monkeypatch.setattr(shutil, "which", lambda name: "/mnt/c/Windows/cmd.exe" if name == "cmd.exe" else None)
    monkeypatch.setattr(subprocess, "run", fake_run)
    assert browser.open_browser("https://a.example/x?a=1&b=2") is True
    assert calls == [["cmd.exe", "/c", "start", "https://a.example/x?a=1^&b=2"]]


# -- remote paste mode -------------------------------------------------------------------------------
@pytest.fixture
def paste_pipe() -> Any:
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "r")
    writer = os.fdopen(write_fd, "w")
    yield reader, writer
    for f in (reader, writer):
        with contextlib.suppress(OSError):
            f.close()


@pytest.mark.asyncio
async def test_pasted_redirect_url_completes_the_login_after_a_wrong_one(
    make_identity_provider: Callable[..., IdentityProvider], paste_pipe: Any
) -> None:
    idp = make_identity_provider(auto_approve=True)
    paste_in, keyboard = paste_pipe
    writer = io.StringIO()
    task = start(idp, writer, paste_input=paste_in)
    try:
        url = await link_from(writer)
        assert PROMPT in writer.getvalue()
        location = await redirect_location(url)  # the address bar of a browser elsewhere
        assert query_of(location)["state"] == query_of(url)["state"]
        port = urlsplit(location).port
        keyboard.write(f"http://127.0.0.1:{port}/?code=forged&state=not-the-state\n")
        keyboard.write("this is not a URL\n\n")
        keyboard.flush()
        await asyncio.sleep(0.1)
        assert not task.done()
        keyboard.write(f"  {location}  \n")
        keyboard.flush()
        result = await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    assert result.access_token
    assert writer.getvalue().count("does not complete this login") == 2
    assert idp.stats.tokens_issued == 1
    # The reader is gone from the event loop once the login ended.
    assert asyncio.get_running_loop().remove_reader(paste_in.fileno()) is False


@pytest.mark.asyncio
async def test_pasted_error_redirect_ends_the_login_with_a_denial(
    make_identity_provider: Callable[..., IdentityProvider], paste_pipe: Any
) -> None:
    idp = make_identity_provider(auto_deny=True)
    paste_in, keyboard = paste_pipe
    writer = io.StringIO()
    task = start(idp, writer, paste_input=paste_in)
    try:
        location = await redirect_location(await link_from(writer))
        keyboard.write(location + "\n")
        keyboard.flush()
        with pytest.raises(AuthorizationDenied) as denied:
            await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
    assert denied.value.error == "access_denied"


@pytest.mark.asyncio
async def test_paste_input_at_end_of_file_leaves_the_listener_waiting(
    identity_provider: IdentityProvider, paste_pipe: Any
) -> None:
    paste_in, keyboard = paste_pipe
    keyboard.close()
    writer = io.StringIO()
    task = start(identity_provider, writer, paste_input=paste_in)
    try:
        url = await link_from(writer)
        await asyncio.sleep(0.05)
        assert not task.done()
        await complete_login(url)
        assert (await asyncio.wait_for(task, 10)).access_token
    finally:
        task.cancel()


@pytest.mark.asyncio
async def test_paste_input_without_a_file_descriptor(identity_provider: IdentityProvider) -> None:
    """A plain text stream (no fileno) is read in a worker thread instead."""

    class Lines(io.StringIO):
        def fileno(self) -> int:
            raise io.UnsupportedOperation("no fileno")

    writer = io.StringIO()
    task = start(identity_provider, writer, paste_input=Lines("garbage\n"))
    try:
        url = await link_from(writer)
        await complete_login(url)
        assert (await asyncio.wait_for(task, 10)).access_token
    finally:
        task.cancel()
    assert "does not complete this login" in writer.getvalue()


@pytest.mark.asyncio
async def test_broken_paste_input_only_ends_remote_mode(
    identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(io.StringIO):
        def fileno(self) -> int:
            raise io.UnsupportedOperation("no fileno")

        def readline(self, size: int | None = -1) -> str:
            raise OSError("input/output error")

    writer = io.StringIO()
    task = start(identity_provider, writer, paste_input=Broken())
    try:
        url = await link_from(writer)
        await asyncio.sleep(0.05)
        assert not task.done()
        await complete_login(url)
        assert (await asyncio.wait_for(task, 10)).access_token
    finally:
        task.cancel()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


# -- the wait limit ----------------------------------------------------------------------------------
class FakeFlow:
    redirect_uri = "http://127.0.0.1:9"

    def __init__(self) -> None:
        self.limits: list[float | None] = []
        self.cancelled = False

    async def wait(self, limit: float | None = None, **_: Any) -> Any:
        self.limits.append(limit)
        raise LoginTimeout(limit)

    def cancel(self) -> None:
        self.cancelled = True


@pytest.mark.asyncio
@pytest.mark.parametrize(("given", "expected"), [(None, 300.0), ("omitted", 300.0), (12, 12.0), (0.5, 0.5)])
async def test_wait_limit_defaults_to_300_seconds(
    monkeypatch: pytest.MonkeyPatch, given: Any, expected: float
) -> None:
    flow = FakeFlow()
    monkeypatch.setattr(_listener, "register_flow", lambda state, issuer=None: flow)
    kwargs = {} if given == "omitted" else {"timeout": given}
    with pytest.raises(LoginTimeout) as timed_out:
        await auth.authorize(CLIENT_ID, "auth.example.com", FEDERATION_ID, io.StringIO(), True, **kwargs)
    assert flow.limits == [expected]
    assert timed_out.value.timeout == expected
    assert flow.cancelled
    assert auth.DEFAULT_LOGIN_TIMEOUT == 300


@pytest.mark.asyncio
async def test_real_timeout_raises_login_timeout_and_frees_the_port(
    identity_provider: IdentityProvider,
) -> None:
    writer = io.StringIO()
    started = time.monotonic()
    task = start(identity_provider, writer, timeout=0.3)
    port = urlsplit(query_of(await link_from(writer))["redirect_uri"]).port
    assert port is not None
    with pytest.raises(LoginTimeout) as timed_out:
        await task
    assert 0.25 < time.monotonic() - started < 3
    assert isinstance(timed_out.value, TimeoutError)
    assert "0.3" in str(timed_out.value)
    await wait_port_refused(port)


@pytest.mark.asyncio
async def test_cancelling_a_login_frees_the_port(identity_provider: IdentityProvider) -> None:
    writer = io.StringIO()
    task = start(identity_provider, writer)
    port = urlsplit(query_of(await link_from(writer))["redirect_uri"]).port
    assert port is not None and not port_refused(port)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_port_refused(port)
    assert _listener.current_listener() is None


@pytest.mark.asyncio
async def test_cancelling_right_after_start_frees_the_port() -> None:
    """The reference can leak a listening socket here; the shared listener must close."""
    for _ in range(20):
        task = asyncio.ensure_future(
            auth.authorize(CLIENT_ID, "auth.example.com", FEDERATION_ID, io.StringIO(), True, timeout=5)
        )
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    deadline = time.monotonic() + 2
    while _listener.current_listener() is not None:
        assert time.monotonic() < deadline, "a listener stayed open"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_concurrent_logins_share_one_listener(identity_provider: IdentityProvider) -> None:
    writers = [io.StringIO() for _ in range(3)]
    tasks = [start(identity_provider, w) for w in writers]
    try:
        urls = [await link_from(w) for w in writers]
        redirect_uris = {query_of(u)["redirect_uri"] for u in urls}
        assert len(redirect_uris) == 1
        assert len({query_of(u)["state"] for u in urls}) == 3
        # Completed out of order; each gets its own token.
        for url in reversed(urls):
            assert await complete_login(url) == 200
        results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    finally:
        for t in tasks:
            t.cancel()
    assert len({r.access_token for r in results}) == 3
    port = urlsplit(redirect_uris.pop()).port
    assert port is not None
    await wait_port_refused(port)


# -- the result and the token exchange ---------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.identity_provider(expires_in_as_string=True, token_ttl=900, **CANARIES)
async def test_result_carries_every_field_and_hides_them_in_repr(identity_provider: IdentityProvider) -> None:
    result, _ = await login(identity_provider)
    assert result.expires_in == 900  # sent as "900"
    assert result.access_token.startswith("CANARY-AT-")
    assert result.refresh_token is not None and result.refresh_token.startswith("CANARY-RT-")
    assert result.id_token and result.id_token.count(".") == 2
    assert result.scope == "openid"
    assert result.token_type is not None and result.token_type.lower() == "bearer"
    text = repr(result) + str(result)
    assert "CANARY" not in text and result.id_token not in text


@pytest.mark.asyncio
async def test_tls_provider_with_ssl_ctx(tls_identity_provider: IdentityProvider) -> None:
    result, text = await login(tls_identity_provider)
    assert result.access_token
    assert text.splitlines()[1].startswith("https://127.0.0.1:")


@pytest.mark.asyncio
async def test_tls_provider_without_ssl_ctx_is_not_trusted(tls_identity_provider: IdentityProvider) -> None:
    """ssl_ctx is what trusts the provider: the system CAs do not know the generated one."""
    with pytest.raises(TokenEndpointError) as failed:
        await login(tls_identity_provider, ssl_ctx=None)
    assert failed.value.status == 0
    assert failed.value.error == "tls_error"


@pytest.mark.asyncio
async def test_token_requests_reuse_one_connection_pool(identity_provider: IdentityProvider) -> None:
    await _http.close_sessions()
    for _ in range(3):
        await login(identity_provider)
    loop = asyncio.get_running_loop()
    assert len(_http._pools[loop]) == 1
    await _http.close_sessions()
    assert loop not in _http._pools


@pytest.mark.asyncio
@pytest.mark.identity_provider(send_iss=True)
async def test_issuer_is_checked_when_sent(identity_provider: IdentityProvider) -> None:
    result, _ = await login(identity_provider, expected_issuer=identity_provider.issuer)
    assert result.access_token
    with pytest.raises(IssuerMismatch) as mismatch:
        await login(identity_provider, expected_issuer="https://someone-else.example")
    assert mismatch.value.received == identity_provider.issuer
    assert identity_provider.stats.tokens_issued == 1  # the mixed-up code was never exchanged


@pytest.mark.asyncio
async def test_denial_is_a_typed_error(identity_provider: IdentityProvider) -> None:
    with pytest.raises(AuthorizationDenied) as denied:
        await login(identity_provider, approve=False)
    assert denied.value.error == "access_denied"
    assert identity_provider.stats.token_requests == 0


@pytest.mark.asyncio
async def test_unreachable_token_endpoint_is_a_typed_error(identity_provider: IdentityProvider) -> None:
    """The redirect arrives but the token endpoint is gone (connection refused)."""
    writer = io.StringIO()
    task = start(identity_provider, writer)
    try:
        url = await link_from(writer)
        identity_provider.stop()
        params = query_of(url)
        import urllib.request

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        target = f"{params['redirect_uri']}/?code=some-code&state={params['state']}"
        await asyncio.to_thread(lambda: opener.open(target, timeout=5).read())
        with pytest.raises(TokenEndpointError) as failed:
            await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
    assert failed.value.status == 0
    assert failed.value.error == "connection_error"


FAULTS = [
    ("500_html", TokenEndpointError, 500),
    ("503_html", TokenEndpointError, 503),
    ("truncated_json", InvalidTokenResponse, None),
    ("non_json_200", InvalidTokenResponse, None),
    ("error_body_200", TokenEndpointError, 200),
    ("reset", TokenEndpointError, 0),
    ("hang", TokenEndpointError, 0),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "error_type", "status"), FAULTS, ids=[f[0] for f in FAULTS])
@pytest.mark.identity_provider(**CANARIES)
async def test_token_endpoint_faults_are_typed_errors(
    identity_provider: IdentityProvider,
    secrets_seen: list[Any],
    caplog: pytest.LogCaptureFixture,
    fault: str,
    error_type: type[AuthError],
    status: int | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    identity_provider.set_fault(fault, times=1)
    started = time.monotonic()
    with pytest.raises(error_type) as failed:
        await login(identity_provider, http_timeout=0.5 if fault == "hang" else 30)
    assert isinstance(failed.value, AuthError)
    if status is not None:
        assert failed.value.status == status  # type: ignore[attr-defined]
    if fault == "hang":
        assert failed.value.error == "timeout"  # type: ignore[attr-defined]
        assert time.monotonic() - started < 5
    if fault == "reset":
        assert failed.value.error == "connection_error"  # type: ignore[attr-defined]
    assert len(str(failed.value)) < 600
    assert "<html" not in str(failed.value).lower()
    assert_no_secrets(failed.value, caplog, secrets_seen)
    assert identity_provider.stats.faults == 1


# -- secrets stay out of logs and messages -----------------------------------------------------------
def _exception_texts(exc: BaseException | None) -> list[str]:
    texts: list[str] = []
    while exc is not None:
        texts += [str(exc), repr(exc), *(repr(a) for a in exc.args), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__
    return texts


def assert_no_secrets(
    exc: BaseException | None,
    caplog: pytest.LogCaptureFixture,
    secrets_seen: list[Any],
    extra: tuple[str, ...] = (),
) -> None:
    needles = ["CANARY-", *extra]
    for pkce, _state in secrets_seen:
        needles.append(pkce.verifier)
    haystack = _exception_texts(exc)
    for record in caplog.records:
        haystack += [record.getMessage(), repr(record.args), repr(vars(record))]
        if record.exc_info:
            haystack += _exception_texts(record.exc_info[1])
    haystack.append(caplog.text)
    for needle in needles:
        for text in haystack:
            assert needle not in text, f"a secret ({needle[:12]}...) leaked: {text[:200]}"


@pytest.mark.asyncio
@pytest.mark.identity_provider(**CANARIES)
async def test_no_secret_in_debug_logs_or_messages(
    identity_provider: IdentityProvider, secrets_seen: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    result, writer_text = await login(identity_provider)
    assert result.access_token.startswith("CANARY-AT-") and result.refresh_token
    assert "CANARY-" not in writer_text
    assert caplog.records, "nothing was logged at DEBUG"

    # A refused refresh and a replayed code: the error messages carry no secret either.
    with pytest.raises(TokenEndpointError) as refused:
        await auth.refresh(CLIENT_ID, identity_provider.endpoint, "CANARY-RT-not-a-real-one")
    assert refused.value.error == "invalid_grant"
    assert_no_secrets(refused.value, caplog, secrets_seen, (result.access_token, result.refresh_token))

    ((pkce, _state),) = secrets_seen[-1:]
    with pytest.raises(TokenEndpointError) as unknown_code:
        await auth.exchange_code(
            identity_provider.token_endpoint,
            CLIENT_ID,
            "CANARY-CODE-forged",
            "http://127.0.0.1:1",
            pkce.verifier,
        )
    assert unknown_code.value.error == "invalid_grant"
    assert_no_secrets(unknown_code.value, caplog, secrets_seen, (result.access_token, result.refresh_token))


# -- proxies from the environment --------------------------------------------------------------------
class ConnectProxy:
    """A tiny HTTPS proxy on loopback that tunnels CONNECT requests and counts them."""

    def __init__(self) -> None:
        self.connects: list[str] = []
        self._server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> ConnectProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.connects.append(target)
            host, _, port = target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.close()


@pytest.mark.asyncio
async def test_https_proxy_and_no_proxy_are_honoured(
    tls_identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp = tls_identity_provider
    await _http.close_sessions()
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        result, _ = await login(idp)
        assert result.access_token
        assert proxy.connects == [f"127.0.0.1:{idp.port}"]  # the token request, and only it

        await _http.close_sessions()
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        result, _ = await login(idp)
        assert result.access_token
        assert proxy.connects == [f"127.0.0.1:{idp.port}"]  # bypassed
    await _http.close_sessions()


# -- reading the token response ----------------------------------------------------------------------
class RawTokenEndpoint:
    """A token endpoint on a raw socket, to control how the answer arrives."""

    def __init__(self, head: bytes, parts: list[bytes], pause: float = 0.03) -> None:
        self.head, self.parts, self.pause = head, parts, pause
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/oauth2/token"

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
            await reader.readexactly(length)
            writer.write(self.head)
            for i, part in enumerate(self.parts):
                if i:
                    await asyncio.sleep(self.pause)
                writer.write(part)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _token_body(size: int) -> bytes:
    return json.dumps({"access_token": "A" * size, "expires_in": 60, "token_type": "Bearer"}).encode()


async def _exchange(token_url: str) -> auth.GetTokenResult:
    return await auth.exchange_code(
        token_url, CLIENT_ID, "code", "http://127.0.0.1:1", "v" * 43, http_timeout=5
    )


@pytest.mark.asyncio
async def test_token_response_in_several_segments_is_read_whole() -> None:
    body = _token_body(5000)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    parts = [body[i : i + 700] for i in range(0, len(body), 700)]
    async with RawTokenEndpoint(head, parts) as token_url:
        result = await _exchange(token_url)
    assert result.access_token == "A" * 5000
    assert result.expires_in == 60


@pytest.mark.asyncio
async def test_chunked_token_response_is_read_whole() -> None:
    body = _token_body(3000)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    parts = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks] + [b"0\r\n\r\n"]
    async with RawTokenEndpoint(head, parts) as token_url:
        result = await _exchange(token_url)
    assert result.access_token == "A" * 3000


@pytest.mark.asyncio
async def test_oversized_token_response_is_refused_unread() -> None:
    size = _http.MAX_BODY_BYTES + 4096
    body = _token_body(size)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with RawTokenEndpoint(head, [body], pause=0) as token_url:
        with pytest.raises(InvalidTokenResponse) as refused:
            await _exchange(token_url)
    assert "larger" in str(refused.value)
    assert len(str(refused.value)) < 300
