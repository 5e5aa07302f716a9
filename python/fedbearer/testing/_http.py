"""The provider's HTTP face (aiohttp.web), served from a background thread with its own loop.

Imported only when a provider starts, so `import fedbearer.testing` stays free of aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterable

from aiohttp import web

from fedbearer.testing import pages
from fedbearer.testing.authorization import AuthorizationServer
from fedbearer.testing.protocol import AuthorizeError

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


def _html(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        charset="utf-8",
        headers={**pages.PAGE_HEADERS, **(headers or {})},
    )


def _redirect(location: str) -> web.Response:
    return web.Response(status=302, headers={"Location": location, **pages.PAGE_HEADERS})


def _string_pairs(items: Iterable[tuple[str, object]]) -> list[tuple[str, object]]:
    return [(name, value) for name, value in items if isinstance(value, str)]


def _reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed or killed server would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Handlers:
    def __init__(self, authz: AuthorizationServer, stopping: asyncio.Event) -> None:
        self.authz = authz
        self.stopping = stopping

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        authz = self.authz
        authz.count("authorize_requests")
        try:
            auth_request = authz.parse_authorization_request(request.query.items())
        except AuthorizeError as err:
            return self._authorize_error(err)
        if authz.options.auto_deny:
            return _redirect(authz.deny(auth_request))
        if authz.options.auto_approve:
            return _redirect(authz.approve(auth_request, authz.options.default_username))
        page = pages.login_page(auth_request, issuer=authz.issuer, username=authz.options.default_username)
        return _html(200, page)

    def _authorize_error(self, err: AuthorizeError) -> web.Response:
        self.authz.count("errors")
        if err.redirect_uri is not None and self.authz.options.redirect_errors:
            return _redirect(self.authz.error_redirect(err))
        title = "Invalid authorization request"
        page = pages.error_page(title, err.description, param=err.param, error=err.error)
        return _html(400, page)

    async def decision(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        pairs = _string_pairs(form.items())
        try:
            auth_request = self.authz.parse_authorization_request(pairs)
        except AuthorizeError as err:
            return self._authorize_error(err)
        choice = form.get("decision")
        if choice == "approve":
            username = form.get("username")
            return _redirect(self.authz.approve(auth_request, username if isinstance(username, str) else ""))
        if choice == "deny":
            return _redirect(self.authz.deny(auth_request))
        self.authz.count("errors")
        return _html(400, pages.error_page("Invalid decision", "decision must be 'approve' or 'deny'"))

    async def token(self, request: web.Request) -> web.StreamResponse:
        authz = self.authz
        authz.count("token_requests")
        fault = authz.take_fault()
        if fault is not None:
            authz.count("faults")
            faulty = await self._fault(request, fault)
            if faulty is not None:
                return faulty
        if request.content_type != "application/x-www-form-urlencoded":
            authz.count("errors")
            body = {"error": "invalid_request", "error_description": "the body must be form-urlencoded"}
            return web.json_response(body, status=400, headers=_NO_STORE)
        form = await request.post()
        reply = authz.token(_string_pairs(form.items()))
        return web.json_response(reply.body, status=reply.status, headers=_NO_STORE)

    async def _fault(self, request: web.Request, fault: str) -> web.StreamResponse | None:
        """The response of an injected fault; None once a `slow:` delay has passed."""
        if fault.startswith("slow:"):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), float(fault.removeprefix("slow:")))
            return None
        if fault in ("hang", "reset"):
            if fault == "hang":
                await self.stopping.wait()  # until the provider stops
            _reset_connection(request)
            return web.Response(status=500)  # never reaches the peer: the transport is gone
        if fault in ("500_html", "503_html"):
            status = int(fault[:3])
            page = pages.error_page(f"{status} Server Error", "The identity provider is having trouble.")
            return _html(status, page, {"Retry-After": "1"} if status == 503 else None)
        if fault == "truncated_json":
            text = '{"access_token": "' + self.authz.options.token_prefix + "cut-off-mid-str"
            return web.Response(status=200, text=text, content_type="application/json", headers=_NO_STORE)
        if fault == "non_json_200":
            page = pages.error_page("Welcome", "This is a portal page, not a token response.")
            return _html(200, page)
        body = {"error": "invalid_grant", "error_description": "injected fault: error body with status 200"}
        return web.json_response(body, status=200, headers=_NO_STORE)

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        issuer = self.authz.issuer
        base = f"{request.scheme}://{request.host}"
        return web.json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{base}/oauth2/authorize",
                "token_endpoint": f"{base}/oauth2/token",
                "userinfo_endpoint": f"{base}/userinfo",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid"],
                "token_endpoint_auth_methods_supported": ["none"],
                "authorization_response_iss_parameter_supported": self.authz.options.send_iss,
            }
        )

    async def userinfo(self, request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        claims = self.authz.userinfo(token.strip()) if scheme.lower() == "bearer" else None
        if claims is None:
            challenge = 'Bearer error="invalid_token"'  # RFC 6750 §3
            headers = {"WWW-Authenticate": challenge}
            return web.json_response({"error": "invalid_token"}, status=401, headers=headers)
        return web.json_response(claims, headers=_NO_STORE)


def build_app(authz: AuthorizationServer, stopping: asyncio.Event) -> web.Application:
    handlers = _Handlers(authz, stopping)
    app = web.Application()
    app.router.add_get("/oauth2/authorize", handlers.authorize)
    app.router.add_post("/oauth2/authorize/decision", handlers.decision)
    app.router.add_post("/oauth2/token", handlers.token)
    app.router.add_get("/.well-known/openid-configuration", handlers.metadata)
    app.router.add_get("/userinfo", handlers.userinfo)
    return app


class ServerThread:
    """Runs the app on `sock` in a daemon thread with its own event loop."""

    def __init__(
        self, authz: AuthorizationServer, sock: socket.socket, ssl_context: ssl.SSLContext | None
    ) -> None:
        self._authz = authz
        self._sock = sock
        self._ssl_context = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fedbearer-idp", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the identity provider did not start in time")
        if self._failure is not None:
            raise RuntimeError("the identity provider failed to start") from self._failure

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread just ends
            self._failure = exc
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = build_app(self._authz, self._stopping)
        # No access log: request lines and redirects carry state values, and aiohttp logs at INFO.
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.SockSite(runner, self._sock, ssl_context=self._ssl_context)
            await site.start()
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
