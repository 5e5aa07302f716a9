"""The interactive authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636, RFC 8252).

:func:`authorize` is the drop-in for ``nebius.aio.token.federation_bearer.auth.authorize``: it
builds the authorization URL, shows it (writer, log, browser), waits on the shared loopback
listener for the redirect that carries its ``state``, and exchanges the code at the token
endpoint. :func:`refresh` renews a token with a refresh token, without the browser.
"""

from __future__ import annotations

import functools

from fedbearer._core import authorization_url, new_login_secrets

# Importing this module must stay cheap (a login is often the first thing a CLI does, and the
# import is on its critical path): asyncio, ssl, logging, urllib and aiohttp are imported inside
# the functions that need them. `typing` itself is not imported at run time either.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import logging
    import ssl
    from collections.abc import Callable
    from typing import TextIO

    from fedbearer._core import Authorization, PendingFlow, TokenResponse


def _log() -> logging.Logger:
    import logging

    return logging.getLogger(__name__)


__all__ = [
    "AUTH_ENDPOINT",
    "DEFAULT_LOGIN_TIMEOUT",
    "TOKEN_ENDPOINT",
    "GetTokenResult",
    "authorize",
    "build_authorization_url",
    "exchange_code",
    "https_url",
    "refresh",
]

DEFAULT_HTTP_TIMEOUT: float = 30.0
"""Seconds a token request may take."""
DEFAULT_LOGIN_TIMEOUT: float = 300.0
"""Seconds a login waits for the user when no timeout is given (never unbounded)."""
AUTH_ENDPOINT = "/oauth2/authorize"
TOKEN_ENDPOINT = "/oauth2/token"  # noqa: S105 -- a path, not a secret

NO_BROWSER_MESSAGE = "To complete the authentication process, open this link in your browser:"
BROWSER_MESSAGE = "Switch to your browser to complete login. If it didn't open automatically, use:"
BROWSER_FAILED_MESSAGE = "Could not open a browser automatically; open the link above to continue."


class GetTokenResult:
    """What a login or a refresh returns (the reference's ``GetTokenResult``, plus the optional
    fields providers send). Immutable; ``repr`` hides every token."""

    __slots__ = ("access_token", "expires_in", "id_token", "refresh_token", "scope", "token_type")
    access_token: str
    expires_in: int | None
    refresh_token: str | None
    id_token: str | None
    scope: str | None
    token_type: str | None

    def __init__(
        self,
        access_token: str,
        expires_in: int | None = None,
        refresh_token: str | None = None,
        id_token: str | None = None,
        scope: str | None = None,
        token_type: str | None = None,
    ) -> None:
        setter = object.__setattr__
        setter(self, "access_token", access_token)
        setter(self, "expires_in", expires_in)
        setter(self, "refresh_token", refresh_token)
        setter(self, "id_token", id_token)
        setter(self, "scope", scope)
        setter(self, "token_type", token_type)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"GetTokenResult is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"GetTokenResult is immutable (cannot delete {name!r})")

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"GetTokenResult(access_token=<redacted>, expires_in={self.expires_in!r}, "
            f"refresh_token={'<redacted>' if self.refresh_token else None}, "
            f"id_token={'<redacted>' if self.id_token else None}, scope={self.scope!r}, "
            f"token_type={self.token_type!r})"
        )

    @classmethod
    def from_response(cls, response: TokenResponse) -> GetTokenResult:
        return cls(
            access_token=response.access_token,
            expires_in=response.expires_in,
            refresh_token=response.refresh_token,
            id_token=response.id_token,
            scope=response.scope,
            token_type=response.token_type,
        )


def _is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)
def https_url(raw_url: str) -> str:
    """The endpoint's origin: ``https://`` is added when no scheme is given; plain ``http://`` is
    refused except for loopback hosts (local testing). Any path is dropped, as the reference's
    ``urljoin`` does. Raises ValueError for anything else."""
    from urllib.parse import urlsplit

    raw = raw_url.strip()
    if not raw:
        raise ValueError("the federation endpoint is empty")
    if "://" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"the federation endpoint {raw_url!r} has no host")
    if scheme == "http" and not _is_loopback_host(host):
        raise ValueError(
            f"the federation endpoint {raw_url!r} uses plain http; only https is allowed "
            "(http is accepted for loopback hosts, for local testing)"
        )
    if scheme not in ("http", "https"):
        raise ValueError(f"the federation endpoint {raw_url!r} must be an https URL")
    return f"{scheme}://{parts.netloc}"


