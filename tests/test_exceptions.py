"""The exception classes of ``fedbearer.exceptions``: hierarchy, messages, pickling."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedbearer
from fedbearer import exceptions
from fedbearer.exceptions import (
    AuthError,
    AuthorizationDenied,
    InvalidTokenResponse,
    IssuerMismatch,
    ListenerError,
    LoginRequired,
    LoginTimeout,
    TokenEndpointError,
)

ALL = [
    AuthorizationDenied,
    InvalidTokenResponse,
    IssuerMismatch,
    ListenerError,
    LoginRequired,
    LoginTimeout,
    TokenEndpointError,
]
PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
texts = st.text(max_size=50)
optional_texts = st.none() | texts


def samples() -> list[AuthError]:
    return [
        AuthError("base"),
        AuthorizationDenied("access_denied", "The user said no", "https://idp.example/help"),
        AuthorizationDenied("invalid_scope"),
        IssuerMismatch("https://idp.example", "https://evil.example"),
        LoginTimeout(2.5),
        LoginTimeout(),
        TokenEndpointError(400, "invalid_grant", "code expired", "https://idp.example/e"),
        TokenEndpointError(503, excerpt="Service Unavailable"),
        TokenEndpointError(0),
        InvalidTokenResponse("access_token is missing", "keys: token"),
        InvalidTokenResponse("the body is not JSON"),
        ListenerError("cannot bind the loopback listener"),
    ]


def attributes(exc: BaseException) -> dict[str, object]:
    return {k: v for k, v in vars(exc).items() if not k.startswith("__")}


# --- hierarchy -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL)
def test_every_error_is_an_auth_error(cls: type[Exception]) -> None:
    assert issubclass(cls, AuthError)
    assert issubclass(cls, Exception)


def test_auth_error_is_an_exception_but_not_a_timeout() -> None:
    assert issubclass(AuthError, Exception)
    assert not issubclass(AuthError, TimeoutError)


def test_login_timeout_is_a_timeout_error() -> None:
    assert issubclass(LoginTimeout, TimeoutError)
    assert issubclass(LoginTimeout, asyncio.TimeoutError)
    with pytest.raises(TimeoutError):
        raise LoginTimeout(1.0)


@pytest.mark.parametrize("cls", [c for c in ALL if c is not LoginTimeout])
def test_only_login_timeout_is_a_timeout_error(cls: type[Exception]) -> None:
    assert not issubclass(cls, TimeoutError)


def test_all_names_are_exported_from_the_package() -> None:
    assert sorted(exceptions.__all__) == sorted(["AuthError", *(c.__name__ for c in ALL)])
    for name in exceptions.__all__:
        assert getattr(fedbearer, name) is getattr(exceptions, name)
        assert name in fedbearer.__all__


# --- messages --------------------------------------------------------------------------------


def test_authorization_denied_message_and_fields() -> None:
    err = AuthorizationDenied("access_denied", "The user said no", "https://idp.example/help")
    assert (err.error, err.description, err.uri) == (
        "access_denied",
        "The user said no",
        "https://idp.example/help",
    )
    assert str(err) == "authorization denied by the identity provider: access_denied: The user said no"
    assert (
        str(AuthorizationDenied("invalid_scope"))
        == "authorization denied by the identity provider: invalid_scope"
    )


def test_issuer_mismatch_message_names_both_issuers() -> None:
    err = IssuerMismatch("https://idp.example", "https://evil.example")
    assert (err.expected, err.received) == ("https://idp.example", "https://evil.example")
    assert "'https://idp.example'" in str(err)
    assert "'https://evil.example'" in str(err)
    assert "mismatch" in str(err)


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        (2.5, "login was not completed within 2.5 s"),
        (300.0, "login was not completed within 300 s"),
        (0.2, "login was not completed within 0.2 s"),
        (None, "login was not completed in time"),
    ],
)
def test_login_timeout_message(timeout: float | None, message: str) -> None:
    err = LoginTimeout(timeout)
    assert err.timeout == timeout
    assert str(err) == message


def test_token_endpoint_error_messages() -> None:
    err = TokenEndpointError(400, "invalid_grant", "code expired", "https://idp.example/e")
    assert (err.status, err.error, err.description, err.uri, err.excerpt) == (
        400,
        "invalid_grant",
        "code expired",
        "https://idp.example/e",
        None,
    )
    assert str(err) == "token endpoint answered HTTP 400: invalid_grant: code expired"
    assert str(TokenEndpointError(503, excerpt="Service Unavailable")) == (
        "token endpoint answered HTTP 503 (Service Unavailable)"
    )
    # The excerpt is only shown when there is no error code to show.
    assert "ignored" not in str(TokenEndpointError(400, "invalid_client", excerpt="ignored"))
    assert str(TokenEndpointError(0)) == "token endpoint unreachable"


def test_invalid_token_response_message() -> None:
    assert str(InvalidTokenResponse("access_token is missing", "keys: token")) == (
        "invalid token response: access_token is missing (keys: token)"
    )
    err = InvalidTokenResponse("the body is not JSON")
    assert (err.reason, err.excerpt) == ("the body is not JSON", "")
    assert str(err) == "invalid token response: the body is not JSON"


def test_listener_error_message() -> None:
    assert str(ListenerError("cannot bind")) == "cannot bind"


# --- pickling --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("exc", samples(), ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_class_message_and_fields(exc: AuthError, protocol: int) -> None:
    back = pickle.loads(pickle.dumps(exc, protocol=protocol))  # noqa: S301 -- our own bytes
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    assert attributes(back) == attributes(exc)
    assert type(copy.copy(exc)) is type(exc)
    assert str(copy.deepcopy(exc)) == str(exc)


@given(texts, optional_texts, optional_texts)
def test_authorization_denied_pickles_any_fields(
    error: str, description: str | None, uri: str | None
) -> None:
    exc = AuthorizationDenied(error, description, uri)
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 -- our own bytes
    assert (back.error, back.description, back.uri, str(back)) == (error, description, uri, str(exc))


@given(
    st.integers(min_value=0, max_value=999), optional_texts, optional_texts, optional_texts, optional_texts
)
def test_token_endpoint_error_pickles_any_fields(
    status: int, error: str | None, description: str | None, uri: str | None, excerpt: str | None
) -> None:
    exc = TokenEndpointError(status, error, description, uri, excerpt)
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 -- our own bytes
    assert attributes(back) == attributes(exc)
    assert str(back) == str(exc)


@given(st.none() | st.floats(min_value=0, max_value=1e9))
def test_login_timeout_pickles_any_timeout(timeout: float | None) -> None:
    back = pickle.loads(pickle.dumps(LoginTimeout(timeout)))  # noqa: S301 -- our own bytes
    assert back.timeout == timeout
    assert isinstance(back, TimeoutError)


def test_errors_raised_by_the_rust_core_are_the_python_classes_and_pickle() -> None:
    with pytest.raises(TokenEndpointError) as endpoint:
        fedbearer.parse_token_response(b'{"error": "invalid_grant", "error_description": "expired"}', 400)
    with pytest.raises(InvalidTokenResponse) as invalid:
        fedbearer.parse_token_response(b"not json", 200)
    listener = fedbearer.CallbackListener.bind()
    listener.close()
    with pytest.raises(ListenerError) as closed:
        listener.register("x")
    for info in (endpoint, invalid, closed):
        exc = info.value
        assert type(exc).__module__ == "fedbearer.exceptions"
        back = pickle.loads(pickle.dumps(exc))  # noqa: S301 -- our own bytes
        assert type(back) is type(exc)
        assert str(back) == str(exc)
        assert attributes(back) == attributes(exc)
    assert endpoint.value.status == 400
    assert endpoint.value.error == "invalid_grant"
    assert endpoint.value.description == "expired"
