"""The embedded identity provider (`fedbearer.testing`), driven over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbearer.testing import (
    HeadlessLoginError,
    IdentityProvider,
    complete_login,
    complete_login_sync,
    make_pkce_pair,
    s256_challenge,
)
from fedbearer.testing.protocol import LOOPBACK_HOSTS, redirect_uri_problem

REDIRECT_URI = "http://127.0.0.1:47123"  # the reference client's form: no path
CLIENT_ID = "test-client"


# -- a minimal HTTP client over urllib: no proxies, no redirects followed ---------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> dict[str, object]:
        return json.loads(self.body)

    @property
    def location_query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.headers["Location"]).query).items()}


def request(idp: IdentityProvider, url: str, form: dict[str, str] | None = None, timeout: float = 5) -> Reply:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({}), _NoRedirect()]
    if idp.tls:
        handlers.append(urllib.request.HTTPSHandler(context=idp.ssl_context()))
    opener = urllib.request.build_opener(*handlers)
    data = urlencode(form).encode() if form is not None else None
    try:
        with opener.open(url, data, timeout=timeout) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, dict(err.headers), err.read())


class FormParser(HTMLParser):
    """The login form as a user would see it: hidden fields, the user field, the two buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.form: dict[str, str] = {}
        self.fields: dict[str, str] = {}
        self.ids: dict[str, dict[str, str]] = {}
        self.external = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids[a["id"]] = {"tag": tag, **a}
        if tag == "form":
            self.form = a
        elif tag == "input" and "name" in a:
            self.fields[a["name"]] = a.get("value", "")
        if tag in ("script", "img", "iframe") or (
            tag == "link" and not a.get("href", "").startswith("data:")
        ):
            self.external = True


def parse_form(page: str) -> FormParser:
    parser = FormParser()
    parser.feed(page)
    return parser


def authorize(idp: IdentityProvider, **overrides: str) -> tuple[Reply, str]:
    """GET the authorization endpoint; returns the reply and the PKCE verifier."""
    verifier, challenge = make_pkce_pair()
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "scope": "openid",
        "state": "state-123",
        "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "federation-id": "fed-1",
    }
    params.update(overrides)
    params = {k: v for k, v in params.items() if v != "<omit>"}
    return request(idp, f"{idp.authorize_endpoint}?{urlencode(params)}"), verifier


def decide(idp: IdentityProvider, page: str, decision: str, username: str = "alice") -> Reply:
    form = parse_form(page)
    fields = {**form.fields, "username": username, "decision": decision}
    return request(idp, f"{idp.endpoint}{form.form['action']}", fields)


def login(idp: IdentityProvider, username: str = "alice") -> tuple[str, str]:
    """An approved login through the page; returns (code, verifier)."""
    page, verifier = authorize(idp)
    assert page.status == 200
    redirect = decide(idp, page.text, "approve", username)
    assert redirect.status == 302
    return redirect.location_query["code"], verifier


def exchange(idp: IdentityProvider, code: str, verifier: str, **overrides: str) -> Reply:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": CLIENT_ID,
        "code_verifier": verifier,
        **overrides,
    }
    return request(idp, idp.token_endpoint, form)


def refresh(idp: IdentityProvider, refresh_token: str, client_id: str = CLIENT_ID) -> Reply:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return request(idp, idp.token_endpoint, form)


def userinfo(idp: IdentityProvider, access_token: str) -> dict[str, object] | None:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if idp.tls:
        handlers.append(urllib.request.HTTPSHandler(context=idp.ssl_context()))
    req = urllib.request.Request(
        f"{idp.endpoint}/userinfo", headers={"Authorization": f"Bearer {access_token}"}
    )
    try:
        with urllib.request.build_opener(*handlers).open(req) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            assert err.code == 401 and err.headers["WWW-Authenticate"].startswith("Bearer")
        return None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider(
        token_prefix="CANARY-AT-", code_prefix="CANARY-CODE-", refresh_prefix="CANARY-RT-"
    ) as p:
        yield p


