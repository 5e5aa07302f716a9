"""Secret canary: every public path runs against a provider whose codes, access tokens and
refresh tokens are recognisable (``CANARY-CODE-``, ``CANARY-AT-``, ``CANARY-RT-``), and every
PKCE verifier and ID token drawn is recorded. None of them may appear anywhere but where it must:
the ``Token``/result objects' own attributes, the tenant's cache entry (file or Redis value), and
the stdout of ``fedbearer token``, whose job it is. Anywhere else — logs at DEBUG from every
logger, writers, ``repr``/``str`` of every public object, exception messages, arguments,
attributes and formatted tracebacks, hook events, listener pages, CLI output, every other file or
Redis key — is a leak."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bearer_helpers import AutoBrowser, subprocess_env
from fedbearer import (
    AuthError,
    CallbackListener,
    IssuerMismatch,
    ListenerError,
    LoginTimeout,
    TokenEndpointError,
    new_pkce,
    parse_token_response,
)
from fedbearer.cache import FileCache, LayeredCache, LoginProgress, MemoryCache, RedisCache
from fedbearer.federation import Bearer, Receiver, auth
from fedbearer.federation import bearer as bearer_module
from fedbearer.hooks import CallbackHooks
from fedbearer.retry import RetryPolicy
from fedbearer.testing import IdentityProvider
from redis_server import running_redis

from ._probe import (
    CANARIES,
    CANARY,
    all_logs_at_debug,
    exception_texts,
    expect_error,
    get_request,
    link_from,
    provider_redirect,
    raw_request,
    report,
    target_of,
)

pytestmark = pytest.mark.timeout(120)


class Witness:
    """Everything a user, an operator or a log shipper could see, by where it was seen."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.needles: set[str] = {CANARY}

    def see(self, where: str, text: object) -> None:
        self.seen.append((where, text if isinstance(text, str) else repr(text)))

    def obj(self, where: str, thing: object) -> None:
        self.see(f"repr({where})", repr(thing))
        self.see(f"str({where})", str(thing))

    def error(self, where: str, exc: BaseException) -> None:
        assert isinstance(exc, (AuthError, ValueError)), (where, repr(exc))
        self.see(f"{where}: {type(exc).__name__}", exception_texts(exc))

    def secret(self, *values: str | None) -> None:
        self.needles.update(v for v in values if v)

    def assert_clean(self) -> None:
        leaks = [
            f"{where}: {needle[:14]}... in {text[max(0, text.find(needle) - 60) : text.find(needle) + 30]!r}"
            for where, text in self.seen
            for needle in self.needles
            if needle in text
        ]
        assert not leaks, "secrets leaked:\n" + "\n".join(leaks[:20])


@pytest.fixture
def witness(monkeypatch: pytest.MonkeyPatch) -> Any:
    w = Witness()
    real = auth.new_login_secrets

    def recording() -> Any:
        pkce, state = real()
        w.secret(pkce.verifier)
        return pkce, state

    monkeypatch.setattr(auth, "new_login_secrets", recording)
    return w


async def deliver(redirect: str) -> str:
    port, target = target_of(redirect)
    return (await raw_request(port, get_request(target))).decode("utf-8", "replace")


async def login(idp: IdentityProvider, w: Witness, **kwargs: Any) -> auth.GetTokenResult:
    writer = io.StringIO()
    task = asyncio.ensure_future(
        auth.authorize("client", idp.endpoint, "fed", writer, True, timeout=20, **kwargs)
    )
    redirect = await provider_redirect(await link_from(writer))
    w.secret(urllib.parse.parse_qs(urllib.parse.urlsplit(redirect).query)["code"][0])
    w.see("listener page after the redirect", await deliver(redirect))
    result = await asyncio.wait_for(task, 20)
    w.see("authorize writer", writer.getvalue())
    w.secret(result.access_token, result.refresh_token, result.id_token)
    w.obj("GetTokenResult", result)
    return result


