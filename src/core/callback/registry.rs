//! Pending flows keyed by `state`. One registry serves every login of a process; a redirect (or a
//! pasted URL) completes exactly the flow whose `state` it carries and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch, Notify};

use super::query::{parse_callback_query, CallbackParams, QueryError, MAX_VALUE_LEN};
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

/// How a flow ends: its authorization, or why not.
pub type Outcome = Result<Authorization>;

/// A completion called exactly once, from whatever thread ends the flow, never under a lock.
/// This is how the Python layer completes an asyncio future without a task per flow.
pub type Completion = Box<dyn FnOnce(Outcome) + Send>;

enum Waiter {
    // Boxed: the channel's shared state stays small (a pending flow costs that much less).
    Channel(oneshot::Sender<Box<Outcome>>),
    Callback(Completion),
}

impl Waiter {
    fn finish(self, outcome: Outcome) {
        match self {
            // The receiver may have gone away in the meantime; then there is nobody to tell.
            Self::Channel(tx) => {
                let _ = tx.send(Box::new(outcome));
            }
            Self::Callback(f) => f(outcome),
        }
    }
}

struct Slot {
    id: u64,
    waiter: Waiter,
    issuer: Option<String>,
    /// When the flow times out, and the timeout it was given (for the error).
    deadline: Option<(Instant, Duration)>,
}

#[derive(Default)]
struct Flows {
    // The state is shared (`Arc<str>`) by the map, the deadline index and the waiting side.
    by_state: HashMap<Arc<str>, Slot>,
    /// `(deadline, id) -> state`, earliest first: one timer serves every flow.
    deadlines: BTreeMap<(Instant, u64), Arc<str>>,
    closed: bool,
}

impl Flows {
    fn take(&mut self, state: &str) -> Option<Slot> {
        let slot = self.by_state.remove(state)?;
        if let Some((at, _)) = slot.deadline {
            self.deadlines.remove(&(at, slot.id));
        }
        Some(slot)
    }
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
    /// Woken when a deadline earlier than all others is set.
    deadline_changed: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            flows: Mutex::default(),
            next_id: AtomicU64::new(1),
            closed_tx: watch::Sender::new(false),
            deadline_changed: Notify::new(),
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
        // A state no redirect can carry (the query parser refuses longer values) would only
        // wait for its timeout.
        if state.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidInput(format!(
                "state must be at most {MAX_VALUE_LEN} bytes"
            )));
        }
        let (tx, rx) = oneshot::channel();
        let state: Arc<str> = Arc::from(state);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut flows = self.lock();
            if flows.closed {
                return Err(Error::Listener(
                    "the callback listener is closed".to_owned(),
                ));
            }
            if flows.by_state.contains_key(&*state) {
                return Err(Error::InvalidInput(
                    "a login with this state is already pending".to_owned(),
                ));
            }
            flows.by_state.insert(
                Arc::clone(&state),
                Slot {
                    id,
                    waiter: Waiter::Channel(tx),
                    issuer: expected_issuer,
                    deadline: None,
                },
            );
        }
        Ok(FlowReceiver {
            registry: Arc::clone(self),
            state,
            id,
            rx,
            armed: true,
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
            let Some(slot) = flows.take(params.state()) else {
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
        slot.waiter.finish(outcome);
        delivery
    }

    /// Deregister flow `id` (a cancelled or abandoned wait). A completion still attached is
    /// called with a listener error, so that no waiter is left hanging.
    pub fn cancel(&self, state: &str, id: u64) {
        let slot = {
            let mut flows = self.lock();
            if flows.by_state.get(state).is_none_or(|s| s.id != id) {
                return;
            }
            let slot = flows.take(state);
            if flows.by_state.is_empty() {
                self.close_locked(&mut flows);
            }
            slot
        };
        if let Some(slot) = slot {
            slot.waiter
                .finish(Err(Error::Listener("the login was cancelled".to_owned())));
        }
    }

    /// Deregister flow `id` without telling its waiter (which gave up: its future is cancelled).
    pub fn discard(&self, state: &str, id: u64) -> bool {
        let slot = {
            let mut flows = self.lock();
            if flows.by_state.get(state).is_none_or(|s| s.id != id) {
                return false;
            }
            let slot = flows.take(state);
            if flows.by_state.is_empty() {
                self.close_locked(&mut flows);
            }
            slot
        };
        drop(slot);
        true
    }

    /// End every flow whose deadline is at or before `now` with `LoginTimeout`; return the next
    /// deadline, if any. The listener's timer calls this.
    pub fn expire_due(&self, now: Instant) -> Option<Instant> {
        let (expired, next) = {
            let mut flows = self.lock();
            let mut expired = Vec::new();
            while let Some((&(at, id), _)) = flows.deadlines.first_key_value() {
                if at > now {
                    break;
                }
                let (_, state) = flows
                    .deadlines
                    .pop_first()
                    .unwrap_or(((at, id), Arc::from("")));
                if let Some(slot) = flows.by_state.remove(&*state) {
                    expired.push(slot);
                }
            }
            if !expired.is_empty() && flows.by_state.is_empty() {
                self.close_locked(&mut flows);
            }
            let next = flows.deadlines.first_key_value().map(|(&(at, _), _)| at);
            (expired, next)
        };
        for slot in expired {
            let millis = slot
                .deadline
                .and_then(|(_, limit)| u64::try_from(limit.as_millis()).ok());
            slot.waiter.finish(Err(Error::LoginTimeout { millis }));
        }
        next
    }

    /// Resolves when a deadline earlier than the others was set (see [`Self::expire_due`]).
    pub async fn deadline_changed(&self) {
        self.deadline_changed.notified().await;
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
            flows.deadlines.clear();
            flows.by_state.drain().map(|(_, s)| s).collect()
        };
        for slot in drained {
            slot.waiter.finish(Err(Error::Listener(
                "the callback listener was closed".to_owned(),
            )));
        }
    }

    /// Whether flow `id` is still pending under `state`.
    pub fn contains(&self, state: &str, id: u64) -> bool {
        self.lock().by_state.get(state).is_some_and(|s| s.id == id)
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
    state: Arc<str>,
    id: u64,
    rx: oneshot::Receiver<Box<Outcome>>,
    /// Whether dropping this receiver deregisters the flow.
    armed: bool,
}

impl FlowReceiver {
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The state, shared rather than copied.
    pub fn shared_state(&self) -> Arc<str> {
        Arc::clone(&self.state)
    }

    /// This flow's id, for [`Registry::cancel`].
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Instead of awaiting [`Self::recv`], have `completion` called once with the outcome, and
    /// end the flow with `LoginTimeout` after `timeout` (None: no limit). When the flow already
    /// ended, `completion` runs at once, on this thread.
    pub fn complete_with(mut self, timeout: Option<Duration>, completion: Completion) {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t).map(|at| (at, t)));
        let pending = {
            let mut flows = self.registry.lock();
            let earliest = flows.deadlines.first_key_value().map(|(&(at, _), _)| at);
            match flows.by_state.get_mut(&*self.state) {
                Some(slot) if slot.id == self.id => {
                    slot.waiter = Waiter::Callback(completion);
                    slot.deadline = deadline;
                    if let Some((at, _)) = deadline {
                        flows
                            .deadlines
                            .insert((at, self.id), Arc::clone(&self.state));
                        if earliest.is_none_or(|e| at < e) {
                            self.registry.deadline_changed.notify_one();
                        }
                    }
                    None
                }
                _ => Some(completion),
            }
        };
        // From here on the registry owns the flow: dropping `self` must not deregister it.
        self.armed = false;
        if let Some(completion) = pending {
            let outcome = self.rx.try_recv().map_or_else(
                |_| {
                    Err(Error::Listener(
                        "the callback listener was closed".to_owned(),
                    ))
                },
                |b| *b,
            );
            completion(outcome);
        }
    }

    /// Wait for the redirect that carries this flow's `state`.
    pub async fn recv(&mut self) -> Result<Authorization> {
        match (&mut self.rx).await {
            Ok(outcome) => *outcome,
            Err(_) => Err(Error::Listener(
                "the callback listener was closed".to_owned(),
            )),
        }
    }
}

