"""``fedbearer.federation.Receiver``: the seed's interactive federation receiver."""

from __future__ import annotations

import ssl  # used by the annotations below, which typing.get_type_hints evaluates
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TextIO

from fedbearer.federation import auth
from fedbearer.federation.auth import DEFAULT_HTTP_TIMEOUT
from fedbearer.token import Receiver as ParentReceiver
from fedbearer.token import Token

__all__ = ["Receiver", "token_from_result"]

_AUTHORIZE = auth.authorize


def token_from_result(result: auth.GetTokenResult, started: float) -> Token:
    """A Token expiring ``expires_in`` seconds after ``started`` (taken before the request, so the
    expiry errs early, as the reference does)."""
    if result.expires_in is None:
        return Token(result.access_token, None)
    return Token(result.access_token, datetime.fromtimestamp(started + result.expires_in, tz=timezone.utc))


class Receiver(ParentReceiver):
    """Receiver that runs the federation interactive authorization.

    ``fetch`` runs :func:`fedbearer.federation.auth.authorize`: it shows the authorization URL
    (log at INFO, ``writer``, browser unless ``no_browser_open``), waits for the user on the
    shared loopback listener, exchanges the code with PKCE and returns a :class:`Token`. The wait
    is bounded: ``timeout=None`` means ``login_timeout`` (300 s by default).

    Keyword-only extras beyond the seed: ``login_timeout``, ``expected_issuer`` (RFC 9207),
    ``paste_input`` (remote mode: the user may paste the final redirect URL there) and
    ``http_timeout`` for the token request.
    """

    def __init__(
        self,
        client_id: str,
        federation_endpoint: str,
        federation_id: str,
        writer: TextIO | None = None,
        no_browser_open: bool = False,
        ssl_ctx: ssl.SSLContext | None = None,
        *,
        login_timeout: float = auth.DEFAULT_LOGIN_TIMEOUT,
        expected_issuer: str | None = None,
        paste_input: TextIO | None = None,
        http_timeout: float = DEFAULT_HTTP_TIMEOUT,
        metrics: object | None = None,
        provider: object | None = None,
        observer: Callable[[str], object] | None = None,
    ) -> None:
        """Create a federation interactive receiver. ``metrics`` and ``provider`` are accepted for
        compatibility with the reference SDK's signature and kept as ``_metrics``/``_provider``."""
        self._client_id = client_id
        self._federation_endpoint = federation_endpoint
        self._federation_id = federation_id
        self._writer = writer
        self._no_browser_open = no_browser_open
        self._ssl_ctx = ssl_ctx
        self._login_timeout = login_timeout
        self._expected_issuer = expected_issuer
        self._paste_input = paste_input
        self._http_timeout = http_timeout
        self._observer = observer
        self._metrics = metrics
        self._provider = provider
        self._latest: Token | None = None

    async def login(self, timeout: float | None = None) -> tuple[auth.GetTokenResult, float]:
        """Run the interactive login; return the full result (refresh token included) and the
        wall-clock time it started at."""
        started = time.time()
        result = await auth.authorize(
            self._client_id,
            self._federation_endpoint,
            self._federation_id,
            self._writer,
            self._no_browser_open,
            timeout=self._login_timeout if timeout is None else timeout,
            ssl_ctx=self._ssl_ctx,
            paste_input=self._paste_input,
            expected_issuer=self._expected_issuer,
            http_timeout=self._http_timeout,
            observer=self._observer,
        )
        return result, started

    async def _fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        """Execute the interactive authorization flow (:func:`auth.authorize`) and return a Token."""
        result, started = await self.login(timeout)
        return token_from_result(result, started)

    async def fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        """Fetch a token and record it as ``latest``: ``_fetch`` with the flow inlined.

        The same steps as :func:`~fedbearer.federation.auth.authorize`, in one coroutine frame
        instead of three: a service holding thousands of pending logins holds that much less.
        A subclass that overrides ``_fetch``, or code that replaces ``auth.authorize``, gets the
        documented path through them instead.
        """
        if type(self)._fetch is not Receiver._fetch or auth.authorize is not _AUTHORIZE:
            tok = await self._fetch(timeout, options)
            self._latest = tok
            return tok
        started = time.time()
        login = auth._begin(
            self._client_id,
            self._federation_endpoint,
            self._federation_id,
            self._writer,
            self._no_browser_open,
            self._login_timeout if timeout is None else timeout,
            paste_input=self._paste_input,
            expected_issuer=self._expected_issuer,
            observer=self._observer,
        )
        try:
            authorization = await login.waiter
        finally:
            login.close()
            if login.paster is not None:
                await auth._stop_paste_reader(login.paster)
        result = await auth._finish(
            login, authorization, self._client_id, self._ssl_ctx, self._http_timeout, self._observer
        )
        tok = token_from_result(result, started)
        self._latest = tok
        return tok

    def can_retry(self, err: Exception, options: dict[str, str] | None = None) -> bool:
        """Decide whether an authorization error should be retried: always True, as in the seed
        (a user may decline and try again); the Bearer's RetryPolicy bounds attempts."""
        return True

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(client_id={self._client_id!r}, "
            f"federation_endpoint={self._federation_endpoint!r}, federation_id={self._federation_id!r})"
        )
