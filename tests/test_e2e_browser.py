"""End to end in a real headless Chromium: the embedded provider's login page over TLS, the loopback
listener's pages, and the token exchange verified through ``ssl_ctx``.

One Chromium serves the whole module. It trusts exactly the provider's certificate (its SPKI hash,
``--ignore-certificate-errors-spki-list``), never certificates in general, and resolves no name
but loopback, so no page can wait on the network. Screenshots of the listener's pages are saved
under ``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import shutil
import socket
import stat
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fedbearer import AuthorizationDenied, LoginTimeout, TokenEndpointError
from fedbearer.federation import Receiver, auth
from fedbearer.testing import IdentityProvider

pytest.importorskip("selenium")
from selenium import webdriver
from selenium.webdriver.common.by import By

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = (
    "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")
)
if not (CHROMIUM and CHROMEDRIVER):
    # CI installs them (scripts/system-deps.sh): there a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail("Chromium and chromedriver are required in CI (make system-deps)", pytrace=False)
    pytest.skip("Chromium and chromedriver are not installed (make system-deps)", allow_module_level=True)

pytestmark = pytest.mark.timeout(120)

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
RESOLVER_RULES = "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]"
CLIENT_ID = "e2e-client"
FEDERATION_ID = "federation-e2e"
CANARIES = {"token_prefix": "CANARY-AT-", "code_prefix": "CANARY-CODE-", "refresh_prefix": "CANARY-RT-"}


def chromium_args(*extra: str) -> list[str]:
    return [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=900,700",
        f"--host-resolver-rules={RESOLVER_RULES}",
        *extra,
    ]


def spki_sha256(idp: IdentityProvider) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of the certificate the provider serves, read over a
    connection that verifies it against the provider's CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    context = idp.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", idp.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    with IdentityProvider(tls=True, **CANARIES) as provider:
        yield provider


@pytest.fixture(scope="module")
def driver(idp: IdentityProvider) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in chromium_args(f"--ignore-certificate-errors-spki-list={spki_sha256(idp)}"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(15)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(autouse=True)
def blank_tab(driver: Any) -> Any:
    driver.get("about:blank")
    return driver


def screenshot(driver: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


async def in_browser(fn: Any, *args: Any) -> Any:
    """Selenium blocks; keep the event loop (and the token exchange) running meanwhile."""
    return await asyncio.to_thread(fn, *args)


async def link_from(writer: io.StringIO, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in writer.getvalue().splitlines():
            if "/oauth2/authorize?" in line:
                return line.strip()
        await asyncio.sleep(0.01)
    raise AssertionError(f"no authorization URL on the writer: {writer.getvalue()!r}")


def start_login(
    idp: IdentityProvider, *, timeout: float = 20.0, **kwargs: Any
) -> tuple[Receiver, Any, io.StringIO]:
    writer = kwargs.pop("writer", None) or io.StringIO()
    kwargs.setdefault("no_browser_open", True)
    receiver = Receiver(
        CLIENT_ID, idp.endpoint, FEDERATION_ID, writer=writer, ssl_ctx=idp.ssl_context(), **kwargs
    )
    return receiver, asyncio.ensure_future(receiver.fetch(timeout=timeout)), writer


def sign_in(driver: Any, url: str, *, user: str, approve: bool = True, shot: str | None = None) -> float:
    """What the user does: open the link, type a name, press Approve or Deny. Returns the
    monotonic time of the click."""
    driver.get(url)
    assert driver.title == "Sign in"
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign in"
    field = driver.find_element(By.ID, "username")
    field.clear()
    field.send_keys(user)
    if shot is not None:
        assert_self_contained(driver)
        screenshot(driver, shot)
    clicked = time.monotonic()
    driver.find_element(By.ID, "approve" if approve else "deny").click()
    return clicked


def listener_page(driver: Any) -> tuple[str, str]:
    return driver.find_element(By.ID, "status").text, driver.find_element(By.ID, "message").text


def assert_self_contained(driver: Any) -> None:
    # Nothing loaded besides the document itself: no fonts, scripts, styles or images.
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources == []


def http_get(url: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def userinfo_subject(idp: IdentityProvider, access_token: str) -> str:
    import json

    request = urllib.request.Request(
        f"{idp.endpoint}/userinfo", headers={"Authorization": f"Bearer {access_token}"}
    )
    handler = urllib.request.HTTPSHandler(context=idp.ssl_context())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
    with opener.open(request, timeout=5) as resp:
        return str(json.loads(resp.read())["sub"])


def assert_port_refused(port: int, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} still accepts connections")
        time.sleep(0.02)


# -- the tests ---------------------------------------------------------------------------------------


def test_chromium_trusts_only_the_provider_certificate(driver: Any) -> None:
    """The browser side of TLS is real: another provider's certificate gets the interstitial."""
    with IdentityProvider(tls=True) as other:
        driver.get(other.authorize_endpoint)
        assert driver.title != "Sign in"
        assert "ERR_CERT" in driver.page_source


