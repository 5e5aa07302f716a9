"""A worker of the multi-host race: ``python -m hostile._race_worker '<json args>'``.

Uses two tenants (on two providers) through Bearers with the default cache (its file layer is
this "host's" ``FEDBEARER_CACHE_DIR``; Redis from ``FEDBEARER_REDIS_URL`` is shared by every
host) for ``duration`` seconds from the go signal, checking every token the moment it gets it,
and prints one JSON line: the tokens seen per tenant, and any token that was expired or not its
tenant's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path


async def run(args: dict) -> dict:
    from fedbearer.federation import Bearer

    bearers = {
        name: Bearer(
            "race",
            "client",
            endpoint,
            "fed",
            writer=sys.stderr,
            no_browser_open=False,  # $BROWSER is the fake browser that approves
            login_timeout=30.0,
        )
        for name, endpoint in args["tenants"].items()
    }
    deadline = time.time() + args["duration"]
    seen: dict[str, list[str]] = {name: [] for name in bearers}
    bad: list[str] = []
    fetches = 0
    while time.time() < deadline:
        for name, bearer in bearers.items():
            token = await bearer.receiver().fetch()
            fetches += 1
            now = time.time()
            if token.expiration is None or token.expiration.timestamp() <= now:
                bad.append(f"{name}: expired token served ({token!r} at {now:.3f})")
            if not token.token.startswith(args["prefixes"][name]):
                bad.append(f"{name}: another tenant's token ({token.token[:6]}...)")
            if not seen[name] or seen[name][-1] != token.token:
                seen[name].append(token.token)
        await asyncio.sleep(0.01)
    return {"pid": os.getpid(), "seen": seen, "bad": bad, "fetches": fetches}


def wait_for_go(args: dict) -> None:
    Path(args["ready"]).touch()
    while not os.path.exists(args["go"]):
        time.sleep(0.005)


if __name__ == "__main__":
    wait_for_go(json.loads(sys.argv[1]))
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))), flush=True)
