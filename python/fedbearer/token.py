"""Bearer tokens, receivers and bearers: the API of ``nebius.aio.token.token``.

Code written against ``nebius.aio.token.token`` works with these classes by changing the import.
The differences are all on the inside:

- :class:`Token` keeps its expiry as a precomputed POSIX deadline, so :meth:`Token.is_expired` is
  one clock read and one float comparison instead of datetime arithmetic;
- ``str()`` and ``repr()`` of a token show a short SHA-256 fingerprint, never the token itself;
- :attr:`Receiver.latest` is ``None`` before the first fetch even for subclasses that never call
  ``super().__init__()``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone
from time import time as _now

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Bearer", "NamedBearer", "Receiver", "Token"]

_NO_DEADLINE = math.inf


def _fingerprint(token: str) -> str:
    """First 8 hex digits of the token's SHA-256: enough to tell tokens apart in logs."""
    from hashlib import sha256  # only str()/repr() need it; keep `import fedbearer` light

    return sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:8]


class Token:
    """An access token with an optional expiration.

    :param token: the raw token string; ``""`` is the empty token (no credential).
    :param expiration: when the token stops being valid. A naive datetime is taken to be UTC
        (the reference SDK cannot compare naive expirations at all), so :attr:`expiration` is
        always timezone-aware or ``None``.
    """

    __slots__ = ("_deadline", "_exp", "_tok")

    _tok: str
    _exp: datetime | None
    # POSIX seconds at which the token expires; +inf when it never does. Package-internal:
    # caches compare against it directly to stay off datetime arithmetic.
    _deadline: float

    def __init__(self, token: str, expiration: datetime | None = None) -> None:
        self._tok = token
        if expiration is None:
            self._exp = None
            self._deadline = _NO_DEADLINE
            return
        if expiration.utcoffset() is None:
            expiration = expiration.replace(tzinfo=timezone.utc)
        self._exp = expiration
        self._deadline = expiration.timestamp()

    @classmethod
    def empty(cls) -> Token:
        """A token that stands for "no credential"."""
        return cls(token="")

    @property
    def token(self) -> str:
        """The raw token string."""
        return self._tok

    @property
    def expiration(self) -> datetime | None:
        """The timezone-aware expiration, or ``None`` for a token that does not expire."""
        return self._exp

    def is_empty(self) -> bool:
        """Whether this is the empty token."""
        return self._tok == ""

    def is_expired(self) -> bool:
        """Whether the expiration has been reached; a token without expiration never expires."""
        return _now() >= self._deadline

    def expires_within(self, seconds: float) -> bool:
        """Whether the token is expired or will be within ``seconds`` (a cache's safety margin)."""
        return _now() + seconds >= self._deadline

    def to_dict(self) -> dict[str, Any]:
        """``{"token": str, "expires_at": int POSIX seconds or None}``, as the reference writes."""
        return {
            "token": self._tok,
            "expires_at": None if self._exp is None else int(self._deadline),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Token:
        """Parse the mapping written by :meth:`to_dict`.

        Accepts what the reference accepts: a missing or ``None`` token is the empty token, a missing,
        ``None`` or ``0`` ``expires_at`` means no expiration.

        :raises ValueError: on a non-dict, a non-string token, a non-integer or out-of-range
            ``expires_at``.
        """
        if not isinstance(data, dict):
            raise ValueError(f"Invalid format for Token: {type(data)} expected a dictionary.")
        token = data.get("token", "")
        if token is None:
            token = ""
        elif not isinstance(token, str):
            raise ValueError(f"Invalid token format: {type(token)} expected a string.")
        expires_at = data.get("expires_at")
        if expires_at is None:
            return cls(token=token)
        if not isinstance(expires_at, int):  # bool passes, as in the reference
            raise ValueError(f"Invalid expires_at format: {type(expires_at)} expected an int.")
        if expires_at == 0:
            return cls(token=token)
        try:
            expiration = datetime.fromtimestamp(expires_at, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as err:
            raise ValueError(f"Invalid expires_at value: {expires_at} is out of range.") from err
        return cls(token=token, expiration=expiration)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        # Aware datetimes compare by instant, whatever their zone; floats would merge
        # neighbouring microseconds far in the future.
        return self._tok == other._tok and self._exp == other._exp

    def __hash__(self) -> int:
        return hash((self._tok, self._exp))

    def __repr__(self) -> str:
        if self._tok == "":
            return "Token(empty)"
        if self._exp is None:
            return f"Token(sha256:{_fingerprint(self._tok)}, expiration=None)"
        left = round(self._deadline - _now())
        remaining = (
            f"expires_in={timedelta(seconds=left)}"
            if left >= 0
            else f"expired_for={timedelta(seconds=-left)}"
        )
        return f"Token(sha256:{_fingerprint(self._tok)}, expiration={self._exp.isoformat()}, {remaining})"

    __str__ = __repr__


class Receiver(ABC):
    """Fetches a token for one request; :class:`Bearer` hands out one receiver per request.

    Subclasses implement :meth:`_fetch` and :meth:`can_retry`; callers use :meth:`fetch`, which
    records the result in :attr:`latest`. A receiver with a synchronous fast path (a cache hit) may
    override :meth:`fetch` itself to save the second coroutine; it must then set ``_latest``.
    """

    # A class attribute, so `latest` works before the first fetch even when a subclass's
    # __init__ never calls super().__init__().
    _latest: Token | None = None

    @abstractmethod
    async def _fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        """Get a token; ``timeout`` in seconds, ``options`` implementation-specific."""
        raise NotImplementedError

    async def fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        """Fetch a token through :meth:`_fetch` and record it as :attr:`latest`."""
        # The hot path of every authenticated request: one await, one store, nothing else.
        tok = await self._fetch(timeout=timeout, options=options)
        self._latest = tok
        return tok

    @property
    def latest(self) -> Token | None:
        """The token of the last successful :meth:`fetch`, or ``None`` before it."""
        return self._latest

    @abstractmethod
    def can_retry(self, err: Exception, options: dict[str, str] | None = None) -> bool:
        """Whether another :meth:`fetch` after ``err`` may succeed; the base answer is no."""
        return False


class Bearer(ABC):
    """Hands out :class:`Receiver` instances; wrappers add naming, caching and renewal."""

    @abstractmethod
    def receiver(self) -> Receiver:
        """A receiver for a single request."""
        raise NotImplementedError

    @classmethod
    def default_metrics_provider(cls) -> str:
        """The fully qualified class name, the default metrics label."""
        return f"{cls.__module__}.{cls.__qualname__}"

    @property
    def name(self) -> str | None:
        """A name unique to this bearer's configuration (a cache key), or ``None``.

        A wrapper forwards to the bearer it wraps.
        """
        wrapped = self.wrapped
        return None if wrapped is None else wrapped.name

    @property
    def metrics_provider(self) -> str:
        """The label for auth metrics: the wrapped bearer's, else :meth:`default_metrics_provider`."""
        wrapped = self.wrapped
        return type(self).default_metrics_provider() if wrapped is None else wrapped.metrics_provider

    @property
    def wrapped(self) -> Bearer | None:
        """The bearer this one decorates, or ``None``."""
        return None

    @property
    def acquisition_budget(self) -> timedelta | None:
        """How long one fetch through this bearer may take, or ``None`` for no declared budget."""
        return None

    async def close(self, grace: float | None = None) -> None:
        """Release resources; the base closes the wrapped bearer."""
        wrapped = self.wrapped
        if wrapped is not None:
            await wrapped.close(grace=grace)


class NamedBearer(Bearer):
    """Gives a bearer a fixed :attr:`name`, for example to key a cache on it."""

    def __init__(self, wrapped: Bearer, name: str) -> None:
        self._wrapped = wrapped
        self._name = name

    @property
    def wrapped(self) -> Bearer:
        return self._wrapped

    @property
    def name(self) -> str | None:
        return self._name

    @property
    def acquisition_budget(self) -> timedelta | None:
        return self._wrapped.acquisition_budget

    def receiver(self) -> Receiver:
        return self._wrapped.receiver()