# -- import hygiene -----------------------------------------------------------------------------------
def test_import_loads_neither_aiohttp_nor_trustme() -> None:
    code = "import sys, fedbearer.testing; print(sorted({'aiohttp', 'trustme'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_s256_challenge_matches_rfc7636_appendix_b() -> None:
    assert (
        s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


# -- authorization endpoint ---------------------------------------------------------------------------
def test_login_page_is_a_self_contained_form(idp: IdentityProvider) -> None:
    reply, _ = authorize(idp)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    form = parse_form(reply.text)
    assert form.form["method"] == "post" and form.form["action"] == "/oauth2/authorize/decision"
    assert form.ids["username"]["tag"] == "input" and form.ids["username"]["name"] == "username"
    assert form.ids["approve"]["tag"] == "button" and form.ids["deny"]["tag"] == "button"
    assert form.fields["state"] == "state-123" and form.fields["redirect_uri"] == REDIRECT_URI
    assert form.fields["federation-id"] == "fed-1"
    assert not form.external and "url(" not in reply.text and "@import" not in reply.text


def test_approve_redirects_to_loopback_with_code_and_state(idp: IdentityProvider) -> None:
    page, _ = authorize(idp)
    redirect = decide(idp, page.text, "approve")
    assert redirect.status == 302
    assert redirect.headers["Location"].startswith(REDIRECT_URI + "/?")
    query = redirect.location_query
    assert query["state"] == "state-123" and query["code"].startswith("CANARY-CODE-")
    assert "iss" not in query


def test_deny_redirects_with_access_denied(idp: IdentityProvider) -> None:
    page, _ = authorize(idp)
    redirect = decide(idp, page.text, "deny")
    assert redirect.status == 302
    assert (
        "error=access_denied&error_description=The+user+denied+the+request&state=state-123"
        in (redirect.headers["Location"])
    )


def test_send_iss_adds_the_issuer_to_both_outcomes() -> None:
    with IdentityProvider(send_iss=True, issuer="https://issuer.example") as idp:
        page, _ = authorize(idp)
        assert decide(idp, page.text, "approve").location_query["iss"] == "https://issuer.example"
        assert decide(idp, page.text, "deny").location_query["iss"] == "https://issuer.example"


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "<omit>",
        "https://127.0.0.1:8080/",
        "http://example.com/cb",
        "http://127.0.0.1.example.com/",
        "http://localhost@example.com/",
        "http://127.0.0.1:8080/#frag",
        "http://127.0.0.1:99999/",
    ],
)
def test_bad_redirect_uri_gets_a_400_page_and_never_a_redirect(redirect_uri: str) -> None:
    with IdentityProvider(redirect_errors=True) as idp:
        reply, _ = authorize(idp, redirect_uri=redirect_uri)
        assert reply.status == 400 and "Location" not in reply.headers
        assert parse_form(reply.text).ids["error-param"]
        assert '<code id="error-param">redirect_uri</code>' in reply.text


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("response_type", "token"),
        ("code_challenge_method", "plain"),
        ("code_challenge", "<omit>"),
        ("code_challenge", "too-short"),
        ("scope", "profile"),
        ("state", "<omit>"),
        ("client_id", "<omit>"),
    ],
)
def test_bad_parameter_gets_a_400_page_naming_it(idp: IdentityProvider, param: str, value: str) -> None:
    reply, _ = authorize(idp, **{param: value})
    assert reply.status == 400 and "Location" not in reply.headers
    assert f'<code id="error-param">{param}</code>' in reply.text


def test_unregistered_client_is_refused() -> None:
    with IdentityProvider(client_ids=["known"]) as idp:
        reply, _ = authorize(idp, client_id="stranger")
        assert reply.status == 400 and '<code id="error-param">client_id</code>' in reply.text
        assert authorize(idp, client_id="known")[0].status == 200


def test_redirect_errors_sends_other_bad_params_back_to_the_client() -> None:
    with IdentityProvider(redirect_errors=True) as idp:
        reply, _ = authorize(idp, code_challenge_method="plain")
        assert reply.status == 302
        assert reply.location_query["error"] == "invalid_request"
        assert reply.location_query["state"] == "state-123"


def test_auto_approve_and_auto_deny_redirect_at_once() -> None:
    with IdentityProvider(auto_approve=True) as idp:
        reply, verifier = authorize(idp)
        assert reply.status == 302
        assert exchange(idp, reply.location_query["code"], verifier).status == 200
        assert idp.stats.logins == 1
    with IdentityProvider(auto_deny=True) as idp:
        reply, _ = authorize(idp)
        assert reply.status == 302 and reply.location_query["error"] == "access_denied"
        assert idp.stats.denials == 1


# -- token endpoint -----------------------------------------------------------------------------------
def test_code_exchange_with_the_right_verifier_issues_tokens(idp: IdentityProvider) -> None:
    code, verifier = login(idp)
    reply = exchange(idp, code, verifier)
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == "openid"
    assert str(body["access_token"]).startswith("CANARY-AT-")
    assert str(body["refresh_token"]).startswith("CANARY-RT-")
    assert str(body["id_token"]).count(".") == 2
    assert idp.issued_tokens == {body["access_token"]}
    assert userinfo(idp, str(body["access_token"])) == {"sub": "alice", "client_id": CLIENT_ID}
    assert userinfo(idp, "CANARY-AT-forged") is None


