//! PKCE (RFC 7636) and `state` values.
//!
//! The verifier is 32 bytes from the OS CSPRNG, base64url without padding: 43 characters, the
//! shortest RFC 7636 §4.1 allows, with 256 bits of entropy. The challenge is S256 (§4.2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Bytes of randomness behind a verifier (RFC 7636 §7.1 recommends 32).
pub const VERIFIER_BYTES: usize = 32;
/// Bytes of randomness behind a `state` (128 bits is the usual floor; we use 192).
pub const STATE_BYTES: usize = 24;
/// RFC 7636 §4.1 bounds on the verifier length.
pub const VERIFIER_MIN_LEN: usize = 43;
pub const VERIFIER_MAX_LEN: usize = 128;
/// The only method we send.
pub const METHOD: &str = "S256";

/// A verifier and its S256 challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("verifier", &"<redacted>")
            .field("challenge", &self.challenge)
            .finish()
    }
}

fn random_url_safe<const N: usize>() -> Result<String> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::InvalidInput(format!("the OS random source failed: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A fresh verifier/challenge pair.
pub fn new_pkce() -> Result<Pkce> {
    let verifier = random_url_safe::<VERIFIER_BYTES>()?;
    let challenge = s256(&verifier);
    Ok(Pkce {
        verifier,
        challenge,
    })
}

/// A fresh, URL-safe `state` (RFC 6749 §10.12).
pub fn new_state() -> Result<String> {
    random_url_safe::<STATE_BYTES>()
}

/// A PKCE pair and a `state` from one read of the OS random source (a syscall costs about as
/// much as everything else here together).
pub fn new_login_secrets() -> Result<(Pkce, String)> {
    let mut buf = [0u8; VERIFIER_BYTES + STATE_BYTES];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::InvalidInput(format!("the OS random source failed: {e}")))?;
    let verifier = URL_SAFE_NO_PAD.encode(&buf[..VERIFIER_BYTES]);
    let state = URL_SAFE_NO_PAD.encode(&buf[VERIFIER_BYTES..]);
    let challenge = s256(&verifier);
    Ok((
        Pkce {
            verifier,
            challenge,
        },
        state,
    ))
}

/// Whether `c` is in RFC 7636 §4.1's `unreserved` alphabet.
pub fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// The S256 challenge of `verifier`, after checking it is a valid RFC 7636 verifier.
pub fn challenge_for(verifier: &str) -> Result<String> {
    let len = verifier.len();
    if !(VERIFIER_MIN_LEN..=VERIFIER_MAX_LEN).contains(&len) {
        return Err(Error::InvalidInput(format!(
            "a PKCE verifier must be {VERIFIER_MIN_LEN} to {VERIFIER_MAX_LEN} characters long, got {len}"
        )));
    }
    if !verifier.bytes().all(is_unreserved) {
        return Err(Error::InvalidInput(
            "a PKCE verifier may only contain A-Z, a-z, 0-9, '-', '.', '_' and '~'".to_owned(),
        ));
    }
    Ok(s256(verifier))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let challenge = challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").unwrap();
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn new_pair_is_consistent() {
        let p = new_pkce().unwrap();
        assert_eq!(p.verifier.len(), 43);
        assert_eq!(challenge_for(&p.verifier).unwrap(), p.challenge);
        assert_eq!(p.challenge.len(), 43);
    }

    #[test]
    fn debug_hides_verifier() {
        let p = new_pkce().unwrap();
        assert!(!format!("{p:?}").contains(&p.verifier));
    }

    #[test]
    fn rejects_bad_verifiers() {
        assert!(challenge_for(&"a".repeat(42)).is_err());
        assert!(challenge_for(&"a".repeat(129)).is_err());
        assert!(challenge_for(&format!("{}+", "a".repeat(43))).is_err());
        assert!(challenge_for(&"a".repeat(128)).is_ok());
    }

    #[test]
    fn login_secrets_are_independent_and_well_formed() {
        let (p, state) = new_login_secrets().unwrap();
        assert_eq!(p.verifier.len(), 43);
        assert_eq!(state.len(), 32);
        assert_eq!(challenge_for(&p.verifier).unwrap(), p.challenge);
        assert!(!p.verifier.contains(&state) && !state.contains(&p.verifier[..32]));
        let (q, state2) = new_login_secrets().unwrap();
        assert_ne!(p.verifier, q.verifier);
        assert_ne!(state, state2);
    }

    #[test]
    fn states_are_unique_and_url_safe() {
        let a = new_state().unwrap();
        let b = new_state().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(is_unreserved));
    }
}
