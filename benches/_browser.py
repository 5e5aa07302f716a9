"""A scripted browser, run as its own process (a browser is never a thread of the app it logs in).

Reads one command per line on stdin and answers one line on stdout:

``get PORT TARGET``
    a loopback ``GET TARGET`` on a fresh connection (as a browser's redirect lands); answers
    ``<perf_counter when the connection started> <HTTP status>``. ``perf_counter`` is
    CLOCK_MONOTONIC on Linux, comparable across processes.
``login URL``
    ``GET URL`` on the provider (one kept-alive HTTPS connection, as a browser keeps), follow its
    302 to the loopback listener; answers ``ok <status>`` or ``error <what>``.

Usage: ``python _browser.py [CA_PEM]`` (the CA the provider's certificate chains to).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit


def _loopback_get(host: str, port: int, target: str) -> tuple[float, int]:
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    started = time.perf_counter()
    with socket.create_connection((host, port)) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return started, int(b"".join(chunks).split(b" ", 2)[1])


class _Provider:
    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        self._conn: http.client.HTTPSConnection | None = None
        self._origin: tuple[str, int] | None = None

    def get(self, url: str) -> http.client.HTTPResponse:
        parts = urlsplit(url)
        origin = (parts.hostname or "", parts.port or 443)
        target = f"{parts.path or '/'}?{parts.query}"
        for attempt in (1, 2):
            if self._conn is None or self._origin != origin:
                self._conn = http.client.HTTPSConnection(*origin, context=self._context, timeout=10)
                self._origin = origin
            try:
                self._conn.request("GET", target)
                response = self._conn.getresponse()
                response.read()
                return response
            except (http.client.HTTPException, OSError):
                self._conn.close()
                self._conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def main() -> None:
    context = ssl.create_default_context(cafile=sys.argv[1]) if len(sys.argv) > 1 else None
    provider = _Provider(context)
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        try:
            if command == "get":
                port, target = rest.split(" ", 1)
                started, status = _loopback_get("127.0.0.1", int(port), target)
                answer = f"{started!r} {status}"
            elif command == "login":
                response = provider.get(rest)
                location = response.getheader("Location") or ""
                if response.status != 302 or not location:
                    answer = f"error provider answered {response.status}"
                else:
                    parts = urlsplit(location)
                    target = f"{parts.path or '/'}?{parts.query}"
                    _, status = _loopback_get(parts.hostname or "127.0.0.1", parts.port or 80, target)
                    answer = f"ok {status}"
            else:
                answer = f"error unknown command {command!r}"
        except Exception as exc:
            answer = f"error {type(exc).__name__}: {exc}"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