def build_authorization_url(
    endpoint: str,
    client_id: str,
    state: str,
    redirect_uri: str,
    code_challenge: str,
    federation_id: str,
) -> str:
    """The authorization request URL, with the reference's parameters in the reference's order
    (built in Rust, encoded byte for byte like ``urllib.parse.urlencode``)."""
    return authorization_url(
        https_url(endpoint), client_id, state, redirect_uri, code_challenge, federation_id
    )


def _write(writer: TextIO | None, message: str) -> None:
    if writer is None:
        return
    try:
        print(message, file=writer)
        writer.flush()
    except Exception as exc:  # a closed or broken writer must not end the login
        _log().warning("could not write the login instructions: %s", type(exc).__name__)


def _tell(observer: Callable[[str], object] | None, event: str) -> None:
    """Report a flow event (``browser_failed``, ``callback_received``); never let it break a login."""
    if observer is None:
        return
    try:
        observer(event)
    except Exception:
        _log().warning("login observer raised on %s; ignored", event, exc_info=True)


def _show(
    url: str,
    writer: TextIO | None,
    no_browser_open: bool,
    observer: Callable[[str], object] | None = None,
) -> asyncio.Future[bool] | None:
    """Log and write the URL; start opening the browser (in a worker thread, not awaited)."""
    import asyncio
    import logging

    from fedbearer.federation.browser import open_browser

    log = _log()
    log.info("Waiting for the login to be completed in the browser: %s", url)
    if no_browser_open:
        _write(writer, f"{NO_BROWSER_MESSAGE}\n{url}")
        return None
    _write(writer, f"{BROWSER_MESSAGE}\n{url}")
    loop = asyncio.get_running_loop()
    opened = loop.run_in_executor(None, open_browser, url)

    def done(fut: asyncio.Future[bool]) -> None:
        if fut.cancelled() or fut.exception() is not None or not fut.result():
            # With a writer the user is told there; the log need not shout it a second time.
            log.log(
                logging.INFO if writer is not None else logging.WARNING,
                "could not open a browser; the link has to be opened by hand",
            )
            _write(writer, BROWSER_FAILED_MESSAGE)
            _tell(observer, "browser_failed")

    opened.add_done_callback(done)
    return opened


async def _stop_paste_reader(paster: asyncio.Task[None]) -> None:
    import asyncio

    if not paster.done():
        paster.cancel()
        await asyncio.wait({paster})  # raises only if we are cancelled ourselves
    if not paster.cancelled() and paster.exception() is not None:
        # A broken input stream only ends remote mode; the listener was waiting all along.
        _log().debug("reading pasted addresses failed: %s", type(paster.exception()).__name__)


async def exchange_code(
    token_url: str,
    client_id: str,
    code: str,
    redirect_uri: str,
    verifier: str,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
) -> GetTokenResult:
    """Exchange an authorization code (RFC 6749 §4.1.3) with its PKCE verifier (RFC 7636 §4.5)."""
    from fedbearer.federation._http import post_token_request

    response = await post_token_request(
        token_url,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
        ssl_ctx=ssl_ctx,
        timeout=http_timeout,
    )
    return GetTokenResult.from_response(response)


async def refresh(
    client_id: str,
    federation_endpoint: str,
    refresh_token: str,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
) -> GetTokenResult:
    """Renew with a refresh token (RFC 6749 §6), no browser. Raises TokenEndpointError
    (``invalid_grant`` when the refresh token was revoked, expired or already rotated)."""
    from fedbearer.federation._http import post_token_request

    response = await post_token_request(
        f"{https_url(federation_endpoint)}{TOKEN_ENDPOINT}",
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id},
        ssl_ctx=ssl_ctx,
        timeout=http_timeout,
    )
    return GetTokenResult.from_response(response)


