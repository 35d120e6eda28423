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

use crate::config::OutputBufferLimit;
use crate::router::merge::{self, Merge};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Instant;

/// Part number of a reply that answers a whole slot.
pub const WHOLE: u32 = u32::MAX;
/// Sequence number whose reply is dropped (the `ASKING` before a retried request).
pub const DISCARD: u64 = u64::MAX;
/// Redirects followed for one request before its error is given to the client
/// (with the backoff of `CLUSTERDOWN`/`TRYAGAIN` retries, about 1.5 s in all).
const MAX_REDIRECTS: u8 = 6;

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

#[derive(Debug)]
enum State {
    Pending,
    Ready(Bytes),
    Parts(Box<Parts>),
}

#[derive(Debug)]
struct Parts {
    /// Each part's reply and request bytes (kept for redirects).
    parts: Vec<(Option<Bytes>, Bytes)>,
    remaining: usize,
    merge: Merge,
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

#[derive(Debug)]
struct Slot {
    state: State,
    after: After,
    post: Option<Post>,
    redo: Option<Redo>,
    /// The request's bytes when a redirect may have to resend it.
    retry: Option<Bytes>,
    redirects: u8,
    /// Sent on a shared connection: earlier replies of its read may wait for it.
    hold: bool,
    /// The last slot of one client read.
    end: bool,
    /// `CLIENT REPLY OFF`/`SKIP`: the reply is consumed but not written.
    silent: bool,
}

impl Slot {
    fn ready(&self) -> bool {
        match &self.state {
            State::Pending => false,
            State::Ready(_) => true,
            State::Parts(p) => p.remaining == 0,
        }
    }
}

/// Reply bytes a slot holds (request bytes kept for redirects are not output).
fn state_bytes(state: &State) -> usize {
    match state {
        State::Pending => 0,
        State::Ready(b) => b.len(),
        State::Parts(p) => p
            .parts
            .iter()
            .filter_map(|(r, _)| r.as_ref())
            .map(Bytes::len)
            .sum(),
    }
}

#[derive(Debug)]
struct Inner {
    /// Sequence number of `slots[0]`.
    head: u64,
    slots: VecDeque<Slot>,
    waker: Option<Waker>,
    /// Every slot in `head..ready_to` is ready (advanced lazily; a front slot
    /// that becomes pending again resets it to `head`).
    ready_to: u64,
    /// The last slot with `end` that the advance of `ready_to` passed; it
    /// counts only while in `head..ready_to`.
    last_end: u64,
    /// Reply bytes held in `slots`.
    held: usize,
    /// The most `held` ever was.
    peak: usize,
    limit: OutputBufferLimit,
    /// Since when the client is over its soft limit.
    soft_since: Option<Instant>,
    /// Over its limit (the bytes it held then): nothing is kept any more.
    over: Option<usize>,
    /// Cut off (over its limit, or the session ended): replies are dropped
    /// as they arrive.
    shut: bool,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            head: 0,
            slots: VecDeque::new(),
            waker: None,
            ready_to: 0,
            last_end: u64::MAX,
            held: 0,
            peak: 0,
            limit: OutputBufferLimit::default(),
            soft_since: None,
            over: None,
            shut: false,
        }
    }
}

impl Inner {
    /// Whether `unwritten` plus the bytes held break the limit, as Redis's
    /// `checkClientOutputBufferLimits`: the hard limit at once, the soft one
    /// once it has been exceeded without a break for longer than its period
    /// (which starts at the first addition found over it).
    fn over_limit(&mut self, unwritten: usize) -> bool {
        let l = self.limit;
        if l.is_off() {
            return false;
        }
        let used = self.held + unwritten;
        let hard = l.hard_bytes != 0 && used >= l.hard_bytes;
        let soft = l.soft_bytes != 0 && used >= l.soft_bytes;
        if !soft {
            self.soft_since = None;
            return hard;
        }
        let now = Instant::now();
        let since = *self.soft_since.get_or_insert(now);
        hard || now.duration_since(since) > l.soft_period
    }

