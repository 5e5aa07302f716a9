"""The ``fedbearer`` command in real subprocesses: ``demo`` (no display: the headless agent
completes the login) and ``login`` against an embedded provider, completed by reading the link
from the subprocess's output, on a pipe and on a terminal."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from fedbearer.testing import IdentityProvider, complete_login_sync

pytestmark = pytest.mark.timeout(90)

FINGERPRINT = re.compile(r"Logged in: fingerprint sha256:[0-9a-f]{12}, expires \S+ \(in 0:5\d:\d\d\)")
CANARIES = {"token_prefix": "CANARY-AT-", "code_prefix": "CANARY-CODE-", "refresh_prefix": "CANARY-RT-"}
TENANT = ["--federation-id", "federation-cli", "--client-id", "cli-client"]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """No display, no browser, no proxy, a private home (the token cache lands there)."""
    env = {
        k: v
        for k, v in os.environ.items()
        # No TERM either: webbrowser would try console browsers (w3m, lynx) where installed.
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "TERM") and not k.lower().endswith("_proxy")
    }
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), XDG_CONFIG_HOME=str(home / ".config"))
    env.pop("FEDBEARER_CA_FILE", None)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- demo --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra", [[], ["--plain-http"]], ids=["tls", "plain-http"])
def test_demo_logs_in_with_the_headless_agent(cli_env: dict[str, str], extra: list[str]) -> None:
    done = run(["-m", "fedbearer", "demo", *extra], cli_env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "No browser can be opened here" in out
    assert "To complete the authentication process, open this link in your browser:" in out
    assert "Headless user agent approved the login; the listener answered HTTP 200." in out
    assert FINGERPRINT.search(out), out
    assert "Provider counted 1 login(s) and 1 token(s) issued." in out
    assert ("https://127.0.0.1:" in out) == (not extra)
    assert "Traceback" not in done.stderr


DEMO_WITH_CANARIES = """
import functools, sys
import fedbearer.testing as testing
testing.IdentityProvider = functools.partial(testing.IdentityProvider, **{canaries!r})
from fedbearer.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize("argv", [["demo"], ["-vv", "demo"]], ids=["quiet", "debug-logs"])
def test_demo_never_prints_the_token(cli_env: dict[str, str], argv: list[str]) -> None:
    """The same demo, its provider issuing canary-prefixed secrets: none reaches the output."""
    done = run(["-c", DEMO_WITH_CANARIES.format(canaries=CANARIES, argv=argv)], cli_env)
    assert done.returncode == 0, done.stderr
    assert FINGERPRINT.search(done.stdout)
    if "-vv" in argv:
        assert "DEBUG" in done.stderr  # the logs were on
    assert "CANARY" not in done.stdout + done.stderr


