"""The exceptions of fedbearer, defined once here and raised from both Python and Rust.

Every class derives from :class:`AuthError`. Messages never contain an authorization code, a PKCE
verifier, an access token or a refresh token: provider-supplied text is sanitized (secret-looking
runs replaced by ``[redacted]``) before it reaches them.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "AuthorizationDenied",
    "InvalidTokenResponse",
    "IssuerMismatch",
    "ListenerError",
    "LoginRequired",
    "LoginTimeout",
    "TokenEndpointError",
]


class AuthError(Exception):
    """Base class of every fedbearer error."""


class AuthorizationDenied(AuthError):
    """The identity provider redirected back with an error (RFC 6749 §4.1.2.1).

    ``error`` is the provider's code (``access_denied``, ``invalid_scope``...), ``description``
    and ``uri`` its optional ``error_description`` and ``error_uri``.
    """

    def __init__(self, error: str, description: str | None = None, uri: str | None = None) -> None:
        self.error = error
        self.description = description
        self.uri = uri
        message = f"authorization denied by the identity provider: {error}"
        if description:
            message += f": {description}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[str, str | None, str | None]]:
        return (type(self), (self.error, self.description, self.uri))


class IssuerMismatch(AuthError):
    """The redirect's ``iss`` is not the expected issuer (RFC 9207 §2.4): a mix-up attack or a
    misconfigured provider."""

    def __init__(self, expected: str, received: str) -> None:
        self.expected = expected
        self.received = received
        super().__init__(f"authorization response issuer mismatch: expected {expected!r}, got {received!r}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.expected, self.received))


class LoginTimeout(AuthError, TimeoutError):
    """Nobody completed the interactive login within ``timeout`` seconds. Also a
    :class:`TimeoutError`, so ``except TimeoutError`` written for the reference SDK still works."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout
        if timeout is None:
            message = "login was not completed in time"
        else:
            message = f"login was not completed within {timeout:g} s"
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[float | None]]:
        return (type(self), (self.timeout,))

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "login was not completed in time"


class TokenEndpointError(AuthError):
    """The token endpoint refused the request: an HTTP error status and/or an RFC 6749 §5.2 error
    body (``invalid_grant``, ``invalid_client``...). ``status`` is the HTTP status (0 when no
    response arrived: connection refused, reset, TLS failure or timeout)."""

    def __init__(
        self,
        status: int,
        error: str | None = None,
        description: str | None = None,
        uri: str | None = None,
        excerpt: str | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.description = description
        self.uri = uri
        self.excerpt = excerpt
        message = f"token endpoint answered HTTP {status}" if status else "token endpoint unreachable"
        if error:
            message += f": {error}"
        if description:
            message += f": {description}"
        if excerpt and not error:
            message += f" ({excerpt})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[int, str | None, str | None, str | None, str | None]]:
        return (type(self), (self.status, self.error, self.description, self.uri, self.excerpt))


class InvalidTokenResponse(AuthError):
    """The token endpoint answered 2xx with something unusable: not JSON, no ``access_token``, an
    impossible ``expires_in``. ``excerpt`` is short and redacted (key names only for JSON)."""

    def __init__(self, reason: str, excerpt: str = "") -> None:
        self.reason = reason
        self.excerpt = excerpt
        message = f"invalid token response: {reason}"
        if excerpt:
            message += f" ({excerpt})"
        super().__init__(message)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.reason, self.excerpt))


class ListenerError(AuthError):
    """The loopback callback listener cannot be bound, was closed, or was created in another
    process (before a ``fork()``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class LoginRequired(AuthError):
    """The token cannot be renewed without an interactive login, and this path never opens one
    (background renewal, :meth:`fedbearer.federation.Bearer.renew`)."""
