//! The ordered reply queue of one client session: one slot per request, filled
//! in any order by whichever upstream connection answers, drained in request order.
//!
//! A slot is either one reply, or the parts of a request split across cluster
//! nodes that are merged once all have arrived. A slot that remembers its
//! request's bytes can be sent again when the reply is a cluster redirect
//! (`MOVED`, `ASK`, `TRYAGAIN`): the drain hands the redirect to the session
//! instead of writing it. A slot with a [`Redo`] can have its reply produced
//! again by work the session runs off its task (a `TAGSET` whose function
//! library vanished); the drain stops there until that work delivers.
//!
//! Batch holding: the session marks the last slot of each client read
//! ([`Alloc::end_batch`]) and the slots sent on shared connections
//! ([`Alloc::hold`]). Replies of a read whose later requests are still out
//! on a shared connection are not written yet: the session is woken, and
//! writes, once the whole read is answered, as Redis writes the replies of
//! one read together. A pipeline split over three cluster nodes so costs one
//! `write` to the client instead of up to three. Only shared connections
//! hold (they answer within the command timeout): a blocking command or
//! anything else on a pinned connection never delays earlier replies.
//!
//! Output buffer limit: the queue counts the bytes of the replies it holds,
//! and the session reports its unwritten bytes ([`ReplyQueue::set_unwritten`]).
//! Each reply or frame added checks their sum against the client's
//! [`OutputBufferLimit`] (Redis's `client-output-buffer-limit` semantics: hard
//! at once, soft when exceeded for longer than its period). A client over its
//! limit is cut off: everything queued is dropped, later replies are dropped
//! as they arrive (the connection that carries them never waits), and the
//! session learns it from [`Drained::over_limit`] and closes.

mod alloc;
mod slot;
#[cfg(test)]
mod tests;

pub use alloc::Alloc;

use crate::cluster::redirect::{is_redirect, MAX_REDIRECTS};
use crate::config::OutputBufferLimit;
use crate::router::merge;
use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use slot::{fill_slot, state_bytes, Inner, Slot, State};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;

/// Part number of a reply that answers a whole slot.
pub const WHOLE: u32 = u32::MAX;
/// Sequence number whose reply is dropped (the `ASKING` before a retried request).
pub const DISCARD: u64 = u64::MAX;

/// What the session does once a slot's reply has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    /// Close the connection (QUIT).
    Close,
    /// EXEC of a transaction that queued `SELECT db`: the session's database
    /// changes only if the transaction ran (its reply is an array).
    ExecSelect(u32),
    /// A command queued inside `MULTI`: its reply may be Redis Cluster's
    /// `MOVED`/`ASK`, which the client sees as from Redis Cluster (anywhere
    /// else a redirect reaching the session is not given to the client).
    Queued,
}

/// Work on a reply in the session task, after any merge and before it is
/// written: restoring compressed values, counting hits and misses. Only
/// requests that need it carry one, so the plain data path pays nothing.
pub struct Post(Box<dyn FnOnce(Bytes) -> Bytes + Send>);

impl Post {
    pub fn new(f: impl FnOnce(Bytes) -> Bytes + Send + 'static) -> Post {
        Post(Box::new(f))
    }

    /// `self`, then `next` on its result.
    pub fn then(self, next: Post) -> Post {
        Post::new(move |b| (next.0)((self.0)(b)))
    }

    pub fn apply(self, reply: Bytes) -> Bytes {
        (self.0)(reply)
    }
}

impl std::fmt::Debug for Post {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Post")
    }
}

/// Work that produces a slot's reply again.
pub type RedoWork = Pin<Box<dyn Future<Output = Bytes> + Send>>;

/// A look at a slot's reply when it reaches the front of the queue, before
/// any [`Post`]: `None` keeps it; `Some(work)` makes the slot wait for the
/// reply `work` returns instead (see [`Drained::redo`]).
pub struct Redo(Box<RedoFn>);

type RedoFn = dyn FnOnce(&Bytes) -> Option<RedoWork> + Send;

impl Redo {
    pub fn new(f: impl FnOnce(&Bytes) -> Option<RedoWork> + Send + 'static) -> Redo {
        Redo(Box::new(f))
    }
}

impl std::fmt::Debug for Redo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redo")
    }
}

/// Shared between the session (which allocates and drains) and upstream
/// connections (which fill). A reply can only ever land in the slot its
/// request allocated, so it cannot reach another client.
#[derive(Debug, Default)]
pub struct ReplyQueue {
    inner: Mutex<Inner>,
    /// Bytes the session took out and has not written to its client yet.
    unwritten: AtomicUsize,
    /// An upstream node failed a request of this queue (see
    /// [`ReplyQueue::deliver_failure`]).
    upstream_failed: std::sync::atomic::AtomicBool,
}

/// A redirected request the session must send again.
#[derive(Debug)]
pub struct Redirected {
    pub seq: u64,
    pub part: u32,
    /// How many times this request was redirected before (for backoff).
    pub attempt: u8,
    pub request: Bytes,
    pub reply: Bytes,
}

