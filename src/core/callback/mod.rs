//! The loopback redirect receiver (RFC 8252 §7.3): query parsing, the registry of pending flows
//! keyed by `state`, the HTML pages, and the hyper listener that ties them together.

pub mod pages;
pub mod query;
pub mod registry;
pub mod server;

pub use query::{parse_callback_query, query_of_pasted_url, CallbackParams, QueryError};
pub use registry::{Authorization, Delivery, FlowReceiver, Registry};
pub use server::{CallbackServer, ListenerConfig};
