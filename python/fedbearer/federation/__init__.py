"""The federation interactive login: a drop-in for ``nebius.aio.token.federation_bearer``.

Change ``from nebius.aio.token.federation_bearer import Receiver, Bearer`` to
``from fedbearer.federation import Receiver, Bearer``; nothing else.

The names below load on first use (PEP 562), so importing this package costs next to nothing;
``Bearer`` and its cache layers, aiohttp and asyncio come in when a login or a fetch needs them.
"""

from __future__ import annotations

from fedbearer.federation import auth
from fedbearer.federation.auth import DEFAULT_LOGIN_TIMEOUT, GetTokenResult, authorize

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fedbearer.federation.bearer import Bearer, tenant_key
    from fedbearer.federation.receiver import Receiver
    from fedbearer.sync import get_token

__all__ = [
    "DEFAULT_LOGIN_TIMEOUT",
    "Bearer",
    "GetTokenResult",
    "LoginRequired",
    "Receiver",
    "auth",
    "authorize",
    "get_token",
    "tenant_key",
]

_LAZY = {
    "Bearer": "fedbearer.federation.bearer",
    "tenant_key": "fedbearer.federation.bearer",
    "Receiver": "fedbearer.federation.receiver",
    "LoginRequired": "fedbearer.exceptions",
    "get_token": "fedbearer.sync",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedbearer.federation' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
