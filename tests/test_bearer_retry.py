"""The retry policy: bounded attempts, exponential backoff with jitter and a cap, early stops for
errors that cannot succeed, ``can_retry`` consulted, every attempt logged without secrets."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from bearer_helpers import AutoBrowser
from fedbearer import AuthorizationDenied, IssuerMismatch, ListenerError, LoginTimeout, TokenEndpointError
from fedbearer.federation import Bearer
from fedbearer.federation import bearer as bearer_module
from fedbearer.retry import FATAL_TOKEN_ERRORS, RetryPolicy
from fedbearer.testing import IdentityProvider

pytestmark = pytest.mark.timeout(60)

FAST = RetryPolicy(max_attempts=4, initial_delay=0.01, max_delay=0.02)


def test_backoff_is_exponential_with_bounded_jitter_and_a_cap() -> None:
    exact = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)
    assert [exact.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.2)
    samples = [jittered.delay(2) for _ in range(500)]
    assert all(1.6 <= d <= 2.4 for d in samples) and len(set(samples)) > 100
    assert all(jittered.delay(10) <= 6.0 for _ in range(100))
    for bad in ({"max_attempts": 0}, {"multiplier": 0.5}, {"jitter": 1.0}, {"initial_delay": -1}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_errors_that_cannot_succeed_stop_early() -> None:
    policy = RetryPolicy(max_attempts=5, max_denials=2)
    assert policy.should_retry(TokenEndpointError(503), 1, 0, True)
    assert policy.should_retry(TokenEndpointError(0, "connection_error"), 1, 0, True)
    for code in FATAL_TOKEN_ERRORS:
        assert not policy.should_retry(TokenEndpointError(400, code), 1, 0, True)
    assert policy.should_retry(AuthorizationDenied("access_denied"), 1, 1, True)
    assert not policy.should_retry(AuthorizationDenied("access_denied"), 2, 2, True)  # denied twice
    for final in (
        LoginTimeout(1.0),
        IssuerMismatch("a", "b"),
        ListenerError("x"),
        ValueError("bad endpoint"),
    ):
        assert not policy.should_retry(final, 1, 0, True)
    assert not policy.should_retry(TokenEndpointError(503), 1, 0, False)  # receiver.can_retry said no
    assert not policy.should_retry(TokenEndpointError(503), 5, 0, True)  # out of attempts


def make(idp: IdentityProvider, user: AutoBrowser, **kw: object) -> Bearer:
    kw.setdefault("retry", FAST)
    return Bearer("default", "client", idp.endpoint, "fed", writer=user, no_browser_open=True, **kw)  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_a_failed_code_exchange_is_retried(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    idp.set_fault("500_html", times=1)
    token = await make(idp, user).receiver().fetch()
    assert token.token in idp.issued_tokens
    assert user.prompts == 2 and idp.stats.tokens_issued == 1


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_deny=True)
async def test_a_user_who_denies_twice_is_not_asked_again(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    with pytest.raises(AuthorizationDenied):
        await (
            make(idp, user, retry=RetryPolicy(max_attempts=5, initial_delay=0.01, max_denials=2))
            .receiver()
            .fetch()
        )
    assert idp.stats.denials == 2 and user.prompts == 2


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_an_ignored_prompt_is_not_reopened(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    user.enabled = False  # nobody answers
    with pytest.raises(LoginTimeout):
        await make(idp, user, login_timeout=0.3).receiver().fetch()
    assert user.prompts == 1


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_receiver_can_retry_is_consulted(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user)
    asked: list[Exception] = []

    def can_retry(err: Exception, options: dict[str, str] | None = None) -> bool:
        asked.append(err)
        return False

    bearer._login.can_retry = can_retry  # type: ignore[method-assign]
    idp.set_fault("500_html", times=1)
    with pytest.raises(TokenEndpointError):
        await bearer.receiver().fetch()
    assert len(asked) == 1 and user.prompts == 1
    assert bearer.receiver().can_retry(RuntimeError()) is False


@pytest.mark.asyncio
@pytest.mark.identity_provider(
    auto_approve=True, token_prefix="CANARY-AT-", refresh_prefix="CANARY-RT-", code_prefix="CANARY-CODE-"
)
async def test_attempts_are_logged_without_secrets(
    identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user)
    with caplog.at_level(logging.DEBUG):
        idp.set_fault("500_html", times=1)
        await bearer.receiver().fetch()  # a failed exchange, then a login
        real = time.time
        monkeypatch.setattr(bearer_module, "_time", lambda: real() + 3600 - 30)
        idp.set_fault("503_html", times=1)
        await bearer.receiver().fetch()  # a failed refresh, then a refresh
        idp.revoke_refresh_tokens()
        monkeypatch.setattr(bearer_module, "_time", lambda: real() + 2 * 3600 - 30)
        await asyncio.wait_for(bearer.receiver().fetch(), 10)  # rejected refresh, then a login
    ours = [
        r
        for r in caplog.records
        if r.name.startswith("fedbearer") and not r.name.startswith("fedbearer.testing")
    ]
    text = "\n".join(r.getMessage() for r in ours)
    assert "attempt 1 failed" in text and "refresh" in text
    assert "CANARY" not in text and "CANARY" not in repr(bearer) and "CANARY" not in user.getvalue()
