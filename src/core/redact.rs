//! Making provider- or attacker-supplied text safe to put in a message.
//!
//! Secrets (codes, tokens, verifiers) look like long runs of URL-safe characters with digits in
//! them; human prose and error codes do not. Anything that looks like a secret is replaced, control
//! characters are dropped, and the length is capped, so a hostile provider cannot smuggle a token
//! into our logs, nor a terminal escape into the user's console.

/// Longest text kept from a provider, in characters.
pub const MAX_TEXT_CHARS: usize = 300;
/// Runs of token characters at least this long that contain a digit are redacted.
const SECRET_RUN_WITH_DIGIT: usize = 16;
/// Runs at least this long are redacted whatever they contain.
const SECRET_RUN_ANY: usize = 40;
/// What stands in for a redacted run.
pub const REDACTED: &str = "[redacted]";

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '+' | '/' | '=' | '%')
}

/// Sanitize `text` for display: drop control characters, redact secret-looking runs and cap the
/// length at `max_chars` characters (an ellipsis marks a cut).
pub fn sanitize_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let len = run.chars().count();
        let has_digit = run.chars().any(|c| c.is_ascii_digit());
        if len >= SECRET_RUN_ANY || (len >= SECRET_RUN_WITH_DIGIT && has_digit) {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
            continue;
        }
        flush(&mut run, &mut out);
        if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    if out.chars().count() > max_chars {
        let mut cut: String = out.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        return cut;
    }
    out
}

/// A short excerpt of a raw body for an error message, sanitized.
pub fn excerpt(body: &[u8], max_chars: usize) -> String {
    let head = &body[..body.len().min(max_chars * 4)];
    let text = String::from_utf8_lossy(head);
    // A run of token characters cut at the end of `head` is judged by its visible part only,
    // which may be too short to look like a secret: drop it rather than show a secret's prefix.
    let text = if head.len() < body.len() {
        text.trim_end_matches(is_token_char)
    } else {
        &text
    };
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    sanitize_text(&collapsed, max_chars)
}

/// Decode the character references a page title is likely to hold (`&amp;`, `&lt;`, `&gt;`,
/// `&quot;`, `&apos;`/`&#39;`, and numeric ones); anything else is kept as written.
fn unescape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => name.strip_prefix('#').and_then(|num| {
                    match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => num.parse::<u32>().ok(),
                    }
                    .and_then(char::from_u32)
                }),
            };
            c.map(|c| (c, end))
        });
        if let Some((c, end)) = decoded {
            out.push(c);
            rest = &rest[end + 1..];
        } else {
            out.push('&');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// How an HTML error page is named in a message: by its `<title>` (sanitized), never its markup.
pub fn html_page_excerpt(body: &[u8], max_chars: usize) -> String {
    let head = &body[..body.len().min(65536)];
    let lower = head.to_ascii_lowercase();
    let title = find(&lower, b"<title").and_then(|open| {
        let start = open + find(&lower[open..], b">")? + 1;
        let len = find(&lower[start..], b"</title")?;
        Some(&head[start..start + len])
    });
    let text = title.map_or_else(String::new, |t| {
        let decoded = unescape_html(&String::from_utf8_lossy(t));
        decoded.split_whitespace().collect::<Vec<_>>().join(" ")
    });
    if text.is_empty() {
        "an HTML page".to_owned()
    } else {
        format!("an HTML page: {}", sanitize_text(&text, max_chars))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_token_like_runs() {
        let s = sanitize_text("code abcDEF1234567890xyz is invalid", 100);
        assert_eq!(s, "code [redacted] is invalid");
    }

    #[test]
    fn keeps_prose_and_error_codes() {
        let s = sanitize_text("The user denied the request: invalid_grant", 100);
        assert_eq!(s, "The user denied the request: invalid_grant");
    }

    #[test]
    fn drops_control_characters() {
        assert_eq!(sanitize_text("a\x1b[31mb\nc", 100), "a [31mb c");
    }

    #[test]
    fn excerpt_drops_a_run_cut_at_the_end() {
        // 71 four-byte characters, a space, then a token that the 320-byte head cuts after 31
        // characters: too short to be redacted on its own, so it must not show at all.
        let mut body = "\u{1F600}".repeat(71).into_bytes();
        body.extend_from_slice(b" SECRETtokenwithoutdigitsabcdefghijklmnopqrstuvwxyz");
        let out = excerpt(&body, 80);
        assert!(!out.contains("SECRET"), "{out}");
        assert_eq!(excerpt(b"short SECRETshort", 80), "short SECRETshort");
    }

    #[test]
    fn html_pages_are_named_by_their_title() {
        let page = b"<HTML><head><Title id=t>503 Service &amp; Co&#39;s\n down</title></head><body>SECRET</body>";
        assert_eq!(
            html_page_excerpt(page, 80),
            "an HTML page: 503 Service & Co's down"
        );
        assert_eq!(
            html_page_excerpt(b"<html><body>x</body></html>", 80),
            "an HTML page"
        );
        assert_eq!(
            html_page_excerpt(b"<title>failed for abcDEF1234567890xyz</title>", 80),
            "an HTML page: failed for [redacted]"
        );
        assert_eq!(unescape_html("a &bogus; &#xZZ; &"), "a &bogus; &#xZZ; &");
    }

    #[test]
    fn caps_length() {
        let s = sanitize_text(&"word ".repeat(100), 20);
        assert_eq!(s.chars().count(), 20);
        assert!(s.ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn never_contains_long_secret_runs(s in "\\PC{0,400}") {
            let out = sanitize_text(&s, MAX_TEXT_CHARS);
            proptest::prop_assert!(out.chars().count() <= MAX_TEXT_CHARS);
            let mut run = 0usize;
            for c in out.chars() {
                if is_token_char(c) { run += 1; } else { run = 0; }
                proptest::prop_assert!(run < SECRET_RUN_ANY + REDACTED.len());
            }
        }
    }
}
