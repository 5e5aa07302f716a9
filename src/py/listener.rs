//! `CallbackListener`, `PendingFlow` and `Authorization`: the loopback listener awaited from
//! asyncio.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::notify::{self, Settle};
use super::runtime::{self, check_pid};
#[cfg(unix)]
use super::wakeup;
use crate::core::callback::{
    self, Authorization, CallbackServer, Delivery, FlowReceiver, ListenerConfig, Registry,
};

fn seconds(name: &str, value: f64) -> PyResult<Option<Duration>> {
    if value.is_nan() || value < 0.0 {
        return Err(PyValueError::new_err(format!(
            "{name} must be a non-negative number of seconds"
        )));
    }
    // An infinite or absurdly long wait is no wait limit at all.
    Ok(Duration::try_from_secs_f64(value).ok())
}

/// The code (and `iss`) a redirect delivered for one flow.
#[pyclass(frozen, module = "fedbearer._core", name = "Authorization")]
pub struct PyAuthorization {
    #[pyo3(get)]
    code: String,
    #[pyo3(get)]
    state: String,
    #[pyo3(get)]
    iss: Option<String>,
}

impl From<Authorization> for PyAuthorization {
    fn from(auth: Authorization) -> Self {
        Self {
            code: auth.code,
            state: auth.state,
            iss: auth.iss,
        }
    }
}

#[pymethods]
impl PyAuthorization {
    fn __repr__(&self) -> String {
        format!("Authorization(code=<redacted>, iss={:?})", self.iss)
    }
}

/// A loopback listener multiplexing any number of pending flows by `state`.
#[pyclass(frozen, module = "fedbearer._core", name = "CallbackListener")]
pub struct PyCallbackListener {
    server: CallbackServer,
    pid: u32,
}

impl PyCallbackListener {
    fn registry(&self) -> PyResult<&Arc<Registry>> {
        check_pid(self.pid, "callback listener")?;
        Ok(self.server.registry())
    }
}

#[pymethods]
impl PyCallbackListener {
    /// Bind `127.0.0.1` (and `[::1]`) on an ephemeral port and start serving.
    #[staticmethod]
    #[pyo3(signature = (*, max_connections = 1024, header_read_timeout = 10.0, connection_timeout = 30.0, bind_ipv6 = true))]
    fn bind(
        py: Python<'_>,
        max_connections: i64,
        header_read_timeout: f64,
        connection_timeout: f64,
        bind_ipv6: bool,
    ) -> PyResult<Self> {
        let defaults = ListenerConfig::default();
        let config = ListenerConfig {
            max_connections: usize::try_from(max_connections)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| PyValueError::new_err("max_connections must be at least 1"))?,
            header_read_timeout: seconds("header_read_timeout", header_read_timeout)?
                .unwrap_or(defaults.header_read_timeout),
            connection_timeout: seconds("connection_timeout", connection_timeout)?
                .unwrap_or(defaults.connection_timeout),
            bind_ipv6,
            backlog: defaults.backlog,
        };
        let server = py.detach(|| {
            let rt = runtime::get()?;
            CallbackServer::bind(rt.handle(), Registry::new(), config)
        })?;
        Ok(Self {
            server,
            pid: std::process::id(),
        })
    }

    #[getter]
    fn port(&self) -> u16 {
        self.server.port()
    }

    /// `http://127.0.0.1:PORT`.
    #[getter]
    fn redirect_uri(&self) -> String {
        self.server.redirect_uri()
    }

    /// The socket addresses listened on, e.g. `["127.0.0.1:5000", "[::1]:5000"]`.
    #[getter]
    fn addresses(&self) -> Vec<String> {
        self.server
            .addresses()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Number of flows waiting for their redirect.
    #[getter]
    fn pending(&self) -> usize {
        self.server.registry().len()
    }

    /// Closed listeners accept no new flows and have freed their port.
    #[getter]
    fn closed(&self) -> bool {
        self.server.registry().is_closed()
    }

    /// Register a flow waiting for the redirect that carries `state`.
    #[pyo3(signature = (state, expected_issuer = None))]
    fn register(&self, state: String, expected_issuer: Option<String>) -> PyResult<PyPendingFlow> {
        let receiver = self.registry()?.register(state, expected_issuer)?;
        Ok(PyPendingFlow {
            state: receiver.shared_state(),
            port: self.server.port(),
            id: receiver.id(),
            registry: Arc::clone(receiver.registry()),
            receiver: Mutex::new(Some(receiver)),
            pid: self.pid,
        })
    }

    /// Complete a flow from a redirect URL the user pasted (remote mode), with the same checks as
    /// a request on the socket. Returns True when it ended a flow (with its code or the provider's
    /// error); raises ValueError when the URL belongs to no pending flow or is no redirect.
    fn deliver(&self, pasted_url: &str) -> PyResult<bool> {
        let query = callback::query_of_pasted_url(pasted_url);
        match self.registry()?.deliver(query) {
            Delivery::Completed | Delivery::Ended(_) => Ok(true),
            Delivery::Unknown => Err(PyValueError::new_err(
                "this URL belongs to no login in progress (its state does not match)",
            )),
            Delivery::Invalid(e) => Err(PyValueError::new_err(format!(
                "this is not a login redirect URL: {e}"
            ))),
        }
    }

    /// Stop listening now; pending flows fail with ListenerError.
    fn close(&self) {
        self.server.registry().close();
    }

    /// An awaitable that resolves once the listener has stopped and its port is free (it stops
    /// when closed, or when its last pending flow ends). A Rust future awaited from asyncio.
    fn wait_closed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        check_pid(self.pid, "callback listener")?;
        let stopped = self.server.stopped();
        runtime::future_into_py(py, async move {
            stopped.await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "CallbackListener(redirect_uri='{}', pending={}, closed={})",
            self.server.redirect_uri(),
            self.pending(),
            if self.closed() { "True" } else { "False" }
        )
    }
}

