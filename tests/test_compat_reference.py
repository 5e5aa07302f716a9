"""Drop-in compatibility with the reference SDK (``nebius.aio.token.federation_bearer``).

The same user code runs against both packages, only the import differs, over plain HTTP on
loopback (which the reference accepts and we accept for loopback hosts). The authorization URL,
the writer's lines and the seed's signatures must match.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import io
import re
import typing
import webbrowser
from datetime import datetime, timezone
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from fedbearer.testing import IdentityProvider, complete_login

pytest.importorskip("nebius.aio.token.federation_bearer")

REFERENCE = "nebius.aio.token.federation_bearer"
OURS = "fedbearer.federation"
CLIENT_ID = "my-client"
FEDERATION_ID = "federation-e00abc"
URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
LOOPBACK_REDIRECT = re.compile(r"http://127\.0\.0\.1:\d{1,5}")


# -- the user code, written once ---------------------------------------------------------------------
async def user_code(federation: ModuleType, endpoint: str, writer: io.StringIO, no_browser_open: bool) -> Any:
    receiver = federation.Receiver(
        CLIENT_ID, endpoint, FEDERATION_ID, writer=writer, no_browser_open=no_browser_open
    )
    token = await receiver.fetch(timeout=30)
    assert receiver.latest is token
    return token


async def first_url(writer: io.StringIO, timeout: float = 10.0) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for line in writer.getvalue().splitlines():
            if line.startswith(("http://", "https://")):
                return line
        await asyncio.sleep(0.01)
    raise AssertionError(f"no URL on the writer: {writer.getvalue()!r}")


async def login_with(
    module_name: str, idp: IdentityProvider, no_browser_open: bool
) -> tuple[str, list[str], Any]:
    """Run the user code against ``module_name``; complete the login like a user would."""
    federation = importlib.import_module(module_name)
    writer = io.StringIO()
    fetch = asyncio.ensure_future(user_code(federation, idp.endpoint, writer, no_browser_open))
    try:
        url = await first_url(writer)
        status = await complete_login(url, username="compat")
        assert status == 200
        token = await asyncio.wait_for(fetch, 15)
    finally:
        fetch.cancel()
    return url, writer.getvalue().splitlines(), token


async def url_only(module_name: str, endpoint: str) -> tuple[str, list[str]]:
    """Capture the URL and the writer's lines, then give up (the endpoint does not exist)."""
    federation = importlib.import_module(module_name)
    writer = io.StringIO()
    fetch = asyncio.ensure_future(user_code(federation, endpoint, writer, True))
    try:
        url = await first_url(writer)
    finally:
        fetch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fetch
    return url, writer.getvalue().splitlines()


def url_shape(url: str) -> dict[str, Any]:
    """What must be equal between the two: everything but the random values and the port."""
    parts = urlsplit(url)
    params = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    values = dict(params)
    assert URL_SAFE.fullmatch(values["state"]) and len(values["state"]) >= 32
    assert URL_SAFE.fullmatch(values["code_challenge"]) and len(values["code_challenge"]) == 43
    assert LOOPBACK_REDIRECT.fullmatch(values["redirect_uri"])
    # The query as encoded, the random values replaced by placeholders.
    template = parts.query
    for name in ("state", "code_challenge"):
        template = template.replace(values[name], f"<{name}>")
    template = re.sub(r"127\.0\.0\.1%3A\d+", "127.0.0.1%3A<port>", template)
    return {
        "scheme": parts.scheme,
        "netloc": parts.netloc,
        "path": parts.path,
        "fragment": parts.fragment,
        "names": [name for name, _ in params],
        "fixed": {k: v for k, v in params if k not in ("state", "code_challenge", "redirect_uri")},
        "template": template,
    }


def writer_shape(lines: list[str], url: str) -> list[str]:
    return ["<URL>" if line == url else line for line in lines]