    /// Drop everything held; later replies are dropped on arrival.
    fn cut_off(&mut self) {
        self.head += self.slots.len() as u64;
        self.slots.clear();
        self.ready_to = self.head;
        self.held = 0;
        self.shut = true;
    }

    /// A reply or frame of `len` bytes was added: check the limit. True when
    /// that cut the client off (its session must be woken to close).
    fn added(&mut self, len: usize, unwritten: usize) -> bool {
        self.held += len;
        self.peak = self.peak.max(self.held);
        if self.limit.is_off() || !self.over_limit(unwritten) {
            return false;
        }
        self.over = Some(self.held + unwritten);
        self.cut_off();
        true
    }

    /// How many front slots a drain may take now: the ready prefix, cut back
    /// to its last complete read when the first slot not ready is held for.
    fn writable(&mut self) -> usize {
        let head = self.head;
        self.ready_to = self.ready_to.max(head);
        while let Some(s) = self.slots.get((self.ready_to - head) as usize) {
            if !s.ready() {
                break;
            }
            if s.end {
                self.last_end = self.ready_to;
            }
            self.ready_to += 1;
        }
        let ready = (self.ready_to - head) as usize;
        match self.slots.get(ready) {
            Some(next) if next.hold && ready > 0 => {
                if (head..self.ready_to).contains(&self.last_end) {
                    (self.last_end - head) as usize + 1
                } else {
                    0
                }
            }
            _ => ready,
        }
    }

    /// The front slot is pending again (redirect, redo).
    fn front_unready(&mut self) {
        self.ready_to = self.head;
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

/// Session-side handle while allocating a batch of slots under one lock.
pub struct Alloc<'a> {
    inner: parking_lot::MutexGuard<'a, Inner>,
}

impl Alloc<'_> {
    fn push(&mut self, state: State, after: After, retry: Option<Bytes>) -> u64 {
        let seq = self.inner.head + self.inner.slots.len() as u64;
        self.inner.held += state_bytes(&state);
        self.inner.slots.push_back(Slot {
            state,
            after,
            post: None,
            redo: None,
            retry,
            redirects: 0,
            hold: false,
            end: false,
            silent: false,
        });
        seq
    }

    /// Slot `seq`'s request went to a shared connection (see the module docs).
    #[inline]
    pub fn hold(&mut self, seq: u64) {
        let head = self.inner.head;
        if let Some(slot) = seq
            .checked_sub(head)
            .and_then(|i| self.inner.slots.get_mut(i as usize))
        {
            slot.hold = true;
        }
    }

    /// The slots allocated so far end one client read.
    #[inline]
    pub fn end_batch(&mut self) {
        if let Some(slot) = self.inner.slots.back_mut() {
            slot.end = true;
        }
    }

    /// A slot whose reply comes later; returns its sequence number.
    #[inline]
    pub fn pending(&mut self) -> u64 {
        self.push(State::Pending, After::Nothing, None)
    }

    /// A pending slot with something to do once its reply is written.
    #[inline]
    pub fn pending_then(&mut self, after: After) -> u64 {
        self.push(State::Pending, after, None)
    }

    /// A pending slot whose request is resent when redirected.
    #[inline]
    pub fn pending_retry(&mut self, request: Bytes) -> u64 {
        self.push(State::Pending, After::Nothing, Some(request))
    }

    /// A slot answered by `requests.len()` parts, merged with `merge`.
    pub fn pending_parts(&mut self, requests: Vec<Bytes>, merge: Merge) -> u64 {
        let remaining = requests.len();
        let parts = requests.into_iter().map(|r| (None, r)).collect();
        self.push(
            State::Parts(Box::new(Parts {
                parts,
                remaining,
                merge,
            })),
            After::Nothing,
            None,
        )
    }

    /// A slot answered right away (local commands, immediate errors).
    #[inline]
    pub fn ready(&mut self, reply: Bytes, after: After) {
        self.push(State::Ready(reply), after, None);
    }

