"""Expiry and renewal: refresh tokens under the lock, rotation-safe re-reads, fallback to one
interactive login, transient failures, background renewal that never opens a browser, hooks."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from bearer_helpers import AutoBrowser, forget_process_state
from fedbearer import TokenEndpointError
from fedbearer.cache import CacheEntry, FileCache
from fedbearer.federation import Bearer, auth
from fedbearer.federation import bearer as bearer_module
from fedbearer.federation.bearer import LoginRequired
from fedbearer.hooks import CallbackHooks
from fedbearer.retry import RetryPolicy
from fedbearer.testing import IdentityProvider

pytestmark = [pytest.mark.timeout(60), pytest.mark.asyncio]

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


class Clock:
    """Moves the Bearer's clock (``bearer._time``) forward by ``offset`` seconds."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real = time.time
        monkeypatch.setattr(bearer_module, "_time", lambda: real() + self.offset)

    def now(self) -> float:
        return bearer_module._time()


def make(idp: IdentityProvider, user: AutoBrowser, **kw: object) -> Bearer:
    kw.setdefault("retry", FAST_RETRY)
    return Bearer("default", "client", idp.endpoint, "fed", writer=user, no_browser_open=True, **kw)  # type: ignore[arg-type]


def assert_valid(token, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    assert token.expiration is not None and token.expiration.timestamp() > clock.now()


@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600)
async def test_an_expiring_token_is_refreshed_without_the_browser(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, user, clock = identity_provider, AutoBrowser(), Clock(monkeypatch)
    bearer = make(idp, user)
    first = await bearer.receiver().fetch()
    clock.offset = 3600 - 30  # inside the 60 s safety margin, not expired
    tokens = await asyncio.gather(*[bearer.receiver().fetch() for _ in range(100)])
    assert len({t.token for t in tokens}) == 1 and tokens[0].token != first.token
    assert_valid(tokens[0], clock)
    assert (idp.stats.logins, idp.stats.refreshes, user.prompts) == (1, 1, 1)
    forget_process_state()  # the refreshed entry (and rotated refresh token) reached the file
    assert (await make(idp, user).receiver().fetch()).token == tokens[0].token
    clock.offset = 2 * 3600  # expired for good: the newest refresh token still works
    assert_valid(await make(idp, user).receiver().fetch(), clock)
    assert (idp.stats.logins, idp.stats.refreshes) == (1, 2)


class RacingCache(FileCache):
    """Another process refreshes — rotating the refresh token — right after our re-read under the
    lock (it did not see our lock: a Redis outage, a lock taken over). We then refresh with the
    old, rejected refresh token and must recover by re-reading, not by a browser login."""

    def __init__(self, directory: Path, idp: IdentityProvider, clock: Clock, *, racer_serves: bool) -> None:
        super().__init__(directory)
        self.idp, self.clock, self.racer_serves = idp, clock, racer_serves
        self.armed = False

    async def get_deep(self, key: str) -> CacheEntry | None:
        snapshot = self.read(key)
        if self.armed and snapshot is not None and snapshot.refresh_token:
            self.armed = False
            result = await auth.refresh("client", self.idp.endpoint, snapshot.refresh_token)
            issued = self.clock.now() if self.racer_serves else snapshot.issued_at + 1
            lifetime = float(result.expires_in or 0) if self.racer_serves else 3600.0
            self.write(key, CacheEntry(result.access_token, issued + lifetime, result.refresh_token, issued))
        return snapshot


@pytest.mark.parametrize("racer_serves", [True, False], ids=["take-racers-token", "use-racers-refresh-token"])
@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600, rotate_refresh_tokens=True)
async def test_refresh_rotation_race_never_forces_a_browser_login(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, racer_serves: bool
) -> None:
    idp, user, clock = identity_provider, AutoBrowser(), Clock(monkeypatch)
    cache = RacingCache(tmp_path, idp, clock, racer_serves=racer_serves)
    bearer = make(idp, user, cache=cache)
    await bearer.receiver().fetch()
    clock.offset = 3600 - 30
    cache.armed = True
    token = await bearer.receiver().fetch()
    assert_valid(token, clock)
    assert idp.stats.logins == 1 and user.prompts == 1
    assert idp.stats.refreshes == (1 if racer_serves else 2)
    assert cache.read(bearer.key).access_token == token.token  # type: ignore[union-attr]


