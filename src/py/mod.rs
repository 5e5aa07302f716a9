//! The PyO3 binding layer: conversions and classes only; the logic lives in `crate::core`.

pub mod errors;
pub mod listener;
pub mod notify;
pub mod pkce;
pub mod runtime;
pub mod token;
pub mod util;
#[cfg(unix)]
pub mod wakeup;