    /// Run `post` on slot `seq`'s reply before it is written (after any post
    /// already set). Does nothing for a slot already drained.
    pub fn add_post(&mut self, seq: u64, post: Post) {
        let head = self.inner.head;
        if let Some(slot) = seq
            .checked_sub(head)
            .and_then(|i| self.inner.slots.get_mut(i as usize))
        {
            slot.post = Some(match slot.post.take() {
                Some(p) => p.then(post),
                None => post,
            });
        }
    }

    /// Give slot `seq`'s reply to `redo` when it reaches the front (a slot
    /// answered whole only). Does nothing for a slot already drained.
    pub fn add_redo(&mut self, seq: u64, redo: Redo) {
        let head = self.inner.head;
        if let Some(slot) = seq
            .checked_sub(head)
            .and_then(|i| self.inner.slots.get_mut(i as usize))
        {
            slot.redo = Some(redo);
        }
    }

    /// The client's output buffer limit from now on (its class changed).
    pub fn set_limit(&mut self, limit: OutputBufferLimit) {
        self.inner.limit = limit;
        self.inner.soft_since = None;
    }

    /// The slots from `seq` on (those one request took) are answered but
    /// their replies are not written (`CLIENT REPLY OFF` and `SKIP`): the
    /// drain hands an empty reply instead, with `After::ExecSelect` kept
    /// only when the reply was a transaction's array.
    pub fn silence_from(&mut self, seq: u64) {
        let head = self.inner.head;
        let from = seq.saturating_sub(head) as usize;
        for slot in self.inner.slots.iter_mut().skip(from) {
            slot.silent = true;
        }
    }

    /// Sequence number the next slot allocated will have.
    #[inline]
    pub fn next_seq(&self) -> u64 {
        self.inner.head + self.inner.slots.len() as u64
    }

    /// Sequence number of the slot allocated last.
    pub fn last_seq(&self) -> Option<u64> {
        (self.inner.head + self.inner.slots.len() as u64).checked_sub(1)
    }

