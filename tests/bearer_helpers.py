"""Helpers for the Bearer/cache tests: an in-process user who completes logins, process-state
resets, and a small command-line for subprocesses (workers, a fake browser, a cache writer)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import stat
import sys
import time
from pathlib import Path
from typing import Any

HELPERS = Path(__file__).resolve()
_URL_LINE = re.compile(r"(?m)^(https?://\S+/oauth2/authorize\?\S+)")


class AutoBrowser:
    """A writer that plays the user: every authorization URL written on a line of its own (the
    login prompt) is opened and approved after ``delay`` s on the running loop. A "login in
    progress — open: URL" line is not a prompt and is left alone."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, delay: float = 0.0, approve: bool = True
    ):
        self.ssl_context = ssl_context
        self.delay = delay
        self.approve = approve
        self.enabled = True
        self.parts: list[str] = []
        self.urls: list[str] = []
        self.errors: list[BaseException] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def write(self, text: str) -> int:
        self.parts.append(text)
        for url in _URL_LINE.findall(text):
            self.urls.append(url)
            if self.enabled:
                task = asyncio.get_running_loop().create_task(self._complete(url))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return len(text)

    def flush(self) -> None:
        pass

    async def _complete(self, url: str) -> None:
        from fedbearer.testing import complete_login

        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            await complete_login(url, approve=self.approve, ssl_context=self.ssl_context, timeout=10)
        except Exception as err:  # the test's assertions report it
            self.errors.append(err)

    @property
    def prompts(self) -> int:
        return len(self.urls)

    def getvalue(self) -> str:
        return "".join(self.parts)


def forget_process_state() -> None:
    """As if a new process started: no slot, nothing in the shared memory layer."""
    from fedbearer.cache.memory import shared_memory_cache
    from fedbearer.federation import bearer

    for slot in list(bearer._slots.values()):
        slot.deadline = 0.0
        slot.entry = None
        slot.token = None
    bearer._slots.clear()
    shared_memory_cache().clear()


def fake_browser_script(directory: Path) -> Path:
    """An executable for ``$BROWSER``: logs the URL to ``$FAKE_BROWSER_LOG`` and, unless
    ``$FAKE_BROWSER_IGNORE`` is set, approves the login after ``$FAKE_BROWSER_DELAY`` s."""
    script = directory / "fake-browser"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HELPERS}" browser "$1"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def subprocess_env(cache_dir: Path, browser_log: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEDBEARER_", "FAKE_BROWSER_"))}
    env["FEDBEARER_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(HELPERS.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if browser_log is not None:
        env["BROWSER"] = str(fake_browser_script(browser_log.parent))
        env["FAKE_BROWSER_LOG"] = str(browser_log)
    env.update(extra)
    return env


def spawn_lock_holder(directory: Path, key: str, url: str, record_timeout: float, **extra: object) -> Any:
    """A live process holding ``key``'s lock (the file cache in ``directory``, or Redis with
    ``redis_url=``) with a login record open for ``record_timeout`` s. Kill it when done."""
    import subprocess

    args = {"dir": str(directory), "key": key, "url": url, "record_timeout": record_timeout, **extra}
    holder = subprocess.Popen(
        [sys.executable, str(HELPERS), "lock-holder", json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(directory),
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.glob(pattern))


# -- subprocess entry points -------------------------------------------------------------------
def _browser(url: str) -> int:
    with open(os.environ["FAKE_BROWSER_LOG"], "a") as log:
        log.write(url + "\n")
    if os.environ.get("FAKE_BROWSER_IGNORE"):
        return 0
    time.sleep(float(os.environ.get("FAKE_BROWSER_DELAY", "0")))
    from fedbearer.testing import complete_login_sync

    complete_login_sync(url, timeout=20)
    return 0


def _wait_for_go(args: dict[str, Any]) -> None:
    ready, go = args.get("ready"), args.get("go")
    if ready:
        Path(ready).touch()
    if go:
        deadline = time.monotonic() + 30
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.005)


async def _worker(args: dict[str, Any]) -> None:
    from fedbearer.federation import Bearer

    bearer = Bearer(
        args.get("profile", "default"),
        args["client_id"],
        args["endpoint"],
        args["federation_id"],
        writer=sys.stderr,
        no_browser_open=False,
        login_timeout=args.get("login_timeout", 30.0),
    )
    _wait_for_go(args)
    token = await bearer.receiver().fetch()
    seen, expired = {token.token}, 0
    end = time.monotonic() + float(args.get("duration", 0))
    while time.monotonic() < end:  # keep using the tenant across expiries and refreshes
        await asyncio.sleep(0.02)
        token = await bearer.receiver().fetch()
        expired += token.is_expired()
        seen.add(token.token)
    print(
        json.dumps({"pid": os.getpid(), "token": token.token, "seen": len(seen), "expired": expired}),
        flush=True,
    )


def _cache_writer(args: dict[str, Any]) -> None:
    """Rewrite one tenant's file as fast as possible until killed (``hang_in_fsync``: stop inside
    the first fsync of a temp file, after writing it and before renaming it)."""
    from fedbearer.cache import CacheEntry, FileCache

    cache = FileCache(args["dir"])
    if args.get("hang_in_fsync"):
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            print("in-fsync", flush=True)
            time.sleep(60)

        os.fsync = fsync
    else:
        print("ready", flush=True)
    size = int(args.get("size", 200_000))
    n = 0
    while True:
        n += 1
        body = f"tok-{n:09d}-" + "x" * size
        cache.write(args["key"], CacheEntry(body, time.time() + 3600, f"rt-{n}", time.time()))


async def _lock_holder(args: dict[str, Any]) -> None:
    """Hold a tenant's lock with a login record (a hung or soon-killed login owner)."""
    from fedbearer.cache import FileCache, LoginProgress, RedisCache

    cache: Any = RedisCache(args["redis_url"]) if args.get("redis_url") else FileCache(args["dir"])
    handle = await cache.try_lock(args["key"], args.get("ttl", 300.0))
    assert handle is not None, "the lock is taken"
    await cache.put_progress(args["key"], LoginProgress.mine(args["url"], args["record_timeout"]))
    print("holding", flush=True)
    await asyncio.sleep(120)


def main(argv: list[str]) -> int:
    mode = argv[1]
    if mode == "browser":
        return _browser(argv[2])
    args = json.loads(argv[2])
    if mode == "worker":
        asyncio.run(_worker(args))
    elif mode == "cache-writer":
        _cache_writer(args)
    elif mode == "lock-holder":
        asyncio.run(_lock_holder(args))
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