/// A front slot whose reply a [`Redo`] replaced with work: the session runs
/// `work` and delivers its result to `seq` (the slot is pending again).
pub struct Redone {
    pub seq: u64,
    pub work: RedoWork,
}

impl std::fmt::Debug for Redone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redone").field("seq", &self.seq).finish()
    }
}

/// What a drain left behind.
#[derive(Debug)]
pub struct Drained {
    /// Slots still queued.
    pub remaining: usize,
    /// A QUIT reply was written: close after writing.
    pub close: bool,
    /// The front slot needs resending; the drain stopped there.
    pub redirect: Option<Redirected>,
    /// The front slot's reply is to be produced again; the drain stopped there.
    pub redo: Option<Redone>,
    /// The client went over its output buffer limit holding this many
    /// bytes: everything it had queued was dropped, it is to be closed.
    pub over_limit: Option<usize>,
}

/// A non-nil array: what EXEC answers when the transaction ran.
pub fn is_array(reply: &[u8]) -> bool {
    reply.first() == Some(&b'*') && reply.get(1) != Some(&b'-')
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

    /// The output buffer limit of the client's class from now on.
    pub fn set_limit(&self, limit: OutputBufferLimit) {
        let mut g = self.inner.lock();
        g.limit = limit;
        g.soft_since = None;
    }

    /// The session's unwritten bytes (its write buffer), counted with the
    /// replies held against the limit.
    #[inline]
    pub fn set_unwritten(&self, bytes: usize) {
        self.unwritten.store(bytes, Ordering::Relaxed);
    }

    /// The session ended: drop what is held and every reply still to come.
    pub fn shut(&self) {
        self.inner.lock().cut_off();
    }

    /// The most reply bytes the queue ever held at once.
    pub fn peak(&self) -> usize {
        self.inner.lock().peak
    }

    /// Whether the client was cut off for going over its limit.
    pub fn over_limit(&self) -> bool {
        self.inner.lock().over.is_some()
    }

    /// Fill slot `seq` (or one of its parts) and wake the session when the
    /// front became writable. A reply for a slot that no longer exists is dropped.
    /// [`ReplyQueue::deliver`] the error reply of a node that failed
    /// (unreachable, connection lost); the session learns that one did from
    /// [`ReplyQueue::take_upstream_failure`], not from the reply's text.
    pub fn deliver_failure(&self, seq: u64, part: u32, reply: Bytes) {
        self.note_upstream_failure();
        self.deliver(seq, part, reply);
    }

    /// A node this queue's session uses failed.
    pub fn note_upstream_failure(&self) {
        self.upstream_failed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a node failed a request of this queue since the last call.
    pub fn take_upstream_failure(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.upstream_failed.load(Relaxed) && self.upstream_failed.swap(false, Relaxed)
    }

    pub fn deliver(&self, seq: u64, part: u32, reply: Bytes) {
        if seq == DISCARD {
            return;
        }
        let waker = {
            let mut g = self.inner.lock();
            let Some(idx) = seq.checked_sub(g.head) else {
                return;
            };
            let Some(slot) = g.slots.get_mut(idx as usize) else {
                return;
            };
            let len = reply.len();
            if !fill_slot(slot, part, reply) {
                return;
            }
            let ready = slot.ready();
            let unwritten = self.unwritten.load(Ordering::Relaxed);
            // Cut off, the session is woken to close.
            if !g.added(len, unwritten) {
                if !ready {
                    // Other parts are still missing.
                    return;
                }
                if g.writable() == 0 {
                    // Earlier replies wait for the rest of their read.
                    return;
                }
            }
            g.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Append an unsolicited frame (pub/sub message, push, monitor line) after
    /// everything already queued. False when the queue is shut (the session
    /// ended or went over its limit): the frame was dropped, and so will be
    /// every later one.
    pub fn push_stream(&self, frame: Bytes) -> bool {
        self.push_frame(frame, After::Nothing)
    }

    /// Append a last frame after everything queued; the session closes the
    /// client connection once it is written.
    pub fn push_close(&self, frame: Bytes) {
        self.push_frame(frame, After::Close);
    }

    fn push_frame(&self, frame: Bytes, after: After) -> bool {
        let (waker, open) = {
            let mut g = self.inner.lock();
            if g.shut {
                return false;
            }
            // Over the limit the frame is dropped and the session woken to close.
            if !g.added(frame.len(), self.unwritten.load(Ordering::Relaxed)) {
                g.slots.push_back(Slot {
                    state: State::Ready(frame),
                    after,
                    post: None,
                    redo: None,
                    retry: None,
                    redirects: 0,
                    hold: false,
                    end: true,
                    silent: false,
                });
            }
            (g.waker.take(), !g.shut)
        };
        if let Some(w) = waker {
            w.wake();
        }
        open
    }

    /// Move every ready reply at the front into `f`, in order, merging split
    /// requests. Registers `waker` so the next delivery wakes the session.
    ///
    /// Merges and [`Post`]s (decompression, statistics) run with the lock
    /// released, after their slot is taken off the queue; `f` (appending to
    /// the session's write buffer) and a [`Redo`]'s look at a reply run
    /// under it.
    pub fn drain(&self, waker: &Waker, mut f: impl FnMut(Bytes, After)) -> Drained {
        let mut g = self.inner.lock();
        if let Some(bytes) = g.over {
            return Drained {
                remaining: 0,
                close: false,
                redirect: None,
                redo: None,
                over_limit: Some(bytes),
            };
        }
        let mut close = false;
        let mut redirect = None;
        let mut redo = None;
        let mut over_limit = None;
        // Bytes handed to `f` (unwritten now, not yet in `self.unwritten`).
        let mut out = 0;
        let mut n = g.writable();
        while n > 0 {
            n -= 1;
            let head = g.head;
            let Some(front) = g.slots.front_mut() else {
                break;
            };
            if !front.ready() {
                break;
            }
            let held = state_bytes(&front.state);
            if let Some(r) = take_redirect(front, head) {
                let left = state_bytes(&front.state);
                g.held -= held - left;
                redirect = Some(r);
                g.front_unready();
                break;
            }
            if let Some(check) = front.redo.take() {
                if let State::Ready(reply) = &front.state {
                    if let Some(work) = (check.0)(reply) {
                        front.state = State::Pending;
                        g.held -= held;
                        redo = Some(Redone { seq: head, work });
                        g.front_unready();
                        break;
                    }
                }
            }
            let after = front.after;
            let state = std::mem::replace(&mut front.state, State::Pending);
            let post = front.post.take();
            let silent = front.silent;
            g.slots.pop_front();
            g.head += 1;
            g.held -= held;
            let reply = match (state, post) {
                // The plain data path: no other work, the lock stays held.
                (State::Ready(reply), None) => reply,
                (state, post) => {
                    // A merge or a post (restoring compressed values,
                    // counting hits) runs with the lock released: the slot
                    // is off the queue, and connections delivering meanwhile
                    // do not wait for it.
                    let had_post = post.is_some();
                    let reply = MutexGuard::unlocked(&mut g, || {
                        let reply = match state {
                            State::Ready(b) => b,
                            State::Parts(p) => merge::merge(
                                p.merge,
                                p.parts
                                    .into_iter()
                                    .map(|(r, _)| r.unwrap_or_default())
                                    .collect(),
                            ),
                            // Not reached: the slot was ready.
                            State::Pending => Bytes::new(),
                        };
                        match post {
                            Some(p) => p.apply(reply),
                            None => reply,
                        }
                    });
                    if g.over.is_some() {
                        // A delivery meanwhile put the client over its limit.
                        over_limit = g.over;
                        break;
                    }
                    // A restored value can be much larger than what was held.
                    let unwritten = self.unwritten.load(Ordering::Relaxed) + out + reply.len();
                    if had_post && reply.len() > held && g.over_limit(unwritten) {
                        over_limit = Some(g.held + unwritten);
                        break;
                    }
                    reply
                }
            };
            let (reply, after) = if silent {
                let after = match after {
                    After::ExecSelect(_) if !is_array(&reply) => After::Nothing,
                    a => a,
                };
                (Bytes::new(), after)
            } else {
                (reply, after)
            };
            out += reply.len();
            f(reply, after);
            if after == After::Close {
                close = true;
                break;
            }
        }
        if over_limit.is_some() {
            g.over = over_limit;
            g.cut_off();
        }
        // Registered even when empty: pub/sub frames arrive with no request.
        match &g.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => g.waker = Some(waker.clone()),
        }
        Drained {
            remaining: g.slots.len(),
            close,
            redirect,
            redo,
            over_limit,
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when a drain would write something now, or report the client
    /// over its limit.
    pub fn writable(&self) -> bool {
        let mut g = self.inner.lock();
        g.over.is_some() || g.writable() > 0
    }
}

/// When the front slot's reply (or a part's) is a redirect that may still be
/// followed, make it pending again and return what to resend.
fn take_redirect(slot: &mut Slot, seq: u64) -> Option<Redirected> {
    if slot.redirects >= MAX_REDIRECTS {
        return None;
    }
    match &mut slot.state {
        State::Ready(reply) if slot.retry.is_some() && is_redirect(reply) => {
            let reply = reply.clone();
            let request = slot.retry.clone()?;
            slot.state = State::Pending;
            let attempt = slot.redirects;
            slot.redirects += 1;
            Some(Redirected {
                seq,
                part: WHOLE,
                attempt,
                request,
                reply,
            })
        }
        State::Parts(p) => {
            let i = p
                .parts
                .iter()
                .position(|(r, _)| r.as_deref().is_some_and(is_redirect))?;
            let (reply, request) = &mut p.parts[i];
            let reply = reply.take()?;
            p.remaining += 1;
            let attempt = slot.redirects;
            slot.redirects += 1;
            Some(Redirected {
                seq,
                part: i as u32,
                attempt,
                request: request.clone(),
                reply,
            })
        }
        _ => None,
    }
}
