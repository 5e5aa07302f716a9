//! Small helpers the Python side shares with the core, so both redact and parse the same way.

use pyo3::prelude::*;

use crate::core::{authorize, callback, redact};

// The default is spelled out so that `inspect.signature` (and `mypy.stubtest`) see `300`, not
// `...`; this keeps it tied to the constant.
const _: () = assert!(redact::MAX_TEXT_CHARS == 300);

/// Provider- or user-supplied text made safe for a message (secret-looking runs redacted).
#[pyfunction]
#[pyo3(signature = (text, max_chars = 300))]
pub fn redact_text(text: &str, max_chars: usize) -> String {
    redact::sanitize_text(text, max_chars)
}

/// The query part of a pasted redirect URL (see the remote mode of the CLI).
#[pyfunction]
pub fn query_of_pasted_url(pasted: &str) -> &str {
    callback::query_of_pasted_url(pasted)
}

/// The authorization request URL for `origin` (scheme://host[:port]), encoded like Python's
/// `urllib.parse.urlencode`.
#[pyfunction]
pub fn authorization_url(
    origin: &str,
    client_id: &str,
    state: &str,
    redirect_uri: &str,
    code_challenge: &str,
    federation_id: &str,
) -> String {
    authorize::authorization_url(
        origin,
        client_id,
        state,
        redirect_uri,
        code_challenge,
        federation_id,
    )
}
