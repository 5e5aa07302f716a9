//! Token endpoint responses (RFC 6749 §5.1 success, §5.2 error), parsed strictly.
//!
//! The parser never panics and never echoes token material: error excerpts go through
//! [`crate::core::redact`], and for JSON bodies only the key names are shown.

use serde_json::{Map, Value};

use crate::core::redact::{excerpt, html_page_excerpt, sanitize_text, MAX_TEXT_CHARS};
use crate::error::{Error, Result};

/// Bodies larger than this are refused without parsing.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// `expires_in` above ten years is treated as nonsense rather than trusted.
pub const MAX_EXPIRES_IN: u64 = 10 * 366 * 24 * 3600;
const EXCERPT_CHARS: usize = 80;

/// A successful token response.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: Option<u64>,
    pub token_type: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .finish()
    }
}

fn invalid(reason: impl Into<String>, excerpt: impl Into<String>) -> Error {
    Error::InvalidTokenResponse {
        reason: reason.into(),
        excerpt: excerpt.into(),
    }
}

/// The key names of a JSON object, for an error message that must not show values.
fn keys_excerpt(obj: &Map<String, Value>) -> String {
    if obj.is_empty() {
        return "empty JSON object".to_owned();
    }
    let mut keys: Vec<String> = obj.keys().take(12).map(|k| sanitize_text(k, 32)).collect();
    if obj.len() > 12 {
        keys.push("…".to_owned());
    }
    format!("keys: {}", keys.join(", "))
}

fn optional_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("{key} is not a string"), keys_excerpt(obj))),
    }
}

/// Provider text for an error message: sanitized, never raw.
fn provider_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key) {
        Some(Value::String(s)) => Some(sanitize_text(s, MAX_TEXT_CHARS)),
        _ => None,
    }
}

/// `expires_in` as a JSON number or a numeric string; integral, 0 ..= [`MAX_EXPIRES_IN`].
fn expires_in(obj: &Map<String, Value>) -> Result<Option<u64>> {
    let seconds = match obj.get("expires_in") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                Some(u)
            } else if let Some(f) = n.as_f64() {
                // 3600.0 is fine; 3600.5, -1 and 1e300 are not.
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                if f.is_finite() && f.fract() == 0.0 && f >= 0.0 && f <= MAX_EXPIRES_IN as f64 {
                    Some(f as u64)
                } else {
                    None
                }
            } else {
                None
            }
        }
        Some(Value::String(s)) => {
            let t = s.trim();
            if !t.is_empty() && t.len() <= 20 && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u64>().ok()
            } else {
                None
            }
        }
        Some(_) => None,
    };
    match seconds {
        Some(s) if s <= MAX_EXPIRES_IN => Ok(Some(s)),
        _ => Err(invalid(
            "expires_in must be a whole number of seconds between 0 and ten years",
            keys_excerpt(obj),
        )),
    }
}

/// Parse a token endpoint response body received with HTTP `status`.
pub fn parse_token_response(body: &[u8], status: u16) -> Result<TokenResponse> {
    let success = (200..300).contains(&status);
    if body.len() > MAX_BODY_BYTES {
        let reason = format!(
            "body of {} bytes is larger than {MAX_BODY_BYTES}",
            body.len()
        );
        return Err(if success {
            invalid(reason, String::new())
        } else {
            endpoint_error(status, None, Some(reason))
        });
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let ex = match first {
            None => "empty body".to_owned(),
            // Broken JSON is most likely a cut-off token response: show none of it.
            Some(b'{' | b'[' | b'"') => "malformed JSON; its content is not shown".to_owned(),
            // An HTML error page is named by its title, not shown as markup.
            Some(b'<') => html_page_excerpt(body, EXCERPT_CHARS),
            Some(_) => excerpt(body, EXCERPT_CHARS),
        };
        return Err(if success {
            invalid("the body is not JSON", ex)
        } else {
            endpoint_error(status, None, Some(ex))
        });
    };
    let Value::Object(obj) = value else {
        return Err(if success {
            invalid("the body is not a JSON object", String::new())
        } else {
            endpoint_error(status, None, None)
        });
    };
    // RFC 6749 §5.2: an error body; some providers send it with 200, so look before the status.
    if let Some(Value::String(code)) = obj.get("error") {
        return Err(Error::TokenEndpoint {
            status,
            error: Some(sanitize_text(code, 64)),
            description: provider_text(&obj, "error_description"),
            uri: provider_text(&obj, "error_uri"),
            excerpt: None,
        });
    }
    if !success {
        return Err(endpoint_error(status, None, Some(keys_excerpt(&obj))));
    }
    let access_token = match obj.get("access_token") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err(invalid("access_token is empty", keys_excerpt(&obj))),
        Some(_) => return Err(invalid("access_token is not a string", keys_excerpt(&obj))),
        None => return Err(invalid("access_token is missing", keys_excerpt(&obj))),
    };
    Ok(TokenResponse {
        access_token,
        expires_in: expires_in(&obj)?,
        token_type: optional_string(&obj, "token_type")?,
        refresh_token: optional_string(&obj, "refresh_token")?,
        id_token: optional_string(&obj, "id_token")?,
        scope: optional_string(&obj, "scope")?,
    })
}

