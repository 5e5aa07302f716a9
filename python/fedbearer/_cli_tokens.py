"""``fedbearer token``, ``status`` and ``logout``: the cache-facing commands (see cli.py).

Only ``token`` prints a token (its job, for scripts: ``curl -H "Authorization: Bearer $(fedbearer
token)"``); every prompt and message goes to stderr so stdout stays the token alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["add_commands"]


def add_commands(sub: Any, add_tenant_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the cache-facing subcommands on ``sub`` (an argparse subparsers object)."""
    token = sub.add_parser(
        "token",
        help="print a valid access token (from the cache, refreshing or logging in as needed)",
        description="Print a valid access token on stdout; login prompts go to stderr.",
    )
    add_tenant_args(token)
    token.add_argument("--json", action="store_true", help="print JSON with the token and its expiry")
    token.set_defaults(run=_token)

    logout = sub.add_parser("logout", help="remove a tenant's tokens from every cache layer")
    add_tenant_args(logout)
    logout.set_defaults(run=_logout)

    status = sub.add_parser("status", help="list cached tenants with their expiry (never the tokens)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)


def _bearer(args: argparse.Namespace) -> Any:
    from fedbearer.cli import _paste_input
    from fedbearer.federation import Bearer

    return Bearer(
        args.profile,
        args.client_id,
        args.endpoint,
        args.federation_id,
        writer=sys.stderr,
        no_browser_open=args.no_browser,
        login_timeout=args.timeout,
        paste_input=_paste_input(args),
    )


async def _token(args: argparse.Namespace) -> int:
    bearer = _bearer(args)
    token = await bearer.receiver().fetch(timeout=args.timeout)
    if args.json:
        expires_at = None if token.expiration is None else int(token.expiration.timestamp())
        doc = {
            "access_token": token.token,
            "token_type": "Bearer",
            "expires_at": expires_at,
            "expires_in": None if expires_at is None else max(0, expires_at - int(time.time())),
        }
        print(json.dumps(doc))
    else:
        print(token.token)
    return 0


async def _logout(args: argparse.Namespace) -> int:
    bearer = _bearer(args)
    await bearer.logout()
    print(f"Logged out {bearer.name} (client {args.client_id}): removed from {_layers(bearer.cache)}.")
    return 0


def _layers(cache: Any, *, memory: bool = True) -> str:
    from fedbearer.cache import FileCache, MemoryCache, RedisCache

    names = []
    for layer in getattr(cache, "layers", (cache,)):
        if isinstance(layer, MemoryCache):
            if memory:
                names.append("memory")
        elif isinstance(layer, FileCache):
            names.append(f"file cache {layer.directory}")
        elif isinstance(layer, RedisCache):
            names.append(repr(layer))
        else:
            names.append(type(layer).__name__)
    return ", ".join(names)


def _left(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


async def _status(args: argparse.Namespace) -> int:
    from fedbearer.cache import FileCache, RedisCache, default_cache

    cache = default_cache()
    rows: dict[str, dict[str, Any]] = {}
    for layer in cache.layers:
        if isinstance(layer, FileCache):
            found = list(layer.entries())
            where = "file"
        elif isinstance(layer, RedisCache):
            found = await layer.entries()
            where = "redis"
        else:
            continue
        for key, entry in found:
            row = rows.setdefault(key, {"key": key, "where": []})
            row["where"].append(where)
            if entry.issued_at >= row.get("issued_at", -1.0):
                row.update(
                    issued_at=entry.issued_at,
                    expires_at=entry.expires_at,
                    refreshable=entry.refresh_token is not None,
                )
        for key, row in rows.items():
            if "login_in_progress" not in row and hasattr(layer, "get_progress"):
                record = await layer.get_progress(key)
                if record is not None and not record.is_stale():
                    row["login_in_progress"] = {"pid": record.pid, "host": record.host}
    now = time.time()
    if args.json:
        print(json.dumps(sorted(rows.values(), key=lambda r: r["key"]), indent=2))
        return 0
    print(f"Token cache: {_layers(cache, memory=False)}")
    if not rows:
        print("No cached tenants.")
        return 0
    for key in sorted(rows):
        row = rows[key]
        exp = row["expires_at"]
        if exp is None:
            state = "valid, no expiry"
        elif exp > now:
            state = f"valid for {_left(exp - now)}"
        else:
            state = f"expired {_left(now - exp)} ago"
        extra = ", refreshable" if row["refreshable"] else ""
        busy = row.get("login_in_progress")
        if busy:
            extra += f", login in progress (pid {busy['pid']} on {busy['host']})"
        print(f"  {key}: {state}{extra} [{'+'.join(row['where'])}]")
    return 0
