"""Across OS processes on one host: one login and one browser prompt for a tenant however many
processes need it, "login in progress — open: URL" for the others, abandoned logins taken over,
refresh-token rotation shared through the file cache."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bearer_helpers import HELPERS, AutoBrowser, spawn_lock_holder, subprocess_env
from fedbearer import LoginTimeout
from fedbearer.cache import FileCache, LayeredCache, MemoryCache
from fedbearer.federation import Bearer
from fedbearer.testing import IdentityProvider

pytestmark = pytest.mark.timeout(90)


def spawn_workers(
    idp: IdentityProvider, tmp_path: Path, count: int, *, delay: str = "1.0", **args: object
) -> list[tuple[str, str, int]]:
    browser_log = tmp_path / "browser.log"
    env = subprocess_env(tmp_path / "cache", browser_log, FAKE_BROWSER_DELAY=delay)
    go = tmp_path / "go"
    procs = []
    for i in range(count):
        worker_args = {
            "client_id": "client",
            "endpoint": idp.endpoint,
            "federation_id": "fed",
            "ready": str(tmp_path / f"ready{i}"),
            "go": str(go),
            **args,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HELPERS), "worker", json.dumps(worker_args)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready*"))) < count:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.01)
    go.touch()  # all at once
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((out, err, proc.returncode))
    return results


@pytest.mark.identity_provider(auto_approve=True)
def test_four_processes_at_once_make_one_login_and_one_browser_prompt(
    identity_provider: IdentityProvider, tmp_path: Path
) -> None:
    idp = identity_provider
    results = spawn_workers(idp, tmp_path, 4)
    assert all(rc == 0 for _, _, rc in results), [err for _, err, _ in results]
    tokens = {json.loads(out)["token"] for out, _, _ in results}
    assert len(tokens) == 1
    assert idp.stats.logins == 1 and idp.stats.authorize_requests == 1
    prompts = (tmp_path / "browser.log").read_text().splitlines()
    assert len(prompts) == 1
    waiting = [err for _, err, _ in results if f"login in progress — open: {prompts[0]}" in err]
    owner = [err for _, err, _ in results if "Switch to your browser" in err]
    assert len(waiting) == 3 and len(owner) == 1, [err for _, err, _ in results]


@pytest.mark.identity_provider(auto_approve=True, token_ttl=2, rotate_refresh_tokens=True)
def test_processes_share_rotating_refresh_tokens_without_browser_logins(
    identity_provider: IdentityProvider, tmp_path: Path
) -> None:
    idp = identity_provider
    results = spawn_workers(idp, tmp_path, 3, delay="0", duration=4.5)
    assert all(rc == 0 for _, _, rc in results), [err for _, err, _ in results]
    docs = [json.loads(out) for out, _, _ in results]
    assert all(doc["expired"] == 0 for doc in docs)
    assert all(doc["seen"] >= 2 for doc in docs)  # each saw renewed tokens
    assert idp.stats.logins == 1 and len((tmp_path / "browser.log").read_text().splitlines()) == 1
    assert idp.stats.refreshes >= 2
    assert idp.stats.errors == 0  # no rotated refresh token was ever reused


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_a_hung_login_past_its_deadline_is_taken_over(
    identity_provider: IdentityProvider, tmp_path: Path
) -> None:
    idp, user = identity_provider, AutoBrowser()
    cache = LayeredCache(MemoryCache(), FileCache(tmp_path / "cache"))
    bearer = Bearer("default", "client", idp.endpoint, "fed", writer=user, no_browser_open=True, cache=cache)
    stuck_url = f"{idp.endpoint}/oauth2/authorize?stuck=1"
    holder = spawn_lock_holder(tmp_path / "cache", bearer.key, stuck_url, 1.5)
    try:
        start = time.monotonic()
        token = await bearer.receiver().fetch()
        elapsed = time.monotonic() - start
    finally:
        holder.kill()
        holder.wait()
    assert f"login in progress — open: {stuck_url}" in user.getvalue()
    assert 0.5 < elapsed < 10
    assert token.token in idp.issued_tokens and idp.stats.logins == 1 and user.prompts == 1


@pytest.mark.asyncio
@pytest.mark.identity_provider(auto_approve=True)
async def test_waiting_behind_a_live_login_is_bounded_by_the_callers_timeout(
    identity_provider: IdentityProvider, tmp_path: Path
) -> None:
    idp, user = identity_provider, AutoBrowser()
    cache = LayeredCache(MemoryCache(), FileCache(tmp_path / "cache"))
    bearer = Bearer("default", "client", idp.endpoint, "fed", writer=user, no_browser_open=True, cache=cache)
    url = f"{idp.endpoint}/oauth2/authorize?busy=1"
    holder = spawn_lock_holder(tmp_path / "cache", bearer.key, url, 60)
    try:
        start = time.monotonic()
        with pytest.raises(LoginTimeout):
            await bearer.receiver().fetch(timeout=0.5)
        assert time.monotonic() - start < 5
    finally:
        holder.kill()
        holder.wait()
    assert user.getvalue().count("login in progress — open: ") == 1
    assert user.prompts == 0 and idp.stats.authorize_requests == 0  # no second prompt was opened
