"""The retry policy for logins and refreshes: bounded attempts, exponential backoff with jitter.

``Receiver.can_retry`` (always True for the federation receiver, as in the reference) is consulted
first; the policy then stops early on errors that can never succeed, and never re-prompts a user
who ignored the prompt (a timed-out login is not retried: that would only open another tab).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from fedbearer.exceptions import (
    AuthorizationDenied,
    IssuerMismatch,
    ListenerError,
    LoginTimeout,
    TokenEndpointError,
)

__all__ = ["FATAL_TOKEN_ERRORS", "RetryPolicy"]

# RFC 6749 §5.2 codes that a retry cannot fix.
FATAL_TOKEN_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_request",
        "invalid_scope",
        # Ours (status 0): a certificate that does not verify will not verify on the next try
        # either, and re-prompting would only hide the cause behind a LoginTimeout.
        "tls_error",
        "login_required",
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` tries in all; the n-th retry waits ``initial_delay * multiplier**(n-1)``
    seconds, capped at ``max_delay``, times a random factor in ``[1 - jitter, 1 + jitter]``.
    ``max_denials`` user denials end the retries (the seed lets a user who declined try again)."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2
    max_denials: int = 2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("delays must be non-negative and the multiplier at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, retry - 1))
        if self.jitter:
            base *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, min(base, self.max_delay * (1 + self.jitter)))

    def should_retry(self, err: BaseException, attempt: int, denials: int, receiver_allows: bool) -> bool:
        """Whether to try again after ``err`` ended attempt number ``attempt`` (1-based)."""
        if attempt >= self.max_attempts or not receiver_allows:
            return False
        if isinstance(err, (LoginTimeout, IssuerMismatch, ListenerError, ValueError, TypeError)):
            return False
        if isinstance(err, AuthorizationDenied):
            return denials < self.max_denials
        if isinstance(err, TokenEndpointError):
            return err.error not in FATAL_TOKEN_ERRORS
        return isinstance(err, Exception)
