"""Pytest fixtures for the embedded identity provider.

Enable with ``pytest_plugins = ["fedbearer.testing.pytest_plugin"]`` in the root conftest.py (or
``-p fedbearer.testing.pytest_plugin``). Options go in a marker::

    @pytest.mark.identity_provider(auto_approve=True, token_prefix="CANARY-AT-")
    def test_login(identity_provider): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fedbearer.testing.provider import IdentityProvider


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "identity_provider(**options): IdentityProvider options for the identity_provider fixtures"
    )


@pytest.fixture
def make_identity_provider() -> Iterator[Callable[..., IdentityProvider]]:
    """A factory of started providers (`IdentityProvider` keyword options); all stop at teardown."""
    started: list[IdentityProvider] = []

    def make(**options: Any) -> IdentityProvider:
        provider = IdentityProvider(**options).start()
        started.append(provider)
        return provider

    yield make
    for provider in reversed(started):
        provider.stop()


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("identity_provider")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def identity_provider(
    request: pytest.FixtureRequest, make_identity_provider: Callable[..., IdentityProvider]
) -> IdentityProvider:
    """A started plain-HTTP provider on 127.0.0.1."""
    return make_identity_provider(**{**_marker_options(request), "tls": False})


@pytest.fixture
def tls_identity_provider(
    request: pytest.FixtureRequest, make_identity_provider: Callable[..., IdentityProvider]
) -> IdentityProvider:
    """A started HTTPS provider; `ssl_context()` trusts its CA, `ca_pem_path` holds it."""
    return make_identity_provider(**{**_marker_options(request), "tls": True})