def test_demo_falls_back_to_the_agent_when_the_browser_fails(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "BROWSER": "/bin/false"}  # "a browser is there", but it cannot be opened
    done = run(["-m", "fedbearer", "demo"], env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Switch to your browser to complete login. If it didn't open automatically, use:" in out
    assert "Could not open a browser automatically; open the link above to continue." in out
    assert "The browser could not be opened: the built-in headless user agent" in out
    assert FINGERPRINT.search(out)


# -- login -------------------------------------------------------------------------------------------
class LineReader:
    """Lines of a subprocess's stream, read by a thread, waited for with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, predicate: Any, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"not seen in time; output so far: {self.lines!r}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"the output ended; it was: {self.lines!r}"
            self.lines.append(line)
            if predicate(line):
                return line.strip()

    def rest(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if line is None:
                break
            self.lines.append(line)
        return "".join(self.lines)


@pytest.fixture
def login_process(cli_env: dict[str, str]) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(endpoint: str, *extra: str) -> tuple[subprocess.Popen[str], LineReader]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedbearer", "login", "--endpoint", endpoint, *TENANT, *extra],
            env=cli_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc, LineReader(proc.stdout)  # type: ignore[arg-type]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def is_link(line: str) -> bool:
    return "/oauth2/authorize?" in line


@pytest.mark.parametrize("tls", [False, True], ids=["plain-http", "tls-ca-file"])
def test_login_no_browser_completed_from_the_printed_link(
    make_identity_provider: Any, login_process: Any, tls: bool
) -> None:
    idp: IdentityProvider = make_identity_provider(tls=tls, **CANARIES)
    extra = ["--ca-file", str(idp.ca_pem_path)] if tls else []
    proc, stdout = login_process(idp.endpoint, "--no-browser", "--timeout", "30", *extra)
    intro = stdout.wait_for(lambda line: line.strip())
    assert intro == "To complete the authentication process, open this link in your browser:"
    url = stdout.wait_for(is_link)
    assert url.startswith(f"{idp.endpoint}/oauth2/authorize?response_type=code&client_id=cli-client&")
    assert complete_login_sync(url, ssl_context=idp.ssl_context() if tls else None) == 200
    assert proc.wait(30) == 0, proc.stderr.read()
    out = stdout.rest()
    assert FINGERPRINT.search(out), out
    assert "CANARY" not in out + proc.stderr.read()
    assert idp.stats.tokens_issued == 1


def test_login_over_tls_without_the_ca_is_refused(make_identity_provider: Any, login_process: Any) -> None:
    """The system CAs do not trust the provider: the token request fails on TLS. (The bearer may
    prompt again after the failure; nobody completes that one.)"""
    idp: IdentityProvider = make_identity_provider(tls=True)
    proc, stdout = login_process(idp.endpoint, "--no-browser", "--timeout", "3")
    complete_login_sync(stdout.wait_for(is_link), ssl_context=idp.ssl_context())
    assert proc.wait(30) == 1
    err = proc.stderr.read()
    assert "tls_error" in err and "CERTIFICATE_VERIFY_FAILED" in err
    assert "Traceback" not in err
    assert idp.stats.tokens_issued == 0


def test_login_times_out_with_a_clear_message(
    identity_provider: IdentityProvider, cli_env: dict[str, str]
) -> None:
    done = run(["-m", "fedbearer", "login", "--endpoint", identity_provider.endpoint, *TENANT,
                "--no-browser", "--timeout", "0.5"], cli_env)  # fmt: skip
    assert done.returncode == 1
    assert "LoginTimeout" in done.stderr and "0.5 s" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [("http://auth.example.com", "plain http"), ("ftp://auth.example.com", "https")],
)
def test_login_refuses_a_bad_endpoint(cli_env: dict[str, str], endpoint: str, message: str) -> None:
    done = run(["-m", "fedbearer", "login", "--endpoint", endpoint, *TENANT, "--no-browser"], cli_env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_login_with_an_unreadable_ca_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = run(["-m", "fedbearer", "login", "--endpoint", "auth.example.com", *TENANT,
                "--ca-file", str(tmp_path / "missing.pem")], cli_env)  # fmt: skip
    assert done.returncode == 2
    assert "--ca-file" in done.stderr
    assert "Traceback" not in done.stderr


# -- login on a terminal: countdown and remote paste mode --------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_login_on_a_terminal_takes_a_pasted_redirect(
    make_identity_provider: Any, cli_env: dict[str, str]
) -> None:
    import pty
    import select

    idp: IdentityProvider = make_identity_provider(auto_approve=True, **CANARIES)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedbearer", "login", "--endpoint", idp.endpoint, *TENANT,
         "--no-browser", "--timeout", "30"],
        env={**cli_env, "TERM": "dumb"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )  # fmt: skip
    os.close(terminal)
    screen = b""

    def read_until(pattern: bytes, timeout: float = 20) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while pattern not in screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not shown; the screen: {screen!r}"
            if select.select([controller], [], [], left)[0]:
                try:
                    screen += os.read(controller, 65536)
                except OSError:  # the child closed the terminal
                    break

    try:
        read_until(b"paste here the address")
        read_until(b"left")  # the live countdown
        url = re.search(rb"(http://\S+/oauth2/authorize\?\S+)", screen)
        assert url is not None
        # The browser runs elsewhere: it ends on the redirect, which the user copies back.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
        try:
            opener.open(url.group(1).decode(), timeout=5)
        except urllib.error.HTTPError as redirect:
            location = redirect.headers["Location"]
        else:  # pragma: no cover
            raise AssertionError("the provider did not redirect")
        os.write(controller, location.encode() + b"\r")
        read_until(b"Logged in: fingerprint sha256:")
        assert proc.wait(30) == 0
        read_until(b"\n", 1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(controller)
    assert b"CANARY-AT-" not in screen and b"CANARY-RT-" not in screen
    assert idp.stats.tokens_issued == 1


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
