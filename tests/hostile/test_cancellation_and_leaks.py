"""Cancellation and leaks: logins started and abandoned in every way a caller can abandon them —
``task.cancel()``, timeouts, ``asyncio.wait_for``, Ctrl-C in the CLI, a hung token exchange —
leave no registered flow, no listening port, no extra fd or thread and a flat RSS; after
``fork()`` the child gets a clear error for the parent's objects instead of a hang, and can log in
on its own."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fedbearer import CallbackListener, LoginTimeout
from fedbearer.federation import _listener, auth
from fedbearer.testing import IdentityProvider, complete_login, complete_login_sync

from ._probe import (
    MIB,
    Lines,
    Usage,
    cli_env,
    get_request,
    link_from,
    port_refuses,
    provider_redirect,
    raw_request,
    report,
    settled_usage,
    status_of,
    target_of,
    wait_until,
)

pytestmark = pytest.mark.timeout(180)

NOWHERE = "http://127.0.0.1:9"  # never contacted: these logins end before any token request
ROUNDS = 4
PER_ROUND = 2500  # 1,000 cancelled, 1,000 timed out, 500 abandoned by wait_for: 10,000 in all
HUNG = 30  # below the token client's pool limit (32 connections): all of them in flight at once


def start(**kwargs: Any) -> asyncio.Task[auth.GetTokenResult]:
    kwargs.setdefault("timeout", 60.0)
    return asyncio.ensure_future(auth.authorize("client", NOWHERE, "fed", None, True, **kwargs))


async def abandon_round() -> dict[str, int]:
    """One round of abandoned logins; returns how each ended."""
    ended: dict[str, int] = {}

    def count(results: list[Any]) -> None:
        for r in results:
            ended[type(r).__name__] = ended.get(type(r).__name__, 0) + 1

    # task.cancel(): half before the task ever ran, half while waiting on the listener.
    early = [start() for _ in range(500)]
    for task in early:
        task.cancel()
    waiting = [start() for _ in range(500)]
    await asyncio.sleep(0.01)
    listener = _listener.current_listener()
    assert listener is not None and listener.pending == 500
    port = listener.port
    for task in waiting:
        task.cancel()
    count(await asyncio.gather(*early, *waiting, return_exceptions=True))
    assert await wait_until(lambda: port_refuses(port)), "a cancelled round kept its port"
    # The login's own timeout, and a caller's timeout around it.
    count(await asyncio.gather(*(start(timeout=0.05) for _ in range(1000)), return_exceptions=True))
    count(
        await asyncio.gather(
            *(asyncio.wait_for(start(), 0.05) for _ in range(PER_ROUND - 2000)), return_exceptions=True
        )
    )
    assert _listener.current_listener() is None
    return ended


@pytest.mark.asyncio
async def test_ten_thousand_abandoned_logins_leave_nothing_behind() -> None:
    await abandon_round()  # warm-up: the runtime, the notifier, the allocator's first arenas
    before = Usage.now()
    totals: dict[str, int] = {}
    after_first: Usage | None = None
    for i in range(ROUNDS):
        for kind, n in (await abandon_round()).items():
            totals[kind] = totals.get(kind, 0) + n
        if i == 0:
            after_first = Usage.now()
    after = await settled_usage(before)
    assert after_first is not None
    report(
        "10,000 abandoned logins",
        f"{totals}; {before.figures(after)}; RSS after round 1 {after_first.rss / MIB:.1f} MiB, "
        f"after round {ROUNDS} {after.rss / MIB:.1f} MiB",
    )
    assert totals == {
        "CancelledError": ROUNDS * 1000,
        "LoginTimeout": ROUNDS * 1000,
        "TimeoutError": ROUNDS * (PER_ROUND - 2000),
    }
    assert _listener.current_listener() is None
    assert after.fds <= before.fds, before.figures(after)
    assert after.threads <= before.threads, before.figures(after)
    assert after.tasks <= before.tasks, before.figures(after)
    assert after.rss - after_first.rss < 8 * MIB, after_first.figures(after)  # flat from round to round
    assert after.rss - before.rss < 16 * MIB, before.figures(after)


@pytest.mark.asyncio
async def test_a_login_cancelled_during_a_hung_token_exchange_leaves_no_connection() -> None:
    with IdentityProvider(auto_approve=True) as idp:
        idp.set_fault("hang")
        # Warm-up: one exchange that times out, so the pool and aiohttp are loaded.
        writer = io.StringIO()
        task = asyncio.ensure_future(auth.authorize("c", idp.endpoint, "f", writer, True, http_timeout=0.2))
        port, target = target_of(await provider_redirect(await link_from(writer)))
        await raw_request(port, get_request(target))
        await asyncio.gather(task, return_exceptions=True)
        before = Usage.now()
        tasks = []
        for _ in range(HUNG):
            writer = io.StringIO()
            tasks.append(asyncio.ensure_future(auth.authorize("c", idp.endpoint, "f", writer, True)))
            port, target = target_of(await provider_redirect(await link_from(writer)))
            assert status_of(await raw_request(port, get_request(target))) == 200
        assert await wait_until(lambda: idp.stats.token_requests == HUNG + 1), idp.stats
        hung = Usage.now()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        after = await settled_usage(before)
        idp.set_fault(None)
    report(f"{HUNG} logins cancelled mid-exchange", f"while hung: fds {hung.fds}; {before.figures(after)}")
    assert hung.fds >= before.fds + HUNG  # the hung requests really held connections
    assert after.fds <= before.fds + 2, before.figures(after)
    assert after.tasks <= before.tasks


# -- Ctrl-C in the command line ----------------------------------------------------------------------
def tenant(idp: IdentityProvider) -> list[str]:
    return ["--endpoint", idp.endpoint, "--federation-id", "fed", "--client-id", "cli", "--timeout", "60"]


def interrupt(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the command did not exit after SIGINT") from None


@pytest.mark.parametrize("when", ["waiting for the browser", "during a hung token exchange"])
@pytest.mark.parametrize("command", ["login", "token"])
def test_ctrl_c_in_the_cli_exits_130_without_a_traceback_and_frees_everything(
    tmp_path: Path, command: str, when: str
) -> None:
    with IdentityProvider(auto_approve=True) as idp:
        env = cli_env(tmp_path / "home")
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedbearer", "-vv", command, "--no-browser", *tenant(idp)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err_lines = Lines(proc.stdout), Lines(proc.stderr)
        try:
            link = url_in((out if command == "login" else err_lines).wait_for("/oauth2/authorize?"))
            redirect_port = int(link.split("redirect_uri=http%3A%2F%2F127.0.0.1%3A", 1)[1].split("&", 1)[0])
            assert not port_refuses(redirect_port)
            if when == "during a hung token exchange":
                idp.set_fault("hang")
                thread = threading.Thread(target=complete_login_sync, args=(link,), kwargs={"timeout": 30})
                thread.start()
                assert _eventually(lambda: idp.stats.token_requests == 1), idp.stats
            code = interrupt(proc)
            err = err_lines.rest()
        finally:
            close(proc)
            idp.set_fault(None)
        assert code == 130, err
        assert "Traceback" not in err and "interrupted" in err, err
        assert port_refuses(redirect_port)
        # Nothing left that makes the next run wait: the lock died with the process, and its
        # "login in progress" record names a dead pid, so the next run prompts at once.
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedbearer", command, "--no-browser", *tenant(idp)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lines = Lines(proc.stdout if command == "login" else proc.stderr)
            line = lines.wait_for("/oauth2/authorize?", timeout=15)
            assert "login in progress" not in line
            link = url_in(line)
            assert complete_login_sync(link, timeout=20) == 200
            assert proc.wait(30) == 0
        finally:
            close(proc)
        assert idp.stats.tokens_issued == 1


def url_in(line: str) -> str:
    match = re.search(r"https?://\S+/oauth2/authorize\?\S+", line)
    assert match is not None, line
    return match.group(0)


def close(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _eventually(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- fork() ------------------------------------------------------------------------------------------
def _in_child(idp: IdentityProvider, parent_listener: Any, parent_flow: Any, bearer: Any) -> dict[str, Any]:
    """What the forked child sees: each step's outcome as [kind, text]."""
    report: dict[str, Any] = {}

    def step(name: str, action: Any) -> None:
        try:
            report[name] = ["ok", repr(action())]
        except Exception as exc:
            report[name] = [type(exc).__name__, str(exc)]

    # The parent's objects: a clear error, never a hang.
    step("register", lambda: parent_listener.register("child-state"))
    step("deliver", lambda: parent_listener.deliver("state=parent-extra&code=stolen"))
    step("wait", lambda: parent_flow.wait(1))
    step("wait_closed", lambda: parent_listener.wait_closed())
    # Clean-up calls on them must not hang either (they are no-ops for the parent).
    step("cancel", parent_flow.cancel)
    step("repr", lambda: repr(parent_listener))

    # A login of the child's own: a new runtime, listener and notifier.
    async def fresh_login() -> str:
        writer = io.StringIO()
        task = asyncio.ensure_future(auth.authorize("c", idp.endpoint, "f", writer, True, timeout=20))
        await complete_login(await link_from(writer))
        result = await asyncio.wait_for(task, 20)
        return result.access_token

    step("fresh_login", lambda: asyncio.run(fresh_login()))
    # The blocking API: the parent's helper thread does not exist here; a new one serves.
    step("fetch_sync_cached", lambda: bearer.fetch_sync().token)
    bearer.invalidate()
    step("fetch_sync_again", lambda: bearer.fetch_sync().token)
    return report


