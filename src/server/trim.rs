//! Memory goes back to the system once a client that held a lot is gone.
//!
//! glibc's malloc keeps memory freed inside its arenas for reuse: a worker
//! that held hundreds of megabytes of replies for one slow client keeps them
//! resident after the client is closed, as long as a live allocation sits
//! above them (the next read buffer usually does). `malloc_trim(0)` hands
//! every free page of every arena back. It walks the arenas' free lists, so
//! it runs only after a session that held at least [`AFTER_BYTES`] ended,
//! and then a few times over the next seconds (replies still in flight for
//! the closed client are freed as they arrive), never more often.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A session that held at least this much output asks for a trim when it ends.
pub const AFTER_BYTES: usize = 8 << 20;

/// Pauses before each trim, counted from the last request: 0.2 s, 1 s, 3 s.
const DELAYS: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(800),
    Duration::from_millis(2000),
];

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Trim soon, and twice more over the next seconds (one task at a time in
/// the process; a request while it runs starts its schedule again). Must be
/// called on a tokio runtime.
pub fn release_soon() {
    if TRIM.get().is_none() {
        return;
    }
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    start();
}

fn start() {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        let mut seen = REQUESTS.load(Ordering::Relaxed);
        let mut step = 0;
        while let Some(&delay) = DELAYS.get(step) {
            tokio::time::sleep(delay).await;
            trim();
            let now = REQUESTS.load(Ordering::Relaxed);
            if now == seen {
                step += 1;
            } else {
                seen = now;
                step = 0;
            }
        }
        RUNNING.store(false, Ordering::Release);
        // A request between the last look and the store above.
        if REQUESTS.load(Ordering::Relaxed) != seen {
            start();
        }
    });
}

/// The allocator's trim, installed by the binary (the library forbids
/// `unsafe`; the call is glibc's `malloc_trim(0)`).
static TRIM: OnceLock<fn()> = OnceLock::new();

/// Install the function that returns free allocator memory to the system;
/// without one, [`release_soon`] does nothing.
pub fn install(trim: fn()) {
    let _ = TRIM.set(trim);
}

fn trim() {
    let Some(f) = TRIM.get() else {
        return;
    };
    let started = Instant::now();
    f();
    tracing::debug!(
        took_us = started.elapsed().as_micros() as u64,
        "freed memory returned to the system"
    );
}
