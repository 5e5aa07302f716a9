"""fedbearer: interactive OAuth2/OIDC federation login with a Rust core.

A drop-in for ``nebius.aio.token.federation_bearer``: ``await Receiver(...).fetch()`` opens the
browser (or prints the link), catches the redirect on a loopback listener, exchanges the code with
PKCE and returns a :class:`Token`. See :mod:`fedbearer.federation`.

Importing this package is cheap: aiohttp, redis and the like are imported on first use.
"""

from __future__ import annotations

import atexit as _atexit

from fedbearer import _core
from fedbearer._core import (
    Authorization,
    CallbackListener,
    PendingFlow,
    Pkce,
    TokenResponse,
    new_pkce,
    new_state,
    parse_token_response,
    pkce_challenge,
)
from fedbearer.exceptions import (
    AuthError,
    AuthorizationDenied,
    InvalidTokenResponse,
    IssuerMismatch,
    ListenerError,
    LoginRequired,
    LoginTimeout,
    TokenEndpointError,
)
from fedbearer.token import Bearer, NamedBearer, Receiver, Token

__version__ = "0.1.0"

# Completions reach asyncio through a notifier thread; it must stop touching Python before the
# interpreter finalizes.
_atexit.register(_core._shutdown_notifier)

__all__ = [
    "AuthError",
    "Authorization",
    "AuthorizationDenied",
    "Bearer",
    "CallbackListener",
    "InvalidTokenResponse",
    "IssuerMismatch",
    "ListenerError",
    "LoginRequired",
    "LoginTimeout",
    "NamedBearer",
    "PendingFlow",
    "Pkce",
    "Receiver",
    "Token",
    "TokenEndpointError",
    "TokenResponse",
    "__version__",
    "new_pkce",
    "new_state",
    "parse_token_response",
    "pkce_challenge",
]