@pytest.fixture
def opened_urls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The default browser, as both packages see it through ``webbrowser.open``."""
    opened: list[str] = []

    def fake_open(url: str, new: int = 0, autoraise: bool = True) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    return opened


# -- the flow ----------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("no_browser_open", [True, False], ids=["no-browser", "browser"])
async def test_same_user_code_same_url_and_writer_lines(
    make_identity_provider: Any, opened_urls: list[str], no_browser_open: bool
) -> None:
    idp = make_identity_provider(tls=False)
    ref_url, ref_lines, ref_token = await login_with(REFERENCE, idp, no_browser_open)
    our_url, our_lines, our_token = await login_with(OURS, idp, no_browser_open)

    assert url_shape(our_url) == url_shape(ref_url)
    assert urlsplit(our_url).path == "/oauth2/authorize"
    assert list(dict(parse_qsl(urlsplit(our_url).query))) == [
        "response_type",
        "client_id",
        "scope",
        "state",
        "redirect_uri",
        "code_challenge",
        "code_challenge_method",
        "federation-id",
    ]
    assert writer_shape(our_lines, our_url) == writer_shape(ref_lines, ref_url)
    first = (
        "To complete the authentication process, open this link in your browser:"
        if no_browser_open
        else "Switch to your browser to complete login. If it didn't open automatically, use:"
    )
    assert our_lines == [first, our_url]
    assert opened_urls == ([] if no_browser_open else [ref_url, our_url])

    # Both hand back a Token with the token and an expiry about an hour away.
    now = datetime.now(timezone.utc)
    for token in (ref_token, our_token):
        assert type(token).__name__ == "Token"
        assert isinstance(token.token, str) and token.token
        assert token.expiration is not None and 3500 < (token.expiration - now).total_seconds() <= 3600
        assert not token.is_expired()
    assert idp.stats.tokens_issued == 2


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "endpoint",
    ["auth.example.com", "auth.example.com/some/path", "https://auth.example.com:8443/base?x=1"],
)
async def test_endpoint_forms_give_the_same_authorization_url(endpoint: str) -> None:
    ref_url, ref_lines = await url_only(REFERENCE, endpoint)
    our_url, our_lines = await url_only(OURS, endpoint)
    assert url_shape(our_url) == url_shape(ref_url)
    assert urlsplit(our_url).scheme == "https"
    assert writer_shape(our_lines, our_url) == writer_shape(ref_lines, ref_url)


# -- signatures --------------------------------------------------------------------------------------
SEED: dict[tuple[str, str], list[str]] = {
    ("Receiver", "__init__"): [
        "self",
        "client_id",
        "federation_endpoint",
        "federation_id",
        "writer",
        "no_browser_open",
        "ssl_ctx",
    ],
    ("Receiver", "can_retry"): ["self", "err", "options"],
    ("Receiver", "_fetch"): ["self", "timeout", "options"],
    ("Receiver", "fetch"): ["self", "timeout", "options"],
    ("Bearer", "__init__"): [
        "self",
        "profile_name",
        "client_id",
        "federation_endpoint",
        "federation_id",
        "writer",
        "no_browser_open",
        "ssl_ctx",
    ],
}


def _hints(fn: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(fn)
    hints.pop("return", None)
    return hints


@pytest.mark.parametrize(("cls", "method"), list(SEED), ids=[f"{c}.{m}" for c, m in SEED])
def test_seed_signatures_match_the_reference(cls: str, method: str) -> None:
    ours = getattr(getattr(importlib.import_module(OURS), cls), method)
    ref = getattr(getattr(importlib.import_module(REFERENCE), cls), method)
    names = SEED[(cls, method)]
    our_params = list(inspect.signature(ours).parameters.values())
    ref_params = list(inspect.signature(ref).parameters.values())
    seed_count = len(names)

    # The seed's parameters: same names, order, kinds and defaults as the reference.
    assert [p.name for p in our_params[:seed_count]] == names
    assert [p.name for p in ref_params[:seed_count]] == names
    for mine, theirs in zip(our_params[:seed_count], ref_params[:seed_count], strict=True):
        assert mine.kind == theirs.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD, mine.name
        assert mine.default == theirs.default, mine.name
    # Anything we add comes after them and is keyword-only.
    for extra in our_params[seed_count:]:
        assert extra.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD), extra.name
        assert extra.kind == inspect.Parameter.VAR_KEYWORD or extra.default is not inspect.Parameter.empty

    # Same annotations on the seed's parameters.
    our_hints, ref_hints = _hints(ours), _hints(ref)
    for name in names[1:]:
        assert our_hints.get(name) == ref_hints.get(name), name
    # fetch/_fetch are coroutines in both; can_retry is not.
    assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(ref)


def test_seed_attributes_and_latest() -> None:
    from fedbearer.federation import Receiver

    writer = io.StringIO()
    receiver = Receiver(CLIENT_ID, "auth.example.com", FEDERATION_ID, writer, True, None)
    assert receiver._client_id == CLIENT_ID
    assert receiver._federation_endpoint == "auth.example.com"
    assert receiver._federation_id == FEDERATION_ID
    assert receiver._writer is writer
    assert receiver._no_browser_open is True
    assert receiver._ssl_ctx is None
    assert receiver.latest is None  # the reference raises AttributeError here
    assert receiver._latest is None
    assert receiver.can_retry(RuntimeError("x")) is True
    assert receiver.can_retry(ValueError("x"), {"any": "option"}) is True
    # `latest` is a property in both.
    ref = importlib.import_module(REFERENCE).Receiver
    assert isinstance(inspect.getattr_static(type(receiver), "latest"), property)
    assert isinstance(inspect.getattr_static(ref, "latest"), property)


def test_public_names_of_the_reference_module_exist() -> None:
    ref = importlib.import_module(REFERENCE)
    ours = importlib.import_module(OURS)
    for name in ("Receiver", "Bearer"):
        assert hasattr(ours, name)
    ref_auth = importlib.import_module(f"{REFERENCE}.auth")
    our_auth = importlib.import_module(f"{OURS}.auth")
    for name in ("authorize", "GetTokenResult", "DEFAULT_LOGIN_TIMEOUT", "https_url"):
        assert hasattr(our_auth, name), name
    assert our_auth.DEFAULT_LOGIN_TIMEOUT == ref_auth.DEFAULT_LOGIN_TIMEOUT == 300
    ref_params = list(inspect.signature(ref_auth.authorize).parameters)
    our_params = list(inspect.signature(our_auth.authorize).parameters)
    assert our_params[: len(ref_params)] == ref_params
    assert ref.Bearer is not None
