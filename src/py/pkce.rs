//! `new_pkce`, `new_state`, `pkce_challenge` and the `Pkce` class.

use pyo3::prelude::*;

use crate::core::pkce;

/// A PKCE verifier and its S256 challenge (RFC 7636).
#[pyclass(frozen, module = "fedbearer._core", name = "Pkce")]
pub struct PyPkce {
    #[pyo3(get)]
    verifier: String,
    #[pyo3(get)]
    challenge: String,
}

#[pymethods]
impl PyPkce {
    #[getter]
    fn method(&self) -> &'static str {
        pkce::METHOD
    }

    fn __repr__(&self) -> String {
        format!(
            "Pkce(method='S256', challenge='{}', verifier=<redacted>)",
            self.challenge
        )
    }
}

/// A fresh PKCE pair from the OS CSPRNG.
#[pyfunction]
pub fn new_pkce() -> PyResult<PyPkce> {
    let p = pkce::new_pkce()?;
    Ok(PyPkce {
        verifier: p.verifier,
        challenge: p.challenge,
    })
}

/// A fresh URL-safe `state` (192 bits).
#[pyfunction]
pub fn new_state() -> PyResult<String> {
    Ok(pkce::new_state()?)
}

/// The S256 challenge of `verifier`; `ValueError` outside RFC 7636's length and alphabet.
#[pyfunction]
pub fn pkce_challenge(verifier: &str) -> PyResult<String> {
    Ok(pkce::challenge_for(verifier)?)
}

/// A PKCE pair and a state in one call: what every login needs, with one crossing into Rust.
#[pyfunction]
pub fn new_login_secrets() -> PyResult<(PyPkce, String)> {
    let (p, state) = pkce::new_login_secrets()?;
    Ok((
        PyPkce {
            verifier: p.verifier,
            challenge: p.challenge,
        },
        state,
    ))
}
