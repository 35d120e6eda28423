//! Cluster: sharded pub/sub (`SSUBSCRIBE`) whose subscriptions follow their
//! channels' slots.
//!
//! A shard channel lives on the node serving its slot, so a session keeps one
//! passthrough connection per node it has shard channels on (the pinned one
//! for the first). When a slot moves, Redis drops the channel's subscribers
//! with an unsolicited `sunsubscribe`; the session hides that frame,
//! subscribes again on the slot's new owner and hides the confirmation, so the
//! client keeps receiving the channel's messages as if nothing had happened.
//! A `MOVED` answer to a subscription (a stale slot map) is followed the same way.

use super::{Flow, Req, Session};
use crate::cluster::{key_slot, parse_redirect, RedirectKind};
use crate::config::UpstreamConfig;
use crate::protocol::{encode, Value};
use crate::replies::Alloc;
use crate::upstream::conn::Conn;
use bytes::BytesMut;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(super) struct ShardSubs {
    /// Channels the client subscribed with SSUBSCRIBE and has not left.
    channels: HashSet<Vec<u8>>,
    /// Connections to nodes other than the pinned connection's.
    conns: HashMap<Arc<str>, Conn>,
    /// Channels to subscribe again: the node a `MOVED` named (if any), and
    /// whether the confirmation is hidden (the client did not ask).
    resubscribe: Vec<(Vec<u8>, Option<String>, bool)>,
    /// Subscriptions sent and not yet confirmed (a `MOVED` names its slot only).
    in_flight: Vec<Vec<u8>>,
    /// Confirmations of the session's own re-subscriptions, hidden from the client.
    hide: HashMap<Vec<u8>, u32>,
}

impl ShardSubs {
    /// Whether a frame from a shard connection is the session's business
    /// rather than the client's; true means it is not written.
    pub(super) fn intercept(&mut self, frame: &[u8], upstream: &UpstreamConfig) -> bool {
        if self.channels.is_empty() && self.in_flight.is_empty() {
            return false;
        }
        if frame.starts_with(b"-MOVED ") {
            let line = frame.strip_suffix(b"\r\n").unwrap_or(frame);
            let Some(r) = parse_redirect(&line[1..], &upstream.default_host()) else {
                return false;
            };
            if r.kind != RedirectKind::Moved {
                return false;
            }
            if !self.in_flight.iter().any(|c| key_slot(c) == r.slot) {
                return false;
            }
            // Every in-flight channel of that slot was refused at once.
            let mut moved = Vec::new();
            self.in_flight.retain(|c| {
                if key_slot(c) == r.slot {
                    moved.push(c.clone());
                    false
                } else {
                    true
                }
            });
            for c in moved {
                // The session's own subscription stays hidden; a client's
                // own SSUBSCRIBE gets its confirmation from the new node.
                let hidden = match self.hide.get_mut(&c) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        true
                    }
                    _ => false,
                };
                self.resubscribe.push((c, Some(r.addr.clone()), hidden));
            }
            return true;
        }
        if !matches!(frame.first(), Some(b'*' | b'>')) {
            return false;
        }
        let Ok(Value::Array(items)) = Value::decode_exact(frame) else {
            return false;
        };
        let [kind, channel, _count] = items.as_slice() else {
            return false;
        };
        let (Some(kind), Some(channel)) = (kind.as_bytes(), channel.as_bytes()) else {
            return false;
        };
        if kind.eq_ignore_ascii_case(b"ssubscribe") {
            if let Some(i) = self.in_flight.iter().position(|c| c == channel) {
                self.in_flight.swap_remove(i);
            }
            if let Some(n) = self.hide.get_mut(channel) {
                if *n > 0 {
                    *n -= 1;
                    if *n == 0 {
                        self.hide.remove(channel);
                    }
                    return true;
                }
            }
            return false;
        }
        if kind.eq_ignore_ascii_case(b"sunsubscribe") && self.channels.contains(channel) {
            // The client did not ask (its SUNSUBSCRIBE forgets the channel
            // first): the slot moved away from that node.
            self.resubscribe.push((channel.to_vec(), None, true));
            return true;
        }
        false
    }

    pub(super) fn has_work(&self) -> bool {
        !self.resubscribe.is_empty()
    }

    pub(super) fn close(&mut self) {
        for (_, c) in self.conns.drain() {
            c.close();
        }
    }
}

