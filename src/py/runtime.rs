//! The tokio runtime behind `fedbearer._core`, and its bridge to asyncio.
//!
//! One multi-threaded runtime per process, built on first use. A runtime does not survive
//! `fork()` (its threads stay in the parent), so the runtime is keyed by pid: a forked child
//! builds its own instead of queueing work on threads that do not exist. Objects created before
//! the fork refuse to work in the child with a clear error (see [`check_pid`]).
//!
//! pyo3-async-runtimes drives the asyncio side through its generic `Runtime` traits, implemented
//! here for that per-process runtime.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{ContextExt, Runtime};
use pyo3_async_runtimes::TaskLocals;

use crate::error::Error;

static RUNTIME: Mutex<Option<(u32, &'static tokio::runtime::Runtime)>> = Mutex::new(None);

/// This process's runtime, built on first use.
pub fn get() -> Result<&'static tokio::runtime::Runtime, Error> {
    let pid = std::process::id();
    let mut slot = RUNTIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((owner, rt)) = *slot {
        if owner == pid {
            return Ok(rt);
        }
    }
    // A parent's runtime (if any) is abandoned, not dropped: dropping it would wait for threads
    // that only exist in the parent.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fedbearer-io")
        .enable_all()
        .build()
        .map_err(|e| Error::Listener(format!("cannot start the I/O runtime: {e}")))?;
    let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    // `get` only fails when the OS refuses threads; nothing sensible can follow that.
    get().expect("fedbearer: cannot start the I/O runtime")
}

/// Refuse to use an object created in another process (before a `fork()`).
pub fn check_pid(owner: u32, what: &str) -> Result<(), Error> {
    let pid = std::process::id();
    if owner == pid {
        Ok(())
    } else {
        Err(Error::Listener(format!(
            "this {what} was created in process {owner} and cannot be used after fork() in \
             process {pid}; start a new login in this process"
        )))
    }
}

/// The marker type through which pyo3-async-runtimes reaches our runtime.
pub struct FedRuntime;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl Runtime for FedRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        runtime().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        runtime().spawn_blocking(f)
    }
}

impl ContextExt for FedRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// Await `fut` from asyncio: returns an `asyncio.Future`; cancelling it drops `fut`.
pub fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    pyo3_async_runtimes::generic::future_into_py::<FedRuntime, F, T>(py, fut)
}
