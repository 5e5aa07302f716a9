//! fedbearer's Rust core.
//!
//! `core` is plain Rust (PKCE, token responses, the loopback callback listener) and is tested with
//! plain `cargo test --no-default-features`; `py` is the thin PyO3 layer that makes it the Python
//! module `fedbearer._core`. This file only declares modules and lists the module's exports.

pub mod core;
pub mod error;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule]
mod _core {
    #[pymodule_export]
    use crate::py::listener::{PyAuthorization, PyCallbackListener, PyPendingFlow};
    #[pymodule_export]
    use crate::py::notify::shutdown_notifier;
    #[pymodule_export]
    use crate::py::pkce::{new_login_secrets, new_pkce, new_state, pkce_challenge, PyPkce};
    #[pymodule_export]
    use crate::py::token::{parse_token_response, PyTokenResponse};
    #[pymodule_export]
    use crate::py::util::{authorization_url, query_of_pasted_url, redact_text};
}