async def authorize(
    client_id: str,
    federation_endpoint: str,
    federation_id: str,
    writer: TextIO | None = None,
    no_browser_open: bool = False,
    timeout: float | None = DEFAULT_LOGIN_TIMEOUT,
    ssl_ctx: ssl.SSLContext | None = None,
    *,
    paste_input: TextIO | None = None,
    expected_issuer: str | None = None,
    http_timeout: float = DEFAULT_HTTP_TIMEOUT,
    observer: Callable[[str], object] | None = None,
) -> GetTokenResult:
    """Run the interactive login and return the token endpoint's answer.

    ``timeout`` bounds the wait for the user (``None`` means :data:`DEFAULT_LOGIN_TIMEOUT`; the
    wait is never unbounded). With ``paste_input`` (remote mode) the user may also paste the final
    redirect URL there; whichever arrives first completes the login. Raises LoginTimeout,
    AuthorizationDenied, IssuerMismatch, TokenEndpointError, InvalidTokenResponse, ListenerError
    (all :class:`~fedbearer.AuthError`), or ValueError for a bad endpoint.
    """
    login = _begin(
        client_id,
        federation_endpoint,
        federation_id,
        writer,
        no_browser_open,
        timeout,
        paste_input=paste_input,
        expected_issuer=expected_issuer,
        observer=observer,
    )
    try:
        authorization = await login.waiter
    finally:
        login.close()
        if login.paster is not None:
            await _stop_paste_reader(login.paster)
    return await _finish(login, authorization, client_id, ssl_ctx, http_timeout, observer)


class _PendingLogin:
    """A login between "link shown" and "code received": only what the code exchange needs.
    A service may hold thousands of these while users take their time, so it stays small."""

    __slots__ = ("endpoint", "flow", "paster", "verifier", "waiter")

    def __init__(
        self,
        endpoint: str,
        flow: PendingFlow,
        waiter: asyncio.Future[Authorization],
        verifier: str,
        paster: asyncio.Task[None] | None,
    ) -> None:
        self.endpoint = endpoint
        self.flow = flow
        self.waiter = waiter
        self.verifier = verifier
        self.paster = paster

    def close(self) -> None:
        """Deregister (a no-op once the redirect arrived)."""
        if not self.waiter.done():
            self.waiter.cancel()
        self.flow.cancel()

    def __repr__(self) -> str:
        return f"_PendingLogin(endpoint={self.endpoint!r}, redirect_uri={self.flow.redirect_uri!r})"


def _begin(
    client_id: str,
    federation_endpoint: str,
    federation_id: str,
    writer: TextIO | None,
    no_browser_open: bool,
    timeout: float | None,
    *,
    paste_input: TextIO | None = None,
    expected_issuer: str | None = None,
    observer: Callable[[str], object] | None = None,
) -> _PendingLogin:
    """Register the flow, show the link (writer, log, browser) and start waiting; synchronous,
    so that a pending login holds no coroutine frame of its own."""
    import asyncio

    from fedbearer.federation import _listener

    endpoint = https_url(federation_endpoint)
    wait_limit = DEFAULT_LOGIN_TIMEOUT if timeout is None else float(timeout)
    pkce, state = new_login_secrets()
    flow = _listener.register_flow(state, expected_issuer)
    try:
        redirect_uri = flow.redirect_uri
        url = build_authorization_url(endpoint, client_id, state, redirect_uri, pkce.challenge, federation_id)
        # A Future already (ensure_future returns it as is); anything awaitable works.
        # Deregistration on cancel is `_PendingLogin.close()`'s job (called in a `finally`).
        waiter = asyncio.ensure_future(flow.wait(wait_limit, deregister_on_cancel=False))
    except BaseException:
        flow.cancel()
        raise
    paster = None
    try:
        _show(url, writer, no_browser_open, observer)
        if paste_input is not None:
            from fedbearer.federation._paste import PROMPT, read_pasted_urls

            _write(writer, PROMPT)
            paster = asyncio.ensure_future(
                read_pasted_urls(paste_input, _listener.deliver_pasted_url, writer)
            )
    except BaseException:
        waiter.cancel()
        flow.cancel()
        raise
    return _PendingLogin(endpoint, flow, waiter, pkce.verifier, paster)


async def _finish(
    login: _PendingLogin,
    authorization: Authorization,
    client_id: str,
    ssl_ctx: ssl.SSLContext | None,
    http_timeout: float,
    observer: Callable[[str], object] | None = None,
) -> GetTokenResult:
    """Exchange the code the redirect delivered."""
    _tell(observer, "callback_received")
    log = _log()
    log.debug("authorization code received; exchanging it")
    result = await exchange_code(
        f"{login.endpoint}{TOKEN_ENDPOINT}",
        client_id,
        authorization.code,
        login.flow.redirect_uri,
        login.verifier,
        ssl_ctx,
        http_timeout=http_timeout,
    )
    log.info("login completed; the token expires in %s s", result.expires_in)
    return result
