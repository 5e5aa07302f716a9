"""``fedbearer token``/``status``/``logout`` as a user runs them: real processes, a real file
cache, the embedded provider and a fake browser."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bearer_helpers import subprocess_env
from fedbearer.testing import IdentityProvider

pytestmark = pytest.mark.timeout(90)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedbearer", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


@pytest.mark.identity_provider(auto_approve=True, token_prefix="CANARY-AT-", refresh_prefix="CANARY-RT-")
def test_token_status_logout(identity_provider: IdentityProvider, tmp_path: Path) -> None:
    idp = identity_provider
    env = subprocess_env(tmp_path / "cache", tmp_path / "browser.log")
    tenant = ["--endpoint", idp.endpoint, "--federation-id", "fed", "--client-id", "cli-client"]

    first = run(env, "token", *tenant)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    assert token in idp.issued_tokens and first.stdout == token + "\n"  # stdout: the token alone
    assert "Switch to your browser" in first.stderr and "CANARY" not in first.stderr

    second = run(env, "token", "--json", *tenant)  # from the file cache: no new login
    doc = json.loads(second.stdout)
    assert doc["access_token"] == token and doc["token_type"] == "Bearer"
    assert doc["expires_at"] > time.time() + 3000 and 3000 < doc["expires_in"] <= 3600
    assert idp.stats.logins == 1 and second.stderr == ""

    status = run(env, "status")
    assert status.returncode == 0, status.stderr
    assert "cli-client" in status.stdout and "valid for" in status.stdout and "refreshable" in status.stdout
    assert "CANARY" not in status.stdout + status.stderr
    as_json = json.loads(run(env, "status", "--json").stdout)
    assert [row["key"] for row in as_json] == [f"federation/{idp.endpoint}/fed/default#cli-client"]
    assert "CANARY" not in json.dumps(as_json)

    other = run(env, "token", "--profile", "other", *tenant)
    assert other.returncode == 0 and idp.stats.logins == 2

    out = run(env, "logout", *tenant)
    assert out.returncode == 0 and "Logged out" in out.stdout and "CANARY" not in out.stdout
    after = run(env, "status", "--json")
    assert [row["key"] for row in json.loads(after.stdout)] == [
        f"federation/{idp.endpoint}/fed/other#cli-client"
    ]

    again = run(env, "token", *tenant)  # logged out: a new login
    assert again.returncode == 0 and again.stdout.strip() != token and idp.stats.logins == 3
    assert len((tmp_path / "browser.log").read_text().splitlines()) == 3


def test_status_of_an_empty_cache(tmp_path: Path) -> None:
    result = run(subprocess_env(tmp_path / "empty"), "status")
    assert result.returncode == 0 and "No cached tenants." in result.stdout
