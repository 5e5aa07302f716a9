"""The Rust-built authorization URL is byte for byte what the reference's `urlencode` builds."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from fedbearer._core import authorization_url
from fedbearer.federation.auth import build_authorization_url

values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def reference_url(origin: str, client_id: str, state: str, redirect: str, challenge: str, fed: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "scope": "openid",
        "state": state,
        "redirect_uri": redirect,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if fed:
        params["federation-id"] = fed
    return f"{origin}/oauth2/authorize?{urlencode(params)}"


@given(values, values, values, values, values)
def test_rust_url_equals_python_urlencode(
    client_id: str, state: str, redirect: str, challenge: str, fed: str
) -> None:
    origin = "https://auth.example.com"
    assert authorization_url(origin, client_id, state, redirect, challenge, fed) == reference_url(
        origin, client_id, state, redirect, challenge, fed
    )


def test_build_authorization_url_normalises_the_endpoint() -> None:
    url = build_authorization_url("auth.example.com/ignored/path", "c", "s", "http://127.0.0.1:9", "h", "f")
    assert url.startswith("https://auth.example.com/oauth2/authorize?response_type=code&client_id=c&")
    assert url.endswith("&federation-id=f")
