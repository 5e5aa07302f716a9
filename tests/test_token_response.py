"""Token endpoint responses (RFC 6749 §5.1, §5.2) parsed by ``fedbearer.parse_token_response``."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbearer import (
    AuthError,
    InvalidTokenResponse,
    TokenEndpointError,
    TokenResponse,
    parse_token_response,
)

TEN_YEARS = 10 * 366 * 24 * 3600
ACCESS = "at-SECRET-0123456789abcdefghij"
REFRESH = "rt-SECRET-9876543210zyxwvutsrq"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# --- success ---------------------------------------------------------------------------------


def test_all_fields_are_parsed() -> None:
    resp = parse_token_response(
        body(
            access_token=ACCESS,
            expires_in=3600,
            token_type="Bearer",
            refresh_token=REFRESH,
            id_token=ID_TOKEN,
            scope="openid profile",
        )
    )
    assert isinstance(resp, TokenResponse)
    assert resp.access_token == ACCESS
    assert resp.expires_in == 3600
    assert resp.token_type == "Bearer"
    assert resp.refresh_token == REFRESH
    assert resp.id_token == ID_TOKEN
    assert resp.scope == "openid profile"


def test_only_access_token_is_required() -> None:
    resp = parse_token_response(body(access_token=ACCESS))
    assert resp.access_token == ACCESS
    assert resp.expires_in is None
    assert resp.token_type is None
    assert resp.refresh_token is None
    assert resp.id_token is None
    assert resp.scope is None


def test_null_optional_fields_read_as_none() -> None:
    resp = parse_token_response(
        body(access_token=ACCESS, expires_in=None, refresh_token=None, id_token=None, scope=None)
    )
    assert (resp.expires_in, resp.refresh_token, resp.id_token, resp.scope) == (None, None, None, None)


def test_unknown_fields_are_ignored() -> None:
    resp = parse_token_response(body(access_token=ACCESS, ext_expires_in=3599, foo={"bar": [1, 2]}))
    assert resp.access_token == ACCESS


@pytest.mark.parametrize("status", [200, 201, 203, 299])
def test_any_2xx_status_is_success(status: int) -> None:
    assert parse_token_response(body(access_token=ACCESS), status).access_token == ACCESS


def test_status_defaults_to_200() -> None:
    assert parse_token_response(body(access_token=ACCESS)).access_token == ACCESS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3600", 3600),
        ("0", 0),
        ('"3600"', 3600),
        ('" 3600 "', 3600),
        ('"0"', 0),
        ("3600.0", 3600),
        ("3.6e3", 3600),
        (str(TEN_YEARS), TEN_YEARS),
        (f'"{TEN_YEARS}"', TEN_YEARS),
    ],
)
def test_expires_in_accepts_int_numeric_string_and_integral_float(raw: str, expected: int) -> None:
    resp = parse_token_response(f'{{"access_token": "{ACCESS}", "expires_in": {raw}}}'.encode())
    assert resp.expires_in == expected
    assert type(resp.expires_in) is int


@pytest.mark.parametrize(
    "raw",
    [
        "-1",
        '"-1"',
        "-3600.0",
        str(TEN_YEARS + 1),
        f'"{TEN_YEARS + 1}"',
        "1e300",
        "18446744073709551616",
        '"99999999999999999999999"',
        "3600.5",
        '"3600.0"',
        '"soon"',
        '"1h"',
        '""',
        "true",
        "false",
        "[]",
        "[3600]",
        '{"seconds": 3600}',
    ],
)
def test_expires_in_rejections(raw: str) -> None:
    payload = f'{{"access_token": "{ACCESS}", "expires_in": {raw}}}'.encode()
    with pytest.raises(InvalidTokenResponse, match="expires_in") as info:
        parse_token_response(payload)
    assert ACCESS not in str(info.value)


@given(st.integers(min_value=0, max_value=TEN_YEARS))
def test_expires_in_round_trips_every_allowed_value(seconds: int) -> None:
    assert parse_token_response(body(access_token="a", expires_in=seconds)).expires_in == seconds
    assert parse_token_response(body(access_token="a", expires_in=str(seconds))).expires_in == seconds
    assert parse_token_response(body(access_token="a", expires_in=float(seconds))).expires_in == seconds


# --- RFC 6749 §5.2 error bodies --------------------------------------------------------------


def test_error_body_becomes_token_endpoint_error_with_all_fields() -> None:
    payload = body(
        error="invalid_grant",
        error_description="The authorization code has expired",
        error_uri="https://idp.example/docs/errors",
    )
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(payload, 400)
    err = info.value
    assert err.status == 400
    assert err.error == "invalid_grant"
    assert err.description == "The authorization code has expired"
    assert err.uri == "https://idp.example/docs/errors"
    assert "400" in str(err)
    assert "invalid_grant" in str(err)
    assert "The authorization code has expired" in str(err)
    assert isinstance(err, AuthError)


def test_error_body_without_description_or_uri() -> None:
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(body(error="invalid_client"), 401)
    assert (info.value.status, info.value.error, info.value.description, info.value.uri) == (
        401,
        "invalid_client",
        None,
        None,
    )


def test_error_body_sent_with_200_is_still_an_error() -> None:
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(body(error="slow_down", access_token=ACCESS), 200)
    assert info.value.status == 200
    assert info.value.error == "slow_down"
    assert ACCESS not in repr(info.value)


def test_error_description_that_carries_a_secret_is_redacted() -> None:
    payload = body(error="invalid_grant", error_description=f"code {ACCESS} was already used")
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(payload, 400)
    assert ACCESS not in str(info.value)
    assert ACCESS not in (info.value.description or "")
    assert "already used" in (info.value.description or "")


def test_html_503_is_token_endpoint_error_with_status() -> None:
    page = b"<html><head><title>503 Service Unavailable</title></head><body>down</body></html>"
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(page, 503)
    assert info.value.status == 503
    assert info.value.error is None
    assert "503" in str(info.value)


def test_json_without_error_on_error_status_is_token_endpoint_error() -> None:
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(body(access_token=ACCESS, message="boom"), 500)
    assert info.value.status == 500
    assert ACCESS not in str(info.value)


@pytest.mark.parametrize("payload", [b"", b"   \n", b"[1, 2]", b'"x"', b"null"])
def test_empty_or_non_object_body_on_error_status_is_token_endpoint_error(payload: bytes) -> None:
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(payload, 502)
    assert info.value.status == 502


# --- unusable 2xx bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"  \r\n ",
        b"not json",
        b"<html>ok</html>",
        b'{"access_token": "abc"',
        b"\xff\xfe\x00",
        b"[]",
        b'["access_token"]',
        b"42",
        b"null",
        b'"access_token"',
    ],
)
def test_non_json_empty_or_non_object_2xx_body_is_invalid_token_response(payload: bytes) -> None:
    with pytest.raises(InvalidTokenResponse) as info:
        parse_token_response(payload, 200)
    assert isinstance(info.value, AuthError)
    assert info.value.reason


def test_empty_body_says_so() -> None:
    with pytest.raises(InvalidTokenResponse, match="empty body"):
        parse_token_response(b"", 200)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (body(token=ACCESS, expires_in=3600), "access_token is missing"),
        (body(), "access_token is missing"),
        (body(access_token=""), "access_token is empty"),
        (body(access_token=None), "access_token is not a string"),
        (body(access_token=123), "access_token is not a string"),
        (body(access_token=[ACCESS]), "access_token is not a string"),
        (body(access_token=ACCESS, token_type=1), "token_type is not a string"),
        (body(access_token=ACCESS, refresh_token={"v": REFRESH}), "refresh_token is not a string"),
        (body(access_token=ACCESS, id_token=False), "id_token is not a string"),
        (body(access_token=ACCESS, scope=["openid"]), "scope is not a string"),
    ],
)
def test_missing_or_mistyped_fields_are_invalid_token_response(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidTokenResponse) as info:
        parse_token_response(payload)
    assert info.value.reason == reason
    for secret in (ACCESS, REFRESH):
        assert secret not in str(info.value)
        assert secret not in repr(info.value)


def test_missing_access_token_message_names_keys_not_values() -> None:
    with pytest.raises(InvalidTokenResponse) as info:
        parse_token_response(body(acess_token=ACCESS))
    assert "acess_token" in info.value.excerpt
    assert ACCESS not in str(info.value)


def test_oversized_body_is_refused_without_parsing() -> None:
    huge = b'{"access_token": "' + b"a" * (2 << 20) + b'"}'
    with pytest.raises(InvalidTokenResponse, match="larger"):
        parse_token_response(huge)
    with pytest.raises(TokenEndpointError) as info:
        parse_token_response(huge, 500)
    assert info.value.status == 500


def test_deeply_nested_json_is_rejected_not_a_crash() -> None:
    for depth in (200, 100_000):
        with pytest.raises(InvalidTokenResponse):
            parse_token_response(b"[" * depth + b"]" * depth)
        with pytest.raises(InvalidTokenResponse):
            parse_token_response(b'{"access_token": "a", "x": ' + b"[" * depth + b"]" * depth + b"}")


def test_token_response_repr_hides_every_token() -> None:
    resp = parse_token_response(
        body(
            access_token=ACCESS,
            expires_in=60,
            token_type="Bearer",
            refresh_token=REFRESH,
            id_token=ID_TOKEN,
            scope="openid",
        )
    )
    for text in (repr(resp), str(resp)):
        assert ACCESS not in text
        assert REFRESH not in text
        assert ID_TOKEN not in text
        assert "expires_in=60" in text
        assert "Bearer" in text


def test_token_response_is_read_only() -> None:
    resp = parse_token_response(body(access_token=ACCESS))
    with pytest.raises(AttributeError):
        resp.access_token = "other"  # type: ignore[misc]


# --- properties: hostile input ---------------------------------------------------------------

statuses = st.integers(min_value=0, max_value=65535) | st.sampled_from([200, 201, 400, 401, 500, 503])
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=25,
)
TOKEN_KEYS = [
    "access_token",
    "expires_in",
    "token_type",
    "refresh_token",
    "id_token",
    "scope",
    "error",
    "error_description",
    "error_uri",
]
token_shaped_objects = st.dictionaries(
    st.sampled_from(TOKEN_KEYS) | st.text(max_size=20), json_values, max_size=8
)


def assert_only_typed_errors(payload: bytes, status: int) -> None:
    try:
        resp = parse_token_response(payload, status)
    except (TokenEndpointError, InvalidTokenResponse) as exc:
        if isinstance(exc, TokenEndpointError):
            assert exc.status == status
        return
    # BaseException (a pyo3 PanicException) or any other class propagates and fails the test.
    assert 200 <= status < 300
    assert isinstance(resp.access_token, str) and resp.access_token


@settings(max_examples=3 * settings().max_examples)
@given(st.binary(max_size=600), statuses)
def test_arbitrary_bytes_only_raise_typed_errors(payload: bytes, status: int) -> None:
    assert_only_typed_errors(payload, status)


@settings(max_examples=3 * settings().max_examples)
@given(json_values | token_shaped_objects, statuses)
def test_arbitrary_json_only_raises_typed_errors(value: Any, status: int) -> None:
    assert_only_typed_errors(json.dumps(value).encode(), status)


@given(token_shaped_objects, statuses, st.integers(min_value=0, max_value=200))
def test_truncated_json_only_raises_typed_errors(value: Any, status: int, cut: int) -> None:
    assert_only_typed_errors(json.dumps(value).encode()[:cut], status)


canaries = st.builds(
    lambda digits, letters: f"CANARY{digits}{letters}",
    st.text(string.digits, min_size=5, max_size=20),
    st.text(string.ascii_letters, min_size=5, max_size=40),
)


def leaked(exc: BaseException, canary: str) -> list[str]:
    places = {"str": str(exc), "repr": repr(exc), "args": repr(exc.args), "attrs": repr(vars(exc))}
    return [name for name, text in places.items() if canary in text]


def canary_bodies(draw: st.DrawFn, canary: str) -> bytes:
    """A body with ``canary`` somewhere a token could be: a value, a key, prose, raw text."""
    kind = draw(st.sampled_from(["value", "key", "prose", "raw", "truncated"]))
    if kind in ("value", "key", "prose", "truncated"):
        obj: dict[str, Any] = draw(token_shaped_objects)
        where = draw(st.sampled_from(TOKEN_KEYS))
        if kind == "key":
            obj[canary] = draw(json_values)
        elif kind == "prose":
            before = draw(st.text(max_size=30))
            after = draw(st.text(max_size=30))
            obj[where] = f"{before} {canary} {after}"
        else:
            obj[where] = canary
        raw = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()
        if kind == "truncated":
            raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
        return raw
    prefix = draw(st.binary(max_size=300))
    suffix = draw(st.binary(max_size=100))
    return prefix + canary.encode() + suffix


@st.composite
def canary_cases(draw: st.DrawFn) -> tuple[str, bytes, int]:
    canary = draw(canaries)
    return canary, canary_bodies(draw, canary), draw(statuses)


@settings(max_examples=4 * settings().max_examples)
@given(canary_cases())
def test_token_in_body_never_appears_in_the_error(case: tuple[str, bytes, int]) -> None:
    canary, payload, status = case
    assert len(canary) >= 16
    try:
        resp = parse_token_response(payload, status)
    except (TokenEndpointError, InvalidTokenResponse) as exc:
        assert not leaked(exc, canary), (payload, status, str(exc))
        return
    assert canary not in repr(resp)


@pytest.mark.parametrize("status", [200, 400, 503])
@pytest.mark.parametrize(
    "template",
    [
        b"%s",
        b"token=%s&expires_in=3600",
        b"<html><body>your token is %s</body></html>",
        b'{"access_token":"%s","expires_in":"soon"}',
        b'{"access_token":"%s",',
        b'{"%s": 1}',
        b'{"error":"%s"}',
        b'{"error":"invalid_grant","error_description":"bad code %s"}',
        b'{"error":"invalid_grant","error_uri":"https://idp.example/?code=%s"}',
        b'{"access_token":"%s","expires_in":-1}',
        b'{"access_token":"x","refresh_token":"%s","expires_in":1e99}',
    ],
)
def test_known_leak_shapes_never_echo_the_token(template: bytes, status: int) -> None:
    canary = "CANARY12345abcdefXYZ"
    try:
        parse_token_response(template % canary.encode(), status)
    except (TokenEndpointError, InvalidTokenResponse) as exc:
        assert not leaked(exc, canary), str(exc)
    else:
        pytest.fail("expected an error")


@pytest.mark.parametrize("status", [-1, 65536, 2**40])
def test_impossible_status_is_a_value_error(status: int) -> None:
    with pytest.raises(ValueError, match="status"):
        parse_token_response(b"{}", status)
