"""The embedded provider's state and rules, free of any HTTP framework.

RFC 6749 §4.1 (authorization code grant), §6 (refresh), §5.2 (error bodies); RFC 7636 §4.6 (PKCE
verification); RFC 9207 (`iss` in the authorization response). Every method is thread-safe: the HTTP
handlers run on the provider's loop thread while tests read counters and inject faults from theirs.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace

from fedbearer.testing.protocol import (
    AUTHORIZE_PARAMS,
    CODE_VERIFIER,
    FAULT_MODES,
    S256_CHALLENGE,
    TOKEN_PARAMS,
    AuthorizationRequest,
    AuthorizeError,
    ProviderOptions,
    ProviderStats,
    TokenReply,
    b64url_json,
    collect_params,
    is_slow_fault,
    redirect_uri_problem,
    s256_challenge,
    with_query,
)

_CODE_PURGE_THRESHOLD = 1024


@dataclass(frozen=True)
class _CodeGrant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    username: str
    federation_id: str
    expires_at: float


@dataclass(frozen=True)
class _RefreshGrant:
    client_id: str
    scope: str
    username: str
    federation_id: str
    expires_at: float | None


class AuthorizationServer:
    """Codes, tokens, counters and the injected fault of one provider."""

    def __init__(self, options: ProviderOptions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self.issuer = ""
        self._clock = clock
        self._lock = threading.Lock()
        self._stats = ProviderStats()
        self._codes: dict[str, _CodeGrant] = {}
        self._refresh: dict[str, _RefreshGrant] = {}
        self._access: dict[str, tuple[str, str, float]] = {}  # token -> (username, client_id, expires_at)
        self._fault: str | None = None
        self._fault_left: int | None = None

    # -- counters and fault injection -------------------------------------------------------------
    def count(self, name: str) -> None:
        with self._lock:
            setattr(self._stats, name, getattr(self._stats, name) + 1)

    @property
    def stats(self) -> ProviderStats:
        with self._lock:
            return replace(self._stats)

    def reset_stats(self) -> None:
        with self._lock:
            for f in fields(self._stats):
                setattr(self._stats, f.name, 0)

    @property
    def issued_tokens(self) -> set[str]:
        with self._lock:
            return set(self._access)

    def revoke_refresh_tokens(self) -> int:
        with self._lock:
            revoked = len(self._refresh)
            self._refresh.clear()
            return revoked

    def set_fault(self, mode: str | None, times: int | None = None) -> None:
        if mode is not None and mode not in FAULT_MODES and not is_slow_fault(mode):
            raise ValueError(
                f"unknown fault mode {mode!r}; expected one of {FAULT_MODES} or 'slow:<seconds>'"
            )
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._fault, self._fault_left = mode, (times if mode is not None else None)

    def take_fault(self) -> str | None:
        """The fault to apply to this token request, counting down a limited fault."""
        with self._lock:
            fault = self._fault
            if fault is not None and self._fault_left is not None:
                self._fault_left -= 1
                if self._fault_left == 0:
                    self._fault, self._fault_left = None, None
            return fault

    # -- authorization endpoint -------------------------------------------------------------------
    def parse_authorization_request(self, pairs: Iterable[tuple[str, object]]) -> AuthorizationRequest:
        params, repeated = collect_params(pairs, AUTHORIZE_PARAMS)
        # client_id and redirect_uri first: until both are good, errors are shown, never redirected.
        if repeated in ("client_id", "redirect_uri"):
            raise AuthorizeError(repeated, "invalid_request", f"{repeated} is repeated (RFC 6749 §3.1)")
        client_id = params.get("client_id", "")
        if not client_id:
            raise AuthorizeError("client_id", "invalid_request", "client_id is missing")
        allowed = self.options.client_ids
        if allowed is not None and client_id not in allowed:
            raise AuthorizeError("client_id", "unauthorized_client", "client_id is not registered here")
        redirect_uri = params.get("redirect_uri", "")
        problem = redirect_uri_problem(redirect_uri)
        if problem is not None:
            raise AuthorizeError("redirect_uri", "invalid_request", problem)

        state = params.get("state", "")

        def bad(param: str, error: str, description: str) -> AuthorizeError:
            return AuthorizeError(param, error, description, redirect_uri=redirect_uri, state=state or None)

        if repeated is not None:
            raise bad(repeated, "invalid_request", f"{repeated} is repeated (RFC 6749 §3.1)")
        if params.get("response_type") != "code":
            raise bad("response_type", "unsupported_response_type", "response_type must be 'code'")
        scope = params.get("scope", "")
        if "openid" not in scope.split():
            raise bad("scope", "invalid_scope", "scope must include 'openid'")
        if not state:
            raise bad("state", "invalid_request", "state is missing")
        if params.get("code_challenge_method") != "S256":
            raise bad("code_challenge_method", "invalid_request", "code_challenge_method must be 'S256'")
        challenge = params.get("code_challenge", "")
        if not S256_CHALLENGE.fullmatch(challenge):
            raise bad("code_challenge", "invalid_request", "code_challenge must be 43 base64url characters")
        return AuthorizationRequest(
            client_id=client_id,
            redirect_uri=redirect_uri,
            state=state,
            scope=scope,
            code_challenge=challenge,
            federation_id=params.get("federation-id", ""),
        )

    def _response_params(self, params: list[tuple[str, str]], state: str | None) -> list[tuple[str, str]]:
        if state:
            params.append(("state", state))
        if self.options.send_iss:
            params.append(("iss", self.issuer))  # RFC 9207 §2
        return params

    def approve(self, request: AuthorizationRequest, username: str) -> str:
        """Record an approved login; the URL to redirect the user agent to, carrying a fresh code."""
        code = self.options.code_prefix + secrets.token_urlsafe(32)
        grant = _CodeGrant(
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            code_challenge=request.code_challenge,
            scope=request.scope,
            username=username or self.options.default_username,
            federation_id=request.federation_id,
            expires_at=self._clock() + self.options.code_ttl,
        )
        with self._lock:
            if len(self._codes) >= _CODE_PURGE_THRESHOLD:
                now = self._clock()
                self._codes = {c: g for c, g in self._codes.items() if g.expires_at > now}
            self._codes[code] = grant
            self._stats.logins += 1
        return with_query(request.redirect_uri, self._response_params([("code", code)], request.state))

    def deny(self, request: AuthorizationRequest) -> str:
        self.count("denials")
        error = [("error", "access_denied"), ("error_description", "The user denied the request")]
        return with_query(request.redirect_uri, self._response_params(error, request.state))

    def error_redirect(self, err: AuthorizeError) -> str:
        assert err.redirect_uri is not None
        params = [("error", err.error), ("error_description", err.description)]
        return with_query(err.redirect_uri, self._response_params(params, err.state))

    # -- token endpoint ---------------------------------------------------------------------------
    def _error(self, error: str, description: str, status: int = 400) -> TokenReply:
        self.count("errors")
        return TokenReply(status, {"error": error, "error_description": description})

    def token(self, pairs: Iterable[tuple[str, object]]) -> TokenReply:
        """Answer a token request whose form body is `pairs`."""
        params, repeated = collect_params(pairs, TOKEN_PARAMS)
        if repeated is not None:
            return self._error("invalid_request", f"{repeated} is repeated (RFC 6749 §3.2)")
        grant_type = params.get("grant_type")
        if not grant_type:
            return self._error("invalid_request", "grant_type is missing")
        client_id = params.get("client_id", "")
        if not client_id:
            return self._error("invalid_client", "client_id is missing", 401)
        allowed = self.options.client_ids
        if allowed is not None and client_id not in allowed:
            return self._error("invalid_client", "client_id is not registered here", 401)
        if grant_type == "authorization_code":
            return self._exchange_code(params, client_id)
        if grant_type == "refresh_token":
            return self._refresh_grant(params, client_id)
        return self._error("unsupported_grant_type", "grant_type must be authorization_code or refresh_token")

    def _exchange_code(self, params: dict[str, str], client_id: str) -> TokenReply:
        for name in ("code", "redirect_uri", "code_verifier"):
            if not params.get(name):
                return self._error("invalid_request", f"{name} is missing")
        with self._lock:
            # Single use (RFC 6749 §4.1.2): the first attempt consumes the code, even a failed one,
            # so a wrong code_verifier cannot be retried against it.
            grant = self._codes.pop(params["code"], None)
        if grant is None:
            return self._error("invalid_grant", "the authorization code is unknown or was already used")
        if self._clock() >= grant.expires_at:
            return self._error("invalid_grant", "the authorization code has expired")
        if grant.client_id != client_id:
            return self._error("invalid_grant", "the authorization code was issued to another client")
        if grant.redirect_uri != params["redirect_uri"]:
            return self._error("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = params["code_verifier"]
        if not CODE_VERIFIER.fullmatch(verifier):
            return self._error("invalid_grant", "code_verifier is malformed (RFC 7636 §4.1)")
        if not secrets.compare_digest(s256_challenge(verifier), grant.code_challenge):
            return self._error("invalid_grant", "code_verifier does not match code_challenge (RFC 7636 §4.6)")
        refresh = _RefreshGrant(grant.client_id, grant.scope, grant.username, grant.federation_id, None)
        with self._lock:
            return self._issue_locked(refresh, new_refresh=self.options.issue_refresh_tokens)

    def _refresh_grant(self, params: dict[str, str], client_id: str) -> TokenReply:
        token = params.get("refresh_token")
        if not token:
            return self._error("invalid_request", "refresh_token is missing")
        with self._lock:
            grant = self._refresh.get(token)
            problem = None
            if grant is None:
                problem = "the refresh token is unknown, revoked or was rotated"
            elif grant.expires_at is not None and self._clock() >= grant.expires_at:
                del self._refresh[token]
                problem = "the refresh token has expired"
            elif grant.client_id != client_id:
                problem = "the refresh token was issued to another client"
            if grant is None or problem is not None:
                self._stats.errors += 1
                return TokenReply(400, {"error": "invalid_grant", "error_description": problem})
            rotate = self.options.rotate_refresh_tokens
            if rotate:
                del self._refresh[token]
            self._stats.refreshes += 1
            return self._issue_locked(grant, new_refresh=rotate)

    def _issue_locked(self, grant: _RefreshGrant, *, new_refresh: bool) -> TokenReply:
        opts = self.options
        access_token = opts.token_prefix + secrets.token_urlsafe(32)
        self._access[access_token] = (grant.username, grant.client_id, self._clock() + opts.token_ttl)
        self._stats.tokens_issued += 1
        body: dict[str, object] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": str(opts.token_ttl) if opts.expires_in_as_string else opts.token_ttl,
            "id_token": self._id_token(grant),
            "scope": grant.scope,
        }
        if new_refresh:
            refresh_token = opts.refresh_prefix + secrets.token_urlsafe(32)
            ttl = opts.refresh_token_ttl
            expires_at = None if ttl is None else self._clock() + ttl
            self._refresh[refresh_token] = replace(grant, expires_at=expires_at)
            body["refresh_token"] = refresh_token
        return TokenReply(200, body)

    def _id_token(self, grant: _RefreshGrant) -> str:
        # Unsigned (alg "none") and for show only: clients of this provider must not trust it.
        now = int(time.time())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": grant.username,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + self.options.token_ttl,
        }
        if grant.federation_id:
            claims["federation_id"] = grant.federation_id
        return f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{b64url_json(claims)}."

    def userinfo(self, access_token: str) -> dict[str, object] | None:
        """Claims for a live access token, or None (RFC 6750 §3.1 invalid_token)."""
        with self._lock:
            entry = self._access.get(access_token)
        if entry is None or self._clock() >= entry[2]:
            return None
        return {"sub": entry[0], "client_id": entry[1]}