    /// Fill a pending slot (or part) allocated in this same batch (a submit that failed).
    pub fn fill(&mut self, seq: u64, part: u32, reply: Bytes) {
        let head = self.inner.head;
        if let Some(slot) = seq
            .checked_sub(head)
            .and_then(|i| self.inner.slots.get_mut(i as usize))
        {
            let len = reply.len();
            if fill_slot(slot, part, reply) {
                self.inner.held += len;
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

/// Store a reply; false when the slot or part already had one.
fn fill_slot(slot: &mut Slot, part: u32, reply: Bytes) -> bool {
    match (&mut slot.state, part) {
        (State::Pending, WHOLE) => {
            slot.state = State::Ready(reply);
            true
        }
        (State::Parts(p), i) if i != WHOLE => match p.parts.get_mut(i as usize) {
            Some(entry) if entry.0.is_none() => {
                entry.0 = Some(reply);
                p.remaining -= 1;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// A non-nil array: what EXEC answers when the transaction ran.
pub fn is_array(reply: &[u8]) -> bool {
    reply.first() == Some(&b'*') && reply.get(1) != Some(&b'-')
}

fn is_redirect(reply: &[u8]) -> bool {
    reply.starts_with(b"-MOVED ")
        || reply.starts_with(b"-ASK ")
        || reply.starts_with(b"-TRYAGAIN")
        || reply.starts_with(b"-CLUSTERDOWN")
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
            let reply = match std::mem::replace(&mut front.state, State::Pending) {
                State::Ready(b) => b,
                State::Parts(p) => merge::merge(
                    p.merge,
                    p.parts
                        .into_iter()
                        .map(|(r, _)| r.unwrap_or_default())
                        .collect(),
                ),
                State::Pending => break,
            };
            let post = front.post.take();
            let silent = front.silent;
            g.slots.pop_front();
            g.head += 1;
            g.held -= held;
            let reply = match post {
                Some(p) => {
                    let reply = p.apply(reply);
                    // A restored value can be much larger than what was held.
                    let unwritten = self.unwritten.load(Ordering::Relaxed) + out + reply.len();
                    if reply.len() > held && g.over_limit(unwritten) {
                        over_limit = Some(g.held + unwritten);
                        break;
                    }
                    reply
                }
                None => reply,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(q: &ReplyQueue) -> (Vec<Bytes>, Drained) {
        let mut out = Vec::new();
        let d = q.drain(std::task::Waker::noop(), |b, _| out.push(b));
        (out, d)
    }

    #[test]
    fn redo_holds_the_slot_and_later_replies_until_its_work_delivers() {
        let q = ReplyQueue::new();
        let (first, redone, last) = {
            let mut a = q.alloc();
            let first = a.pending();
            let redone = a.pending();
            a.add_redo(
                redone,
                Redo::new(|reply| {
                    (&reply[..] == b"-ERR again\r\n")
                        .then(|| -> RedoWork { Box::pin(async { Bytes::from_static(b"+OK\r\n") }) })
                }),
            );
            a.add_post(redone, Post::new(|b| b));
            (first, redone, a.pending())
        };
        q.deliver(last, WHOLE, Bytes::from_static(b":3\r\n"));
        q.deliver(redone, WHOLE, Bytes::from_static(b"-ERR again\r\n"));
        q.deliver(first, WHOLE, Bytes::from_static(b":1\r\n"));
        let (out, d) = drain_all(&q);
        assert_eq!(out, [Bytes::from_static(b":1\r\n")]);
        let r = d.redo.expect("redo asked for");
        assert_eq!((r.seq, d.remaining), (redone, 2));
        // Pending again: nothing more is written until the work delivers.
        let (out, d) = drain_all(&q);
        assert!(out.is_empty() && d.redo.is_none());
        let reply = block_on(r.work);
        q.deliver(r.seq, WHOLE, reply);
        let (out, d) = drain_all(&q);
        assert_eq!(
            out,
            [
                Bytes::from_static(b"+OK\r\n"),
                Bytes::from_static(b":3\r\n")
            ]
        );
        assert!(d.redo.is_none() && d.remaining == 0);
    }

    #[test]
    fn redo_that_keeps_the_reply_changes_nothing() {
        let q = ReplyQueue::new();
        let seq = {
            let mut a = q.alloc();
            let seq = a.pending();
            a.add_redo(seq, Redo::new(|_| None));
            seq
        };
        q.deliver(seq, WHOLE, Bytes::from_static(b"+OK\r\n"));
        let (out, d) = drain_all(&q);
        assert_eq!(out, [Bytes::from_static(b"+OK\r\n")]);
        assert!(d.redo.is_none() && d.remaining == 0);
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    /// Two reads of two requests each, all on shared connections.
    fn two_held_reads(q: &ReplyQueue) -> [u64; 4] {
        let mut a = q.alloc();
        let mut seqs = [0; 4];
        for (i, s) in seqs.iter_mut().enumerate() {
            *s = a.pending();
            a.hold(*s);
            if i % 2 == 1 {
                a.end_batch();
            }
        }
        seqs
    }

    #[test]
    fn replies_of_a_read_wait_for_its_held_requests() {
        let q = ReplyQueue::new();
        let [s0, s1, s2, s3] = two_held_reads(&q);
        q.deliver(s0, WHOLE, b(":0\r\n"));
        assert!(!q.writable(), "the read's second reply is still out");
        let (out, d) = drain_all(&q);
        assert!(out.is_empty() && d.remaining == 4);
        q.deliver(s2, WHOLE, b(":2\r\n"));
        assert!(!q.writable());
        q.deliver(s1, WHOLE, b(":1\r\n"));
        assert!(q.writable());
        // The first read is written whole; the second waits for s3.
        let (out, d) = drain_all(&q);
        assert_eq!(out, [b(":0\r\n"), b(":1\r\n")]);
        assert_eq!(d.remaining, 2);
        assert!(!q.writable());
        q.deliver(s3, WHOLE, b(":3\r\n"));
        let (out, d) = drain_all(&q);
        assert_eq!(out, [b(":2\r\n"), b(":3\r\n")]);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn requests_not_held_never_delay_earlier_replies() {
        let q = ReplyQueue::new();
        let (first, blocking) = {
            let mut a = q.alloc();
            let first = a.pending();
            a.hold(first);
            // A blocking command on a pinned connection: no hold.
            let blocking = a.pending();
            a.end_batch();
            (first, blocking)
        };
        q.deliver(first, WHOLE, b(":1\r\n"));
        assert!(q.writable());
        let (out, d) = drain_all(&q);
        assert_eq!(out, [b(":1\r\n")]);
        assert_eq!(d.remaining, 1);
        q.deliver(blocking, WHOLE, b("*-1\r\n"));
        assert_eq!(drain_all(&q).0, [b("*-1\r\n")]);
    }

    #[test]
    fn a_read_not_yet_ended_is_written_once_all_of_it_is_ready() {
        let q = ReplyQueue::new();
        let (s0, s1) = {
            let mut a = q.alloc();
            let s0 = a.pending();
            a.hold(s0);
            let s1 = a.pending();
            a.hold(s1);
            (s0, s1)
        };
        q.deliver(s1, WHOLE, b(":1\r\n"));
        assert!(!q.writable(), "the front is not ready");
        q.deliver(s0, WHOLE, b(":0\r\n"));
        assert!(q.writable(), "everything queued is ready");
        assert_eq!(drain_all(&q).0, [b(":0\r\n"), b(":1\r\n")]);
    }

    #[test]
    fn a_redirect_at_the_front_resets_the_ready_prefix() {
        let q = ReplyQueue::new();
        let [s0, s1, s2, s3] = {
            let mut a = q.alloc();
            let s0 = a.pending_retry(b("*2\r\n$3\r\nGET\r\n$1\r\na\r\n"));
            a.hold(s0);
            let s1 = a.pending();
            a.hold(s1);
            a.end_batch();
            let s2 = a.pending();
            a.hold(s2);
            let s3 = a.pending();
            a.hold(s3);
            a.end_batch();
            [s0, s1, s2, s3]
        };
        q.deliver(s0, WHOLE, b("-MOVED 1 127.0.0.1:1\r\n"));
        q.deliver(s1, WHOLE, b(":1\r\n"));
        q.deliver(s2, WHOLE, b(":2\r\n"));
        let (out, d) = drain_all(&q);
        assert!(out.is_empty());
        let r = d.redirect.expect("the MOVED is handed over");
        assert_eq!(r.seq, s0);
        assert!(!q.writable(), "the redirected request is pending again");
        q.deliver(s0, WHOLE, b(":0\r\n"));
        let (out, d) = drain_all(&q);
        assert_eq!(out, [b(":0\r\n"), b(":1\r\n")]);
        assert_eq!(d.remaining, 2);
        q.deliver(s3, WHOLE, b(":3\r\n"));
        assert_eq!(drain_all(&q).0, [b(":2\r\n"), b(":3\r\n")]);
    }

    fn limit(hard: usize, soft: usize, soft_ms: u64) -> OutputBufferLimit {
        OutputBufferLimit {
            hard_bytes: hard,
            soft_bytes: soft,
            soft_period: std::time::Duration::from_millis(soft_ms),
        }
    }

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    fn held(q: &ReplyQueue) -> usize {
        q.inner.lock().held
    }

    #[test]
    fn over_the_hard_limit_everything_is_dropped_and_the_drain_says_so() {
        let q = ReplyQueue::new();
        q.set_limit(limit(100, 0, 0));
        let seqs: Vec<u64> = {
            let mut a = q.alloc();
            (0..3).map(|_| a.pending()).collect()
        };
        q.deliver(seqs[1], WHOLE, bytes(60));
        assert!(!q.over_limit());
        assert_eq!(held(&q), 60);
        q.deliver(seqs[0], WHOLE, bytes(40));
        assert!(q.over_limit(), "100 bytes held reach the hard limit");
        assert!(q.writable(), "a drain has news for the session");
        assert_eq!((held(&q), q.len()), (0, 0), "nothing is kept");
        q.deliver(seqs[2], WHOLE, bytes(10));
        q.push_stream(bytes(10));
        assert_eq!((held(&q), q.len()), (0, 0), "later replies are dropped");
        let (out, d) = drain_all(&q);
        assert!(out.is_empty());
        assert_eq!(d.over_limit, Some(100));
    }

    #[test]
    fn unwritten_bytes_count_against_the_limit() {
        let q = ReplyQueue::new();
        q.set_limit(limit(100, 0, 0));
        q.push_stream(bytes(50));
        assert_eq!(drain_all(&q).0.len(), 1);
        assert_eq!(held(&q), 0);
        q.set_unwritten(50);
        q.push_stream(bytes(49));
        assert!(!q.over_limit());
        q.push_stream(bytes(1));
        assert_eq!(drain_all(&q).1.over_limit, Some(100));
    }

    #[test]
    fn the_soft_limit_closes_only_when_exceeded_for_longer_than_its_period() {
        let q = ReplyQueue::new();
        q.set_limit(limit(0, 50, 30));
        q.push_stream(bytes(60));
        q.push_stream(bytes(1));
        assert!(!q.over_limit(), "the soft period just started");
        // Back under the soft limit: the period starts again next time.
        assert_eq!(drain_all(&q).0.len(), 2);
        q.push_stream(bytes(1));
        std::thread::sleep(std::time::Duration::from_millis(40));
        q.push_stream(bytes(60));
        assert!(!q.over_limit(), "over the soft limit again only now");
        std::thread::sleep(std::time::Duration::from_millis(40));
        q.push_stream(bytes(1));
        assert!(q.over_limit(), "over the soft limit for longer than 30 ms");
    }

    #[test]
    fn no_limit_keeps_everything() {
        let q = ReplyQueue::new();
        q.set_unwritten(usize::MAX / 4);
        for _ in 0..10 {
            q.push_stream(bytes(1000));
        }
        assert_eq!((held(&q), q.over_limit()), (10_000, false));
    }

    #[test]
    fn held_bytes_follow_parts_redirects_and_drains() {
        let q = ReplyQueue::new();
        let (whole, split, moved) = {
            let mut a = q.alloc();
            let whole = a.pending();
            let split = a.pending_parts(vec![b("r0"), b("r1")], Merge::SumInt);
            let moved = a.pending_retry(b("*1\r\n$4\r\nPING\r\n"));
            (whole, split, moved)
        };
        q.deliver(split, 0, b(":1\r\n"));
        q.deliver(split, 1, b(":2\r\n"));
        q.deliver(moved, WHOLE, b("-MOVED 1 127.0.0.1:1\r\n"));
        assert_eq!(held(&q), 8 + 22);
        q.deliver(whole, WHOLE, b("+OK\r\n"));
        let (out, d) = drain_all(&q);
        assert_eq!(out, [b("+OK\r\n"), b(":3\r\n")]);
        assert!(d.redirect.is_some());
        assert_eq!(held(&q), 0, "the redirect is pending again");
        q.deliver(moved, WHOLE, b("+PONG\r\n"));
        assert_eq!(held(&q), 7);
        drain_all(&q);
        assert_eq!(held(&q), 0);
    }

    #[test]
    fn a_restored_value_over_the_limit_cuts_the_client_off() {
        let q = ReplyQueue::new();
        q.set_limit(limit(1000, 0, 0));
        let (small, big) = {
            let mut a = q.alloc();
            let small = a.pending();
            let big = a.pending();
            a.add_post(big, Post::new(|_| bytes(5000)));
            (small, big)
        };
        q.deliver(small, WHOLE, bytes(10));
        q.deliver(big, WHOLE, bytes(10));
        let (out, d) = drain_all(&q);
        assert_eq!(out.len(), 1, "the reply before it is written");
        assert_eq!(d.over_limit, Some(5010));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn a_shut_queue_keeps_nothing() {
        let q = ReplyQueue::new();
        let seq = q.alloc().pending();
        q.push_stream(bytes(10));
        q.shut();
        q.deliver(seq, WHOLE, bytes(10));
        q.push_stream(bytes(10));
        assert_eq!((held(&q), q.len(), q.over_limit()), (0, 0, false));
    }

    /// Runs a future that needs no reactor to completion.
    fn block_on(f: RedoWork) -> Bytes {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }
}
