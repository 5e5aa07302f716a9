"""An embedded OIDC-style identity provider for demos, tests and benchmarks.

    from fedbearer.testing import IdentityProvider

    with IdentityProvider(tls=True) as idp:
        receiver = Receiver("my-client", idp.endpoint, "my-federation", ssl_ctx=idp.ssl_context())

Importing this package is cheap: aiohttp and trustme load only when a provider starts.
"""

from fedbearer.testing.headless import HeadlessLoginError, complete_login, complete_login_sync
from fedbearer.testing.protocol import (
    FAULT_MODES,
    ProviderOptions,
    ProviderStats,
    make_pkce_pair,
    s256_challenge,
)
from fedbearer.testing.provider import IdentityProvider

__all__ = [
    "FAULT_MODES",
    "HeadlessLoginError",
    "IdentityProvider",
    "ProviderOptions",
    "ProviderStats",
    "complete_login",
    "complete_login_sync",
    "make_pkce_pair",
    "s256_challenge",
]
