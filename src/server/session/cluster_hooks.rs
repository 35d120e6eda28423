//! Cluster mode: no `MOVED`/`ASK` reaches a client outside `MULTI`.
//!
//! A redirect reaches the session when a request went to a node that no
//! longer (or never) served its slot. The session follows it for every
//! request it keeps for a retry ([`Session::pinned_slot`] makes that true of
//! requests on a pinned connection outside a transaction too: a `WATCH`ing
//! client's reads and writes, a blocking command). Three states used to let
//! one through to the client, each closed here:
//!
//! - a command of a client in pub/sub or tracking mode went to the pinned
//!   connection, on whatever node the subscription was made: a RESP3 client
//!   (or a RESP2 one no longer subscribed) now has it routed by its slot
//!   ([`Session::passthrough_cluster`]); a RESP2 client in pub/sub mode gets
//!   Redis's own refusal (Redis checks the cluster redirect first, so the
//!   node would have said `MOVED`);
//! - a command sent on a pinned connection outside a transaction (a `WATCH`
//!   was open) was not kept for a retry;
//! - a redirect respite could not follow (no node known, the slot kept
//!   moving) was written as it was: it becomes a `TRYAGAIN` error
//!   ([`no_redirect`]), logged as a warning, which the test harness turns
//!   into a failed test.
//!
//! Replies to commands queued inside `MULTI` carry [`After::Queued`]: there
//! a `MOVED` is Redis Cluster's own answer and the client sees it.

use super::{split_request, Flow, Pinned, Req, Session};
use crate::cluster::redirect::{is_redirect_reply, unfollowed};
use crate::command::{self, Kind};
use crate::protocol::Proto;
use crate::replies::{After, Alloc, Redirected, WHOLE};
use crate::upstream::conn::Conn;
use bytes::Bytes;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// A reply about to be written to a client, outside a transaction: a
/// redirect there is a bug of respite's routing, reported and replaced.
#[cold]
pub(super) fn no_redirect(reply: Bytes, client: u64) -> Bytes {
    if !is_redirect_reply(&reply) {
        return reply;
    }
    let line = String::from_utf8_lossy(&reply[..reply.len().min(200)]);
    tracing::warn!(
        client,
        redirect = %line.trim_end(),
        "A cluster redirect was about to reach a client outside MULTI; it gets TRYAGAIN instead"
    );
    unfollowed(&reply)
}

impl Session {
    /// Cluster mode: a `SUBSCRIBE`, `PSUBSCRIBE`, `UNSUBSCRIBE` or
    /// `PUNSUBSCRIBE` just sent on the pinned connection. Keyspace and
    /// keyevent subscriptions are followed on every other primary
    /// (`cluster::pubsub`).
    pub(super) fn keyspace_follow(&mut self, req: &Req) {
        use crate::cluster::pubsub::{is_keyspace, Connect, Keyspace};
        let Some(topo) = self.cluster.clone() else {
            return;
        };
        let name = req.arg(0);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let (subscribe, pattern) = if is("subscribe") {
            (true, false)
        } else if is("psubscribe") {
            (true, true)
        } else if is("unsubscribe") {
            (false, false)
        } else if is("punsubscribe") {
            (false, true)
        } else {
            return;
        };
        let args: Vec<&[u8]> = (1..req.argc()).map(|i| req.arg(i)).collect();
        if !subscribe {
            if let Some(k) = &self.keyspace {
                k.unsubscribe(pattern, &args);
            }
            return;
        }
        if !args.iter().any(|a| is_keyspace(a, pattern)) {
            return;
        }
        if self.keyspace.is_none() {
            let Some(home) = self.pinned.as_ref().map(|p| p.conn.addr().clone()) else {
                return;
            };
            let ctx = self.ctx.clone();
            let proto = self.st.proto;
            let connect: Connect =
                Box::new(move |addr, queue| ctx.pinned.acquire(addr, 0, proto, queue));
            self.keyspace = Some(Keyspace::start(topo, home, self.queue.clone(), connect));
        }
        if let Some(k) = &self.keyspace {
            k.subscribe(pattern, &args);
        }
    }