@pytest.mark.asyncio
async def test_approve_in_chromium_returns_token_and_success_page(idp: IdentityProvider, driver: Any) -> None:
    receiver, fetch, writer = start_login(idp)
    assert receiver.latest is None
    url = await link_from(writer)
    assert writer.getvalue().splitlines()[0] == auth.NO_BROWSER_MESSAGE

    await in_browser(lambda: sign_in(driver, url, user="alice", shot="provider-login"))
    token = await asyncio.wait_for(fetch, 10)

    assert token.token.startswith(CANARIES["token_prefix"])
    assert not token.is_expired()
    assert token.expiration is not None and 3500 < token.expiration.timestamp() - time.time() <= 3600
    assert receiver.latest is token
    assert userinfo_subject(idp, token.token) == "alice"

    status, message = listener_page(driver)
    assert status == "Login complete"
    assert message == "You are signed in. You can close this tab and return to the application."
    assert urlsplit(driver.current_url).netloc.startswith("127.0.0.1:")
    assert CANARIES["token_prefix"] not in driver.page_source
    assert_self_contained(driver)
    screenshot(driver, "listener-success")


@pytest.mark.asyncio
async def test_deny_in_chromium_raises_authorization_denied_within_a_second(
    idp: IdentityProvider, driver: Any
) -> None:
    receiver, fetch, writer = start_login(idp)
    ended_at: list[float] = []
    fetch.add_done_callback(lambda _: ended_at.append(time.time()))
    url = await link_from(writer)

    clicked = await in_browser(lambda: sign_in(driver, url, user="bob", approve=False))
    with pytest.raises(AuthorizationDenied) as denied:
        await asyncio.wait_for(fetch, 5)
    # Within a second of the redirect reaching the listener (when the browser got its answer),
    # and well within the click's round trip even on a loaded machine.
    redirected_at = driver.execute_script(
        "const n = performance.getEntriesByType('navigation')[0];"
        "return (performance.timeOrigin + n.responseStart) / 1000;"
    )
    assert -1.0 < ended_at[0] - redirected_at < 1.0
    assert time.monotonic() - clicked < 10
    assert denied.value.error == "access_denied"
    assert receiver.latest is None

    status, message = listener_page(driver)
    assert status == "Login failed"
    assert "access_denied" in message
    assert "try again" in driver.find_element(By.TAG_NAME, "main").text
    assert_self_contained(driver)
    screenshot(driver, "listener-denied")


@pytest.mark.asyncio
async def test_stray_requests_before_the_redirect_do_not_end_the_flow(
    idp: IdentityProvider, driver: Any
) -> None:
    _, fetch, writer = start_login(idp)
    url = await link_from(writer)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    listener = query["redirect_uri"]
    state = query["state"]

    strays = [
        (f"{listener}/", None, 400),
        (f"{listener}/favicon.ico", None, 404),
        (f"{listener}/?code=forged&state=not-the-state", None, 400),
        (f"{listener}/?error=access_denied&state=not-the-state", None, 400),
        (f"{listener}/?code=forged", None, 400),
        (f"{listener}/?code=forged&state={state}", "evil.example", 403),  # DNS rebinding
    ]
    for target, host, expected in strays:
        status, _ = await asyncio.to_thread(http_get, target, host)
        assert status == expected, target
    # And a stray page in the browser itself: the listener's "no login" page.
    await in_browser(driver.get, f"{listener}/?code=forged&state=not-the-state")
    status, message = listener_page(driver)
    assert status == "No login in progress"
    assert "start again from the application" in message
    assert_self_contained(driver)
    screenshot(driver, "listener-stray")
    await asyncio.sleep(0.05)
    assert not fetch.done()

    await in_browser(lambda: sign_in(driver, url, user="carol"))
    token = await asyncio.wait_for(fetch, 10)
    assert token.token.startswith(CANARIES["token_prefix"])
    assert listener_page(driver)[0] == "Login complete"


