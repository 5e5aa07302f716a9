"""Shared test set-up: the embedded identity provider fixtures and Hypothesis profiles.

``HYPOTHESIS_PROFILE=slow`` runs many more examples (the default ``fast`` keeps CI short).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["fedbearer.testing.pytest_plugin"]

settings.register_profile(
    "fast", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "slow", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))


@pytest.fixture(autouse=True)
def _private_token_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bearers built with ``cache=None`` write into a throw-away directory, never ~/.cache."""
    monkeypatch.setenv("FEDBEARER_CACHE_DIR", str(tmp_path_factory.mktemp("token-cache")))
    monkeypatch.delenv("FEDBEARER_REDIS_URL", raising=False)
