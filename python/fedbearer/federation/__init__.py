"""The federation interactive login: a drop-in for ``nebius.aio.token.federation_bearer``.

Change ``from nebius.aio.token.federation_bearer import Receiver, Bearer`` to
``from fedbearer.federation import Receiver, Bearer``; nothing else.
"""

from fedbearer.federation import auth
from fedbearer.federation.auth import DEFAULT_LOGIN_TIMEOUT, GetTokenResult, authorize
from fedbearer.federation.bearer import Bearer, tenant_key
from fedbearer.federation.receiver import Receiver

__all__ = ["DEFAULT_LOGIN_TIMEOUT", "Bearer", "GetTokenResult", "Receiver", "auth", "authorize", "tenant_key"]
