//! The one error type of the Rust side. Each variant maps to exactly one Python exception
//! class (defined once, in `fedbearer/exceptions.py`); the mapping lives in `py/errors.rs`.
//!
//! Messages built from these never carry an authorization code, a verifier or a token:
//! provider-supplied text is passed through [`crate::core::redact::sanitize_text`] first.

use std::fmt;

/// Every failure the core can report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The provider redirected back with `error=...` (RFC 6749 §4.1.2.1).
    AuthorizationDenied {
        error: String,
        description: Option<String>,
        uri: Option<String>,
    },
    /// The redirect's `iss` differs from the expected issuer (RFC 9207 §2.4).
    IssuerMismatch { expected: String, received: String },
    /// Nobody completed the login in time.
    LoginTimeout { millis: Option<u64> },
    /// The token endpoint answered with an error status or an RFC 6749 §5.2 error body.
    TokenEndpoint {
        status: u16,
        error: Option<String>,
        description: Option<String>,
        uri: Option<String>,
        excerpt: Option<String>,
    },
    /// A 2xx token response we cannot use (not JSON, no `access_token`, bad `expires_in`...).
    InvalidTokenResponse { reason: String, excerpt: String },
    /// The callback listener cannot bind, was closed, or belongs to another process.
    Listener(String),
    /// The caller passed something invalid (maps to `ValueError`).
    InvalidInput(String),
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthorizationDenied {
                error, description, ..
            } => match description {
                Some(d) => write!(f, "authorization denied: {error}: {d}"),
                None => write!(f, "authorization denied: {error}"),
            },
            Self::IssuerMismatch { expected, received } => write!(
                f,
                "authorization response issuer mismatch: expected {expected:?}, got {received:?}"
            ),
            #[allow(clippy::cast_precision_loss)]
            Self::LoginTimeout { millis: Some(ms) } => {
                write!(
                    f,
                    "login was not completed within {:.1} s",
                    *ms as f64 / 1000.0
                )
            }
            Self::LoginTimeout { millis: None } => write!(f, "login was not completed in time"),
            Self::TokenEndpoint {
                status,
                error,
                description,
                ..
            } => {
                write!(f, "token endpoint answered HTTP {status}")?;
                if let Some(e) = error {
                    write!(f, ": {e}")?;
                }
                if let Some(d) = description {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            Self::InvalidTokenResponse { reason, excerpt } => {
                if excerpt.is_empty() {
                    write!(f, "invalid token response: {reason}")
                } else {
                    write!(f, "invalid token response: {reason} ({excerpt})")
                }
            }
            Self::Listener(m) | Self::InvalidInput(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
