"""PKCE pairs and ``state`` values (RFC 7636, RFC 6749 §10.12) made by the Rust core."""

from __future__ import annotations

import base64
import hashlib
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedbearer
from fedbearer._core import new_login_secrets, new_pkce, new_state, pkce_challenge

UNRESERVED = string.ascii_letters + string.digits + "-._~"
BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")

valid_verifiers = st.text(alphabet=UNRESERVED, min_size=43, max_size=128)


def reference_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def test_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert fedbearer.pkce_challenge is pkce_challenge


@given(valid_verifiers)
def test_valid_verifier_challenge_matches_hashlib_reference(verifier: str) -> None:
    assert pkce_challenge(verifier) == reference_challenge(verifier)


@given(st.text(alphabet=UNRESERVED, max_size=42) | st.text(alphabet=UNRESERVED, min_size=129, max_size=400))
def test_verifier_of_wrong_length_is_rejected(verifier: str) -> None:
    with pytest.raises(ValueError, match="43 to 128"):
        pkce_challenge(verifier)


@given(
    st.text(alphabet=UNRESERVED, max_size=100),
    st.characters().filter(lambda c: c not in UNRESERVED),
    st.text(alphabet=UNRESERVED, max_size=100),
)
def test_verifier_with_a_character_outside_unreserved_is_rejected(head: str, bad: str, tail: str) -> None:
    with pytest.raises(ValueError):
        pkce_challenge(head + bad + tail)


@given(st.text(max_size=200))
def test_any_text_either_gives_reference_challenge_or_raises_value_error(verifier: str) -> None:
    valid = 43 <= len(verifier) <= 128 and all(c in UNRESERVED for c in verifier)
    if valid:
        assert pkce_challenge(verifier) == reference_challenge(verifier)
    else:
        with pytest.raises(ValueError):
            pkce_challenge(verifier)


def test_length_bounds_are_inclusive() -> None:
    assert pkce_challenge("a" * 43) == reference_challenge("a" * 43)
    assert pkce_challenge("~" * 128) == reference_challenge("~" * 128)


def test_new_pkce_verifier_is_43_base64url_characters_with_consistent_s256_challenge() -> None:
    pair = new_pkce()
    assert len(pair.verifier) == 43
    assert BASE64URL.match(pair.verifier)
    # 32 random bytes behind it.
    assert len(base64.urlsafe_b64decode(pair.verifier + "=")) == 32
    assert pair.method == "S256"
    assert pair.challenge == reference_challenge(pair.verifier)
    assert pair.challenge == pkce_challenge(pair.verifier)
    assert len(pair.challenge) == 43


def test_new_pkce_pairs_are_unique() -> None:
    verifiers = {new_pkce().verifier for _ in range(2000)}
    assert len(verifiers) == 2000


def test_pkce_repr_hides_verifier() -> None:
    pair = new_pkce()
    assert pair.verifier not in repr(pair)
    assert pair.verifier not in str(pair)
    assert "S256" in repr(pair)


def test_pkce_is_read_only() -> None:
    pair = new_pkce()
    with pytest.raises(AttributeError):
        pair.verifier = "x" * 43  # type: ignore[misc]


def test_new_state_has_at_least_128_bits_and_is_url_safe() -> None:
    state = new_state()
    assert BASE64URL.match(state)
    # base64url carries 6 bits a character.
    assert len(state) * 6 >= 128
    assert len(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4))) * 8 >= 128


def test_new_state_is_unique_over_many_draws() -> None:
    states = [new_state() for _ in range(20000)]
    assert len(set(states)) == len(states)
    assert all(BASE64URL.match(s) for s in states)


def test_new_state_characters_are_spread_over_the_alphabet() -> None:
    # A cheap sanity check that the bytes are random, not a counter or a constant prefix.
    states = [new_state() for _ in range(2000)]
    assert len({s[0] for s in states}) > 50
    assert len({s[:8] for s in states}) == len(states)


def test_new_login_secrets_returns_fresh_pkce_and_state() -> None:
    pair, state = new_login_secrets()
    assert isinstance(pair, fedbearer.Pkce)
    assert pair.method == "S256"
    assert pair.challenge == reference_challenge(pair.verifier)
    assert isinstance(state, str) and BASE64URL.match(state) and len(state) * 6 >= 128
    pair2, state2 = new_login_secrets()
    assert pair2.verifier != pair.verifier
    assert state2 != state
    assert state not in (pair.verifier, pair.challenge)