def test_wrong_verifier_is_invalid_grant_and_burns_the_code(idp: IdentityProvider) -> None:
    code, verifier = login(idp)
    wrong, _ = make_pkce_pair()
    reply = exchange(idp, code, wrong)
    assert reply.status == 400 and reply.json()["error"] == "invalid_grant"
    assert exchange(idp, code, verifier).json()["error"] == "invalid_grant"


def test_replayed_code_is_invalid_grant(idp: IdentityProvider) -> None:
    code, verifier = login(idp)
    assert exchange(idp, code, verifier).status == 200
    replay = exchange(idp, code, verifier)
    assert replay.status == 400 and replay.json()["error"] == "invalid_grant"
    assert "CANARY" not in replay.text


def test_expired_code_is_invalid_grant() -> None:
    clock = FakeClock()
    with IdentityProvider(code_ttl=5, clock=clock) as idp:
        code, verifier = login(idp)
        clock.now += 5
        reply = exchange(idp, code, verifier)
        assert reply.status == 400 and "expired" in str(reply.json()["error_description"])


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"redirect_uri": REDIRECT_URI + "/"}, 400, "invalid_grant"),
        ({"client_id": "other-client"}, 400, "invalid_grant"),
        ({"code_verifier": ""}, 400, "invalid_request"),
        ({"client_id": ""}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_request_errors_are_rfc6749_bodies(
    idp: IdentityProvider, overrides: dict[str, str], status: int, error: str
) -> None:
    code, verifier = login(idp)
    reply = exchange(idp, code, verifier, **overrides)
    assert reply.status == status and reply.json()["error"] == error
    assert reply.headers["Cache-Control"] == "no-store"


def test_token_request_must_be_form_encoded(idp: IdentityProvider) -> None:
    req = urllib.request.Request(idp.token_endpoint, b"{}", {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req)
    with caught.value as err:
        assert err.code == 400 and json.loads(err.read())["error"] == "invalid_request"


def test_refresh_rotates_and_rejects_reuse(idp: IdentityProvider) -> None:
    code, verifier = login(idp)
    first = exchange(idp, code, verifier).json()
    second = refresh(idp, str(first["refresh_token"]))
    assert second.status == 200
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"] and body["access_token"] != first["access_token"]
    reuse = refresh(idp, str(first["refresh_token"]))
    assert reuse.status == 400 and reuse.json()["error"] == "invalid_grant"
    stolen = refresh(idp, str(body["refresh_token"]), client_id="other-client")
    assert stolen.json()["error"] == "invalid_grant"
    assert refresh(idp, str(body["refresh_token"])).status == 200
    assert idp.stats.refreshes == 2


def test_refresh_without_rotation_keeps_the_token_until_revoked() -> None:
    with IdentityProvider(rotate_refresh_tokens=False) as idp:
        code, verifier = login(idp)
        token = str(exchange(idp, code, verifier).json()["refresh_token"])
        for _ in range(2):
            reply = refresh(idp, token)
            assert reply.status == 200 and "refresh_token" not in reply.json()
        assert idp.revoke_refresh_tokens() == 1
        assert refresh(idp, token).json()["error"] == "invalid_grant"


def test_refresh_token_expires() -> None:
    clock = FakeClock()
    with IdentityProvider(refresh_token_ttl=30, clock=clock) as idp:
        code, verifier = login(idp)
        token = str(exchange(idp, code, verifier).json()["refresh_token"])
        clock.now += 30
        assert refresh(idp, token).json()["error"] == "invalid_grant"


def test_expires_in_as_string_and_token_ttl() -> None:
    with IdentityProvider(expires_in_as_string=True, token_ttl=120) as idp:
        code, verifier = login(idp)
        assert exchange(idp, code, verifier).json()["expires_in"] == "120"


def test_counters_count_each_outcome(idp: IdentityProvider) -> None:
    code, verifier = login(idp)  # 1 authorize, 1 login
    tokens = exchange(idp, code, verifier).json()  # 1 token request, 1 issued
    exchange(idp, code, verifier)  # replay: 1 token request, 1 error
    refresh(idp, str(tokens["refresh_token"]))  # 1 token request, 1 issued, 1 refresh
    page, _ = authorize(idp)  # 1 authorize
    decide(idp, page.text, "deny")  # 1 denial
    authorize(idp, response_type="token")  # 1 authorize, 1 error
    stats = idp.stats
    assert (stats.authorize_requests, stats.logins, stats.denials) == (3, 1, 1)
    assert (stats.token_requests, stats.tokens_issued, stats.refreshes, stats.errors) == (3, 2, 1, 2)
    idp.reset_stats()
    assert idp.stats.authorize_requests == 0 and len(idp.issued_tokens) == 2


def test_ipv6_loopback_provider() -> None:
    with IdentityProvider(host="::1", auto_approve=True) as idp:
        assert idp.endpoint.startswith("http://[::1]:")
        reply, verifier = authorize(idp)
        assert exchange(idp, reply.location_query["code"], verifier).status == 200


# -- fault injection ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "status", "content_type"),
    [
        ("500_html", 500, "text/html"),
        ("503_html", 503, "text/html"),
        ("truncated_json", 200, "application/json"),
        ("non_json_200", 200, "text/html"),
        ("error_body_200", 200, "application/json"),
    ],
)
def test_fault_answers_then_the_code_still_works(
    idp: IdentityProvider, mode: str, status: int, content_type: str
) -> None:
    code, verifier = login(idp)
    idp.set_fault(mode, times=1)
    reply = exchange(idp, code, verifier)
    assert reply.status == status and reply.headers["Content-Type"].startswith(content_type)
    if mode == "error_body_200":
        assert reply.json()["error"] == "invalid_grant"
    elif mode == "truncated_json":
        with pytest.raises(json.JSONDecodeError):
            reply.json()
    assert exchange(idp, code, verifier).status == 200
    assert idp.stats.faults == 1


def test_hang_fault_never_answers(idp: IdentityProvider) -> None:
    idp.set_fault("hang")
    with pytest.raises(TimeoutError):
        request(idp, idp.token_endpoint, {"grant_type": "refresh_token"}, timeout=0.3)
    idp.set_fault(None)
    assert request(idp, idp.token_endpoint, {"grant_type": "refresh_token"}).status == 401


def test_stop_drops_a_hung_request_promptly() -> None:
    idp = IdentityProvider(tls=True).start()
    idp.set_fault("hang")
    errors: list[BaseException] = []

    def client() -> None:
        try:
            request(idp, idp.token_endpoint, {"grant_type": "x"}, timeout=10)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    idp.stop()
    thread.join(5)
    assert time.monotonic() - started < 3 and len(errors) == 1
    assert not isinstance(errors[0], TimeoutError)


@pytest.mark.parametrize("tls", [False, True])
def test_reset_fault_is_a_connection_error(tls: bool) -> None:
    with IdentityProvider(tls=tls) as idp:
        idp.set_fault("reset")
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            request(idp, idp.token_endpoint, {"grant_type": "refresh_token"})

        async def with_aiohttp() -> None:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                ssl_context = idp.ssl_context() if tls else True
                async with session.post(idp.token_endpoint, data={"a": "b"}, ssl=ssl_context) as resp:
                    await resp.read()

        with pytest.raises(__import__("aiohttp").ClientConnectionError):
            asyncio.run(with_aiohttp())


def test_slow_fault_delays_then_answers(idp: IdentityProvider) -> None:
    code, verifier = login(idp)
    idp.set_fault("slow:0.3")
    started = time.monotonic()
    assert exchange(idp, code, verifier).status == 200
    assert time.monotonic() - started >= 0.3


def test_unknown_fault_mode_is_rejected(idp: IdentityProvider) -> None:
    for mode in ("explode", "slow:", "slow:-1"):
        with pytest.raises(ValueError, match="fault mode"):
            idp.set_fault(mode)


# -- TLS ----------------------------------------------------------------------------------------------
def test_tls_flow_with_aiohttp_and_the_ca_file() -> None:
    async def flow(idp: IdentityProvider) -> dict[str, object]:
        import aiohttp

        verifier, challenge = make_pkce_pair()
        url = idp.authorization_url(
            client_id=CLIENT_ID, redirect_uri=REDIRECT_URI, state="s1", code_challenge=challenge
        )
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=idp.ssl_context(), allow_redirects=False) as resp:
                code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "client_id": CLIENT_ID,
                "code_verifier": verifier,
            }
            async with session.post(idp.token_endpoint, data=form, ssl=idp.ssl_context()) as resp:
                assert resp.status == 200
                return await resp.json()

    with IdentityProvider(tls=True, auto_approve=True) as idp:
        assert idp.endpoint.startswith("https://127.0.0.1:")
        assert asyncio.run(flow(idp))["token_type"] == "Bearer"
        ca_path = idp.ca_pem_path
        assert ca_path is not None and "BEGIN CERTIFICATE" in Path(ca_path).read_text()
        from_file = ssl.create_default_context(cafile=ca_path)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=from_file)
        )
        with opener.open(f"{idp.endpoint}/.well-known/openid-configuration") as resp:
            assert json.loads(resp.read())["issuer"] == idp.issuer
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(idp.endpoint)
    assert not Path(ca_path).exists()


