"""The OAuth 2.0 vocabulary of the embedded provider: parameters, PKCE, loopback redirect URIs.

RFC 6749 (OAuth 2.0), RFC 7636 (PKCE, S256 only), RFC 8252 §7.3 (loopback redirect URIs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "scope",
    "state",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "federation-id",
)
TOKEN_PARAMS = ("grant_type", "code", "redirect_uri", "client_id", "code_verifier", "refresh_token", "scope")
FAULT_MODES = ("hang", "reset", "500_html", "503_html", "truncated_json", "non_json_200", "error_body_200")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA256(verifier)), no padding
CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1


def s256_challenge(verifier: str) -> str:
    """The RFC 7636 §4.2 S256 code challenge of `verifier`."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_pkce_pair() -> tuple[str, str]:
    """A fresh `(code_verifier, code_challenge)` pair: 32 random bytes, 43-char verifier."""
    verifier = secrets.token_urlsafe(32)
    return verifier, s256_challenge(verifier)


def is_slow_fault(mode: str) -> bool:
    try:
        return mode.startswith("slow:") and float(mode.removeprefix("slow:")) >= 0
    except ValueError:
        return False


def redirect_uri_problem(redirect_uri: str) -> str | None:
    """Why `redirect_uri` is not an acceptable loopback redirect URI, or None if it is."""
    if not redirect_uri:
        return "redirect_uri is missing"
    try:
        parts = urlsplit(redirect_uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "redirect_uri is not a valid URI"
    if parts.scheme != "http":
        return "redirect_uri must use the http scheme (RFC 8252 §7.3 loopback redirect)"
    if parts.username is not None or parts.password is not None:
        return "redirect_uri must not contain user information"
    if parts.hostname not in LOOPBACK_HOSTS:
        return "redirect_uri must point at 127.0.0.1, localhost or [::1] (RFC 8252 §7.3)"
    if parts.fragment or "#" in redirect_uri:
        return "redirect_uri must not contain a fragment (RFC 6749 §3.1.2)"
    return None


@dataclass
class ProviderStats:
    """Counters of what the provider has seen; `IdentityProvider.stats` returns a snapshot."""

    authorize_requests: int = 0
    logins: int = 0
    denials: int = 0
    token_requests: int = 0
    tokens_issued: int = 0
    refreshes: int = 0
    errors: int = 0
    faults: int = 0


@dataclass(frozen=True)
class ProviderOptions:
    """How the provider behaves; see `IdentityProvider` for the meaning of each option."""

    client_ids: frozenset[str] | None = None
    auto_approve: bool = False
    auto_deny: bool = False
    send_iss: bool = False
    redirect_errors: bool = False
    code_ttl: float = 60.0
    token_ttl: int = 3600
    refresh_token_ttl: float | None = None
    rotate_refresh_tokens: bool = True
    issue_refresh_tokens: bool = True
    expires_in_as_string: bool = False
    token_prefix: str = ""
    code_prefix: str = ""
    refresh_prefix: str = ""
    default_username: str = "demo"


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated `GET /oauth2/authorize` request."""

    client_id: str
    redirect_uri: str
    state: str
    scope: str
    code_challenge: str
    federation_id: str

    def form_fields(self) -> list[tuple[str, str]]:
        """The request again, as the login form's hidden fields."""
        return [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("scope", self.scope),
            ("state", self.state),
            ("redirect_uri", self.redirect_uri),
            ("code_challenge", self.code_challenge),
            ("code_challenge_method", "S256"),
            ("federation-id", self.federation_id),
        ]


class AuthorizeError(Exception):
    """A bad authorization request. `redirect_uri` is set only once it is known to be safe to use:
    until client_id and redirect_uri are valid the user agent is never redirected (RFC 6749 §4.1.2.1).
    """

    def __init__(
        self,
        param: str,
        error: str,
        description: str,
        *,
        redirect_uri: str | None = None,
        state: str | None = None,
    ) -> None:
        super().__init__(description)
        self.param = param
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


@dataclass(frozen=True)
class TokenReply:
    """What the token endpoint answers: an HTTP status and a JSON object."""

    status: int
    body: dict[str, object]


def collect_params(
    pairs: Iterable[tuple[str, object]], known: Iterable[str]
) -> tuple[dict[str, str], str | None]:
    """Known string parameters, and the first one repeated (RFC 6749 §3.1 forbids repeats)."""
    wanted = set(known)
    params: dict[str, str] = {}
    repeated: str | None = None
    for name, value in pairs:
        if name not in wanted or not isinstance(value, str):
            continue
        if name in params and repeated is None:
            repeated = name
        params[name] = value
    return params, repeated


def with_query(redirect_uri: str, params: list[tuple[str, str]]) -> str:
    # The redirect URI's own query is kept (RFC 6749 §3.1.2); an empty path means "/".
    parts = urlsplit(redirect_uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


def b64url_json(value: dict[str, object]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
