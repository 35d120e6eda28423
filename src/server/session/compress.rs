//! Compression in a session: write requests leave with their values
//! compressed, replies that carry values get a [`Post`] that restores them,
//! commands queued in `MULTI` record what their `EXEC` element needs, and
//! byte-level commands are answered by a task (`run_op`).
//!
//! Only reached when compression is enabled; see [`crate::compress`].

use super::{Flow, Req, Session};
use crate::cluster::key_slot;
use crate::command::{Kind, Tx};
use crate::compress::bytes_ops::{self, ByteOp, Outcome};
use crate::compress::restore::{self, Keys, Restorer, TxEntry};
use crate::compress::rewrite;
use crate::compress::table::{self, ByteCmd, Role};
use crate::error;
use crate::metrics::Metrics;
use crate::protocol::{encode, Parsed, RequestParser};
use crate::replies::{Alloc, Post};
use bytes::{Bytes, BytesMut};

impl Session {
    pub(super) fn handle_compressed(&mut self, req: &Req, kind: Kind, alloc: &mut Alloc) -> Flow {
        let in_tx = self.multi_deferred() || self.pinned.as_ref().is_some_and(|p| p.in_multi);
        match kind {
            Kind::Forward | Kind::Blocking | Kind::BlockingIfArg(_) => {}
            Kind::Transaction(Tx::Multi) if !in_tx => {
                self.comp_tx.clear();
                return self.route(req, kind, alloc);
            }
            Kind::Transaction(Tx::Exec | Tx::Discard) if in_tx => {
                let before = alloc.last_seq();
                let flow = self.route(req, kind, alloc);
                if flow == Flow::Barrier {
                    return flow;
                }
                let entries = std::mem::take(&mut self.comp_tx);
                let useful = entries.iter().any(|e| !matches!(e, TxEntry::Plain));
                if kind == Kind::Transaction(Tx::Exec) && useful {
                    if let Some(seq) = new_slot(before, alloc) {
                        let ctx = self.ctx.clone();
                        alloc.add_post(
                            seq,
                            Post::new(move |b| match &ctx.compress {
                                Some(c) => restore::restore_exec(b, &entries, c, &ctx.metrics),
                                None => b,
                            }),
                        );
                    }
                }
                return flow;
            }
            _ => {
                let flow = self.route(req, kind, alloc);
                if in_tx && flow != Flow::Barrier && super::queued_in_multi(kind) {
                    // Queued (PING, SELECT, ...): an element of EXEC's reply.
                    self.comp_tx.push(TxEntry::Plain);
                }
                return flow;
            }
        }
        let arg = |i: usize| (i < req.argc()).then(|| req.arg(i));
        let before = alloc.last_seq();
        match table::role(req.cmd.compress, &arg) {
            None => {
                let flow = self.route(req, kind, alloc);
                self.attach(flow, before, None, in_tx, alloc)
            }
            Some(Role::Write(values, shape)) => {
                let rewritten = match &self.ctx.compress {
                    Some(c) => {
                        rewrite::rewrite(req.argc(), &|i| req.arg(i), values, c, &self.ctx.metrics)
                    }
                    None => None,
                };
                let flow = match &rewritten {
                    Some(r) => {
                        let req = Req {
                            raw: &r.raw,
                            spans: &r.spans,
                            cmd: req.cmd,
                        };
                        self.route(&req, kind, alloc)
                    }
                    None => self.route(req, kind, alloc),
                };
                if flow == Flow::Barrier {
                    return flow;
                }
                let restorer = shape.map(|shape| Restorer {
                    shape,
                    keys: Keys::One(self.arena_copy(req.arg(1))),
                });
                self.attach(flow, before, restorer, in_tx, alloc)
            }
            Some(Role::Read { shape, per_key }) => {
                let flow = self.route(req, kind, alloc);
                if flow == Flow::Barrier {
                    return flow;
                }
                let keys = if per_key {
                    Keys::Each((1..req.argc()).map(|i| req.arg(i).to_vec()).collect())
                } else {
                    Keys::One(self.arena_copy(req.arg(1)))
                };
                self.attach(flow, before, Some(Restorer { shape, keys }), in_tx, alloc)
            }
            Some(Role::Byte(cmd)) if in_tx => self.byte_in_tx(req, kind, cmd, alloc),
            Some(Role::Byte(cmd)) => self.byte_op(req, cmd, alloc),
        }
    }

    /// After routing: record the command's `EXEC` entry, or restore its reply.
    fn attach(
        &mut self,
        flow: Flow,
        before: Option<u64>,
        restorer: Option<Restorer>,
        in_tx: bool,
        alloc: &mut Alloc,
    ) -> Flow {
        if flow == Flow::Barrier {
            // Not taken: it is handled again once earlier replies are in.
            return flow;
        }
        if in_tx {
            self.comp_tx
                .push(restorer.map_or(TxEntry::Plain, TxEntry::Restore));
            return flow;
        }
        if let (Some(r), Some(seq)) = (restorer, new_slot(before, alloc)) {
            let ctx = self.ctx.clone();
            alloc.add_post(
                seq,
                Post::new(move |b| match &ctx.compress {
                    Some(c) => restore::restore(b, &r, c, &ctx.metrics),
                    None => b,
                }),
            );
        }
        flow
    }

