"""A Hypothesis state machine over fetch / expire / refresh / logout / corrupt / restart / revoke
for three tenants, checked against a model: no caller ever receives an expired token or another
tenant's token, and a tenant whose refresh token is known to work never sees a browser login."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from bearer_helpers import AutoBrowser, forget_process_state
from fedbearer.cache import FileCache, LayeredCache, MemoryCache
from fedbearer.federation import Bearer
from fedbearer.federation import bearer as bearer_module
from fedbearer.federation.bearer import LoginRequired
from fedbearer.testing import IdentityProvider

TENANTS = (("client-1", "a"), ("client-1", "b"), ("client-2", "a"))
TOKEN_TTL = 3600
# The "fast" profile (CI) runs 60 examples; HYPOTHESIS_PROFILE=slow runs the profile's count.
EXAMPLES = 60 if settings.default.max_examples <= 100 else settings.default.max_examples
pytestmark = pytest.mark.timeout(120 if EXAMPLES == 60 else 3600)
_T = TypeVar("_T")


class World:
    """What outlives one example: the provider and the clock offset shared with the Bearer."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.idp = IdentityProvider(
            auto_approve=True, token_ttl=TOKEN_TTL, clock=lambda: time.monotonic() + self.offset
        )

    def now(self) -> float:
        return time.time() + self.offset


class TenantMachine(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        forget_process_state()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="fedbearer-sm-"))
        self.user = AutoBrowser()
        self.idp = self.world.idp
        self.seen: dict[int, set[str]] = {i: set() for i in range(len(TENANTS))}
        # The model: where a working refresh token is known to be.
        self.in_memory = [False] * len(TENANTS)
        self.in_file = [False] * len(TENANTS)
        self._new_process()

    def _new_process(self) -> None:
        forget_process_state()
        self.cache = LayeredCache(MemoryCache(), FileCache(self.dir, fsync=False))
        self.bearers = [
            Bearer(
                profile,
                client,
                self.idp.endpoint,
                "fed",
                writer=self.user,
                no_browser_open=True,
                cache=self.cache,
            )
            for client, profile in TENANTS
        ]

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 20))

    def refreshable(self, i: int) -> bool:
        return self.in_memory[i] or self.in_file[i]

    def check(self, i: int, token: Any) -> None:
        assert token.expiration is not None and token.expiration.timestamp() > self.world.now(), (
            "expired token"
        )
        owner = self.idp._authz._access.get(token.token)  # test-only introspection: who it was issued to
        assert owner is not None and owner[1] == TENANTS[i][0], "token of another client"
        for j, seen in self.seen.items():
            assert j == i or token.token not in seen, "token of another tenant"
        self.seen[i].add(token.token)

    @rule(i=st.integers(0, len(TENANTS) - 1), callers=st.sampled_from([1, 1, 5]))
    def fetch(self, i: int, callers: int) -> None:
        before = self.idp.stats
        receiver = self.bearers[i].receiver()

        async def together() -> list[Any]:
            return await asyncio.gather(*[receiver.fetch() for _ in range(callers)])

        tokens = self.run(together())
        assert len({t.token for t in tokens}) == 1
        self.check(i, tokens[0])
        self.after_renewal(i, before)

    def after_renewal(self, i: int, before: Any) -> None:
        after = self.idp.stats
        if self.refreshable(i):
            assert after.logins == before.logins, "a browser login although the refresh token works"
        if (after.logins, after.refreshes) != (before.logins, before.refreshes):
            # A new refresh token was issued and stored in every layer (a token served from a
            # cache leaves the model as it was).
            self.in_memory[i] = self.in_file[i] = True

    @rule(seconds=st.sampled_from([5.0, 1800.0, TOKEN_TTL - 30.0, TOKEN_TTL + 1.0, 3 * TOKEN_TTL]))
    def advance_clock(self, seconds: float) -> None:
        self.world.offset += seconds

    @rule(i=st.integers(0, len(TENANTS) - 1))
    def refresh(self, i: int) -> None:
        before = self.idp.stats
        try:
            token = self.run(self.bearers[i].renew())
        except LoginRequired:
            assert not self.refreshable(i), "renew() failed although the refresh token works"
        else:
            self.check(i, token)
            self.after_renewal(i, before)
        assert self.idp.stats.logins == before.logins, "renew() must never log in"

    @rule(i=st.integers(0, len(TENANTS) - 1))
    def logout(self, i: int) -> None:
        self.run(self.bearers[i].logout())
        self.in_memory[i] = self.in_file[i] = False

    @rule(
        i=st.integers(0, len(TENANTS) - 1),
        garbage=st.sampled_from([b"", b"{", b"\x00" * 10, b'{"schema":1}']),
    )
    def corrupt_cache_file(self, i: int, garbage: bytes) -> None:
        path = self.cache.layers[1].path_for(self.bearers[i].key)  # type: ignore[attr-defined]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(garbage)
        self.in_file[i] = False  # (a later read-through may repair it; the model stays pessimistic)

    @rule()
    def restart_process(self) -> None:
        self._new_process()
        self.in_memory = [False] * len(TENANTS)

    @rule()
    def revoke_refresh_tokens(self) -> None:
        self.idp.revoke_refresh_tokens()
        self.in_memory = [False] * len(TENANTS)
        self.in_file = [False] * len(TENANTS)

    @invariant()
    def no_damaged_file_is_left_in_place_for_another_tenant(self) -> None:
        file_layer = self.cache.layers[1]
        for i, bearer in enumerate(self.bearers):
            entry = file_layer.read(bearer.key)  # type: ignore[attr-defined]
            if entry is not None:
                assert entry.access_token not in set().union(*(s for j, s in self.seen.items() if j != i))

    def teardown(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_tenants_never_get_expired_or_foreign_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    monkeypatch.setattr(bearer_module, "_time", world.now)
    TenantMachine.world = world
    with world.idp:
        run_state_machine_as_test(
            TenantMachine, settings=settings(max_examples=EXAMPLES, stateful_step_count=30, deadline=None)
        )