@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600)
async def test_a_rejected_refresh_token_falls_back_to_one_interactive_login(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, user, clock = identity_provider, AutoBrowser(), Clock(monkeypatch)
    bearer = make(idp, user)
    await bearer.receiver().fetch()
    idp.revoke_refresh_tokens()
    clock.offset = 3600 - 30
    with pytest.raises(LoginRequired):
        await bearer.renew()  # the silent path never logs in
    assert user.prompts == 1
    tokens = await asyncio.gather(*[bearer.receiver().fetch() for _ in range(20)])
    assert len({t.token for t in tokens}) == 1
    assert_valid(tokens[0], clock)
    assert idp.stats.logins == 2 and user.prompts == 2


@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600)
async def test_a_transient_refresh_failure_is_retried_without_the_browser(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, user, clock = identity_provider, AutoBrowser(), Clock(monkeypatch)
    bearer = make(idp, user)
    await bearer.receiver().fetch()
    clock.offset = 3600 - 30
    idp.set_fault("503_html", times=1)
    token = await bearer.receiver().fetch()
    assert_valid(token, clock)
    assert (idp.stats.logins, idp.stats.refreshes, user.prompts) == (1, 1, 1)


@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600)
async def test_a_refresh_outage_serves_the_still_valid_token_then_fails_without_a_browser(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    idp, user, clock = identity_provider, AutoBrowser(), Clock(monkeypatch)
    bearer = make(idp, user, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    first = await bearer.receiver().fetch()
    idp.set_fault("503_html")
    clock.offset = 3600 - 30
    with caplog.at_level(logging.WARNING):
        assert (await bearer.receiver().fetch()).token == first.token  # 30 s left: still valid
    assert "serving the current token" in caplog.text
    clock.offset = 3600 + 10
    with pytest.raises(TokenEndpointError):
        await bearer.receiver().fetch()  # expired and no way to renew: an error, not an old token
    assert user.prompts == 1
    idp.set_fault(None)
    assert_valid(await bearer.receiver().fetch(), clock)
    assert idp.stats.logins == 1


async def wait_for(condition, until: float) -> bool:  # type: ignore[no-untyped-def]
    while not condition():
        if time.time() >= until:
            return False
        await asyncio.sleep(0.02)
    return True


@pytest.mark.identity_provider(auto_approve=True, token_ttl=4)
async def test_background_renewal_refreshes_before_expiry(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user, renew_in_background=True)
    first = await bearer.receiver().fetch()
    serving_deadline = first.expiration.timestamp() - 0.4  # type: ignore[union-attr]  # 10% of 4 s
    # Renewal is due at 75% of the time until the serving deadline (≈ 2.7 s): no caller waits.
    assert await wait_for(lambda: idp.stats.refreshes == 1, serving_deadline)
    assert await wait_for(lambda: bearer._slot.token is not first, serving_deadline)
    renewed = await bearer.receiver().fetch()  # from the hot path
    assert renewed.token != first.token and not renewed.is_expired()
    assert idp.stats.logins == 1 and user.prompts == 1
    await bearer.close()


@pytest.mark.identity_provider(auto_approve=True, token_ttl=4, refresh_token_ttl=1)
async def test_background_renewal_with_an_expired_refresh_token_opens_no_browser(
    identity_provider: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user, renew_in_background=True)
    first = await bearer.receiver().fetch()
    serving_deadline = first.expiration.timestamp() - 0.4  # type: ignore[union-attr]
    with caplog.at_level(logging.INFO, "fedbearer"):
        # Renewal is due at ≈ 2.7 s; its refresh token expired at 1 s.
        assert await wait_for(lambda: "needs an interactive login" in caplog.text, serving_deadline + 2)
    assert idp.stats.authorize_requests == 1 and user.prompts == 1 and idp.stats.logins == 1
    if time.time() < serving_deadline - 0.05:
        assert await bearer.receiver().fetch() is first  # still served until its deadline
    await asyncio.sleep(max(0.0, serving_deadline - time.time()) + 0.05)
    second = await bearer.receiver().fetch()  # a foreground caller may log in
    assert second.token != first.token and user.prompts == 2
    await bearer.close()


@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600)
async def test_hooks_see_the_slow_path_with_timings(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    idp, user, clock = identity_provider, AutoBrowser(), Clock(monkeypatch)
    events: list[tuple[str, dict[str, object]]] = []

    def record(name: str, **fields: object) -> None:
        events.append((name, fields))
        if name == "cache_miss":
            raise RuntimeError("a broken hook must not break the login")

    hooks = CallbackHooks(record)
    bearer = make(idp, user, hooks=hooks)
    await bearer.receiver().fetch()
    await bearer.receiver().fetch()  # hot path: no event
    forget_process_state()
    await make(idp, user, hooks=hooks).receiver().fetch()
    clock.offset = 3600 - 30
    await make(idp, user, hooks=hooks).receiver().fetch()
    names = [name for name, _ in events]
    assert names == [
        "cache_miss",
        "login_started",
        "callback_received",
        "login_finished",
        "cache_hit",
        "cache_miss",
        "refreshed",
    ]
    assert events[1][1]["url"].startswith(f"{idp.endpoint}/oauth2/authorize?")  # type: ignore[union-attr]
    assert all(f["seconds"] >= 0 for n, f in events if "seconds" in f)  # type: ignore[operator]
    assert all(f["key"] == bearer.key for _, f in events)


@pytest.mark.identity_provider(auto_approve=True, token_ttl=3600)
async def test_hooks_hear_that_the_browser_could_not_be_opened(
    identity_provider: IdentityProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedbearer.federation import browser

    monkeypatch.setattr(browser, "open_browser", lambda url: False)
    events: list[str] = []
    hooks = CallbackHooks(lambda name, **fields: events.append(name))
    user = AutoBrowser()  # the user opens the printed link by hand
    bearer = Bearer(
        "default", "client", identity_provider.endpoint, "fed", writer=user, hooks=hooks, retry=FAST_RETRY
    )  # type: ignore[arg-type]
    assert (await bearer.receiver().fetch()).token
    assert events[:2] == ["cache_miss", "login_started"]
    assert "browser_failed" in events and events[-2:] == ["callback_received", "login_finished"]
    assert "Could not open a browser automatically" in "".join(user.parts)
    await bearer.close()
