"""The blocking API: ``Bearer.fetch_sync()`` and ``get_token()`` with and without a running
event loop in the calling thread; one login for many threads."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bearer_helpers import AutoBrowser
from fedbearer.federation import Bearer
from fedbearer.sync import get_token, run_sync
from fedbearer.testing import IdentityProvider

pytestmark = pytest.mark.timeout(60)


def make(idp: IdentityProvider, user: AutoBrowser, profile: str = "default") -> Bearer:
    return Bearer(profile, "client", idp.endpoint, "fed", writer=user, no_browser_open=True)


@pytest.mark.identity_provider(auto_approve=True)
def test_fetch_sync_without_a_running_loop(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user)
    token = bearer.fetch_sync()
    assert token.token in idp.issued_tokens
    assert bearer.fetch_sync() is token  # cached: no loop involved
    assert bearer.receiver().fetch_sync() is token  # type: ignore[attr-defined]
    assert bearer.receiver().latest is token
    assert get_token(bearer) == token.token
    assert idp.stats.logins == 1


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_fetch_sync_inside_a_running_loop(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser()
    bearer = make(idp, user)
    token = bearer.fetch_sync()  # blocks this loop; the login runs on the helper loop
    assert token.token in idp.issued_tokens
    assert await bearer.receiver().fetch() is token  # shared with async callers
    assert idp.stats.logins == 1


@pytest.mark.identity_provider(auto_approve=True)
def test_many_threads_share_one_login(identity_provider: IdentityProvider) -> None:
    idp, user = identity_provider, AutoBrowser(delay=0.2)
    bearer = make(idp, user)
    barrier = threading.Barrier(16)

    def call() -> str:
        barrier.wait()
        return get_token(bearer)

    with ThreadPoolExecutor(16) as pool:
        tokens = list(pool.map(lambda _: call(), range(16)))
    assert len(set(tokens)) == 1 and idp.stats.logins == 1 and user.prompts == 1


@pytest.mark.identity_provider(auto_approve=True)
def test_threads_with_their_own_loops_share_one_login(identity_provider: IdentityProvider) -> None:
    # Each thread runs asyncio.run() and awaits fetch(): separate loops, serialized by the lock.
    idp, user = identity_provider, AutoBrowser(delay=0.2)
    bearer = make(idp, user)

    def call(_: int) -> str:
        return asyncio.run(bearer.receiver().fetch()).token

    with ThreadPoolExecutor(4) as pool:
        tokens = list(pool.map(call, range(4)))
    assert len(set(tokens)) == 1 and idp.stats.logins == 1


@pytest.mark.identity_provider(auto_approve=True)
def test_fetch_sync_on_the_helper_loop_is_refused(identity_provider: IdentityProvider) -> None:
    bearer = make(identity_provider, AutoBrowser())

    async def misuse() -> object:
        return bearer.fetch_sync()

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="own loop thread"):
        run_sync(misuse)
    assert time.monotonic() - start < 5
