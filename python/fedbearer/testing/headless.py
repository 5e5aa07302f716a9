"""A tiny headless user agent: logs in on the provider's page when no browser can be opened.

It does what a user would: open the authorization URL, type a user name, press Approve (or Deny),
and let the provider's redirect land on the application's loopback listener.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from fedbearer.testing.protocol import LOOPBACK_HOSTS

if TYPE_CHECKING:
    import aiohttp

_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_STEPS = 10


class HeadlessLoginError(Exception):
    """The login page could not be completed (an error page, no form, a non-loopback redirect)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, value)


class _PageParser(HTMLParser):
    """Collects forms (inputs, submit buttons) and the title of an HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.title = ""
        self._form: _Form | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag == "title":
            self._in_title = True
            return
        if tag == "form":
            self._form = _Form(action=a.get("action", ""), method=(a.get("method") or "get").lower())
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        kind = a.get("type", "").lower()
        if (tag == "button" and kind in ("", "submit")) or (tag == "input" and kind in ("submit", "image")):
            form.buttons[a.get("id", "")] = (a.get("name", ""), a.get("value", ""))
        elif tag == "input" and a.get("name"):
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            form.fields.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname or "", parts.port


def _submission(page: str, *, username: str, approve: bool) -> tuple[str, str, list[tuple[str, str]]]:
    """(method, action, fields) of pressing Approve or Deny on the login page."""
    parser = _PageParser()
    parser.feed(page)
    button_id = "approve" if approve else "deny"
    for form in parser.forms:
        if button_id in form.buttons:
            fields = [(n, username if n == "username" else v) for n, v in form.fields]
            name, value = form.buttons[button_id]
            if name:
                fields.append((name, value))
            return form.method, form.action, fields
    raise HeadlessLoginError(f"no login form with a #{button_id} button on the page {parser.title!r}")


def _page_title(page: str) -> str:
    parser = _PageParser()
    parser.feed(page)
    return parser.title.strip()


async def complete_login(
    url: str,
    *,
    username: str = "demo",
    approve: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> int:
    """Log in at authorization `url` and deliver the provider's redirect to the loopback listener.

    Returns the HTTP status the loopback listener answered. `ssl_context` is used for the provider
    (an HTTPS endpoint); the listener is plain loopback HTTP (RFC 8252 §7.3).
    """
    import aiohttp

    provider = _origin(url)
    tls: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    method, target, data = "get", url, None
    submitted = False
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        for _ in range(_MAX_STEPS):
            async with session.request(method, target, data=data, ssl=tls, allow_redirects=False) as resp:
                status = resp.status
                location = resp.headers.get("Location", "")
                page = await resp.text(errors="replace")
            if status in _REDIRECTS:
                target = urljoin(target, location)
                method, data = "get", None
                if _origin(target) != provider:
                    return await _deliver(session, target)
                continue
            if status != 200:
                message = f"the provider answered {status}: {_page_title(page)!r}"
                raise HeadlessLoginError(message, status=status)
            if submitted:
                message = f"the provider did not redirect after the decision: {_page_title(page)!r}"
                raise HeadlessLoginError(message, status=status)
            method, action, data = _submission(page, username=username, approve=approve)
            target, submitted = urljoin(target, action), True
    raise HeadlessLoginError("too many steps on the provider's pages")


async def _deliver(session: aiohttp.ClientSession, url: str) -> int:
    """GET the redirect target, which must be a loopback http URI (never wander off the machine)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS:
        raise HeadlessLoginError("the provider redirected to a non-loopback URI; not following it")
    async with session.get(url, allow_redirects=False) as resp:
        await resp.read()
        return resp.status


def complete_login_sync(
    url: str,
    *,
    username: str = "demo",
    approve: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
) -> int:
    """`complete_login` for synchronous callers (runs its own event loop; not from a running loop)."""
    return asyncio.run(
        complete_login(url, username=username, approve=approve, ssl_context=ssl_context, timeout=timeout)
    )
