//! The ordered reply queue of one client session: one slot per request, filled
//! in any order by whichever upstream connection answers, drained in request order.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::task::Waker;

/// What the session does once a slot's reply has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// Close the connection (QUIT).
    Close,
    /// EXEC of a transaction that queued `SELECT db`: the session's database
    /// changes only if the transaction ran (its reply is an array).
    ExecSelect(u32),
}

#[derive(Debug)]
struct Slot {
    reply: Option<Bytes>,
    after: After,
}

#[derive(Debug, Default)]
struct Inner {
    /// Sequence number of `slots[0]`.
    head: u64,
    slots: VecDeque<Slot>,
    waker: Option<Waker>,
}

/// Shared between the session (which allocates and drains) and upstream
/// connections (which fill). A reply can only ever land in the slot its
/// request allocated, so it cannot reach another client.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    inner: Mutex<Inner>,
}

/// Session-side handle while allocating a batch of slots under one lock.
pub struct Alloc<'a> {
    inner: parking_lot::MutexGuard<'a, Inner>,
}

impl Alloc<'_> {
    /// A slot whose reply comes later; returns its sequence number.
    #[inline]
    pub fn pending(&mut self) -> u64 {
        self.pending_then(After::Nothing)
    }

    /// A pending slot with something to do once its reply is written.
    #[inline]
    pub fn pending_then(&mut self, after: After) -> u64 {
        let seq = self.inner.head + self.inner.slots.len() as u64;
        self.inner.slots.push_back(Slot { reply: None, after });
        seq
    }

    /// A slot answered right away (local commands, immediate errors).
    #[inline]
    pub fn ready(&mut self, reply: Bytes, after: After) {
        self.inner.slots.push_back(Slot {
            reply: Some(reply),
            after,
        });
    }

    /// Fill a pending slot allocated in this same batch (a submit that failed).
    pub fn fill(&mut self, seq: u64, reply: Bytes) {
        let head = self.inner.head;
        if let Some(slot) = seq
            .checked_sub(head)
            .and_then(|i| self.inner.slots.get_mut(i as usize))
        {
            if slot.reply.is_none() {
                slot.reply = Some(reply);
            }
        }
    }

    /// Slots allocated and not yet drained.
    #[inline]
    pub fn len(&self) -> usize {
        self.inner.slots.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.inner.slots.is_empty()
    }
}

impl ReplyQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn alloc(&self) -> Alloc<'_> {
        Alloc {
            inner: self.inner.lock(),
        }
    }

    /// Fill slot `seq` and wake the session. A reply for a slot that no longer
    /// exists (the session reset its queue) is dropped.
    pub fn deliver(&self, seq: u64, reply: Bytes) {
        let waker = {
            let mut g = self.inner.lock();
            let Some(idx) = seq.checked_sub(g.head) else {
                return;
            };
            match g.slots.get_mut(idx as usize) {
                Some(slot) if slot.reply.is_none() => slot.reply = Some(reply),
                _ => return,
            }
            if idx != 0 {
                // Earlier replies are still missing: nothing to write yet.
                return;
            }
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Append an unsolicited frame (pub/sub message, push, monitor line) after
    /// everything already queued.
    pub fn push_stream(&self, frame: Bytes) {
        let waker = {
            let mut g = self.inner.lock();
            g.slots.push_back(Slot {
                reply: Some(frame),
                after: After::Nothing,
            });
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Move every ready reply at the front into `f`, in order. Returns how many
    /// slots remain and whether the connection must close. Registers `waker`
    /// when the front is still pending so the next delivery wakes the session.
    pub fn drain(&self, waker: &Waker, mut f: impl FnMut(Bytes, After)) -> (usize, bool) {
        let mut g = self.inner.lock();
        let mut close = false;
        while let Some(front) = g.slots.front_mut() {
            let Some(reply) = front.reply.take() else {
                break;
            };
            let after = front.after;
            g.slots.pop_front();
            g.head += 1;
            f(reply, after);
            if after == After::Close {
                close = true;
                break;
            }
        }
        // Registered even when empty: pub/sub frames arrive with no request.
        match &g.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => g.waker = Some(waker.clone()),
        }
        (g.slots.len(), close)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Register the waker without draining (used while waiting for replies only).
    pub fn register(&self, waker: &Waker) {
        let mut g = self.inner.lock();
        match &g.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => g.waker = Some(waker.clone()),
        }
    }

    /// True when the front slot has a reply waiting to be written.
    pub fn front_ready(&self) -> bool {
        self.inner
            .lock()
            .slots
            .front()
            .is_some_and(|s| s.reply.is_some())
    }
}
