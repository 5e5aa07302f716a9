"""Remote mode: the user pastes the final redirect URL (from the browser's address bar) into the
terminal, for SSH sessions and containers where the browser runs on another machine.

Lines are read without blocking the event loop (``loop.add_reader`` where the stream has a file
descriptor, a worker thread otherwise) and go through the same registry and ``state`` checks as a
request on the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import TextIO

PROMPT = (
    "If the browser runs on another machine, paste here the address it ends on "
    "(starting with http://127.0.0.1) and press Enter."
)


def _say(writer: TextIO | None, message: str) -> None:
    if writer is not None:
        print(message, file=writer)
        with contextlib.suppress(Exception):
            writer.flush()


def _handle_line(line: str, deliver: Callable[[str], bool], writer: TextIO | None) -> bool:
    line = line.strip()
    if not line:
        return False
    try:
        return deliver(line)
    except ValueError as exc:
        _say(writer, f"That address does not complete this login ({exc}); paste the full address.")
        return False


async def read_pasted_urls(
    stream: TextIO, deliver: Callable[[str], bool], writer: TextIO | None = None
) -> None:
    """Deliver each pasted line until one completes a flow, the stream ends, or we are cancelled."""
    loop = asyncio.get_running_loop()
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        buffer = bytearray()

        def on_readable() -> None:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                lines.put_nowait(None)
                return
            buffer.extend(data)
            while b"\n" in buffer:
                raw, _, rest = bytes(buffer).partition(b"\n")
                buffer[:] = rest
                lines.put_nowait(raw.decode("utf-8", errors="replace"))

        try:
            loop.add_reader(fd, on_readable)
        except (NotImplementedError, ValueError, OSError):
            fd = -1
        else:
            try:
                while (line := await lines.get()) is not None:
                    if _handle_line(line, deliver, writer):
                        return
            finally:
                loop.remove_reader(fd)
            return
    while True:
        line = await loop.run_in_executor(None, stream.readline)
        if not line:
            return
        if _handle_line(line, deliver, writer):
            return
