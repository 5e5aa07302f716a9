"""Type stubs for the Rust extension ``fedbearer._core`` (checked with ``mypy.stubtest``)."""

from collections.abc import Awaitable
from typing import final

__all__ = [
    "Authorization",
    "CallbackListener",
    "PendingFlow",
    "Pkce",
    "TokenResponse",
    "_shutdown_notifier",
    "authorization_url",
    "new_login_secrets",
    "new_pkce",
    "new_state",
    "parse_token_response",
    "pkce_challenge",
    "query_of_pasted_url",
    "redact_text",
]

@final
class Pkce:
    """A PKCE verifier and its S256 challenge (RFC 7636). ``repr`` hides the verifier."""

    @property
    def verifier(self) -> str: ...
    @property
    def challenge(self) -> str: ...
    @property
    def method(self) -> str: ...

def new_pkce() -> Pkce:
    """A fresh PKCE pair: 32 bytes from the OS CSPRNG, base64url (43 characters), S256."""

def new_state() -> str:
    """A fresh URL-safe ``state`` with 192 bits of entropy."""

def pkce_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier``. Raises ValueError outside RFC 7636 §4.1."""

def new_login_secrets() -> tuple[Pkce, str]:
    """``(new_pkce(), new_state())`` in one call."""

@final
class TokenResponse:
    """A successful token endpoint response. ``repr`` hides every token."""

    @property
    def access_token(self) -> str: ...
    @property
    def expires_in(self) -> int | None: ...
    @property
    def token_type(self) -> str | None: ...
    @property
    def refresh_token(self) -> str | None: ...
    @property
    def id_token(self) -> str | None: ...
    @property
    def scope(self) -> str | None: ...

def parse_token_response(body: bytes, status: int = 200) -> TokenResponse:
    """Parse a token endpoint body. Raises TokenEndpointError for error statuses and RFC 6749
    §5.2 error bodies, InvalidTokenResponse for unusable 2xx bodies. Never panics."""

@final
class Authorization:
    """What a redirect delivered to one flow. ``repr`` hides the code."""

    @property
    def code(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def iss(self) -> str | None: ...

@final
class PendingFlow:
    """One registered flow of a :class:`CallbackListener`."""

    @property
    def state(self) -> str: ...
    @property
    def redirect_uri(self) -> str: ...
    @property
    def registered(self) -> bool: ...
    def wait(
        self, timeout: float | None = None, *, deregister_on_cancel: bool = True
    ) -> Awaitable[Authorization]:
        """Await the redirect carrying this flow's state. Raises LoginTimeout after ``timeout``
        seconds, AuthorizationDenied or IssuerMismatch as the redirect says. Cancelling the
        awaiting task deregisters the flow (unless ``deregister_on_cancel=False``: then the caller
        must call :meth:`cancel` itself, as ``authorize`` does in a ``finally``)."""
    def cancel(self) -> None:
        """Deregister without waiting (idempotent); a pending ``wait()`` fails with ListenerError."""
    def __call__(self, future: object, /) -> None:
        """The done-callback of the future ``wait()`` returned (deregisters the flow)."""

@final
class CallbackListener:
    """A loopback HTTP listener multiplexing any number of pending flows by ``state``."""

    @staticmethod
    def bind(
        *,
        max_connections: int = 1024,
        header_read_timeout: float = 10.0,
        connection_timeout: float = 30.0,
        bind_ipv6: bool = True,
    ) -> CallbackListener: ...
    @property
    def port(self) -> int: ...
    @property
    def redirect_uri(self) -> str: ...
    @property
    def addresses(self) -> list[str]: ...
    @property
    def pending(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def register(self, state: str, expected_issuer: str | None = None) -> PendingFlow: ...
    def deliver(self, pasted_url: str) -> bool: ...
    def close(self) -> None: ...
    def wait_closed(self) -> Awaitable[None]:
        """Resolves once the listener stopped and its port is free."""

def redact_text(text: str, max_chars: int = 300) -> str:
    """Text made safe for a message: secret-looking runs redacted, control characters dropped."""

def query_of_pasted_url(pasted: str) -> str:
    """The query part of a pasted redirect URL."""

def _shutdown_notifier() -> None:
    """Registered with ``atexit``: stop completing futures before the interpreter finalizes."""

def authorization_url(
    origin: str, client_id: str, state: str, redirect_uri: str, code_challenge: str, federation_id: str
) -> str:
    """The authorization request URL, encoded exactly like ``urllib.parse.urlencode``."""
