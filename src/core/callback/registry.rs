//! Pending flows keyed by `state`. One registry serves every login of a process; a redirect (or a
//! pasted URL) completes exactly the flow whose `state` it carries and nothing else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, watch};

use super::query::{parse_callback_query, CallbackParams, QueryError};
use crate::core::redact::{sanitize_text, MAX_TEXT_CHARS};
use crate::error::{Error, Result};

/// What a completed redirect hands to the waiting login.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub state: String,
    pub code: String,
    pub iss: Option<String>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("code", &"<redacted>")
            .field("iss", &self.iss)
            .finish_non_exhaustive()
    }
}

type Outcome = Result<Authorization>;

struct Slot {
    id: u64,
    tx: oneshot::Sender<Outcome>,
    issuer: Option<String>,
}

#[derive(Default)]
struct Flows {
    by_state: HashMap<String, Slot>,
    closed: bool,
}

/// What happened to a redirect, for the page the browser gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A pending flow got its code.
    Completed,
    /// A pending flow was ended by the provider's error or an issuer mismatch.
    Ended(Error),
    /// The `state` belongs to no pending flow; nothing was touched.
    Unknown,
    /// Not an authorization response at all; nothing was touched.
    Invalid(QueryError),
}

/// The registry of pending flows.
pub struct Registry {
    flows: Mutex<Flows>,
    next_id: AtomicU64,
    closed_tx: watch::Sender<bool>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            flows: Mutex::default(),
            next_id: AtomicU64::new(1),
            closed_tx: watch::Sender::new(false),
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, Flows> {
        // A panic while holding the lock cannot leave the map inconsistent (every operation is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.flows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Register a flow. Fails when the registry is closed or `state` is already pending.
    pub fn register(
        self: &Arc<Self>,
        state: String,
        expected_issuer: Option<String>,
    ) -> Result<FlowReceiver> {
        if state.is_empty() {
            return Err(Error::InvalidInput("state must not be empty".to_owned()));
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut flows = self.lock();
            if flows.closed {
                return Err(Error::Listener(
                    "the callback listener is closed".to_owned(),
                ));
            }
            if flows.by_state.contains_key(&state) {
                return Err(Error::InvalidInput(
                    "a login with this state is already pending".to_owned(),
                ));
            }
            flows.by_state.insert(
                state.clone(),
                Slot {
                    id,
                    tx,
                    issuer: expected_issuer,
                },
            );
        }
        Ok(FlowReceiver {
            registry: Arc::clone(self),
            state,
            id,
            rx,
        })
    }

    /// Hand a redirect's query to the flow it names, if any.
    pub fn deliver(&self, query: &str) -> Delivery {
        let params = match parse_callback_query(query) {
            Ok(p) => p,
            Err(e) => return Delivery::Invalid(e),
        };
        let slot = {
            let mut flows = self.lock();
            let Some(slot) = flows.by_state.remove(params.state()) else {
                return Delivery::Unknown;
            };
            if flows.by_state.is_empty() {
                self.close_locked(&mut flows);
            }
            slot
        };
        let outcome = outcome_for(params, slot.issuer.as_deref());
        let delivery = match &outcome {
            Ok(_) => Delivery::Completed,
            Err(e) => Delivery::Ended(e.clone()),
        };
        // The waiter may have gone away in the meantime; then there is nobody to tell.
        let _ = slot.tx.send(outcome);
        delivery
    }

    fn remove(&self, state: &str, id: u64) {
        let mut flows = self.lock();
        if flows.by_state.get(state).is_some_and(|s| s.id == id) {
            flows.by_state.remove(state);
            if flows.by_state.is_empty() {
                self.close_locked(&mut flows);
            }
        }
    }

    fn close_locked(&self, flows: &mut Flows) {
        if !flows.closed {
            flows.closed = true;
            self.closed_tx.send_replace(true);
        }
    }

    /// Close now: every pending flow fails with a listener error.
    pub fn close(&self) {
        let drained: Vec<Slot> = {
            let mut flows = self.lock();
            self.close_locked(&mut flows);
            flows.by_state.drain().map(|(_, s)| s).collect()
        };
        for slot in drained {
            let _ = slot.tx.send(Err(Error::Listener(
                "the callback listener was closed".to_owned(),
            )));
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_state.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Becomes `true` once the registry closes (explicitly, or when its last flow ends).
    pub fn closed_signal(&self) -> watch::Receiver<bool> {
        self.closed_tx.subscribe()
    }
}

fn outcome_for(params: CallbackParams, expected_issuer: Option<&str>) -> Outcome {
    // RFC 9207 §2.4: compare `iss` on success and error responses alike.
    if let (Some(expected), Some(received)) = (expected_issuer, params.iss()) {
        if expected != received {
            return Err(Error::IssuerMismatch {
                expected: sanitize_text(expected, 200),
                received: sanitize_text(received, 200),
            });
        }
    }
    match params {
        CallbackParams::Code { state, code, iss } => Ok(Authorization { state, code, iss }),
        CallbackParams::Error {
            error,
            description,
            uri,
            ..
        } => Err(Error::AuthorizationDenied {
            error: sanitize_text(&error, 64),
            description: description.map(|d| sanitize_text(&d, MAX_TEXT_CHARS)),
            uri: uri.map(|u| sanitize_text(&u, MAX_TEXT_CHARS)),
        }),
    }
}

/// The waiting side of one flow. Dropping it (a cancelled or timed-out wait) deregisters the
/// flow; when it was the last one, the registry closes and the listener frees its port.
pub struct FlowReceiver {
    registry: Arc<Registry>,
    state: String,
    id: u64,
    rx: oneshot::Receiver<Outcome>,
}

impl FlowReceiver {
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Wait for the redirect that carries this flow's `state`.
    pub async fn recv(&mut self) -> Result<Authorization> {
        match (&mut self.rx).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::Listener(
                "the callback listener was closed".to_owned(),
            )),
        }
    }
}

impl Drop for FlowReceiver {
    fn drop(&mut self) {
        self.registry.remove(&self.state, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn delivers_only_to_matching_state() {
        rt().block_on(async {
            let reg = Registry::new();
            let mut a = reg.register("a".into(), None).unwrap();
            let _b = reg.register("b".into(), None).unwrap();
            assert_eq!(reg.deliver("state=zzz&code=1"), Delivery::Unknown);
            assert_eq!(
                reg.deliver("code=1"),
                Delivery::Invalid(QueryError::MissingState)
            );
            assert_eq!(reg.len(), 2);
            assert_eq!(reg.deliver("state=a&code=c1"), Delivery::Completed);
            assert_eq!(a.recv().await.unwrap().code, "c1");
            // A replay of a finished flow touches nothing.
            assert_eq!(reg.deliver("state=a&code=c1"), Delivery::Unknown);
            assert_eq!(reg.len(), 1);
        });
    }

    #[test]
    fn error_ends_flow_with_denial() {
        rt().block_on(async {
            let reg = Registry::new();
            let mut a = reg.register("a".into(), None).unwrap();
            assert!(matches!(
                reg.deliver("state=a&error=access_denied&error_description=no"),
                Delivery::Ended(Error::AuthorizationDenied { .. })
            ));
            assert!(matches!(
                a.recv().await,
                Err(Error::AuthorizationDenied { .. })
            ));
        });
    }

    #[test]
    fn issuer_mismatch() {
        rt().block_on(async {
            let reg = Registry::new();
            let mut a = reg
                .register("a".into(), Some("https://good".into()))
                .unwrap();
            reg.deliver("state=a&code=c&iss=https%3A%2F%2Fevil");
            assert!(matches!(a.recv().await, Err(Error::IssuerMismatch { .. })));
        });
    }

    #[test]
    fn drop_deregisters_and_last_one_closes() {
        let reg = Registry::new();
        let a = reg.register("a".into(), None).unwrap();
        let b = reg.register("b".into(), None).unwrap();
        drop(a);
        assert_eq!(reg.len(), 1);
        assert!(!reg.is_closed());
        drop(b);
        assert!(reg.is_closed());
        assert!(reg.register("c".into(), None).is_err());
    }

    #[test]
    fn stale_receiver_does_not_remove_a_newer_flow() {
        let reg = Registry::new();
        let _keep = reg.register("keep".into(), None).unwrap();
        let a = reg.register("a".into(), None).unwrap();
        assert_eq!(reg.deliver("state=a&code=x"), Delivery::Completed);
        let a2 = reg.register("a".into(), None).unwrap();
        drop(a);
        assert_eq!(reg.len(), 2);
        drop(a2);
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn duplicate_state_is_refused() {
        let reg = Registry::new();
        let _a = reg.register("a".into(), None).unwrap();
        assert!(matches!(
            reg.register("a".into(), None),
            Err(Error::InvalidInput(_))
        ));
    }
}
