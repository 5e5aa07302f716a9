"""Token, Receiver and Bearer: behaviour of the reference SDK's ``nebius.aio.token.token``."""

from __future__ import annotations

import asyncio
import pickle
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fedbearer.token import Bearer, NamedBearer, Receiver, Token

# Whole-second instants, 1970-01-01T00:00:01 .. year ~2242; 0 is the reference's "no expiration".
posix_seconds = st.integers(min_value=1, max_value=2**33)
zones = st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
whole_second_expirations = st.builds(datetime.fromtimestamp, posix_seconds, zones)
expirations = st.none() | whole_second_expirations
# Any instant with microseconds, well away from the datetime range's ends.
any_expirations = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(timezone.utc)
)
secret_tokens = st.text(min_size=8)


def reference() -> ModuleType:
    return pytest.importorskip("nebius.aio.token.token")


def utc_in(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


# --- serialization ---------------------------------------------------------------------------


@given(st.text(), expirations)
def test_to_dict_from_dict_round_trip(token: str, expiration: datetime | None) -> None:
    tok = Token(token, expiration)
    data = tok.to_dict()
    assert set(data) == {"token", "expires_at"}
    assert Token.from_dict(data) == tok
    assert Token.from_dict(data).to_dict() == data


@given(st.text(), st.none() | posix_seconds)
def test_from_dict_to_dict_round_trip(token: str, expires_at: int | None) -> None:
    data = {"token": token, "expires_at": expires_at}
    assert Token.from_dict(data).to_dict() == data


@given(any_expirations)
def test_to_dict_truncates_to_whole_posix_seconds(expiration: datetime) -> None:
    assert Token("t", expiration).to_dict()["expires_at"] == int(expiration.timestamp())


def test_to_dict_without_expiration_writes_none() -> None:
    assert Token("t").to_dict() == {"token": "t", "expires_at": None}
    assert Token.empty().to_dict() == {"token": "", "expires_at": None}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, Token("")),
        ({"token": None}, Token("")),
        ({"token": "a"}, Token("a")),
        ({"token": "a", "expires_at": None}, Token("a")),
        ({"token": "a", "expires_at": 0}, Token("a")),
        ({"token": "a", "expires_at": 60}, Token("a", datetime(1970, 1, 1, 0, 1, tzinfo=timezone.utc))),
        ({"token": "a", "extra": "ignored"}, Token("a")),
    ],
)
def test_from_dict_accepts_what_the_reference_accepts(data: dict[str, Any], expected: Token) -> None:
    assert Token.from_dict(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        None,
        "token",
        [("token", "a")],
        {"token": 5},
        {"token": b"a"},
        {"token": "a", "expires_at": 1.5},
        {"token": "a", "expires_at": 0.0},
        {"token": "a", "expires_at": "1700000000"},
        {"token": "a", "expires_at": ""},
        {"token": "a", "expires_at": 10**20},
        {"token": "a", "expires_at": -(10**20)},
    ],
)
def test_from_dict_rejects_malformed_input_with_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        Token.from_dict(data)


def test_token_survives_pickle() -> None:
    tok = Token("t", utc_in(60))
    assert pickle.loads(pickle.dumps(tok)) == tok  # noqa: S301 -- our own bytes


# --- equality --------------------------------------------------------------------------------


@given(st.text(), expirations, zones)
def test_equality_compares_instants_not_zones(
    token: str, expiration: datetime | None, zone: timezone
) -> None:
    moved = None if expiration is None else expiration.astimezone(zone)
    assert Token(token, expiration) == Token(token, moved)
    assert hash(Token(token, expiration)) == hash(Token(token, moved))


def test_tokens_differing_in_token_or_expiration_are_unequal() -> None:
    when = utc_in(60)
    assert Token("a", when) != Token("b", when)
    assert Token("a", when) != Token("a", when + timedelta(microseconds=1))
    assert Token("a", when) != Token("a")
    assert Token("a") != "a"
    assert Token("a").__eq__("a") is NotImplemented


# --- expiry ----------------------------------------------------------------------------------


def test_is_expired_follows_the_expiration() -> None:
    assert Token("t", utc_in(-1)).is_expired()
    assert Token("t", datetime(1970, 1, 1, tzinfo=timezone.utc)).is_expired()
    assert not Token("t", utc_in(3600)).is_expired()
    assert not Token("t").is_expired()
    assert not Token.empty().is_expired()


