"""Single-flight in a process: one login per tenant however many callers, shared results and
errors, cancellation of one caller leaves the login to the others; the tenant key."""

from __future__ import annotations

import asyncio

import pytest

from bearer_helpers import AutoBrowser, forget_process_state
from fedbearer import AuthorizationDenied
from fedbearer.cache import FileCache, MemoryCache
from fedbearer.federation import Bearer, tenant_key
from fedbearer.retry import RetryPolicy
from fedbearer.testing import IdentityProvider

pytestmark = [pytest.mark.timeout(90), pytest.mark.asyncio]


def make(idp: IdentityProvider, user: AutoBrowser, profile: str = "default", **kw: object) -> Bearer:
    return Bearer(profile, "client", idp.endpoint, "fed", writer=user, no_browser_open=True, **kw)  # type: ignore[arg-type]


@pytest.mark.identity_provider(auto_approve=True)
async def test_1000_concurrent_fetches_make_exactly_one_login(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user)
    tokens = await asyncio.gather(*[bearer.receiver().fetch() for _ in range(1000)])
    assert len({t.token for t in tokens}) == 1
    assert idp.stats.logins == 1 and idp.stats.tokens_issued == 1 and user.prompts == 1
    assert not user.errors
    assert await bearer.receiver().fetch() is tokens[0]  # then the hot path


@pytest.mark.identity_provider(auto_approve=True)
async def test_200_tenants_times_50_callers_make_200_logins(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    cache = MemoryCache()
    bearers = [make(idp, user, f"tenant-{i}", cache=cache) for i in range(200)]
    calls = [b.receiver().fetch() for _ in range(50) for b in bearers]
    tokens = await asyncio.gather(*calls)
    by_tenant: dict[str, set[str]] = {}
    for i, token in enumerate(tokens):
        by_tenant.setdefault(bearers[i % 200].key, set()).add(token.token)
    assert all(len(t) == 1 for t in by_tenant.values())
    assert len({next(iter(t)) for t in by_tenant.values()}) == 200  # no tenant got another's token
    assert idp.stats.logins == 200 and user.prompts == 200 and not user.errors


@pytest.mark.identity_provider(auto_approve=True)
async def test_cancelled_callers_do_not_cancel_the_login_for_the_others(
    identity_provider: IdentityProvider,
) -> None:
    idp, user = identity_provider, AutoBrowser(delay=0.3)  # the user takes a moment
    bearer = make(idp, user)
    callers = [asyncio.ensure_future(bearer.receiver().fetch()) for _ in range(10)]
    await asyncio.sleep(0.1)
    callers[0].cancel()  # the caller that started the login
    callers[5].cancel()
    done = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError) and isinstance(done[5], asyncio.CancelledError)
    tokens = {t.token for i, t in enumerate(done) if i not in (0, 5)}  # type: ignore[union-attr]
    assert len(tokens) == 1 and idp.stats.logins == 1


@pytest.mark.identity_provider(auto_approve=True)
async def test_a_login_whose_callers_all_left_still_completes_and_is_cached(
    identity_provider: IdentityProvider,
) -> None:
    idp, user = identity_provider, AutoBrowser(delay=0.2)
    bearer = make(idp, user)
    caller = asyncio.ensure_future(bearer.receiver().fetch())
    await asyncio.sleep(0.05)
    caller.cancel()
    await asyncio.sleep(0.6)
    token = await bearer.receiver().fetch()
    assert idp.stats.logins == 1 and token.token in idp.issued_tokens


@pytest.mark.identity_provider(auto_deny=True)
async def test_every_waiting_caller_gets_the_logins_error(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user, retry=RetryPolicy(max_attempts=1))
    results = await asyncio.gather(*[bearer.receiver().fetch() for _ in range(50)], return_exceptions=True)
    assert all(isinstance(r, AuthorizationDenied) for r in results)
    assert idp.stats.denials == 1 and user.prompts == 1


@pytest.mark.identity_provider(auto_approve=True)
async def test_bearers_of_one_tenant_share_a_slot_and_tenants_do_not(
    identity_provider: IdentityProvider,
) -> None:
    idp, user = identity_provider, AutoBrowser()
    a1, a2 = make(idp, user, "a"), make(idp, user, "a")
    b = make(idp, user, "b")
    other_client = Bearer("a", "client-2", idp.endpoint, "fed", writer=user, no_browser_open=True)
    t1, t2, tb, tc = await asyncio.gather(
        a1.receiver().fetch(), a2.receiver().fetch(), b.receiver().fetch(), other_client.receiver().fetch()
    )
    assert t1 is t2 and len({t1.token, tb.token, tc.token}) == 3
    assert idp.stats.logins == 3
    assert a1.key == tenant_key(idp.endpoint, "fed", "client", "a") != other_client.key
    assert a1.name == f"federation/{idp.endpoint}/fed/a"  # the seed's name, unchanged


@pytest.mark.identity_provider(auto_approve=True)
async def test_a_new_process_finds_the_token_in_the_file_cache(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    token = await make(idp, user).receiver().fetch()
    forget_process_state()
    again = await make(idp, user).receiver().fetch()
    assert again.token == token.token and again.expiration == token.expiration
    assert idp.stats.logins == 1


@pytest.mark.identity_provider(auto_approve=True)
async def test_logout_removes_the_tenant_everywhere(identity_provider: IdentityProvider, tmp_path) -> None:  # type: ignore[no-untyped-def]
    idp, user = identity_provider, AutoBrowser()
    cache = FileCache(tmp_path)
    bearer, other = make(idp, user, "a", cache=cache), make(idp, user, "b", cache=cache)
    await bearer.receiver().fetch()
    kept = await other.receiver().fetch()
    await bearer.logout()
    assert cache.read(bearer.key) is None and cache.read(other.key) is not None
    await bearer.receiver().fetch()
    assert idp.stats.logins == 3 and await other.receiver().fetch() is kept


async def test_slots_of_dropped_bearers_are_pruned_and_live_ones_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fedbearer.federation import bearer as bearer_module

    monkeypatch.setattr(bearer_module, "_slots", {})
    monkeypatch.setattr(bearer_module, "_PRUNE_AT", 50)
    monkeypatch.setattr(bearer_module, "_prune_at", 50)
    cache = MemoryCache()
    kept = [Bearer(f"kept-{i}", "c", "auth.example", "f", cache=cache) for i in range(10)]
    for i in range(200):
        Bearer(f"dropped-{i}", "c", "auth.example", "f", cache=cache)._receiver = None  # type: ignore[assignment]
    assert len(bearer_module._slots) < 120  # pruned as it grew
    assert all(bearer_module._slots.get(b.key) is b._slot for b in kept)
    twin = Bearer("kept-0", "c", "auth.example", "f", cache=cache)
    assert twin._slot is kept[0]._slot  # a live tenant's single-flight point is never replaced
