"""The ``fedbearer`` command: ``demo``, ``login``, ``token``, ``status``, ``logout``.

Never prints a token except ``fedbearer token`` (whose job it is); everything else shows a short
fingerprint and the expiry.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import ssl
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from fedbearer.exceptions import AuthError
from fedbearer.token import Token

__all__ = ["main"]


def _fingerprint(token: Token) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(token.token.encode()).hexdigest()[:12]


def _describe(token: Token) -> str:
    if token.expiration is None:
        return f"fingerprint {_fingerprint(token)}, no expiry given"
    left = int(token.expiration.timestamp() - time.time())
    return (
        f"fingerprint {_fingerprint(token)}, expires {token.expiration.isoformat(timespec='seconds')} "
        f"(in {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d})"
    )


async def _countdown(deadline: float, stream: TextIO) -> None:
    """A live 'time left' line on an interactive terminal, until cancelled."""
    try:
        while True:
            left = max(0, int(deadline - time.monotonic()))
            stream.write(f"\r  waiting for the login to complete: {left // 60}:{left % 60:02d} left ")
            stream.flush()
            await asyncio.sleep(1.0)
    finally:
        stream.write("\r" + " " * 60 + "\r")
        stream.flush()


async def _with_countdown(coro: asyncio.Future[Token] | asyncio.Task[Token], timeout: float) -> Token:
    ticker = None
    if sys.stderr.isatty():
        ticker = asyncio.ensure_future(_countdown(time.monotonic() + timeout, sys.stderr))
    try:
        return await coro
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


def _paste_input(args: argparse.Namespace) -> TextIO | None:
    from fedbearer.federation.browser import local_browser_available

    if getattr(args, "paste", None) is False:
        return None
    if args.paste or (sys.stdin.isatty() and (args.no_browser or not local_browser_available())):
        return sys.stdin
    return None


async def _demo(args: argparse.Namespace) -> int:
    from fedbearer.federation import Receiver
    from fedbearer.federation.auth import BROWSER_FAILED_MESSAGE
    from fedbearer.federation.browser import local_browser_available
    from fedbearer.testing import IdentityProvider

    out = sys.stdout
    tls = not args.plain_http
    with IdentityProvider(tls=tls) as idp:
        kind = "TLS, generated CA" if tls else "plain HTTP"
        print(f"Embedded identity provider running at {idp.endpoint} ({kind})")
        ssl_ctx = idp.ssl_context() if tls else None
        browser = local_browser_available() and not args.headless_agent
        agent = not browser and not args.manual
        spy = _LinkSpy(out, failure_line=BROWSER_FAILED_MESSAGE)
        receiver = Receiver(
            "fedbearer-demo",
            idp.endpoint,
            "demo-federation",
            writer=spy,  # type: ignore[arg-type]  # a TextIO-like pass-through (write, flush)
            no_browser_open=not browser,
            ssl_ctx=ssl_ctx,
            login_timeout=args.timeout,
        )
        if agent:
            print(f"No browser can be opened here: {_AGENT_NOTE}")
        fetch = asyncio.ensure_future(receiver.fetch(timeout=args.timeout))
        helper: asyncio.Task[bool] | None = None
        if agent:
            helper = asyncio.ensure_future(_agent(spy, ssl_ctx, fetch))
        elif browser and not args.manual:
            # A browser was expected but may fail to start: then the agent steps in.
            helper = asyncio.ensure_future(_agent_if_browser_fails(spy, ssl_ctx, fetch))
        try:
            token = await _with_countdown(fetch, args.timeout)
        except asyncio.CancelledError:
            if helper is not None and helper.done() and not helper.cancelled() and helper.result() is False:
                return 1  # the agent gave up and said why
            raise
        finally:
            for task in (fetch, helper):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        print(f"Logged in: {_describe(token)}")
        print(f"Provider counted {idp.stats.logins} login(s) and {idp.stats.tokens_issued} token(s) issued.")
    return 0


_AGENT_NOTE = (
    "the built-in headless user agent will complete the login page (use --manual to do it yourself)."
)


async def _agent(spy: _LinkSpy, ssl_ctx: ssl.SSLContext | None, fetch: asyncio.Future[Token]) -> bool:
    """Complete the login page as a user would; on failure, say why and end the login (False)."""
    from fedbearer.testing import HeadlessLoginError, complete_login

    link = await spy.link()
    try:
        status = await complete_login(link, username="demo-user", ssl_context=ssl_ctx)
    except (HeadlessLoginError, OSError, asyncio.TimeoutError) as exc:
        print(f"The headless user agent could not complete the login: {exc}", file=sys.stderr)
        fetch.cancel()
        return False
    print(f"Headless user agent approved the login; the listener answered HTTP {status}.")
    return True


async def _agent_if_browser_fails(
    spy: _LinkSpy, ssl_ctx: ssl.SSLContext | None, fetch: asyncio.Future[Token]
) -> bool:
    await spy.browser_failed()
    print(f"The browser could not be opened: {_AGENT_NOTE}")
    return await _agent(spy, ssl_ctx, fetch)


class _LinkSpy:
    """A writer that passes through and remembers the login link (for the demo's agent), and
    notices the line saying that the browser could not be opened."""

    def __init__(self, stream: TextIO, failure_line: str) -> None:
        self._stream = stream
        self._failure_line = failure_line
        self._found: asyncio.Future[str] | None = None
        self._failed: asyncio.Future[None] | None = None

    def _future(self) -> asyncio.Future[str]:
        if self._found is None:
            self._found = asyncio.get_running_loop().create_future()
        return self._found

    def _failure(self) -> asyncio.Future[None]:
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        return self._failed

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith(("http://", "https://")) and "/oauth2/authorize?" in line:
                fut = self._future()
                if not fut.done():
                    fut.set_result(line.strip())
            elif line.strip() == self._failure_line:
                failed = self._failure()
                if not failed.done():
                    failed.set_result(None)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    async def link(self) -> str:
        return await self._future()

    async def browser_failed(self) -> None:
        await self._failure()


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for the token endpoint: the system's CAs, or only those of ``--ca-file``."""
    ca_file = getattr(args, "ca_file", None)
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot use --ca-file {ca_file}: {exc}") from None


def _bearer(args: argparse.Namespace, writer: TextIO | None) -> object:
    from fedbearer.federation import Bearer

    return Bearer(
        args.profile,
        args.client_id,
        args.endpoint,
        args.federation_id,
        writer=writer,
        no_browser_open=args.no_browser,
        ssl_ctx=_ssl_context(args),
        login_timeout=args.timeout,
        paste_input=_paste_input(args),
    )


async def _login(args: argparse.Namespace) -> int:
    bearer = _bearer(args, sys.stdout)
    fetch = asyncio.ensure_future(bearer.receiver().fetch(timeout=args.timeout))  # type: ignore[attr-defined]
    token = await _with_countdown(fetch, args.timeout)
    print(f"Logged in: {_describe(token)}")
    return 0


def _add_tenant_args(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--endpoint",
        default=env("FEDBEARER_ENDPOINT"),
        required=not env("FEDBEARER_ENDPOINT"),
        help="federation endpoint, e.g. auth.example.com (env FEDBEARER_ENDPOINT)",
    )
    p.add_argument(
        "--federation-id",
        default=env("FEDBEARER_FEDERATION_ID"),
        required=not env("FEDBEARER_FEDERATION_ID"),
        help="federation id (env FEDBEARER_FEDERATION_ID)",
    )
    p.add_argument(
        "--client-id",
        default=env("FEDBEARER_CLIENT_ID"),
        required=not env("FEDBEARER_CLIENT_ID"),
        help="OAuth2 client id (env FEDBEARER_CLIENT_ID)",
    )
    p.add_argument("--profile", default="default", help="profile name, part of the cache key")
    p.add_argument("--no-browser", action="store_true", help="print the link instead of opening a browser")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the login (default 300)")
    p.add_argument(
        "--paste",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="accept the final redirect URL pasted on stdin (default: when no local browser)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedbearer", description="Interactive OAuth2/OIDC federation login."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log INFO (-v) or DEBUG (-vv)")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="a full login against the embedded identity provider (no network needed)"
    )
    demo.add_argument(
        "--manual", action="store_true", help="wait for you to open the link instead of the agent"
    )
    demo.add_argument(
        "--headless-agent",
        action="store_true",
        help="use the built-in headless user agent even when a browser is available",
    )
    demo.add_argument("--plain-http", action="store_true", help="run the provider without TLS")
    demo.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the login")
    demo.set_defaults(run=_demo)

    login = sub.add_parser("login", help="log in and cache the token")
    _add_tenant_args(login)
    login.add_argument(
        "--ca-file",
        default=os.environ.get("FEDBEARER_CA_FILE"),
        metavar="PEM",
        help="trust only the CA certificates in this PEM file for the token endpoint, instead of "
        "the system's (env FEDBEARER_CA_FILE)",
    )
    login.set_defaults(run=_login)

    from fedbearer import _cli_tokens

    _cli_tokens.add_commands(sub, _add_tenant_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedbearer`` console script."""
    args = _parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(args.run(args))
    except KeyboardInterrupt:
        print("\ninterrupted; no login was completed", file=sys.stderr)
        return 130
    except AuthError as exc:
        print(f"fedbearer: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"fedbearer: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
