//! The redirect's query (RFC 6749 §4.1.2) and pasted redirect URLs, as any web page or local
//! process can send them to the loopback listener.
//!
//! Checks, for arbitrary input: the parser never panics; what it accepts has a non-empty, bounded
//! `state` and exactly one of `code`/`error`; and delivering the input to a registry of pending
//! flows ends at most one flow — the one whose state equals, byte for byte, the single `state`
//! parameter an independent decoder finds in the query. Nothing else is ever touched.

#![no_main]

use fedbearer::core::callback::query::MAX_VALUE_LEN;
use fedbearer::core::callback::{
    parse_callback_query, query_of_pasted_url, CallbackParams, Delivery, Registry,
};
use libfuzzer_sys::fuzz_target;

/// States of the flows kept pending: plain, with URL-special characters, non-ASCII, long.
const STATES: [&str; 6] = [
    "a",
    "state-1.dots_~",
    "x&y=z",
    "a b",
    "\u{fc}n\u{ef}",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
];

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// application/x-www-form-urlencoded decoding, written independently of the parser's library:
/// `+` is a space, `%XX` a byte, a malformed `%` stays as it is, invalid UTF-8 becomes U+FFFD.
fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every decoded value of parameter `name` in `query`.
fn values_of(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == name).then(|| decode(v))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let query = query_of_pasted_url(&text);
    assert!(
        text.contains(query),
        "the query must be a part of the pasted text"
    );

    let states = values_of(query, "state");
    if let Ok(params) = parse_callback_query(query) {
        // Exactly one state, as decoded independently, within bounds.
        assert_eq!(states.len(), 1, "{query:?}");
        assert_eq!(params.state(), states[0], "{query:?}");
        assert!(!params.state().is_empty() && params.state().len() <= MAX_VALUE_LEN);
        let codes = values_of(query, "code").len();
        let errors = values_of(query, "error").len();
        match &params {
            CallbackParams::Code { code, .. } => {
                assert!(codes == 1 && errors == 0 && !code.is_empty());
            }
            CallbackParams::Error { error, .. } => {
                assert!(codes == 0 && errors == 1 && !error.is_empty());
            }
        }
    }

    let accepted = parse_callback_query(query).is_ok();
    let registry = Registry::new();
    let flows: Vec<_> = STATES
        .iter()
        .map(|s| {
            registry
                .register((*s).to_owned(), Some("https://idp".to_owned()))
                .unwrap()
        })
        .collect();
    let delivery = registry.deliver(query);
    let gone: Vec<&str> = flows
        .iter()
        .filter(|f| !registry.contains(f.state(), f.id()))
        .map(|f| f.state())
        .collect();
    match delivery {
        Delivery::Completed | Delivery::Ended(_) => {
            assert_eq!(states.len(), 1, "{query:?}");
            assert_eq!(gone, [states[0].as_str()], "{query:?}");
        }
        Delivery::Unknown | Delivery::Invalid(_) => {
            assert!(gone.is_empty(), "{query:?}");
            // A well-formed redirect for a pending state always reaches its flow.
            assert!(
                !(accepted && STATES.contains(&states[0].as_str())),
                "{query:?}"
            );
        }
    }
    if let Delivery::Ended(err) = delivery {
        let message = err.to_string();
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
});