    /// A byte-level command outside a transaction: answered by a task.
    fn byte_op(&mut self, req: &Req, cmd: ByteCmd, alloc: &mut Alloc) -> Flow {
        if self.cluster.is_some() {
            // One node runs the whole command: keys of several slots get
            // Redis Cluster's own error, as without compression.
            let mut slots = cmd
                .keys
                .iter()
                .chain(cmd.dest.iter())
                .map(|&i| key_slot(req.arg(i)));
            let first = slots.next();
            if slots.any(|s| Some(s) != first) {
                return self.reply_error(alloc, error::CROSSSLOT);
            }
        }
        let args: Vec<Bytes> = (0..req.argc())
            .map(|i| Bytes::copy_from_slice(req.arg(i)))
            .collect();
        let key = args[cmd.keys[0]].clone();
        self.run_op(alloc, move |s| {
            let conn = match &s.cluster {
                Some(topo) => topo
                    .map()
                    .node_for(key_slot(&key))
                    .map(|shard| shard.primary.clone())
                    .map(|addr| s.cluster_conn(&addr)),
                None => Some(s.shared_conn()),
            };
            let ctx = s.ctx.clone();
            let op = ByteOp {
                cmd,
                args,
                cluster: s.cluster.is_some(),
            };
            async move {
                let (Some(conn), Some(c)) = (conn, ctx.compress.clone()) else {
                    return error::reply(error::SLOT_NOT_SERVED);
                };
                let (reply, outcome) = bytes_ops::run(op, conn, &c, &ctx.metrics).await;
                if outcome == Outcome::Refused {
                    Metrics::add(&ctx.metrics.compress_errors, 1);
                }
                reply
            }
        })
    }

    /// A byte-level command inside `MULTI`: it cannot be emulated inside
    /// the transaction, so it must not run on a compressed value. A writer is
    /// queued as the guard script (which does not run it on an envelope); a
    /// reader is queued after hidden prefix reads. Either becomes an error
    /// naming the key in the `EXEC` reply when the value was compressed.
    fn byte_in_tx(&mut self, req: &Req, kind: Kind, cmd: ByteCmd, alloc: &mut Alloc) -> Flow {
        let name = String::from_utf8_lossy(req.arg(0)).to_lowercase();
        if cmd.writer {
            let args: Vec<&[u8]> = (0..req.argc()).map(|i| req.arg(i)).collect();
            let Some(c) = self.ctx.compress.clone() else {
                return self.route(req, kind, alloc);
            };
            // EVAL, not EVALSHA: a NOSCRIPT inside EXEC could not be retried.
            let guard = bytes_ops::guard_request(&cmd, &args, &c, None);
            let flow = with_request(&guard, |r| self.route(r, kind, alloc));
            if flow != Flow::Barrier {
                self.comp_tx.push(TxEntry::Guard {
                    name,
                    key: req.arg(cmd.keys[0]).to_vec(),
                    dest: req.arg(cmd.dest.unwrap_or(cmd.keys[0])).to_vec(),
                });
            }
            return flow;
        }
        for &k in &cmd.keys {
            let check = if cmd.hash_field {
                command(&[b"HGET", req.arg(k), req.arg(k + 1)])
            } else {
                command(&[b"GETRANGE", req.arg(k), b"0", b"2"])
            };
            let before = alloc.last_seq();
            let flow = with_request(&check, |r| self.route(r, kind, alloc));
            if flow == Flow::Barrier {
                // Nothing queued yet (the first request of the transaction
                // waits for earlier replies): the whole command comes back.
                return flow;
            }
            if let Some(seq) = new_slot(before, alloc) {
                // Its +QUEUED is not the client's.
                alloc.add_post(seq, Post::new(|_| Bytes::new()));
            }
            self.comp_tx.push(TxEntry::Check {
                key: req.arg(k).to_vec(),
            });
        }
        let flow = self.route(req, kind, alloc);
        self.comp_tx.push(TxEntry::Native { name });
        flow
    }
}

/// The slot routing allocated, if it allocated one.
fn new_slot(before: Option<u64>, alloc: &Alloc) -> Option<u64> {
    alloc.last_seq().filter(|s| Some(*s) != before)
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    encode::command(&mut b, args);
    b.freeze()
}

/// Run `f` on a request the proxy made itself.
fn with_request<T>(raw: &[u8], f: impl FnOnce(&Req) -> T) -> T {
    let mut p = RequestParser::new(usize::MAX, usize::MAX);
    let spans = match p.parse(raw) {
        Ok(Parsed::Frame { .. }) => p.spans().to_vec(),
        _ => Vec::new(),
    };
    f(&Req::new(raw, &spans))
}