# -- in process: authorize, Receiver, Bearer, refresh, errors of each kind, reprs, files, Redis -------
@pytest.mark.asyncio
async def test_no_secret_escapes_any_in_process_path(
    witness: Witness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = witness
    with (
        all_logs_at_debug() as logs,
        running_redis() as redis_server,
        IdentityProvider(auto_approve=True, send_iss=True, **CANARIES) as idp,
    ):
        # authorize(), with and without the issuer check.
        result = await login(idp, w)
        await login(idp, w, expected_issuer=idp.issuer)

        # Receiver.fetch() (the seed's API) and its Token.
        writer = AutoBrowser()
        receiver = Receiver("client", idp.endpoint, "fed", writer=writer, no_browser_open=True)
        token = await receiver.fetch(timeout=20)
        w.secret(token.token)
        for name, thing in (("Token", token), ("Receiver", receiver), ("latest", receiver.latest)):
            w.obj(name, thing)
        w.see("Receiver writer", writer.getvalue())

        # Bearer: login, hot path, refresh, renew, logout — memory, file and Redis layers, hooks.
        events: list[str] = []
        hooks = CallbackHooks(lambda name, **fields: events.append(f"{name} {fields!r}"))
        redis_layer = RedisCache(redis_server.url)
        cache = LayeredCache(MemoryCache(), FileCache(tmp_path / "cache", fsync=False), redis_layer)
        user = AutoBrowser()
        bearer = Bearer(
            "prof",
            "client",
            idp.endpoint,
            "fed",
            writer=user,
            no_browser_open=True,
            cache=cache,
            hooks=hooks,
            retry=RetryPolicy(initial_delay=0.01),
            renew_in_background=True,
        )
        first = await bearer.receiver().fetch()
        again = await bearer.receiver().fetch()
        real = time.time
        monkeypatch.setattr(bearer_module, "_time", lambda: real() + 3600 - 30)
        refreshed = await bearer.receiver().fetch()
        renewed = await bearer.renew()
        for t in (first, again, refreshed, renewed):
            w.secret(t.token)
            w.obj("Bearer token", t)
        entry = await cache.get(bearer.key)
        assert entry is not None
        w.secret(entry.refresh_token)
        for name, thing in (
            ("Bearer", bearer),
            ("receiver", bearer.receiver()),
            ("CacheEntry", entry),
            ("LayeredCache", cache),
            ("RedisCache", redis_layer),
            ("MemoryCache", cache.layers[0]),
            ("FileCache", cache.layers[1]),
            ("LoginProgress", LoginProgress.mine("http://x/oauth2/authorize?a=b", 5)),
        ):
            w.obj(name, thing)
        w.see("Bearer writer", user.getvalue())

        # The Redis keys: only the tenant's token entry may hold its tokens.
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(redis_server.url)
        try:
            for key in await client.keys("*"):
                value = await client.get(key) if await client.type(key) == b"string" else b""
                allowed = key.decode().startswith("fedbearer:tok:")
                w.see(f"redis key name {key!r}", key.decode("utf-8", "replace"))
                if not allowed:
                    w.see(f"redis value of {key!r}", (value or b"").decode("utf-8", "replace"))
        finally:
            await client.aclose()

        # Errors of each kind; every message, argument, attribute and traceback is looked at.
        # Token endpoint faults on the exchange (a canary code was sent) and on refresh.
        for fault in (
            "500_html",
            "503_html",
            "truncated_json",
            "non_json_200",
            "error_body_200",
            "reset",
            "hang",
        ):
            idp.set_fault(fault, times=1)
            w.error(f"exchange with {fault}", await expect_error(login(idp, w, http_timeout=0.5)))
            idp.set_fault(fault, times=1)
            w.error(
                f"refresh with {fault}",
                await expect_error(
                    auth.refresh("client", idp.endpoint, result.refresh_token or "", http_timeout=0.5)
                ),
            )
        w.error(
            "refresh token rejected",
            await expect_error(auth.refresh("client", idp.endpoint, "CANARY-RT-forged")),
        )
        w.error(
            "code replayed",
            await expect_error(
                auth.exchange_code(
                    idp.token_endpoint,
                    "client",
                    "CANARY-CODE-replayed-0123456789",
                    "http://127.0.0.1:1",
                    "v" * 43,
                )
            ),
        )
        w.error(
            "login timeout",
            await expect_error(auth.authorize("client", idp.endpoint, "fed", None, True, timeout=0.05)),
        )
        w.error("bad endpoint", await expect_error(auth.authorize("client", "http://evil.example", "fed")))

        # Denial and issuer mismatch carrying secret-looking text from a hostile provider.
        echo = "CANARY-CODE-" + "k9" * 20
        for extra, kind in (
            (
                {
                    "error": "access_denied",
                    "error_description": f"code {echo} was denied",
                    "error_uri": f"https://x/{echo}",
                },
                AuthError,
            ),
            ({"code": echo, "iss": f"https://evil.example/{echo}"}, IssuerMismatch),
            ({"error": f"{echo}", "iss": idp.issuer}, AuthError),
        ):
            writer = io.StringIO()
            task = asyncio.ensure_future(
                auth.authorize(
                    "client", idp.endpoint, "fed", writer, True, timeout=20, expected_issuer=idp.issuer
                )
            )
            state = urllib.parse.parse_qs(urllib.parse.urlsplit(await link_from(writer)).query)["state"][0]
            listener_port = int(
                urllib.parse.urlsplit(
                    urllib.parse.parse_qs(urllib.parse.urlsplit(await link_from(writer)).query)[
                        "redirect_uri"
                    ][0]
                ).port
                or 0
            )
            query = urllib.parse.urlencode({"state": state, **extra})
            page = await raw_request(listener_port, get_request(f"/?{query}"))
            w.see(f"listener page for {extra}", page.decode("utf-8", "replace"))
            exc = await expect_error(asyncio.wait_for(task, 10))
            assert isinstance(exc, kind), repr(exc)
            w.error(f"redirect {sorted(extra)}", exc)

        # The raw core: listener, flow, authorization, token response, PKCE — reprs only.
        listener = CallbackListener.bind()
        flow = listener.register("st")
        waiting = asyncio.ensure_future(flow.wait(5))
        code = "CANARY-CODE-core-0123456789abcdef"
        w.secret(code)
        w.see("core page", await raw_request(listener.port, get_request(f"/?state=st&code={code}")))
        authorization = await waiting
        for name, thing in (
            ("CallbackListener", listener),
            ("PendingFlow", flow),
            ("Authorization", authorization),
        ):
            w.obj(name, thing)
        w.error("closed listener", await expect_error(_register_closed(listener)))
        response = parse_token_response(
            json.dumps(
                {
                    "access_token": "CANARY-AT-core",
                    "refresh_token": "CANARY-RT-core",
                    "id_token": "CANARY-ID",
                    "scope": "openid",
                }
            ).encode()
        )
        w.obj("TokenResponse", response)
        pkce = new_pkce()
        w.secret(pkce.verifier)
        w.obj("Pkce", pkce)
        for exc in (LoginTimeout(1.0), ListenerError("x"), TokenEndpointError(400, "invalid_grant")):
            w.error("constructed", exc)

        cache_files = look_at_files(w, tmp_path / "cache")
        await bearer.logout()
        await redis_layer.aclose()
        await asyncio.sleep(0.05)
        w.see("hook events", "\n".join(events))
        w.see("logs at DEBUG (every logger)", logs.text)

    assert cache_files, "the cache wrote nothing"
    look_at_files(w, tmp_path / "cache")  # and after the logout
    assert events and logs.lines
    w.assert_clean()
    report(
        "canary, in process",
        f"{len(w.seen)} observations, {len(w.needles)} secrets, {len(logs.lines) // 2} log records: clean",
    )


def look_at_files(w: Witness, directory: Path) -> list[Path]:
    """File names, and the content of every file but a tenant's entry (``<hash>.json``)."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        w.see(f"cache file name {path.name}", path.name)
        if not path.name.endswith(".json"):
            w.see(f"cache file {path.name}", path.read_bytes().decode("utf-8", "replace"))
    return files


async def _register_closed(listener: CallbackListener) -> None:
    listener.close()
    listener.register("after-close")


# -- a hostile token endpoint that echoes our secrets back --------------------------------------------
@pytest.mark.asyncio
async def test_a_token_endpoint_echoing_our_secrets_never_gets_them_into_a_message(witness: Witness) -> None:
    """Whatever the endpoint does with the code, verifier or refresh token it was sent — put it
    in error_description, error_uri, the error code, an HTML title, a JSON key, plain text — the
    error we raise shows none of it."""
    w = witness
    shapes = {
        "description": lambda s: (
            400,
            "application/json",
            json.dumps({"error": "invalid_grant", "error_description": f"bad {s}"}),
        ),
        "uri": lambda s: (
            400,
            "application/json",
            json.dumps({"error": "invalid_grant", "error_uri": f"https://idp/{s}"}),
        ),
        "error code": lambda s: (400, "application/json", json.dumps({"error": s})),
        "200 error": lambda s: (200, "application/json", json.dumps({"error": "x", "error_description": s})),
        "html title": lambda s: (500, "text/html", f"<html><title>failed for {s}</title></html>"),
        "json key": lambda s: (200, "application/json", json.dumps({s: 1})),
        "plain text": lambda s: (200, "text/plain", f"your grant {s} is bad"),
        "plain text, cut": lambda s: (502, "text/plain", "\U0001f600" * 71 + " " + s.replace("-", "")),
        "truncated json": lambda s: (200, "application/json", json.dumps({"access_token": s})[:-3]),
        "wrong type": lambda s: (200, "application/json", json.dumps({"access_token": s, "expires_in": s})),
    }
    shape = ["description"]

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        sent = str(form.get("code") or form.get("refresh_token"))
        verifier = str(form.get("code_verifier", ""))
        status, kind, body = shapes[shape[0]](sent + " " + verifier if verifier else sent)
        return web.Response(status=status, text=body, content_type=kind)

    app = web.Application()
    app.router.add_post("/oauth2/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    origin = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        with all_logs_at_debug() as logs:
            for name in shapes:
                shape[0] = name
                code, verifier, refresh = (
                    "CANARY-CODE-" + "c7" * 20,
                    new_pkce().verifier,
                    "CANARY-RT-" + "r5" * 20,
                )
                w.secret(code, verifier, refresh, refresh.replace("-", ""), code.replace("-", ""))
                w.error(
                    f"exchange, {name}",
                    await expect_error(
                        auth.exchange_code(
                            f"{origin}/oauth2/token", "c", code, "http://127.0.0.1:1", verifier
                        )
                    ),
                )
                w.error(f"refresh, {name}", await expect_error(auth.refresh("c", origin, refresh)))
        w.see("logs", logs.text)
    finally:
        await runner.cleanup()
    w.assert_clean()


# -- the command line ---------------------------------------------------------------------------------
def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedbearer", "-vv", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_no_secret_escapes_the_cli(tmp_path: Path) -> None:
    """login, token (stdout is the token: its job), token --json, status, logout — at -vv — and a
    login that fails on the exchange and one that times out; then every file of the cache."""
    w = Witness()
    with IdentityProvider(auto_approve=True, **CANARIES) as idp:
        env = subprocess_env(tmp_path / "cache", tmp_path / "browser.log")
        tenant = ["--endpoint", idp.endpoint, "--federation-id", "fed", "--client-id", "cli"]
        steps: list[tuple[str, subprocess.CompletedProcess[str], bool]] = []

        def step(
            name: str, *args: str, stdout_may_hold_the_token: bool = False, ok: bool = True, **extra: str
        ) -> None:
            done = run_cli({**env, **extra}, *args)
            assert (done.returncode == 0) is ok, (name, done.returncode, done.stderr[-2000:])
            steps.append((name, done, stdout_may_hold_the_token))

        step("login", "login", *tenant)
        step("token", "token", *tenant, stdout_may_hold_the_token=True)
        step("token --json", "token", "--json", *tenant, stdout_may_hold_the_token=True)
        step("status", "status")
        step("status --json", "status", "--json")
        step("token, other profile", "token", "--profile", "other", *tenant, stdout_may_hold_the_token=True)
        step("logout", "logout", *tenant)
        idp.set_fault("truncated_json")
        step("login, broken exchange", "login", "--profile", "broken", *tenant, ok=False)
        idp.set_fault(None)
        step(
            "login, nobody answers",
            "login",
            "--profile",
            "late",
            "--timeout",
            "0.3",
            *tenant,
            ok=False,
            FAKE_BROWSER_IGNORE="1",
        )
        for token in idp.issued_tokens:
            w.secret(token)
        for name, done, token_ok in steps:
            w.see(f"{name} stderr", done.stderr)
            if token_ok:
                printed = done.stdout.strip()
                token = json.loads(printed)["access_token"] if printed.startswith("{") else printed
                assert token in idp.issued_tokens
                w.see(f"{name} stdout without its token", printed.replace(token, "<the token>"))
            else:
                w.see(f"{name} stdout", done.stdout)
        assert "Traceback" not in "".join(d.stderr for _, d, _ in steps)
    look_at_files(w, tmp_path / "cache")
    w.see("browser log", (tmp_path / "browser.log").read_text())
    w.assert_clean()
    report("canary, CLI", f"{len(steps)} commands at -vv, {len(w.needles)} secrets: clean")


def test_no_secret_escapes_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``fedbearer demo`` in process, its embedded provider issuing canaries."""
    import fedbearer.testing
    from fedbearer import cli

    real = fedbearer.testing.IdentityProvider
    issued: list[IdentityProvider] = []

    def canary_provider(**kwargs: Any) -> IdentityProvider:
        provider = real(**{**kwargs, **CANARIES})
        issued.append(provider)
        return provider

    monkeypatch.setattr(fedbearer.testing, "IdentityProvider", canary_provider)
    w = Witness()
    with all_logs_at_debug() as logs, contextlib.suppress(SystemExit):
        code = cli.main(["-vv", "demo", "--headless-agent", "--timeout", "30"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert issued and issued[0].stats.tokens_issued == 1
    for token in issued[0].issued_tokens:
        w.secret(token)
    w.see("demo stdout", out.out)
    w.see("demo stderr", out.err)
    w.see("demo logs", logs.text)
    w.assert_clean()
