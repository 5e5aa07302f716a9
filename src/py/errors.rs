//! The one mapping from [`Error`] to Python exceptions. The classes are defined once, in
//! `fedbearer/exceptions.py`, and imported here.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;

use crate::error::Error;

pyo3::import_exception!(fedbearer.exceptions, AuthorizationDenied);
pyo3::import_exception!(fedbearer.exceptions, IssuerMismatch);
pyo3::import_exception!(fedbearer.exceptions, LoginTimeout);
pyo3::import_exception!(fedbearer.exceptions, TokenEndpointError);
pyo3::import_exception!(fedbearer.exceptions, InvalidTokenResponse);
pyo3::import_exception!(fedbearer.exceptions, ListenerError);

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        match err {
            Error::AuthorizationDenied {
                error,
                description,
                uri,
            } => AuthorizationDenied::new_err((error, description, uri)),
            Error::IssuerMismatch { expected, received } => {
                IssuerMismatch::new_err((expected, received))
            }
            #[allow(clippy::cast_precision_loss)]
            Error::LoginTimeout { millis } => {
                LoginTimeout::new_err((millis.map(|m| m as f64 / 1000.0),))
            }
            Error::TokenEndpoint {
                status,
                error,
                description,
                uri,
                excerpt,
            } => TokenEndpointError::new_err((status, error, description, uri, excerpt)),
            Error::InvalidTokenResponse { reason, excerpt } => {
                InvalidTokenResponse::new_err((reason, excerpt))
            }
            Error::Listener(message) => ListenerError::new_err((message,)),
            Error::InvalidInput(message) => PyValueError::new_err(message),
        }
    }
}
