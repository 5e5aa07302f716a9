//! `parse_token_response` and the `TokenResponse` class.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::core::token::{self, TokenResponse};

/// A successful token endpoint response (RFC 6749 §5.1).
#[pyclass(frozen, module = "fedbearer._core", name = "TokenResponse")]
pub struct PyTokenResponse {
    #[pyo3(get)]
    access_token: String,
    #[pyo3(get)]
    expires_in: Option<u64>,
    #[pyo3(get)]
    token_type: Option<String>,
    #[pyo3(get)]
    refresh_token: Option<String>,
    #[pyo3(get)]
    id_token: Option<String>,
    #[pyo3(get)]
    scope: Option<String>,
}

impl From<TokenResponse> for PyTokenResponse {
    fn from(t: TokenResponse) -> Self {
        Self {
            access_token: t.access_token,
            expires_in: t.expires_in,
            token_type: t.token_type,
            refresh_token: t.refresh_token,
            id_token: t.id_token,
            scope: t.scope,
        }
    }
}

#[pymethods]
impl PyTokenResponse {
    fn __repr__(&self) -> String {
        let present = |o: &Option<String>| if o.is_some() { "<redacted>" } else { "None" };
        format!(
            "TokenResponse(access_token=<redacted>, expires_in={}, token_type={}, refresh_token={}, id_token={}, scope={})",
            self.expires_in.map_or_else(|| "None".to_owned(), |e| e.to_string()),
            self.token_type.as_ref().map_or_else(|| "None".to_owned(), |t| format!("{t:?}")),
            present(&self.refresh_token),
            present(&self.id_token),
            self.scope.as_ref().map_or_else(|| "None".to_owned(), |s| format!("{s:?}")),
        )
    }
}

/// Parse a token endpoint body received with HTTP `status`.
#[pyfunction]
#[pyo3(signature = (body, status = 200))]
pub fn parse_token_response(body: &[u8], status: i64) -> PyResult<PyTokenResponse> {
    let status = u16::try_from(status)
        .map_err(|_| PyValueError::new_err("status must be an HTTP status code (0 to 65535)"))?;
    Ok(token::parse_token_response(body, status)?.into())
}