# -- headless user agent ------------------------------------------------------------------------------
class LoopbackListener:
    """A stand-in for the application's callback listener: records each request's query."""

    def __init__(self) -> None:
        seen: list[dict[str, str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
                status = 200 if "code" in seen[-1] else 400
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.redirect_uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[LoopbackListener]:
    lst = LoopbackListener()
    yield lst
    lst.close()


@pytest.mark.parametrize("tls", [False, True])
def test_complete_login_delivers_code_and_state(listener: LoopbackListener, tls: bool) -> None:
    with IdentityProvider(tls=tls) as idp:
        verifier, challenge = make_pkce_pair()
        url = idp.authorization_url(
            client_id=CLIENT_ID, redirect_uri=listener.redirect_uri, state="st-9", code_challenge=challenge
        )
        ssl_context = idp.ssl_context() if tls else None
        assert complete_login_sync(url, username="bob", ssl_context=ssl_context) == 200
        [query] = listener.seen
        assert query["state"] == "st-9"
        form = {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": listener.redirect_uri,
            "client_id": CLIENT_ID,
            "code_verifier": verifier,
        }
        token = request(idp, idp.token_endpoint, form).json()["access_token"]
        assert userinfo(idp, str(token)) == {"sub": "bob", "client_id": CLIENT_ID}


def test_complete_login_deny_and_auto_approve(listener: LoopbackListener) -> None:
    _, challenge = make_pkce_pair()
    with IdentityProvider() as idp:
        url = idp.authorization_url(
            client_id=CLIENT_ID, redirect_uri=listener.redirect_uri, state="d", code_challenge=challenge
        )
        assert asyncio.run(complete_login(url, approve=False)) == 400
    with IdentityProvider(auto_approve=True) as idp:
        url = idp.authorization_url(
            client_id=CLIENT_ID, redirect_uri=listener.redirect_uri, state="a", code_challenge=challenge
        )
        assert asyncio.run(complete_login(url)) == 200
    assert [q.get("error") for q in listener.seen] == ["access_denied", None]
    assert [q["state"] for q in listener.seen] == ["d", "a"]


def test_complete_login_reports_an_error_page(idp: IdentityProvider) -> None:
    url = idp.authorization_url(
        client_id=CLIENT_ID, redirect_uri="http://example.com/", state="s", code_challenge="x" * 43
    )
    with pytest.raises(HeadlessLoginError) as caught:
        complete_login_sync(url)
    assert caught.value.status == 400


# -- redirect_uri rule, property-based ----------------------------------------------------------------
_hosts = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "example.com", "127.0.0.1.nip.io", "0.0.0.0"])  # noqa: S104
_uris = st.builds(
    lambda scheme, userinfo, host, port, rest: f"{scheme}://{userinfo}{host}{port}{rest}",
    st.sampled_from(["http", "https", "HTTP", "ftp"]),
    st.sampled_from(["", "user@", "127.0.0.1@", "a:b@"]),
    _hosts,
    st.sampled_from(["", ":0", ":8080", ":65535", ":65536", ":x"]),
    st.text(alphabet="/?#@:\\abc%.", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_uris, st.text(max_size=40)))
def test_accepted_redirect_uris_are_always_loopback_http(uri: str) -> None:
    if redirect_uri_problem(uri) is None:
        parts = urlsplit(uri)
        assert parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        assert "@" not in parts.netloc and "#" not in uri


# -- pytest plugin ------------------------------------------------------------------------------------
def test_pytest_plugin_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_plugin_use.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_plain(identity_provider):
                assert identity_provider.endpoint.startswith("http://127.0.0.1:")

            @pytest.mark.identity_provider(auto_approve=True, token_prefix="CANARY-")
            def test_tls(tls_identity_provider):
                assert tls_identity_provider.tls and tls_identity_provider.options.auto_approve
                assert tls_identity_provider.ca_pem_path

            def test_factory(make_identity_provider):
                assert make_identity_provider(send_iss=True).options.send_iss
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "fedbearer.testing.pytest_plugin"]
    args += ["-p", "no:asyncio", "-W", "error", "--rootdir", str(tmp_path), str(tmp_path)]
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout
