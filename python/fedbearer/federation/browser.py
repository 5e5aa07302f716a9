"""Opening the user's browser: the platform's default, ``wslview``/``cmd.exe`` under WSL.

Everything here reports failure instead of raising: a login whose browser cannot be opened goes on
waiting for the link to be used by hand (or pasted back, in remote mode).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys

log = logging.getLogger(__name__)

__all__ = ["is_wsl", "local_browser_available", "open_browser"]


@functools.cache
def is_wsl() -> bool:
    """Whether this is Linux under the Windows Subsystem for Linux."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/version", encoding="utf-8", errors="replace") as f:
            version = f.read().lower()
    except OSError:
        return False
    return "microsoft" in version or "wsl" in version


def local_browser_available() -> bool:
    """A best guess at whether a browser can be opened on this machine (not over SSH without a
    display, not in a bare container)."""
    if is_wsl() or sys.platform in ("darwin", "win32"):
        return True
    if os.environ.get("BROWSER"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_wsl(url: str) -> bool:
    if shutil.which("wslview"):
        return subprocess.run(["wslview", url], check=False, timeout=15).returncode == 0
    if shutil.which("cmd.exe"):
        # cmd.exe treats & as a command separator; ^ escapes it.
        escaped = url.replace("&", "^&")
        return subprocess.run(["cmd.exe", "/c", "start", escaped], check=False, timeout=15).returncode == 0
    return False


def open_browser(url: str) -> bool:
    """Open ``url`` in the default browser. Blocking (it may start a process): call it in a worker
    thread. Returns False when no browser could be opened."""
    try:
        if is_wsl():
            return _open_wsl(url)
        import webbrowser

        return bool(webbrowser.open(url))
    except Exception as exc:  # a broken browser setup must never end the login
        log.warning("could not open a browser: %s", type(exc).__name__)
        return False