@pytest.mark.asyncio
async def test_login_nobody_completes_times_out_and_frees_the_port(
    idp: IdentityProvider, driver: Any
) -> None:
    _, fetch, writer = start_login(idp, timeout=0.6)
    url = await link_from(writer)
    port = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port
    assert port is not None
    await in_browser(driver.get, url)  # the page is open; nobody presses anything
    with pytest.raises(LoginTimeout) as timed_out:
        await asyncio.wait_for(fetch, 5)
    assert isinstance(timed_out.value, TimeoutError)
    await asyncio.to_thread(assert_port_refused, port)

    # Approving now is too late: the listener is gone, the browser cannot reach it.
    await in_browser(driver.find_element(By.ID, "approve").click)
    assert "Login complete" not in driver.page_source


@pytest.mark.asyncio
async def test_replayed_code_gets_invalid_grant(
    idp: IdentityProvider, driver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets: list[Any] = []
    real = auth.new_login_secrets

    def recording() -> Any:
        pair = real()
        secrets.append(pair)
        return pair

    monkeypatch.setattr(auth, "new_login_secrets", recording)
    _, fetch, writer = start_login(idp)
    url = await link_from(writer)
    await in_browser(lambda: sign_in(driver, url, user="dave"))
    await asyncio.wait_for(fetch, 10)

    redirect = urlsplit(driver.current_url)
    code = parse_qs(redirect.query)["code"][0]
    assert code.startswith(CANARIES["code_prefix"])
    ((pkce, _state),) = secrets
    with pytest.raises(TokenEndpointError) as replay:
        await auth.exchange_code(
            idp.token_endpoint,
            CLIENT_ID,
            code,
            f"{redirect.scheme}://{redirect.netloc}",
            pkce.verifier,
            idp.ssl_context(),
        )
    assert replay.value.error == "invalid_grant"
    assert replay.value.status == 400
    assert code not in str(replay.value) and pkce.verifier not in str(replay.value)


@pytest.mark.asyncio
async def test_default_browser_opened_through_webbrowser(
    idp: IdentityProvider, driver: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``no_browser_open=False``: the platform's default browser (``$BROWSER``, through
    ``webbrowser``) receives the link; here it hands it to the Chromium under test."""
    handoff = tmp_path / "opened-url"
    script = tmp_path / "browser"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{handoff}.tmp" && mv "{handoff}.tmp" "{handoff}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BROWSER", str(script))
    # webbrowser reads $BROWSER once per process; make it read it again.
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})

    _, fetch, writer = start_login(idp, no_browser_open=False)
    url = await link_from(writer)
    deadline = time.monotonic() + 10
    while not handoff.exists():
        assert time.monotonic() < deadline, "the default browser was never started"
        await asyncio.sleep(0.02)
    assert handoff.read_text() == url

    await in_browser(lambda: sign_in(driver, url, user="erin"))
    token = await asyncio.wait_for(fetch, 10)
    assert token.token.startswith(CANARIES["token_prefix"])
    lines = writer.getvalue().splitlines()
    assert lines == [auth.BROWSER_MESSAGE, url]  # and no "could not open a browser" line


@pytest.mark.asyncio
async def test_default_browser_is_a_real_chromium_process(
    make_identity_provider: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``$BROWSER`` is Chromium itself, started by ``webbrowser``; the provider approves at once and
    Chromium follows the redirect to the listener, whose page it prints."""
    provider = make_identity_provider(auto_approve=True, **CANARIES)
    dom = tmp_path / "dom.html"
    script = tmp_path / "chromium-browser"
    args = " ".join(f"'{a}'" for a in chromium_args(f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"))
    script.write_text(f'#!/bin/sh\nexec "{CHROMIUM}" {args} "$1" > "{dom}" 2>/dev/null\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("BROWSER", str(script))
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})

    writer = io.StringIO()
    receiver = Receiver(CLIENT_ID, provider.endpoint, FEDERATION_ID, writer=writer)
    token = await asyncio.wait_for(receiver.fetch(timeout=30), 40)
    assert token.token.startswith(CANARIES["token_prefix"])
    assert writer.getvalue().splitlines()[0] == auth.BROWSER_MESSAGE
    deadline = time.monotonic() + 20
    while "</html>" not in (dom.read_text() if dom.exists() else ""):
        assert time.monotonic() < deadline, "Chromium did not print the listener's page"
        await asyncio.sleep(0.05)
    page = dom.read_text()
    assert '<h1 id="status">Login complete</h1>' in page
    assert CANARIES["token_prefix"] not in page


if sys.platform != "linux":  # pragma: no cover - the CI machines are Debian
    pytestmark = [pytestmark, pytest.mark.skip(reason="Debian Chromium only")]
