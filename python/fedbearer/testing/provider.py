"""`IdentityProvider`: an embedded OIDC-style authorization server for demos, tests and benchmarks."""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fedbearer.testing.authorization import AuthorizationServer
from fedbearer.testing.protocol import ProviderOptions, ProviderStats

if TYPE_CHECKING:
    from fedbearer.testing._http import ServerThread


class IdentityProvider:
    """A small authorization server on 127.0.0.1 (ephemeral port), served from a background thread.

    ``with IdentityProvider(tls=True) as idp:`` starts it and stops it. Endpoints:
    ``GET /oauth2/authorize`` (login page, or an immediate redirect with ``auto_approve``/``auto_deny``),
    ``POST /oauth2/authorize/decision``, ``POST /oauth2/token`` (authorization_code with PKCE S256,
    refresh_token), ``GET /userinfo`` and ``GET /.well-known/openid-configuration``.

    Options:
        tls: serve HTTPS with a certificate from a throw-away CA (trustme); see `ssl_context()`.
        host: the loopback address to bind, ``"127.0.0.1"`` or ``"::1"``.
        client_ids: the accepted client_ids; None accepts any.
        issuer: the issuer identifier; defaults to `endpoint`.
        auto_approve / auto_deny: answer the authorization request at once, without a page.
        send_iss: add ``iss`` to authorization responses (RFC 9207).
        redirect_errors: redirect errors in parameters other than client_id/redirect_uri back to the
            client (RFC 6749 §4.1.2.1) instead of showing a 400 page.
        code_ttl: seconds an authorization code stays valid.
        token_ttl: the access token's ``expires_in``; expires_in_as_string sends it as a string.
        refresh_token_ttl: seconds a refresh token stays valid; None for ever.
        rotate_refresh_tokens: each refresh issues a new refresh token and retires the old one.
        issue_refresh_tokens: include a refresh token in code exchanges.
        token_prefix / code_prefix / refresh_prefix: prefixes of issued secrets, for leak checks.
        default_username: pre-filled user name, and the subject of auto-approved logins.
        clock: a monotonic clock for expiry; tests may pass a fake one.
    """

    def __init__(
        self,
        *,
        tls: bool = False,
        host: str = "127.0.0.1",
        client_ids: Iterable[str] | None = None,
        issuer: str | None = None,
        auto_approve: bool = False,
        auto_deny: bool = False,
        send_iss: bool = False,
        redirect_errors: bool = False,
        code_ttl: float = 60.0,
        token_ttl: int = 3600,
        refresh_token_ttl: float | None = None,
        rotate_refresh_tokens: bool = True,
        issue_refresh_tokens: bool = True,
        expires_in_as_string: bool = False,
        token_prefix: str = "",
        code_prefix: str = "",
        refresh_prefix: str = "",
        default_username: str = "demo",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if auto_approve and auto_deny:
            raise ValueError("auto_approve and auto_deny are mutually exclusive")
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the identity provider binds loopback addresses only")
        self.tls = tls
        self.host = "127.0.0.1" if host == "localhost" else host
        self.options = ProviderOptions(
            client_ids=None if client_ids is None else frozenset(client_ids),
            auto_approve=auto_approve,
            auto_deny=auto_deny,
            send_iss=send_iss,
            redirect_errors=redirect_errors,
            code_ttl=code_ttl,
            token_ttl=token_ttl,
            refresh_token_ttl=refresh_token_ttl,
            rotate_refresh_tokens=rotate_refresh_tokens,
            issue_refresh_tokens=issue_refresh_tokens,
            expires_in_as_string=expires_in_as_string,
            token_prefix=token_prefix,
            code_prefix=code_prefix,
            refresh_prefix=refresh_prefix,
            default_username=default_username,
        )
        self._issuer_override = issuer
        self._authz = AuthorizationServer(self.options, clock=clock)
        self._lifecycle = threading.Lock()
        self._server: ServerThread | None = None
        self._port: int | None = None
        self._ca: Any = None  # trustme.CA, created on first need
        self._server_cert: Any = None
        self._ca_pem_path: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> IdentityProvider:
        """Bind a free port and start serving; returns self."""
        from fedbearer.testing._http import ServerThread  # aiohttp only when a provider runs

        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("the identity provider is already running")
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.create_server((self.host, 0), family=family)
            server_ssl = None
            try:
                if self.tls:
                    server_ssl = self._server_ssl_context()
                    self._write_ca_pem()
                self._port = sock.getsockname()[1]
                self._authz.issuer = self._issuer_override or self.endpoint
                server = ServerThread(self._authz, sock, server_ssl)
                server.start()
            except BaseException:
                sock.close()
                self._port = None
                self._remove_ca_pem()
                raise
            self._server = server
        return self

    def stop(self) -> None:
        """Stop serving (a hung token request is dropped) and remove the CA file; idempotent."""
        with self._lifecycle:
            server, self._server = self._server, None
            if server is not None:
                server.stop()
            self._remove_ca_pem()

    def __enter__(self) -> IdentityProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- addresses ----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the identity provider is not running")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http(s)://127.0.0.1:PORT``: what to pass as a federation endpoint."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def issuer(self) -> str:
        return self._issuer_override or self.endpoint

    @property
    def authorize_endpoint(self) -> str:
        return f"{self.endpoint}/oauth2/authorize"

    @property
    def token_endpoint(self) -> str:
        return f"{self.endpoint}/oauth2/token"

    def authorization_url(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        state: str,
        code_challenge: str,
        federation_id: str = "",
        scope: str = "openid",
    ) -> str:
        """An authorization URL in the reference client's form (for tests and benchmarks)."""
        query = urlencode(
            [
                ("response_type", "code"),
                ("client_id", client_id),
                ("scope", scope),
                ("state", state),
                ("redirect_uri", redirect_uri),
                ("code_challenge", code_challenge),
                ("code_challenge_method", "S256"),
                ("federation-id", federation_id),
            ]
        )
        return f"{self.authorize_endpoint}?{query}"

    # -- TLS ----------------------------------------------------------------------------------------
    def _ensure_ca(self) -> None:
        if self._ca is None:
            import trustme

            self._ca = trustme.CA()
            self._server_cert = self._ca.issue_cert("127.0.0.1", "localhost", "::1")

    def _server_ssl_context(self) -> ssl.SSLContext:
        self._ensure_ca()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(context)
        return context

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh client context that trusts this provider's CA (TLS providers only)."""
        if not self.tls:
            raise RuntimeError("this identity provider serves plain HTTP; create it with tls=True")
        self._ensure_ca()
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    @property
    def ca_pem_path(self) -> str | None:
        """The CA certificate as a PEM file (for subprocesses and browsers) while a TLS provider runs."""
        return self._ca_pem_path

    def _write_ca_pem(self) -> None:
        self._ensure_ca()
        fd, path = tempfile.mkstemp(prefix="fedbearer-idp-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(self._ca.cert_pem.bytes())
        self._ca_pem_path = path

    def _remove_ca_pem(self) -> None:
        path, self._ca_pem_path = self._ca_pem_path, None
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # -- introspection and fault injection ----------------------------------------------------------
    @property
    def stats(self) -> ProviderStats:
        """A snapshot of the counters."""
        return self._authz.stats

    def reset_stats(self) -> None:
        self._authz.reset_stats()

    @property
    def issued_tokens(self) -> set[str]:
        """Every access token issued so far (a copy)."""
        return self._authz.issued_tokens

    def revoke_refresh_tokens(self) -> int:
        """Invalidate every outstanding refresh token; returns how many there were."""
        return self._authz.revoke_refresh_tokens()

    def set_fault(self, mode: str | None, *, times: int | None = None) -> None:
        """Make the token endpoint misbehave, for every request or for the next `times` ones.

        Modes: None (behave), "hang" (never answer, until the provider stops), "reset" (TCP RST),
        "500_html", "503_html" (HTML error page), "truncated_json" (200, JSON cut short),
        "non_json_200" (200, an HTML page), "error_body_200" (200 with an RFC 6749 error body),
        "slow:<seconds>" (delay, then answer normally). Apart from "slow:", a faulty answer leaves
        the request's code or refresh token unused.
        """
        self._authz.set_fault(mode, times)

    def __repr__(self) -> str:
        where = self.endpoint if self.running else "stopped"
        return f"<IdentityProvider {where}>"
