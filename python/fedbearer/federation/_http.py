"""The token endpoint client: one aiohttp connection pool per (event loop, endpoint, TLS context).

aiohttp is imported on first use. Pools are closed when their event loop shuts down (through an
async generator that ``asyncio.run``/``loop.shutdown_asyncgens()`` finalizes), or by
:func:`close_sessions`. Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``) are honoured.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING

from fedbearer._core import TokenResponse, parse_token_response, redact_text
from fedbearer.exceptions import TokenEndpointError
from fedbearer.federation.auth import DEFAULT_HTTP_TIMEOUT

if TYPE_CHECKING:
    import aiohttp

# Larger token responses are refused unread (the Rust parser enforces the same bound).
MAX_BODY_BYTES = 1 << 20

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], aiohttp.ClientSession]] = (
    weakref.WeakKeyDictionary()
)
_default_ssl: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    global _default_ssl
    if _default_ssl is None:
        _default_ssl = ssl.create_default_context()
    return _default_ssl


async def _closer(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await session.close()


async def _session(origin: str, ssl_ctx: ssl.SSLContext | None) -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    pools = _pools.get(loop)
    if pools is None:
        pools = _pools[loop] = {}
    key = (origin, id(ssl_ctx))
    session = pools.get(key)
    if session is not None and not session.closed:
        return session
    import aiohttp

    connector = aiohttp.TCPConnector(
        ssl=ssl_ctx if ssl_ctx is not None else _default_ssl_context(),
        limit=32,
        keepalive_timeout=60,
    )
    # The environment's proxy (HTTPS_PROXY, NO_PROXY...) is resolved once per pool: with
    # trust_env=True aiohttp would look it (and ~/.netrc) up in worker threads on every request,
    # which costs more than the request itself on a warm connection.
    proxy, proxy_headers = _env_proxy(origin)
    session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)
    session._fedbearer_proxy = (proxy, proxy_headers)  # type: ignore[attr-defined]
    pools[key] = session
    # Registered with the loop's async-generator hooks: closed at loop shutdown.
    keeper = _closer(session)
    await keeper.__anext__()
    session._fedbearer_keeper = keeper  # type: ignore[attr-defined]  # keep it alive with the session
    return session


def _env_proxy(origin: str) -> tuple[str | None, dict[str, str] | None]:
    """The proxy the environment names for ``origin`` (honouring NO_PROXY), with its credentials
    as a header; (None, None) for a direct connection."""
    from urllib.request import getproxies, proxy_bypass

    from yarl import URL

    url = URL(origin)
    if url.host and proxy_bypass(url.host):
        return None, None
    proxies = getproxies()
    raw = proxies.get(url.scheme) or proxies.get("all")
    if not raw:
        return None, None
    if "://" not in raw:
        raw = f"http://{raw}"
    proxy = URL(raw)
    headers = None
    if proxy.user is not None:
        import aiohttp

        auth = aiohttp.BasicAuth(proxy.user, proxy.password or "")
        headers = {"Proxy-Authorization": auth.encode()}
        proxy = proxy.with_user(None)
    return str(proxy), headers


async def close_sessions() -> None:
    """Close this event loop's pooled token-endpoint connections."""
    pools = _pools.pop(asyncio.get_running_loop(), {})
    for session in pools.values():
        await session.close()


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


_FORM_HEADERS = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}


async def post_token_request(
    token_url: str,
    form: Mapping[str, str],
    *,
    ssl_ctx: ssl.SSLContext | None,
    timeout: float = DEFAULT_HTTP_TIMEOUT,
) -> TokenResponse:
    """POST ``form`` to the token endpoint and parse the answer (any content type).

    Raises TokenEndpointError (status 0 when no response arrived: refused, reset, TLS failure,
    timeout) or InvalidTokenResponse. No message contains the form's secrets.
    """
    from urllib.parse import urlencode

    import aiohttp

    session = await _session(_origin(token_url), ssl_ctx)
    proxy, proxy_headers = session._fedbearer_proxy  # type: ignore[attr-defined]
    try:
        # A pre-encoded body skips aiohttp's form machinery (a measurable share of a login).
        async with session.post(
            token_url,
            data=urlencode(form).encode("ascii"),
            headers=_FORM_HEADERS,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
            proxy=proxy,
            proxy_headers=proxy_headers,
        ) as resp:
            body = await _read_body(resp)
            status = resp.status
    except asyncio.TimeoutError:
        raise TokenEndpointError(
            0, "timeout", f"no answer from the token endpoint within {timeout:g} s"
        ) from None
    except aiohttp.ClientSSLError as exc:
        raise TokenEndpointError(0, "tls_error", _describe(exc)) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise TokenEndpointError(0, "connection_error", _describe(exc)) from None
    # The Rust parser names a broken body without showing token material: key names for JSON,
    # nothing of malformed JSON, an HTML page by its title.
    return parse_token_response(body, status)


async def _read_body(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, up to one byte past the limit. ``content.read(n)`` returns what has arrived
    so far, not n bytes: a body in several segments needs several reads."""
    body = bytearray()
    while len(body) <= MAX_BODY_BYTES:
        chunk = await resp.content.read(MAX_BODY_BYTES + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact_text(f"{type(exc).__name__}: {text}", 200)