def test_expires_within_applies_a_margin() -> None:
    tok = Token("t", utc_in(60))
    assert tok.expires_within(120)
    assert not tok.expires_within(30)
    assert not Token("t").expires_within(10**9)


def test_naive_expiration_is_taken_as_utc() -> None:
    tok = Token("t", datetime(2000, 1, 1))
    assert tok.expiration == datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert tok.to_dict()["expires_at"] == 946684800
    assert tok.is_expired()


def test_empty_token() -> None:
    assert Token.empty().is_empty()
    assert Token.empty() == Token("")
    assert not Token("t").is_empty()
    assert Token("t").token == "t"
    assert Token("t").expiration is None


# --- str / repr never show the token ---------------------------------------------------------


@given(secret_tokens, st.none() | any_expirations)
def test_str_and_repr_never_contain_the_token(token: str, expiration: datetime | None) -> None:
    tok = Token(token, expiration)
    # The fixed text of the format may contain a token by chance (Hypothesis also tries the
    # string literals of our code): that shows nothing about the token itself.
    assume(token not in repr(Token("\x00" * len(token), expiration)))
    assert token not in str(tok)
    assert token not in repr(tok)


def test_str_shows_fingerprint_and_expiry() -> None:
    when = utc_in(3600)
    text = str(Token("s3cr3t-token", when))
    assert text.startswith("Token(sha256:")
    assert when.isoformat() in text
    assert "expires_in=" in text
    assert str(Token("s3cr3t-token")) == repr(Token("s3cr3t-token"))
    assert str(Token("s3cr3t-token")) != str(Token("another-token"))
    assert "expired_for=" in str(Token("s3cr3t-token", utc_in(-3600)))
    assert str(Token.empty()) == "Token(empty)"


# --- Receiver --------------------------------------------------------------------------------


class CountingReceiver(Receiver):
    """Never calls super().__init__(), like many receivers written against the reference."""

    def __init__(self, token: Token) -> None:
        self.token = token
        self.calls: list[tuple[float | None, dict[str, str] | None]] = []

    async def _fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        self.calls.append((timeout, options))
        return self.token

    def can_retry(self, err: Exception, options: dict[str, str] | None = None) -> bool:
        return False