impl Session {
    /// `SSUBSCRIBE`/`SUNSUBSCRIBE` in cluster mode, once in pub/sub mode.
    pub(super) fn shard_command(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let subscribe = req.arg(0).eq_ignore_ascii_case(b"ssubscribe");
        let channels: Vec<Vec<u8>> = (1..req.argc()).map(|i| req.arg(i).to_vec()).collect();
        let shard = self.shard.get_or_insert_with(Default::default);
        if subscribe {
            if let Some(first) = channels.first() {
                let conn = self.shard_conn_for_slot(key_slot(first), None);
                if conn.is_refused() {
                    // upstream.max_pinned_connections are open.
                    return self.reply_error(alloc, crate::upstream::MAX_CLIENTS_REACHED);
                }
                let shard = self.shard.get_or_insert_with(Default::default);
                shard.channels.extend(channels.iter().cloned());
                shard.in_flight.extend(channels.iter().cloned());
                self.push(&conn, req.raw, None, alloc);
                return Flow::Next;
            }
        } else if channels.is_empty() {
            // Every shard channel, on every node that has some.
            shard.channels.clear();
            let conns: Vec<Conn> = shard.conns.values().cloned().collect();
            for c in conns {
                self.push(&c, req.raw, None, alloc);
            }
        } else {
            for c in &channels {
                shard.channels.remove(c);
            }
            // One SUNSUBSCRIBE per node holding some of the channels.
            let mut groups: Vec<(Conn, Vec<&[u8]>)> = Vec::new();
            for c in &channels {
                let conn = self.shard_conn_for_slot(key_slot(c), None);
                match groups.iter_mut().find(|g| g.0.same(&conn)) {
                    Some(g) => g.1.push(c),
                    None => groups.push((conn, vec![c])),
                }
            }
            for (conn, chans) in groups {
                let mut b = BytesMut::new();
                let mut parts: Vec<&[u8]> = vec![req.arg(0)];
                parts.extend(chans);
                encode::command(&mut b, &parts);
                self.push(&conn, &b, None, alloc);
            }
            return Flow::Next;
        }
        // No channel named: the pinned connection answers (or refuses) it.
        if let Some(p) = &self.pinned {
            let conn = p.conn.clone();
            self.push(&conn, req.raw, None, alloc);
        }
        Flow::Next
    }

    /// Subscribe again to channels whose slot moved (after a drain found some).
    pub(super) fn shard_resubscribe(&mut self) {
        let Some(shard) = self.shard.as_mut() else {
            return;
        };
        let work = std::mem::take(&mut shard.resubscribe);
        if work.is_empty() {
            return;
        }
        if let Some(t) = &self.cluster {
            t.request_refresh();
        }
        let queue = self.queue.clone();
        let mut alloc = queue.alloc();
        for (channel, addr, hidden) in work {
            let Some(shard) = self.shard.as_mut() else {
                break;
            };
            if hidden && !shard.channels.contains(&channel) {
                continue;
            }
            if hidden {
                *shard.hide.entry(channel.clone()).or_default() += 1;
            }
            shard.in_flight.push(channel.clone());
            let conn = self.shard_conn_for_slot(key_slot(&channel), addr.as_deref());
            let mut b = BytesMut::new();
            encode::command(&mut b, &[b"SSUBSCRIBE".as_slice(), &channel]);
            self.push(&conn, &b, None, &mut alloc);
        }
        self.flush(&mut alloc);
    }

    /// The passthrough connection to the node serving `slot` (or to `addr`).
    fn shard_conn_for_slot(&mut self, slot: u16, addr: Option<&str>) -> Conn {
        let owner: Option<Arc<str>> = match addr {
            Some(a) => Some(a.into()),
            None => self.cluster.as_ref().and_then(|t| {
                t.map()
                    .node_for(slot)
                    .map(|s| Arc::from(s.primary.as_str()))
            }),
        };
        let pinned = self.pinned.as_ref().map(|p| p.conn.clone());
        let Some(owner) = owner else {
            if let Some(p) = pinned {
                return p;
            }
            let addr = self.worker.node().addr().clone();
            return self
                .ctx
                .pinned
                .acquire(&addr, 0, self.st.proto, self.queue.clone());
        };
        if let Some(p) = pinned {
            if **p.addr() == *owner {
                return p;
            }
        }
        let shard = self.shard.get_or_insert_with(Default::default);
        if let Some(c) = shard.conns.get(&owner) {
            return c.clone();
        }
        let c = self
            .ctx
            .pinned
            .acquire(&owner, 0, self.st.proto, self.queue.clone());
        // A refused one answers this request only; the next one tries again.
        if !c.is_refused() {
            shard.conns.insert(owner, c.clone());
        }
        c
    }
}
