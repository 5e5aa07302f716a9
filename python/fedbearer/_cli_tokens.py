"""``fedbearer token``, ``status`` and ``logout``: the cache-facing commands (see cli.py)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_commands(sub: Any, add_tenant_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the cache-facing subcommands on ``sub`` (an argparse subparsers object)."""
    return None
