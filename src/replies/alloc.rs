//! [`Alloc`]: the session's handle while it allocates the slots of one
//! client read under the queue's lock.

use super::slot::{fill_slot, state_bytes, Inner, Parts, Slot, State};
use super::{After, Post, Redo};
use crate::config::OutputBufferLimit;
use crate::router::merge::Merge;
use bytes::Bytes;

/// Session-side handle while allocating a batch of slots under one lock.
pub struct Alloc<'a> {
    pub(super) inner: parking_lot::MutexGuard<'a, Inner>,
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