/// One registered flow. Await `wait()` for its code; cancelling the awaiting task, or `cancel()`,
/// deregisters it.
#[pyclass(frozen, module = "fedbearer._core", name = "PendingFlow")]
pub struct PyPendingFlow {
    state: Arc<str>,
    port: u16,
    id: u64,
    registry: Arc<Registry>,
    receiver: Mutex<Option<FlowReceiver>>,
    pid: u32,
}

impl PyPendingFlow {
    fn take(&self) -> Option<FlowReceiver> {
        self.receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// Stands in for `wakeup::LoopWaker` where there are no Unix sockets (the notifier is used).
#[cfg(not(unix))]
struct NoWaker;

#[cfg(not(unix))]
impl NoWaker {
    fn push(&self, _future: Py<PyAny>, _outcome: callback::registry::Outcome) {}
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

#[pymethods]
impl PyPendingFlow {
    /// An `asyncio.Future` resolving to the flow's `Authorization`; it fails with `LoginTimeout`
    /// after `timeout` seconds, or `AuthorizationDenied` / `IssuerMismatch` as the redirect says.
    /// Cancelling it (or the task awaiting it) deregisters the flow. Can be called once.
    #[pyo3(signature = (timeout = None, *, deregister_on_cancel = true))]
    fn wait<'py>(
        slf: &Bound<'py, Self>,
        timeout: Option<f64>,
        deregister_on_cancel: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        check_pid(this.pid, "pending flow")?;
        let limit = match timeout {
            Some(t) => seconds("timeout", t)?,
            None => None,
        };
        let event_loop = GET_RUNNING_LOOP
            .import(py, "asyncio", "get_running_loop")?
            .call0()?;
        let future = event_loop.call_method0("create_future")?;
        let receiver = this
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this flow was already awaited or cancelled"))?;
        // The flow itself is the done-callback: a cancelled future deregisters it. A caller that
        // deregisters by itself (`cancel()` in a `finally`) can spare the callback and its context.
        if deregister_on_cancel {
            future.call_method1("add_done_callback", (slf,))?;
        }
        let settle_future = future.clone().unbind();
        #[cfg(unix)]
        let waker = wakeup::waker_for(py, &event_loop);
        #[cfg(not(unix))]
        let waker: Option<std::sync::Arc<NoWaker>> = None;
        let completion: callback::registry::Completion = if let Some(waker) = waker {
            Box::new(move |outcome| waker.push(settle_future, outcome))
        } else {
            let settle_loop = event_loop.unbind();
            Box::new(move |outcome| {
                notify::push(Settle {
                    future: settle_future,
                    event_loop: settle_loop,
                    outcome,
                });
            })
        };
        receiver.complete_with(limit, completion);
        Ok(future)
    }

    /// The done-callback of the future `wait()` returned: deregister (a no-op once completed).
    /// The future is already done, so nobody needs telling.
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        self.registry.discard(&self.state, self.id);
    }

    /// Deregister (idempotent). A pending `wait()` fails with `ListenerError`.
    fn cancel(&self) {
        drop(self.take());
        self.registry.cancel(&self.state, self.id);
    }

    /// The `state` this flow waits for.
    #[getter]
    fn state(&self) -> &str {
        &self.state
    }

    /// `http://127.0.0.1:PORT`, the redirect URI to send in the authorization request.
    #[getter]
    fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether the flow is still waiting for its redirect.
    #[getter]
    fn registered(&self) -> bool {
        self.registry.contains(&self.state, self.id)
    }

    fn __repr__(&self) -> String {
        format!("PendingFlow(redirect_uri='http://127.0.0.1:{}')", self.port)
    }
}
