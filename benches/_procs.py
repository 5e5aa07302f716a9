"""Helper processes: the scripted browser and the embedded identity provider.

Both run outside the benchmark process, as they would in life, so neither competes with the
library under test for its GIL.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from types import TracebackType

HERE = os.path.dirname(os.path.abspath(__file__))

_PROVIDER_SCRIPT = """
import json, sys
from fedbearer.testing import IdentityProvider
with IdentityProvider(tls=True, auto_approve=True, token_ttl=3600) as idp:
    print(json.dumps({"endpoint": idp.endpoint, "ca": idp.ca_pem_path}), flush=True)
    sys.stdin.read()
"""


class ProviderProcess:
    """`IdentityProvider(tls=True, auto_approve=True)` in a child process."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.endpoint = ""
        self.ca_pem = ""

    def __enter__(self) -> ProviderProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _PROVIDER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        info = json.loads(self._proc.stdout.readline())
        self.endpoint, self.ca_pem = info["endpoint"], info["ca"]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class BrowserProcess:
    """The scripted browser (`_browser.py`), driven from the event loop."""

    def __init__(self, ca_pem: str | None = None) -> None:
        self._ca_pem = ca_pem
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> BrowserProcess:
        args = [os.path.join(HERE, "_browser.py")] + ([self._ca_pem] if self._ca_pem else [])
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()

    def send(self, command: str) -> None:
        """Queue a command (synchronous: callable from a writer's ``write``)."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(command.encode() + b"\n")

    async def answer(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the scripted browser exited")
        return line.decode().strip()


class BrowserWriter:
    """A `writer` for either library: the authorization URL it prints is opened by the browser."""

    def __init__(self, browser: BrowserProcess) -> None:
        self._browser = browser
        self.opened = 0

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith(("http://", "https://")) and "/oauth2/authorize" in line:
                self.opened += 1
                self._browser.send(f"login {line}")
        return len(text)

    def flush(self) -> None:
        pass