impl Drop for FlowReceiver {
    fn drop(&mut self) {
        if self.armed {
            self.registry.cancel(&self.state, self.id);
        }
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
    fn a_state_no_redirect_can_carry_is_refused() {
        let reg = Registry::new();
        let longest = "s".repeat(MAX_VALUE_LEN);
        let _flow = reg.register(longest.clone(), None).unwrap();
        assert!(matches!(
            reg.register(format!("{longest}s"), None),
            Err(Error::InvalidInput(_))
        ));
        assert_eq!(
            reg.deliver(&format!("state={longest}&code=c")),
            Delivery::Completed
        );
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

    fn recorder() -> (Completion, std::sync::mpsc::Receiver<Outcome>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (
            Box::new(move |o| {
                let _ = tx.send(o);
            }),
            rx,
        )
    }

    #[test]
    fn completion_gets_the_code() {
        let reg = Registry::new();
        let _keep = reg.register("keep".into(), None).unwrap();
        let (done, got) = recorder();
        reg.register("a".into(), None)
            .unwrap()
            .complete_with(Some(Duration::from_secs(60)), done);
        assert_eq!(reg.deliver("state=a&code=c9"), Delivery::Completed);
        assert_eq!(got.try_recv().unwrap().unwrap().code, "c9");
        assert_eq!(reg.expire_due(Instant::now()), None);
    }

    #[test]
    fn completion_after_delivery_runs_at_once() {
        let reg = Registry::new();
        let _keep = reg.register("keep".into(), None).unwrap();
        let flow = reg.register("a".into(), None).unwrap();
        reg.deliver("state=a&code=early");
        let (done, got) = recorder();
        flow.complete_with(None, done);
        assert_eq!(got.try_recv().unwrap().unwrap().code, "early");
    }

    #[test]
    fn deadlines_expire_in_order() {
        let reg = Registry::new();
        let _keep = reg.register("keep".into(), None).unwrap();
        let (d1, g1) = recorder();
        let (d2, g2) = recorder();
        reg.register("a".into(), None)
            .unwrap()
            .complete_with(Some(Duration::from_millis(10)), d1);
        reg.register("b".into(), None)
            .unwrap()
            .complete_with(Some(Duration::from_secs(3600)), d2);
        let next = reg.expire_due(Instant::now() + Duration::from_millis(20));
        assert!(matches!(
            g1.try_recv().unwrap(),
            Err(Error::LoginTimeout { millis: Some(10) })
        ));
        assert!(g2.try_recv().is_err());
        assert!(next.is_some());
        assert_eq!(reg.len(), 2);
        // A timed-out flow's state is gone: a late redirect touches nothing.
        assert_eq!(reg.deliver("state=a&code=late"), Delivery::Unknown);
    }

    #[test]
    fn cancel_finishes_the_completion_and_closes_when_last() {
        let reg = Registry::new();
        let flow = reg.register("a".into(), None).unwrap();
        let id = flow.id();
        let (done, got) = recorder();
        flow.complete_with(Some(Duration::from_secs(5)), done);
        reg.cancel("a", id);
        assert!(matches!(got.try_recv().unwrap(), Err(Error::Listener(_))));
        assert!(reg.is_closed());
        assert_eq!(
            reg.expire_due(Instant::now() + Duration::from_secs(10)),
            None
        );
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
