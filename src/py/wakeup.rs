//! Waking an asyncio loop from Rust without taking the GIL on the waking thread.
//!
//! Each event loop gets one `LoopWaker`: a queue of (future, outcome) and a socket pair whose read
//! end is registered once with `loop.add_reader`. A thread that ends a flow (a tokio worker on a
//! redirect or a timeout) queues the outcome and writes one byte; the loop wakes on its own thread,
//! where it already holds the GIL, and settles every queued future in one pass. Compared with a
//! notifier thread plus `call_soon_threadsafe`, this saves a thread hand-off and a GIL hand-off on
//! every login. Loops without `add_reader` (Windows' proactor) fall back to `notify.rs`.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::core::callback::registry::Outcome;
use crate::py::listener::PyAuthorization;

/// The per-loop queue and its wake-up socket pair.
pub struct LoopWaker {
    queue: Mutex<Vec<(Py<PyAny>, Outcome)>>,
    sockets: Mutex<Option<(UnixStream, UnixStream)>>,
    closed: AtomicBool,
}

impl LoopWaker {
    /// Queue `outcome` for `future` and wake the loop (callable from any thread, no GIL needed).
    pub fn push(&self, future: Py<PyAny>, outcome: Outcome) {
        if self.closed.load(Ordering::Acquire) {
            return; // the loop is gone: nobody waits for this future any more
        }
        let was_empty = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let was_empty = queue.is_empty();
            queue.push((future, outcome));
            was_empty
        };
        if was_empty {
            let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, tx)) = sockets.as_ref() {
                // WouldBlock means the socket is full of wake-ups already: the loop will drain.
                let _ = (&*tx).write(&[1]);
            }
        }
    }

    fn drain_socket(&self) {
        let sockets = self.sockets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((rx, _)) = sockets.as_ref() {
            let mut buf = [0u8; 256];
            loop {
                match (&*rx).read(&mut buf) {
                    Ok(n) if n == buf.len() => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
        }
    }
}

/// The loop's reader callback; also closes the waker when the loop is collected.
#[pyclass(frozen, module = "fedbearer._core", name = "_LoopWaker")]
pub struct PyLoopWaker {
    inner: Arc<LoopWaker>,
}

#[pymethods]
impl PyLoopWaker {
    /// Runs on the loop's thread: settle every queued future that is still waiting.
    fn __call__(&self, py: Python<'_>) {
        self.inner.drain_socket();
        let items = std::mem::take(
            &mut *self
                .inner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (future, outcome) in items {
            settle(py, future.bind(py), outcome);
        }
    }

    /// Called by `weakref.finalize` when the loop goes away: stop queueing, free the sockets.
    fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Set `future`'s result or exception from `outcome`, unless its waiter gave up already.
pub fn settle(py: Python<'_>, future: &Bound<'_, PyAny>, outcome: Outcome) {
    if future
        .call_method0("done")
        .and_then(|d| d.is_truthy())
        .unwrap_or(true)
    {
        return;
    }
    let result = match outcome {
        Ok(auth) => Bound::new(py, PyAuthorization::from(auth))
            .and_then(|obj| future.call_method1("set_result", (obj,))),
        Err(e) => future.call_method1("set_exception", (PyErr::from(e).into_value(py),)),
    };
    if let Err(e) = result {
        e.write_unraisable(py, Some(future));
    }
}

struct Entry {
    event_loop: Py<PyAny>, // a weakref to the loop
    waker: Arc<LoopWaker>,
}

static WAKERS: Mutex<Option<(u32, HashMap<usize, Entry>)>> = Mutex::new(None);
static WEAKREF: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static FINALIZE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn lookup(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Option<Arc<LoopWaker>> {
    let pid = std::process::id();
    let key = event_loop.as_ptr() as usize;
    let mut wakers = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    let (owner, map) = wakers.get_or_insert_with(|| (pid, HashMap::new()));
    if *owner != pid {
        // A forked child: the parent's loops and sockets are not ours.
        *owner = pid;
        map.clear();
    }
    let entry = map.get(&key)?;
    let alive = entry
        .event_loop
        .bind(py)
        .call0()
        .is_ok_and(|l| l.is(event_loop));
    if alive && !entry.waker.closed.load(Ordering::Acquire) {
        Some(Arc::clone(&entry.waker))
    } else {
        map.remove(&key);
        None
    }
}

/// The waker of `event_loop`, registering one with `add_reader` on first use; None when the loop
/// cannot watch file descriptors (then the caller falls back to the notifier thread).
pub fn waker_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> Option<Arc<LoopWaker>> {
    if let Some(waker) = lookup(py, event_loop) {
        return Some(waker);
    }
    let (rx, tx) = UnixStream::pair().ok()?;
    rx.set_nonblocking(true).ok()?;
    tx.set_nonblocking(true).ok()?;
    let fd = rx.as_raw_fd();
    let inner = Arc::new(LoopWaker {
        queue: Mutex::new(Vec::new()),
        sockets: Mutex::new(Some((rx, tx))),
        closed: AtomicBool::new(false),
    });
    let callback = Bound::new(
        py,
        PyLoopWaker {
            inner: Arc::clone(&inner),
        },
    )
    .ok()?;
    event_loop
        .call_method1("add_reader", (fd, &callback))
        .ok()?;
    let weak = WEAKREF
        .import(py, "weakref", "ref")
        .and_then(|r| r.call1((event_loop,)))
        .ok()?;
    // When the loop is collected, close the sockets (a closed loop's selector is gone already).
    let _ = FINALIZE
        .import(py, "weakref", "finalize")
        .and_then(|f| f.call1((event_loop, callback.getattr("close")?)));
    let mut wakers = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, map)) = wakers.as_mut() {
        // Forget loops that are gone, so the map stays as small as the set of live loops.
        map.retain(|_, e| !e.waker.closed.load(Ordering::Acquire));
        map.insert(
            event_loop.as_ptr() as usize,
            Entry {
                event_loop: weak.unbind(),
                waker: Arc::clone(&inner),
            },
        );
    }
    Some(inner)
}
