//! The pyo3-free core: everything here is plain Rust, tested with plain `cargo test`.

pub mod authorize;
pub mod callback;
pub mod pkce;
pub mod redact;
pub mod token;
