//! Completing asyncio futures from Rust without a task per flow.
//!
//! A pending flow's waiter is a plain `asyncio.Future`. When the flow ends — on a tokio thread
//! (redirect, timeout), or on a Python thread (pasted URL, cancel) — its outcome is queued here;
//! one notifier thread per process takes the GIL once per batch and hands each outcome to the
//! future's own loop with `call_soon_threadsafe`. Per flow this costs a future and a queue slot,
//! instead of the two tokio tasks, done-callback and context copy of a general Rust-future bridge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;

use crate::core::callback::registry::Outcome;
use crate::py::listener::PyAuthorization;

/// One future to settle on its loop.
pub struct Settle {
    pub future: Py<PyAny>,
    pub event_loop: Py<PyAny>,
    pub outcome: Outcome,
}

static QUEUE: Mutex<Option<(u32, mpsc::Sender<Settle>)>> = Mutex::new(None);
/// Set at interpreter exit: a thread that takes the GIL while Python finalizes is killed with a
/// forced unwind, which must never cross Rust frames. After this, outcomes are dropped.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
/// True while the notifier holds (or waits for) the GIL.
static BUSY: AtomicBool = AtomicBool::new(false);
static SETTLE_FN: PyOnceLock<Py<PyCFunction>> = PyOnceLock::new();

/// Runs on the future's loop: set the outcome unless the waiter gave up (cancelled) already.
#[pyfunction]
#[pyo3(name = "_settle")]
fn settle(
    future: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    error: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    if error.is_none() {
        future.call_method1("set_result", (value,))?;
    } else {
        future.call_method1("set_exception", (error,))?;
    }
    Ok(())
}

fn deliver(py: Python<'_>, item: Settle) {
    let Ok(settle_fn) =
        SETTLE_FN.get_or_try_init(py, || wrap_pyfunction!(settle, py).map(Bound::unbind))
    else {
        return;
    };
    let (value, error) = match item.outcome {
        Ok(auth) => match Bound::new(py, PyAuthorization::from(auth)) {
            Ok(obj) => (obj.into_any().unbind(), py.None()),
            Err(e) => (py.None(), e.into_value(py).into_any()),
        },
        Err(e) => (py.None(), PyErr::from(e).into_value(py).into_any()),
    };
    // A closed loop raises RuntimeError: its waiters are gone, nothing to do.
    let _ = item.event_loop.bind(py).call_method1(
        "call_soon_threadsafe",
        (settle_fn.bind(py), item.future.bind(py), value, error),
    );
}

fn run(rx: mpsc::Receiver<Settle>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        BUSY.store(true, Ordering::SeqCst);
        if SHUTTING_DOWN.load(Ordering::SeqCst) {
            BUSY.store(false, Ordering::SeqCst);
            // Leak rather than decref without the GIL while the interpreter goes away.
            std::mem::forget(batch);
            continue;
        }
        Python::attach(|py| {
            for item in batch {
                deliver(py, item);
            }
        });
        BUSY.store(false, Ordering::SeqCst);
    }
}

/// Registered with `atexit`: stop touching Python, and wait (briefly, without the GIL) for a
/// batch in progress to finish.
#[pyfunction]
#[pyo3(name = "_shutdown_notifier")]
pub fn shutdown_notifier(py: Python<'_>) {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    py.detach(|| {
        let give_up = Instant::now() + Duration::from_secs(2);
        while BUSY.load(Ordering::SeqCst) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Queue `item` for the notifier thread of this process (started on first use, and anew in a
/// forked child, where the parent's thread does not exist).
pub fn push(item: Settle) {
    let pid = std::process::id();
    let mut slot = QUEUE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((owner, tx)) = slot.as_ref() {
        if *owner == pid {
            if let Err(mpsc::SendError(item)) = tx.send(item) {
                *slot = None;
                drop(slot);
                push(item);
            }
            return;
        }
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("fedbearer-notify".to_owned())
        .spawn(move || run(rx));
    if spawned.is_ok() {
        let _ = tx.send(item);
        *slot = Some((pid, tx));
    }
}