class FailingReceiver(CountingReceiver):
    async def _fetch(self, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        raise RuntimeError("boom")


class KeywordOnlyReceiver(Receiver):
    async def _fetch(self, *, timeout: float | None = None, options: dict[str, str] | None = None) -> Token:
        return Token(f"{timeout}/{options}")

    def can_retry(self, err: Exception, options: dict[str, str] | None = None) -> bool:
        return True


def test_latest_is_none_before_the_first_fetch() -> None:
    assert CountingReceiver(Token("t")).latest is None


def test_fetch_records_latest_and_forwards_arguments() -> None:
    receiver = CountingReceiver(Token("first"))

    async def scenario() -> None:
        assert await receiver.fetch() == Token("first")
        assert receiver.latest == Token("first")
        receiver.token = Token("second")
        assert await receiver.fetch(timeout=1.5, options={"k": "v"}) is receiver.token
        assert receiver.latest is receiver.token

    asyncio.run(scenario())
    assert receiver.calls == [(None, None), (1.5, {"k": "v"})]


def test_failed_fetch_keeps_the_previous_latest() -> None:
    receiver = FailingReceiver(Token("t"))
    receiver._latest = Token("before")
    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(receiver.fetch())
    assert receiver.latest == Token("before")


def test_fetch_passes_timeout_and_options_by_keyword() -> None:
    assert asyncio.run(KeywordOnlyReceiver().fetch(2.0, {"a": "b"})).token == "2.0/{'a': 'b'}"


def test_receiver_and_bearer_are_abstract() -> None:
    with pytest.raises(TypeError):
        Receiver()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        Bearer()  # type: ignore[abstract]


# --- Bearer ----------------------------------------------------------------------------------


class PlainBearer(Bearer):
    def __init__(self) -> None:
        self.closed_with: list[float | None] = []

    def receiver(self) -> Receiver:
        return CountingReceiver(Token("plain"))

    @property
    def acquisition_budget(self) -> timedelta | None:
        return timedelta(seconds=7)

    async def close(self, grace: float | None = None) -> None:
        self.closed_with.append(grace)


class Wrapper(Bearer):
    def __init__(self, inner: Bearer) -> None:
        self.inner = inner

    @property
    def wrapped(self) -> Bearer | None:
        return self.inner

    def receiver(self) -> Receiver:
        return self.inner.receiver()


def test_bearer_defaults() -> None:
    bearer = PlainBearer()
    assert bearer.name is None
    assert bearer.wrapped is None
    assert bearer.metrics_provider == f"{__name__}.PlainBearer"
    assert Bearer.acquisition_budget.fget(bearer) is None  # type: ignore[attr-defined]


def test_named_bearer_names_and_delegates() -> None:
    inner = PlainBearer()
    named = NamedBearer(inner, "tenant-a")
    outer = Wrapper(named)
    assert named.name == "tenant-a"
    assert outer.name == "tenant-a"
    assert named.wrapped is inner
    assert named.acquisition_budget == timedelta(seconds=7)
    assert named.metrics_provider == f"{__name__}.PlainBearer"
    assert asyncio.run(named.receiver().fetch()) == Token("plain")


def test_close_reaches_the_innermost_bearer() -> None:
    inner = PlainBearer()
    asyncio.run(Wrapper(NamedBearer(inner, "n")).close(grace=3.0))
    assert inner.closed_with == [3.0]


# --- compatibility with nebius.aio.token.token -----------------------------------------------


@given(st.text(), expirations)
def test_to_dict_matches_the_reference(token: str, expiration: datetime | None) -> None:
    ref = reference()
    assert Token(token, expiration).to_dict() == ref.Token(token, expiration).to_dict()


@given(st.text(), any_expirations)
def test_to_dict_matches_the_reference_for_fractional_expirations(token: str, expiration: datetime) -> None:
    ref = reference()
    assert Token(token, expiration).to_dict() == ref.Token(token, expiration).to_dict()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"token": None},
        {"token": "a", "expires_at": 0},
        {"token": "a", "expires_at": True},
        {"token": "a", "expires_at": False},
        {"token": "a", "expires_at": 1_700_000_000},
        {"token": 5},
        {"token": "a", "expires_at": 1.0},
        {"token": "a", "expires_at": "1"},
        [],
        None,
    ],
)
def test_from_dict_agrees_with_the_reference(data: Any) -> None:
    ref = reference()
    try:
        expected = ref.Token.from_dict(data).to_dict()
    except ValueError:
        with pytest.raises(ValueError):
            Token.from_dict(data)
    else:
        assert Token.from_dict(data).to_dict() == expected


@given(secret_tokens, expirations)
def test_str_is_safe_where_the_reference_is_and_everywhere_else(
    token: str, expiration: datetime | None
) -> None:
    ref = reference()
    assume(token not in repr(Token("\x00" * len(token), expiration)))
    ours, theirs = str(Token(token, expiration)), str(ref.Token(token, expiration))
    assert token not in ours
    assert ours.startswith("Token(")
    assert theirs.startswith("Token(")
    if expiration is None:
        assert ours.endswith(", expiration=None)")
        assert theirs.endswith(", expiration=None)")
    else:
        assert f"expiration={expiration.isoformat()}, " in ours
        assert f"expiration={expiration.isoformat()}, " in theirs


def test_empty_and_expiry_agree_with_the_reference() -> None:
    ref = reference()
    assert str(Token.empty()) == str(ref.Token.empty())
    for when in (None, utc_in(-60), utc_in(3600)):
        assert Token("t", when).is_expired() == ref.Token("t", when).is_expired()
        assert Token("t", when).is_empty() == ref.Token("t", when).is_empty()


def test_public_surface_covers_the_reference() -> None:
    ref = reference()
    for ours, theirs in [
        (Token, ref.Token),
        (Receiver, ref.Receiver),
        (Bearer, ref.Bearer),
        (NamedBearer, ref.NamedBearer),
    ]:
        wanted = {n for n in dir(theirs) if not n.startswith("__")}
        assert wanted <= set(dir(ours)), theirs.__name__
