"""Hypothesis on the Python boundary: arbitrary bytes, JSON and query strings at every entry point
that takes outside input. Whatever comes in: no Rust panic reaches Python (pyo3's PanicException
is a BaseException, so everything is caught as BaseException here), every failure is a typed
``AuthError`` or ``ValueError``, and no flow completes without its exact ``state``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from fedbearer import AuthError, CallbackListener, PendingFlow, Token, _core
from fedbearer.cache import CacheEntry, FileCache, LoginProgress
from fedbearer.federation import auth
from fedbearer.federation._http import close_sessions

from ._probe import report, status_of

pytestmark = pytest.mark.timeout(240)

TYPED = (AuthError, ValueError)
STATES = ["a", "state-1.dots_~", "x&y=z", "a b", "ünï", "%41", "A" * 64, "+"]
KEYS = ["state", "code", "error", "error_description", "error_uri", "iss"]


def only_typed(exc: BaseException) -> None:
    assert isinstance(exc, TYPED), f"{type(exc).__mro__}: {exc!r}"


# -- a model of the exact-state rule -------------------------------------------------------------
def state_of(query: str) -> str | None:
    """The one state a query carries, decoded as browsers encode it, or None."""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="replace")
    states = [v for k, v in pairs if k == "state"]
    return states[0] if len(states) == 1 else None


class Flows:
    """Flows for STATES on one listener; ``ended()`` lists the states whose flow ended since the
    last call, and registers them again."""

    def __init__(self, listener: CallbackListener) -> None:
        self.listener = listener
        self.sentinel = listener.register("sentinel-keeps-the-listener-open")
        self.flows: dict[str, PendingFlow] = {s: listener.register(s) for s in STATES}

    def ended(self) -> list[str]:
        gone = [s for s, f in self.flows.items() if not f.registered]
        for s in gone:
            self.flows[s] = self.listener.register(s)
        return gone


def check_delivery(flows: Flows, query: str, completed: bool) -> None:
    ended = flows.ended()
    if not completed:
        assert ended == [], (query, ended)
        return
    assert len(ended) == 1, (query, ended)
    assert ended == [state_of(query)], (query, ended)
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, errors="replace")
    assert any(k in ("code", "error") for k, _ in pairs)


value_text = st.sampled_from(STATES) | st.text(max_size=16) | st.text("abxyz&=+%#?;/ ", max_size=8)
pairs = st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=6), value_text), max_size=4)
quoting = st.sampled_from([urllib.parse.quote, urllib.parse.quote_plus])


@st.composite
def queries(draw: st.DrawFn) -> str:
    """Mostly shaped like a redirect (a state and a code or an error, among other parameters),
    with arbitrary keys, values and encodings."""
    items = draw(pairs)
    if draw(st.booleans()):
        items.append(("state", draw(st.sampled_from(STATES))))
        items.append((draw(st.sampled_from(["code", "error"])), draw(value_text)))
    items = draw(st.permutations(items))
    return urllib.parse.urlencode(items, quote_via=draw(quoting))


raw_queries = st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1"))


# -- pasted URLs (remote mode) and requests on the socket: any text ---------------------------------
def send(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(data)
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            return b""
    return b"".join(chunks)


def test_any_pasted_text_completes_at_most_the_flow_of_its_exact_state() -> None:
    listener = CallbackListener.bind()
    flows = Flows(listener)
    outcomes = {"completed": 0, "refused": 0}

    @settings(max_examples=4 * settings().max_examples)
    @given(
        st.one_of(queries(), raw_queries),
        st.sampled_from(["{q}", "?{q}", "http://127.0.0.1:1/?{q}", ' "{q}"\n', "{q}#state=a&code=frag"]),
    )
    @example("state=%E2%82%AC&code=x", "{q}")
    @example("state=a&code=\ud800", "{q}")
    @example("state=a&code=1&state=a", "{q}")
    def check(query: str, form: str) -> None:
        pasted = form.format(q=query)
        try:
            completed = listener.deliver(pasted)
        except BaseException as exc:
            only_typed(exc)
            completed = False
        outcomes["completed" if completed else "refused"] += 1
        # Which part of the text is the query is the listener's business (the fuzz target checks
        # it is a part of the text); which flow that query may complete is checked on a model.
        check_delivery(flows, _core.query_of_pasted_url(pasted) if _utf8(pasted) else "", completed)

    try:
        check()
    finally:
        listener.close()
    report("pasted text", str(outcomes))
    assert outcomes["completed"] and outcomes["refused"], outcomes


def test_any_request_on_the_socket_completes_at_most_the_flow_of_its_exact_state() -> None:
    listener = CallbackListener.bind()
    flows = Flows(listener)
    port = listener.port
    statuses: dict[int | None, int] = {}

    @settings(max_examples=3 * settings().max_examples)
    @given(
        st.one_of(queries(), raw_queries),
        st.sampled_from(["GET", "GET", "HEAD", "POST", "get", "GET "]),
        st.sampled_from(["1.1", "1.0"]),
        st.booleans(),
    )
    @example("state=a&code=x", "GET", "1.1", False)
    @example("state=a&code=x", "HEAD", "1.1", False)
    def check(query: str, method: str, version: str, raw_bytes: bool) -> None:
        if raw_bytes:  # the text unencoded in the request line: spaces, CR, LF, UTF-8 and all
            target = b"/?" + query.encode("utf-8", "surrogatepass")
        else:
            target = b"/?" + urllib.parse.quote(query, safe="=&+%").encode()
        head = f" HTTP/{version}\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        reply = send(port, method.encode() + b" " + target + head)
        status = status_of(reply)
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (None, 200, 400, 403, 404, 405, 414, 431, 505), reply[:200]
        completed = (
            method == "GET" and status == 200 and (b"Login complete" in reply or b"Login failed" in reply)
        )
        # What the listener decoded is what went over the wire (a fragment is not part of it).
        sent_query = target[2:].decode("utf-8", "replace").split("#", 1)[0]
        check_delivery(flows, sent_query, completed)

    try:
        check()
    finally:
        listener.close()
    report("requests on the socket", f"statuses {statuses}")
    assert statuses.get(200) and statuses.get(400), statuses


# -- registering any state -------------------------------------------------------------------------
@settings(max_examples=200)
@given(
    st.text(max_size=70) | st.text(min_size=4090, max_size=4100, alphabet="ab"),
    st.text(min_size=1, max_size=20),
)
def test_a_flow_registered_under_any_state_is_completed_by_exactly_that_state(state: str, code: str) -> None:
    other_state = "\0another flow"
    assume(state != other_state)
    listener = CallbackListener.bind(bind_ipv6=False)
    try:
        other = listener.register(other_state)
        try:
            flow = listener.register(state)
        except BaseException as exc:
            only_typed(exc)
            assert state == "" or not _utf8(state) or len(state.encode()) > 4096, repr(state)
            return
        assert len(state.encode()) <= 4096
        completed = listener.deliver(urllib.parse.urlencode({"state": state, "code": code}))
        assert completed is True
        assert not flow.registered and other.registered
    finally:
        listener.close()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- the token endpoint answers anything -----------------------------------------------------------
class AnythingServer:
    """A loopback "token endpoint" that answers the next request with whatever bytes it is given,
    then closes."""

    def __init__(self) -> None:
        self.answer = b""
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.answer)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
token_shaped = st.fixed_dictionaries(
    {},
    optional={
        "access_token": json_values,
        "expires_in": json_values | st.integers(-10, 10**12).map(str),
        "refresh_token": json_values,
        "token_type": json_values,
        "error": json_values,
        "error_description": json_values,
    },
)


@st.composite
def http_answers(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["valid", "json", "bytes", "raw"]))
    if kind == "raw":  # not even HTTP
        return draw(st.binary(max_size=300))
    status = draw(st.integers(100, 599) | st.sampled_from([200, 400, 500, 503]))
    if kind == "valid":
        status = draw(st.integers(200, 299))
        doc = {
            "access_token": draw(st.text(min_size=1, max_size=40)),
            "expires_in": draw(st.integers(0, 10**6)),
        }
        body = json.dumps(doc).encode()
    elif kind == "json":
        body = json.dumps(draw(token_shaped | json_values)).encode()
        if draw(st.booleans()):
            body = body[: draw(st.integers(0, len(body)))]
    else:
        body = draw(st.binary(max_size=300))
    headers = draw(
        st.sampled_from(
            [
                f"Content-Length: {len(body)}\r\nContent-Type: application/json",
                "Transfer-Encoding: chunked",  # and a body that is not chunked
                f"Content-Length: {len(body) + 7}",  # a short body
                "Content-Encoding: gzip",  # and a body that is not gzip
                "",
            ]
        )
    )
    return f"HTTP/1.1 {status} X\r\n{headers}\r\nConnection: close\r\n\r\n".encode() + body


def test_a_token_endpoint_answering_anything_gives_a_result_or_a_typed_error() -> None:
    """Up to any bytes on the wire — broken HTTP, lying lengths, bad encodings, hostile JSON."""
    loop = asyncio.new_event_loop()
    server = AnythingServer()
    port = loop.run_until_complete(server.start())
    url = f"http://127.0.0.1:{port}/oauth2/token"
    outcomes: dict[str, int] = {}

    @settings(max_examples=150, deadline=None)
    @given(http_answers())
    def check(answer: bytes) -> None:
        server.answer = answer
        started = time.monotonic()
        try:
            result = loop.run_until_complete(
                auth.exchange_code(url, "client", "code", "http://127.0.0.1:1", "v" * 43, http_timeout=2.0)
            )
        except BaseException as exc:
            assert isinstance(exc, AuthError), f"{type(exc).__mro__}: {exc!r}"
            outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
        else:
            assert isinstance(result.access_token, str) and result.access_token
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        assert time.monotonic() - started < 5

    try:
        check()
    finally:
        loop.run_until_complete(close_sessions())
        assert server.server is not None
        server.server.close()
        loop.run_until_complete(server.server.wait_closed())
        loop.close()
    report("token endpoint answering anything", str(outcomes))
    assert len(outcomes) >= 3, outcomes


# -- documents read back from caches and callers ---------------------------------------------------
@given(json_values | token_shaped)
def test_any_json_is_a_token_entry_record_or_a_value_error(value: Any) -> None:
    for parse in (Token.from_dict, CacheEntry.from_dict, LoginProgress.from_dict):
        try:
            parse(value)
        except BaseException as exc:
            assert isinstance(exc, ValueError), (parse, type(exc).__mro__, exc)


@settings(max_examples=100)
@given(st.binary(max_size=400) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_in_a_cache_file_are_a_miss_and_never_cost_another_tenant(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cache = FileCache(Path(tmp) / "c", fsync=False)
        good = CacheEntry("at-other", time.time() + 3600, "rt-other", time.time())
        cache.write("other", good)
        cache.write("mine", good)
        cache.path_for("mine").write_bytes(data)
        try:
            found = asyncio.run(cache.get("mine"))
        except BaseException as exc:
            raise AssertionError(f"a damaged cache file raised {type(exc).__name__}: {exc}") from exc
        assert found is None or isinstance(found, CacheEntry)
        assert asyncio.run(cache.get("other")) == good


@given(st.text(max_size=60))
@example("http://127.0.0.1.evil.example")
@example("https://[::1")
@example("http://localhost@evil.example")
def test_any_endpoint_text_is_an_https_origin_or_a_value_error(text: str) -> None:
    try:
        origin = auth.https_url(text)
    except BaseException as exc:
        assert isinstance(exc, ValueError), (type(exc).__mro__, exc)
        return
    parts = urllib.parse.urlsplit(origin)
    assert parts.scheme in ("http", "https") and not parts.path and not parts.query
    if parts.scheme == "http":
        assert auth._is_loopback_host(parts.hostname or "")
