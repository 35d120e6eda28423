//! A reply queue's slots and their bookkeeping under the queue's lock:
//! what each slot holds, the ready prefix, bytes held against the client's
//! output buffer limit.

use super::{After, Post, Redo, WHOLE};
use crate::config::OutputBufferLimit;
use crate::router::merge::Merge;
use bytes::Bytes;
use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

#[derive(Debug)]
pub(super) enum State {
    Pending,
    Ready(Bytes),
    Parts(Box<Parts>),
}

#[derive(Debug)]
pub(super) struct Parts {
    /// Each part's reply and request bytes (kept for redirects).
    pub(super) parts: Vec<(Option<Bytes>, Bytes)>,
    pub(super) remaining: usize,
    pub(super) merge: Merge,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) state: State,
    pub(super) after: After,
    pub(super) post: Option<Post>,
    pub(super) redo: Option<Redo>,
    /// The request's bytes when a redirect may have to resend it.
    pub(super) retry: Option<Bytes>,
    pub(super) redirects: u8,
    /// Sent on a shared connection: earlier replies of its read may wait for it.
    pub(super) hold: bool,
    /// The last slot of one client read.
    pub(super) end: bool,
    /// `CLIENT REPLY OFF`/`SKIP`: the reply is consumed but not written.
    pub(super) silent: bool,
}

impl Slot {
    pub(super) fn ready(&self) -> bool {
        match &self.state {
            State::Pending => false,
            State::Ready(_) => true,
            State::Parts(p) => p.remaining == 0,
        }
    }
}

/// Reply bytes a slot holds (request bytes kept for redirects are not output).
pub(super) fn state_bytes(state: &State) -> usize {
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
pub(super) struct Inner {
    /// Sequence number of `slots[0]`.
    pub(super) head: u64,
    pub(super) slots: VecDeque<Slot>,
    pub(super) waker: Option<Waker>,
    /// Every slot in `head..ready_to` is ready (advanced lazily; a front slot
    /// that becomes pending again resets it to `head`).
    pub(super) ready_to: u64,
    /// The last slot with `end` that the advance of `ready_to` passed; it
    /// counts only while in `head..ready_to`.
    pub(super) last_end: u64,
    /// Reply bytes held in `slots`.
    pub(super) held: usize,
    /// The most `held` ever was.
    pub(super) peak: usize,
    pub(super) limit: OutputBufferLimit,
    /// Since when the client is over its soft limit.
    pub(super) soft_since: Option<Instant>,
    /// Over its limit (the bytes it held then): nothing is kept any more.
    pub(super) over: Option<usize>,
    /// Cut off (over its limit, or the session ended): replies are dropped
    /// as they arrive.
    pub(super) shut: bool,
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
    pub(super) fn over_limit(&mut self, unwritten: usize) -> bool {
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
    pub(super) fn cut_off(&mut self) {
        self.head += self.slots.len() as u64;
        self.slots.clear();
        self.ready_to = self.head;
        self.held = 0;
        self.shut = true;
    }

    /// A reply or frame of `len` bytes was added: check the limit. True when
    /// that cut the client off (its session must be woken to close).
    pub(super) fn added(&mut self, len: usize, unwritten: usize) -> bool {
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
    pub(super) fn writable(&mut self) -> usize {
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
    pub(super) fn front_unready(&mut self) {
        self.ready_to = self.head;
    }
}

/// Store a reply; false when the slot or part already had one.
pub(super) fn fill_slot(slot: &mut Slot, part: u32, reply: Bytes) -> bool {
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
