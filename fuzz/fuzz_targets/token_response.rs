//! Token endpoint responses (RFC 6749 §5.1, §5.2) from a hostile or broken provider.
//!
//! Input: two bytes of HTTP status, one flag byte, then the body. When the flag's low bit is set,
//! every `$` in the body is replaced by a secret (as if the provider echoed our code or refresh
//! token somewhere in its answer). Checks: the parser never panics; an accepted response has a
//! non-empty access token and a bounded `expires_in`; an error's message is bounded, has no
//! control characters (no terminal escapes), and never shows the secret or a piece of it.

#![no_main]

use fedbearer::core::token::{parse_token_response, MAX_EXPIRES_IN};
use libfuzzer_sys::fuzz_target;

/// Shaped like a real authorization code or token: URL-safe, with digits, 43 characters.
const SECRET: &str = "Zq7Tq0Lk9SECRETxYw2Vb8Nm4Rt6Pa1Sd3Fg5Hj7Kl9Q";
/// Any 10 consecutive characters of the secret in a message is a leak.
const PIECE: usize = 10;

fn leaks(message: &str, typed: &[u8]) -> Option<String> {
    let secret = SECRET.as_bytes();
    for start in 0..=secret.len() - PIECE {
        let piece = &SECRET[start..start + PIECE];
        // Text the fuzzer typed itself is not our secret.
        if message.contains(piece) && !typed.windows(PIECE).any(|w| w == piece.as_bytes()) {
            return Some(piece.to_owned());
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 500;
    let typed = &data[3..];
    let body: Vec<u8> = if data[2] & 1 == 1 {
        let mut spliced = Vec::with_capacity(typed.len() + SECRET.len());
        for &b in typed {
            if b == b'$' {
                spliced.extend_from_slice(SECRET.as_bytes());
            } else {
                spliced.push(b);
            }
        }
        spliced
    } else {
        typed.to_vec()
    };
    match parse_token_response(&body, status) {
        Ok(response) => {
            assert!((200..300).contains(&status));
            assert!(!response.access_token.is_empty());
            assert!(response.expires_in.is_none_or(|e| e <= MAX_EXPIRES_IN));
            let debug = format!("{response:?}");
            assert!(!debug.contains(&response.access_token) || debug.contains("<redacted>"));
        }
        Err(err) => {
            for message in [err.to_string(), format!("{err:?}")] {
                assert!(message.chars().count() < 1500, "{message}");
                assert!(!message.chars().any(char::is_control), "{message:?}");
                if let Some(piece) = leaks(&message, typed) {
                    panic!("a piece of the secret ({piece}) is in the message: {message}");
                }
            }
        }
    }
});
