"""The provider's HTML pages: self-contained (inline CSS only, no scripts, fonts or images), so a
headless browser with no network renders them without waiting on anything."""

from __future__ import annotations

from html import escape

from fedbearer.testing.protocol import AuthorizationRequest

# Served with every page: nothing may load from elsewhere, the page may not be framed
# (clickjacking on a consent page), and the request (with its state) never leaks via Referer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

_STYLE = """
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
 background:#eef1f6;color:#1d2433;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{width:min(420px,92vw);background:#fff;border-radius:12px;padding:28px 32px;
 box-shadow:0 8px 30px rgba(20,30,60,.12)}
h1{font-size:21px;margin:0 0 6px}
p.lead{margin:0 0 18px;color:#566076}
dl{display:grid;grid-template-columns:auto 1fr;gap:4px 12px;margin:0 0 18px;font-size:13px}
dt{color:#7a8396}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
label{display:block;font-weight:600;margin-bottom:6px}
input[type=text]{width:100%;padding:10px 12px;border:1px solid #c5cbd8;border-radius:8px;font:inherit}
input[type=text]:focus{outline:2px solid #3b6cf6;border-color:transparent}
.actions{display:flex;gap:10px;margin-top:20px}
button{flex:1;padding:10px;border-radius:8px;font:inherit;font-weight:600;cursor:pointer}
#approve{background:#3b6cf6;color:#fff;border:1px solid #3b6cf6}
#deny{background:#fff;color:#1d2433;border:1px solid #c5cbd8}
.error{border-left:4px solid #d33a3a;padding:8px 12px;background:#fdf0f0}
code{font-family:ui-monospace,monospace}
footer{margin-top:18px;font-size:12px;color:#7a8396}
"""


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><main>{body}</main></body></html>\n"
    )


def login_page(request: AuthorizationRequest, *, issuer: str, username: str) -> str:
    """The consent page: a user name, Approve and Deny; the request rides along in hidden fields."""
    hidden = "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in request.form_fields()
    )
    federation = (
        f"<dt>Federation</dt><dd>{escape(request.federation_id)}</dd>" if request.federation_id else ""
    )
    body = (
        "<h1>Sign in</h1>"
        f'<p class="lead">An application is asking to sign you in with <b>{escape(issuer)}</b>.</p>'
        f"<dl><dt>Client</dt><dd>{escape(request.client_id)}</dd>{federation}"
        f"<dt>Scope</dt><dd>{escape(request.scope)}</dd>"
        f"<dt>Returns to</dt><dd>{escape(request.redirect_uri)}</dd></dl>"
        '<form id="login" method="post" action="/oauth2/authorize/decision">'
        f"{hidden}"
        '<label for="username">User</label>'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        'autocomplete="username" autofocus required>'
        '<div class="actions">'
        '<button type="submit" id="approve" name="decision" value="approve">Approve</button>'
        # formnovalidate: denying must work even with the user field left empty.
        '<button type="submit" id="deny" name="decision" value="deny" formnovalidate>Deny</button>'
        "</div></form>"
        "<footer>fedbearer test identity provider &mdash; not for production use.</footer>"
    )
    return _document("Sign in", body)


def error_page(title: str, description: str, *, param: str | None = None, error: str | None = None) -> str:
    """An error the user agent is not redirected for, e.g. a bad redirect_uri (RFC 6749 §4.1.2.1)."""
    details = ""
    if param is not None:
        details += f'<p>Parameter: <code id="error-param">{escape(param)}</code></p>'
    if error is not None:
        details += f'<p>Error: <code id="error-code">{escape(error)}</code></p>'
    body = (
        f"<h1>{escape(title)}</h1>"
        f'<p class="error" id="error-description">{escape(description)}</p>{details}'
        "<footer>fedbearer test identity provider</footer>"
    )
    return _document(title, body)