    /// `SCRIPT KILL`, `FUNCTION KILL` in cluster mode: on every primary's
    /// control connection (out of band, as in standalone mode), the replies
    /// merged; later requests wait for it.
    pub(super) fn out_of_band_all(
        &mut self,
        raw: &[u8],
        primaries: &[String],
        merge: crate::router::merge::Merge,
        alloc: &mut Alloc,
    ) -> Flow {
        let controls: Vec<_> = primaries
            .iter()
            .map(|a| crate::upstream::control::of(&self.ctx.config, a))
            .collect();
        let request = Bytes::copy_from_slice(raw);
        let queue = self.queue.clone();
        let seq = alloc.pending();
        tokio::spawn(async move {
            let replies = crate::cluster::fanout::call_all(controls, request).await;
            queue.deliver(seq, WHOLE, crate::router::merge::merge(merge, replies));
        });
        Flow::WaitAfter
    }

    /// The reply slot of a request sent on the pinned connection: inside a
    /// transaction marked [`After::Queued`]; in cluster mode outside one,
    /// kept for a retry when the request may have a key.
    pub(super) fn pinned_slot(&mut self, req: &Req, alloc: &mut Alloc) -> u64 {
        if self.pinned.as_ref().is_some_and(|p| p.in_multi) {
            return alloc.pending_then(After::Queued);
        }
        if self.cluster.is_some()
            && matches!(
                req.cmd.kind,
                Kind::Forward | Kind::Blocking | Kind::BlockingIfArg(_)
            )
        {
            let request = self.arena_copy(req.raw);
            return alloc.pending_retry(request);
        }
        alloc.pending()
    }

    /// A redirected request goes to `conn` (a shared connection of the new
    /// node), unless it blocks: then to a pinned connection of that node of
    /// its own, given back once every reply is in.
    pub(super) fn redirect_conn(&mut self, r: &Redirected, conn: Conn) -> Conn {
        let blocking = split_request(&r.request).is_some_and(|args| {
            let Some(name) = args.first() else {
                return false;
            };
            match command::classify(name).kind {
                Kind::Blocking => true,
                Kind::BlockingIfArg(word) => args[1..]
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(word.as_bytes())),
                _ => false,
            }
        });
        if !blocking {
            return conn;
        }
        let (db, proto) = (self.st.db, self.st.proto);
        let c = self
            .ctx
            .pinned
            .acquire(conn.addr(), db, proto, self.queue.clone());
        if !c.is_refused() {
            self.retired.push(Pinned {
                conn: c.clone(),
                db,
                proto,
                in_multi: false,
                watching: false,
                queued_db: None,
                passthrough: false,
            });
        }
        c
    }

    /// Cluster mode, a client in pub/sub, tracking or MONITOR mode: an
    /// ordinary command (`Kind::Forward`) is routed by its slot rather than
    /// sent on the pinned connection (`None`: the caller sends it there).
    /// RESP3: the frames of earlier requests on the pinned connection are
    /// queued first (a `PING` whose reply is dropped, then a barrier).
    pub(super) fn passthrough_cluster(&mut self, req: &Req, alloc: &mut Alloc) -> Option<Flow> {
        if req.cmd.kind != Kind::Forward {
            return None;
        }
        if self.st.proto == Proto::Resp2 && self.st.meta.activity.is_pubsub() {
            let name = self
                .cluster
                .as_ref()
                .and_then(|t| {
                    let args: Vec<&[u8]> = (0..req.argc()).map(|i| req.arg(i)).collect();
                    t.keys().resolve(&args).ok().map(|c| c.name.clone())
                })
                .unwrap_or_else(|| String::from_utf8_lossy(req.arg(0)).to_ascii_lowercase());
            let msg = format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            );
            alloc.ready(crate::error::reply(&msg), After::Nothing);
            return Some(Flow::Next);
        }
        let monitor = self.streaming && !self.pubsub;
        if self.st.proto == Proto::Resp3 && !self.passthrough_synced && !monitor {
            let conn = self.pinned.as_ref()?.conn.clone();
            let seq = alloc.pending();
            alloc.silence_from(seq);
            self.push(&conn, PING, Some((seq, WHOLE)), alloc);
            self.passthrough_synced = true;
            self.flush(alloc);
            return Some(Flow::Barrier);
        }
        Some(self.forward_cluster(req, alloc))
    }
}