def test_after_fork_the_child_gets_clear_errors_and_can_log_in_itself(tmp_path: Path) -> None:
    from bearer_helpers import AutoBrowser
    from fedbearer.cache import FileCache, LayeredCache, MemoryCache
    from fedbearer.federation import Bearer

    with IdentityProvider(auto_approve=True) as idp:
        cache = LayeredCache(MemoryCache(), FileCache(tmp_path / "cache", fsync=False))
        bearer = Bearer("p", "c", idp.endpoint, "f", writer=AutoBrowser(), no_browser_open=True, cache=cache)
        token = bearer.fetch_sync()  # the sync helper thread and its loop now exist

        # A login in progress in a thread of the parent when it forks.
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        writer = io.StringIO()
        pending = asyncio.run_coroutine_threadsafe(
            auth.authorize("c", idp.endpoint, "f", writer, True, timeout=60), loop
        )
        assert _eventually(lambda: _listener.current_listener() is not None)
        parent_listener = _listener.current_listener()
        assert parent_listener is not None
        parent_flow = parent_listener.register("parent-extra")

        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            status = 1
            try:
                os.close(read_end)
                payload = _in_child(idp, parent_listener, parent_flow, bearer)
                status = 0
            except BaseException as exc:
                payload = {"crash": repr(exc)}
            finally:
                try:
                    os.write(write_end, json.dumps(payload).encode())
                finally:
                    os._exit(status)
        os.close(write_end)
        chunks = []
        deadline = time.monotonic() + 30
        try:
            while True:
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    pytest.fail(f"the child hung after fork(); it said: {b''.join(chunks)!r}")
                if select.select([read_end], [], [], 0.1)[0]:
                    chunk = os.read(read_end, 65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        finally:
            os.close(read_end)
            _, status = os.waitpid(pid, 0)
        child = json.loads(b"".join(chunks))
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, child
        for name in ("register", "deliver", "wait", "wait_closed"):
            kind, text = child[name]
            assert kind == "ListenerError", (name, child[name])
            assert "fork()" in text and str(os.getpid()) in text and str(pid) in text, text
        assert child["cancel"][0] == "ok" and child["repr"][0] == "ok"
        kind, fresh = child["fresh_login"]
        assert kind == "ok" and ast.literal_eval(fresh) in idp.issued_tokens, child
        assert child["fetch_sync_cached"] == ["ok", repr(token.token)], child
        assert child["fetch_sync_again"] == ["ok", repr(token.token)], child  # from the file cache

        # The parent is unharmed: its pending login still completes, its flow is still there.
        assert parent_flow.registered
        asyncio.run(complete_login(url_in(writer.getvalue())))
        assert pending.result(10).access_token in idp.issued_tokens
        parent_flow.cancel()
        asyncio.run_coroutine_threadsafe(loop.shutdown_asyncgens(), loop).result(5)  # the token pool
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_logins_on_many_short_lived_event_loops_leave_nothing_behind() -> None:
    """A CLI or a sync wrapper runs ``asyncio.run`` again and again: whatever a loop needs to be
    woken by the listener goes away with the loop."""

    async def one(i: int) -> None:
        listener = CallbackListener.bind()
        timed_out = listener.register(f"late-{i}")
        done = listener.register(f"done-{i}")
        waits = [asyncio.ensure_future(timed_out.wait(0.01)), asyncio.ensure_future(done.wait(5))]
        assert listener.deliver(f"state=done-{i}&code=c") is True
        results = await asyncio.gather(*waits, return_exceptions=True)
        assert isinstance(results[0], LoginTimeout) and results[1].code == "c"

    asyncio.run(one(-1))  # warm-up
    before = Usage.now()
    for i in range(200):
        asyncio.run(one(i))
    after = Usage.now()
    report("200 event loops", before.figures(after))
    assert after.fds <= before.fds and after.threads <= before.threads, before.figures(after)
    assert after.rss - before.rss < 8 * MIB, before.figures(after)