fn endpoint_error(status: u16, error: Option<String>, excerpt: Option<String>) -> Error {
    Error::TokenEndpoint {
        status,
        error,
        description: None,
        uri: None,
        excerpt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "SECRETtoken1234567890abcdef";

    #[test]
    fn parses_full_response() {
        let body = format!(
            r#"{{"access_token":"{TOKEN}","expires_in":3600,"token_type":"Bearer","refresh_token":"r1","id_token":"i","scope":"openid"}}"#
        );
        let t = parse_token_response(body.as_bytes(), 200).unwrap();
        assert_eq!(t.access_token, TOKEN);
        assert_eq!(t.expires_in, Some(3600));
        assert_eq!(t.token_type.as_deref(), Some("Bearer"));
        assert_eq!(t.refresh_token.as_deref(), Some("r1"));
        assert!(!format!("{t:?}").contains(TOKEN));
    }

    #[test]
    fn expires_in_forms() {
        for (raw, want) in [
            ("\"3600\"", Some(3600)),
            ("3600.0", Some(3600)),
            ("null", None),
        ] {
            let body = format!(r#"{{"access_token":"a","expires_in":{raw}}}"#);
            assert_eq!(
                parse_token_response(body.as_bytes(), 200)
                    .unwrap()
                    .expires_in,
                want
            );
        }
        for raw in [
            "-1",
            "\"-1\"",
            "3600.5",
            "1e300",
            "\"soon\"",
            "true",
            "[]",
            "400000000",
        ] {
            let body = format!(r#"{{"access_token":"a","expires_in":{raw}}}"#);
            assert!(
                matches!(
                    parse_token_response(body.as_bytes(), 200),
                    Err(Error::InvalidTokenResponse { .. })
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn error_body_is_typed() {
        let body = br#"{"error":"invalid_grant","error_description":"code expired"}"#;
        let err = parse_token_response(body, 400).unwrap_err();
        assert_eq!(
            err,
            Error::TokenEndpoint {
                status: 400,
                error: Some("invalid_grant".into()),
                description: Some("code expired".into()),
                uri: None,
                excerpt: None
            }
        );
    }

    #[test]
    fn missing_token_does_not_leak_values() {
        let body = format!(r#"{{"acess_token":"{TOKEN}"}}"#);
        let err = parse_token_response(body.as_bytes(), 200).unwrap_err();
        assert!(!err.to_string().contains(TOKEN));
        assert!(err.to_string().contains("acess_token"));
    }

    #[test]
    fn truncated_json_does_not_leak() {
        let body = format!(r#"{{"access_token":"{TOKEN}","#);
        let err = parse_token_response(body.as_bytes(), 200).unwrap_err();
        assert!(!err.to_string().contains(TOKEN), "{err}");
    }

    #[test]
    fn html_error_page_keeps_status() {
        let err = parse_token_response(b"<html>Service Unavailable</html>", 503).unwrap_err();
        assert!(matches!(err, Error::TokenEndpoint { status: 503, .. }));
        assert!(err.to_string().contains("503"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_bytes(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), status in 100u16..600) {
            let _ = parse_token_response(&body, status);
        }

        #[test]
        fn token_never_in_error(tok in "[A-Za-z0-9]{8}[0-9][A-Za-z0-9_-]{7,60}", cut in 0usize..80) {
            let body = format!(r#"{{"access_token":"{tok}","expires_in":"x"}}"#);
            let body = &body.as_bytes()[..body.len().min(cut + 20)];
            if let Err(e) = parse_token_response(body, 200) {
                proptest::prop_assert!(!e.to_string().contains(&tok));
            }
        }
    }
}
