//! The small, self-contained pages the browser sees after the redirect. No external fonts,
//! scripts, styles or images: the page must render offline and leak nothing (`Referrer-Policy`).

/// Escape text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, heading: &str, body_html: &str, accent: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>\
body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;background:#f4f5f7;margin:0;\
display:flex;min-height:100vh;align-items:center;justify-content:center;color:#1d2330}}\
main{{background:#fff;border-radius:10px;padding:2rem 2.5rem;max-width:32rem;\
box-shadow:0 2px 12px rgba(0,0,0,.08);border-top:6px solid {accent}}}\
h1{{font-size:1.4rem;margin:0 0 .8rem}}p{{line-height:1.5;margin:.4rem 0}}\
code{{background:#f0f1f4;padding:.1rem .3rem;border-radius:4px}}\
</style></head><body><main><h1 id=\"status\">{heading}</h1>{body_html}</main></body></html>"
    )
}

/// The page for a completed login.
pub fn success() -> String {
    page(
        "Login complete",
        "Login complete",
        "<p id=\"message\">You are signed in. You can close this tab and return to the application.</p>",
        "#2e9e5b",
    )
}

/// The page for a login the provider ended with an error (already sanitized text).
pub fn failure(error: &str, description: Option<&str>) -> String {
    let detail = match description {
        Some(d) => format!(
            "<p id=\"message\">The identity provider answered <code>{}</code>: {}</p>",
            escape_html(error),
            escape_html(d)
        ),
        None => format!(
            "<p id=\"message\">The identity provider answered <code>{}</code>.</p>",
            escape_html(error)
        ),
    };
    page(
        "Login failed",
        "Login failed",
        &format!("{detail}<p>You can close this tab and try again from the application.</p>"),
        "#c93c3c",
    )
}

/// The page for a request that does not belong to any login in progress.
pub fn bad_request(reason: &str) -> String {
    page(
        "No login in progress",
        "No login in progress",
        &format!(
            "<p id=\"message\">This address only accepts the redirect of a login started by the \
application ({}). If you are trying to sign in, start again from the application.</p>",
            escape_html(reason)
        ),
        "#c98a1c",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<a href='x'>&\"</a>"),
            "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let p = failure("<script>", Some("x\"><img src=y>"));
        assert!(!p.contains("<script>") && !p.contains("<img"));
    }

    #[test]
    fn pages_are_self_contained() {
        for p in [success(), failure("e", None), bad_request("r")] {
            assert!(!p.contains("http://") && !p.contains("https://") && !p.contains("<script"));
        }
    }
}
