//! The `CLIENT` subcommands that act on the client connection itself or on
//! other clients of this process, emulated as Redis 7.0 runs them on its
//! own clients:
//!
//! - `CLIENT REPLY ON|OFF|SKIP`: the session decides which replies it
//!   writes (the upstream replies are still read and dropped). A pinned
//!   passthrough connection (pub/sub, MONITOR, tracking) belongs to the
//!   client alone, so there Redis itself is told, and it keeps sending what
//!   it sends regardless (pub/sub messages and confirmations, invalidations).
//! - `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: `id` is respite's; the blocked
//!   command runs on that client's pinned connection, so the node's control
//!   connection sends `CLIENT UNBLOCK <its upstream id>` and Redis answers
//!   (the blocked client then gets Redis's own timeout or `-UNBLOCKED` reply).
//! - `CLIENT KILL`: closes matching clients of this process. A client blocked
//!   upstream has its pinned connection killed out of band (`CLIENT KILL ID`
//!   on the control connection) before the reply, so nothing can be popped
//!   for it once the killer has its answer.
//! - `CLIENT PAUSE`/`UNPAUSE`: see [`crate::server::clients::Pause`]; the
//!   session leaves a held request unread until the pause ends.

use super::{Flow, Req, Session};
use crate::error::{Error, SYNTAX};
use crate::protocol::request::parse_int;
use crate::protocol::{encode, Parsed, Proto, RequestParser};
use crate::replies::{After, Alloc, WHOLE};
use crate::server::clients::{self, BusyGuard};
use crate::server::ClientMeta;
use crate::upstream::conn::Conn;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

impl Session {
    /// [`Session::handle_counted`] under `CLIENT REPLY`: a request handled
    /// while replies are off (or skipped) takes its slots as usual, marked
    /// silent.
    #[inline]
    pub(super) fn handle_request(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let first = alloc.next_seq();
        let flow = self.handle_counted(req, alloc);
        if self.st.reply.active() && flow != Flow::Barrier {
            if self.st.reply.silent() {
                alloc.silence_from(first);
            }
            self.st.reply.end_request();
        }
        flow
    }

    /// Whether `CLIENT PAUSE` holds this request now (it stays unread). Also
    /// notes whether the open transaction queued a write (`EXEC` is held by
    /// `PAUSE WRITE` only then, as Redis does).
    #[inline]
    pub(super) fn held_by_pause(&mut self, req: &Req) -> bool {
        let in_tx = self.pinned.as_ref().is_some_and(|p| p.in_multi)
            || !matches!(self.tx_wait, super::TxWait::No);
        if !in_tx {
            self.tx_writes = false;
        }
        let Some(all) = self.ctx.pause.holds() else {
            if in_tx && !self.tx_writes && clients::is_write(req) {
                self.tx_writes = true;
            }
            return false;
        };
        if all {
            return true;
        }
        let write = clients::is_write(req);
        if write {
            return true;
        }
        in_tx && self.tx_writes && req.arg(0).eq_ignore_ascii_case(b"exec")
    }

    /// `CLIENT` subcommands the session runs itself (`None`: the others,
    /// answered by `local::run`).
    pub(super) fn client_control(&mut self, req: &Req, alloc: &mut Alloc) -> Option<Flow> {
        if req.argc() < 2 {
            return None;
        }
        let sub = req.arg(1);
        if sub.eq_ignore_ascii_case(b"unblock") {
            return Some(self.client_unblock(req, alloc));
        }
        if sub.eq_ignore_ascii_case(b"kill") && req.argc() >= 3 {
            return Some(self.client_kill(req, alloc));
        }
        if sub.eq_ignore_ascii_case(b"reply") && req.argc() == 3 {
            return self.reply_passthrough(req, alloc);
        }
        if sub.eq_ignore_ascii_case(b"tracking") && req.argc() >= 3 {
            if let Some(at) = redirect_index(req) {
                return Some(self.tracking_redirect(req, at, alloc));
            }
            if req.arg(2).eq_ignore_ascii_case(b"off") {
                self.redirect_to = None;
                self.trackinginfo.1 = None;
                self.st.meta.activity.set_tracking(false, false, None);
            } else if req.arg(2).eq_ignore_ascii_case(b"on") {
                self.st.meta.activity.set_tracking(true, bcast(req), None);
            }
            return None;
        }
        if sub.eq_ignore_ascii_case(b"getredir") && req.argc() == 2 {
            let id = self.redirect_to?;
            let mut out = BytesMut::new();
            encode::int(&mut out, id as i64);
            return Some(self.answer(out, alloc));
        }
        None
    }

    /// `CLIENT TRACKING on ... REDIRECT id ...`: `id` is respite's. Redis
    /// sends invalidations to a connection of its own, so the target client
    /// must hold one: its pinned connection, subscribed to
    /// `__redis__:invalidate`. The request goes to Redis with that
    /// connection's upstream id in place of `id`; Redis answers it.
    fn tracking_redirect(&mut self, req: &Req, at: usize, alloc: &mut Alloc) -> Flow {
        let mut out = BytesMut::new();
        let Some(rid) = parse_int(req.arg(at)) else {
            encode::error(&mut out, "ERR value is not an integer or out of range");
            return self.answer(out, alloc);
        };
        let target = u64::try_from(rid)
            .ok()
            .and_then(|id| self.ctx.clients.get(&id).map(|c| c.value().clone()));
        let Some(target) = target else {
            encode::error(
                &mut out,
                "ERR The client ID you want redirect to does not exist",
            );
            return self.answer(out, alloc);
        };
        if self.cluster.is_some() {
            encode::error(
                &mut out,
                "ERR CLIENT TRACKING REDIRECT is not supported by respite in cluster mode: use RESP3 (HELLO 3) to receive invalidations on the same connection",
            );
            return self.answer(out, alloc);
        }
        let node = self.worker.node();
        let upstream_id = target
            .ctl
            .pinned_conn()
            .filter(|c| target.activity.is_pubsub() && c.addr() == node.addr())
            .and_then(|c| c.upstream_id());
        let Some(upstream_id) = upstream_id else {
            encode::error(
                &mut out,
                &format!("ERR CLIENT TRACKING REDIRECT: client {rid} holds no upstream connection subscribed to __redis__:invalidate (it must SUBSCRIBE __redis__:invalidate through respite first)"),
            );
            return self.answer(out, alloc);
        };
        let upstream = encode::itoa(upstream_id as i64);
        let args: Vec<&[u8]> = (0..req.argc())
            .map(|i| {
                if i == at {
                    upstream.as_bytes()
                } else {
                    req.arg(i)
                }
            })
            .collect();
        let mut raw = BytesMut::new();
        encode::command(&mut raw, &args);
        let mut p = RequestParser::new(usize::MAX, usize::MAX);
        let Ok(Parsed::Frame { .. }) = p.parse(&raw) else {
            encode::error(&mut out, "ERR syntax error");
            return self.answer(out, alloc);
        };
        let rewritten = Req::new(&raw, p.spans());
        let flow = self.enter_passthrough(&rewritten, alloc);
        if flow != Flow::Barrier && req.arg(2).eq_ignore_ascii_case(b"on") {
            self.redirect_to = Some(rid as u64);
            self.trackinginfo.1 = Some((upstream_id, rid as u64));
            self.st
                .meta
                .activity
                .set_tracking(true, bcast(req), Some(rid as u64));
        }
        flow
    }

    /// `CLIENT REPLY` on a passthrough connection: Redis is told too, since
    /// it sends the frames (it keeps sending pub/sub messages and
    /// confirmations and invalidations in any mode, and refuses the command
    /// from a RESP2 client in pub/sub mode, in that mode's reply rules).
    fn reply_passthrough(&mut self, req: &Req, alloc: &mut Alloc) -> Option<Flow> {
        let conn = self
            .pinned
            .as_ref()
            .filter(|p| p.passthrough)
            .map(|p| p.conn.clone())?;
        let refused = self.st.proto == Proto::Resp2 && self.st.meta.activity.is_pubsub();
        let mode = req.arg(2);
        if !refused {
            let r = &mut self.st.reply;
            if mode.eq_ignore_ascii_case(b"on") {
                *r = Default::default();
            } else if mode.eq_ignore_ascii_case(b"off") {
                r.off = true;
            } else if mode.eq_ignore_ascii_case(b"skip") && !r.off {
                r.skip_next = true;
            }
        }
        self.push(&conn, req.raw, None, alloc);
        Some(Flow::Next)
    }

    /// Entering passthrough with replies off or skipped: Redis must apply
    /// it to the frames it sends on the pinned connection from now on.
    pub(super) fn passthrough_reply_mode(&mut self, conn: &Conn, alloc: &mut Alloc) {
        if self.st.reply.off {
            self.push(
                conn,
                b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n",
                None,
                alloc,
            );
        } else if self.st.reply.skip {
            self.push(
                conn,
                b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSKIP\r\n",
                None,
                alloc,
            );
        }
    }

    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`.
    fn client_unblock(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let argc = req.argc();
        let mut out = BytesMut::new();
        if argc == 2 {
            encode::error(
                &mut out,
                "ERR wrong number of arguments for 'client|unblock' command",
            );
            return self.answer(out, alloc);
        }
        if argc > 4 {
            return self.answer(subcommand_syntax(req.arg(1)), alloc);
        }
        let mut reason: &[u8] = b"TIMEOUT";
        if argc == 4 {
            let r = req.arg(3);
            if r.eq_ignore_ascii_case(b"timeout") {
                reason = b"TIMEOUT";
            } else if r.eq_ignore_ascii_case(b"error") {
                reason = b"ERROR";
            } else {
                encode::error(
                    &mut out,
                    "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                );
                return self.answer(out, alloc);
            }
        }
        let Some(id) = parse_int(req.arg(2)) else {
            encode::error(&mut out, "ERR value is not an integer or out of range");
            return self.answer(out, alloc);
        };
        let target = u64::try_from(id)
            .ok()
            .and_then(|id| self.ctx.clients.get(&id).map(|c| c.value().clone()));
        let Some((conn, guard, upstream_id)) = target.as_ref().and_then(|t| blocked_conn(t)) else {
            encode::int(&mut out, 0);
            return self.answer(out, alloc);
        };
        let mut cmd = BytesMut::new();
        encode::command(
            &mut cmd,
            &[
                &b"CLIENT"[..],
                b"UNBLOCK",
                encode::itoa(upstream_id as i64).as_bytes(),
                reason,
            ],
        );
        self.out_of_band_call(conn, cmd.freeze(), guard, None, alloc)
    }

    /// Send `cmd` on the control connection of `conn`'s node, answer the
    /// request with Redis's reply (`reply`: a reply of our own instead,
    /// once Redis answered), later requests waiting for it.
    fn out_of_band_call(
        &mut self,
        conn: Conn,
        cmd: Bytes,
        guard: BusyGuard,
        reply: Option<Bytes>,
        alloc: &mut Alloc,
    ) -> Flow {
        let control = crate::upstream::control::of(&self.ctx.config, conn.addr());
        let queue = self.queue.clone();
        let seq = alloc.pending();
        tokio::spawn(async move {
            let answer = control.call(cmd).await;
            drop(guard);
            let out = match (answer, reply) {
                (Ok(_), Some(mine)) => mine,
                (Ok(theirs), None) => theirs,
                (Err(e), _) => e.reply_bytes(),
            };
            queue.deliver(seq, WHOLE, out);
        });
        Flow::WaitAfter
    }

    /// `CLIENT KILL addr` / `CLIENT KILL <filter> <value> ...`.
    fn client_kill(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let filter = match KillFilter::parse(&self.ctx, req) {
            Ok(f) => f,
            Err(e) => return self.fail(alloc, &e),
        };
        let me = self.st.id;
        let mut killed = 0i64;
        let mut kill_self = false;
        let mut blocked: Vec<(Conn, BusyGuard, u64)> = Vec::new();
        let mut targets: Vec<Arc<ClientMeta>> =
            self.ctx.clients.iter().map(|c| c.value().clone()).collect();
        targets.sort_by_key(|c| c.id);
        for t in targets {
            if !filter.matches(&t) {
                continue;
            }
            if t.id == me {
                if filter.skipme {
                    continue;
                }
                kill_self = true;
            } else {
                // Taken before the kill: its pinned connection cannot go
                // back to the pool from now on.
                if let Some(b) = blocked_conn(&t) {
                    blocked.push(b);
                }
                t.ctl.kill();
            }
            killed += 1;
        }
        let mut out = BytesMut::new();
        if filter.old_form {
            if killed == 0 {
                encode::error(&mut out, "ERR No such client");
            } else {
                encode::simple(&mut out, "OK");
            }
        } else {
            encode::int(&mut out, killed);
        }
        let reply = out.freeze();
        let after = if kill_self {
            After::Close
        } else {
            After::Nothing
        };
        if blocked.is_empty() {
            alloc.ready(reply, after);
            return if kill_self { Flow::Stop } else { Flow::Next };
        }
        // Blocked clients: their upstream connections are killed out of
        // band; the reply waits for Redis to have freed them.
        let config = self.ctx.config.clone();
        let queue = self.queue.clone();
        let seq = alloc.pending_then(after);
        tokio::spawn(async move {
            for (conn, guard, upstream_id) in blocked {
                conn.close();
                let control = crate::upstream::control::of(&config, conn.addr());
                let mut cmd = BytesMut::new();
                encode::command(
                    &mut cmd,
                    &[
                        &b"CLIENT"[..],
                        b"KILL",
                        b"ID",
                        encode::itoa(upstream_id as i64).as_bytes(),
                    ],
                );
                if let Err(why) = control.call(cmd.freeze()).await {
                    tracing::debug!(addr = %conn.addr(), %why, "out-of-band kill of a blocked client's connection failed");
                }
                drop(guard);
            }
            queue.deliver(seq, WHOLE, reply);
        });
        if kill_self {
            Flow::Stop
        } else {
            Flow::WaitAfter
        }
    }

    fn answer(&mut self, out: BytesMut, alloc: &mut Alloc) -> Flow {
        alloc.ready(out.freeze(), After::Nothing);
        Flow::Next
    }
}

/// `reply` with its redirect id `upstream` (Redis's id of the redirect
/// target's pinned connection) replaced by `ours` (respite's id of that
/// client), if `reply` is a `CLIENT TRACKINGINFO` reply naming `upstream`.
pub(super) fn trackinginfo_redirect(reply: &[u8], upstream: u64, ours: u64) -> Option<Bytes> {
    if !(reply.starts_with(b"*6\r\n$5\r\nflags\r\n") || reply.starts_with(b"%3\r\n$5\r\nflags\r\n"))
    {
        return None;
    }
    let from = format!("$8\r\nredirect\r\n:{upstream}\r\n");
    let at = reply
        .windows(from.len())
        .position(|w| w == from.as_bytes())?;
    let mut out = BytesMut::with_capacity(reply.len() + 8);
    out.extend_from_slice(&reply[..at]);
    out.extend_from_slice(format!("$8\r\nredirect\r\n:{ours}\r\n").as_bytes());
    out.extend_from_slice(&reply[at + from.len()..]);
    Some(out.freeze())
}

/// Whether `CLIENT TRACKING on ...` asks for BCAST mode.
fn bcast(req: &Req) -> bool {
    (3..req.argc()).any(|i| req.arg(i).eq_ignore_ascii_case(b"bcast"))
}

/// Where the id of `CLIENT TRACKING ... REDIRECT id` is (a prefix that
/// happens to be called "redirect" is not the option).
fn redirect_index(req: &Req) -> Option<usize> {
    let mut i = 3;
    while i < req.argc() {
        let a = req.arg(i);
        if a.eq_ignore_ascii_case(b"redirect") {
            return (i + 1 < req.argc()).then_some(i + 1);
        }
        i += if a.eq_ignore_ascii_case(b"prefix") {
            2
        } else {
            1
        };
    }
    None
}

/// `target`'s pinned connection while a request is in flight on it (a
/// blocking command), kept out of the pool, with its upstream id.
fn blocked_conn(target: &ClientMeta) -> Option<(Conn, BusyGuard, u64)> {
    let (conn, guard) = target.ctl.busy_conn()?;
    let id = conn.upstream_id()?;
    Some((conn, guard, id))
}

/// Redis's reply to a subcommand with the wrong number of arguments that
/// its arity did not catch.
fn subcommand_syntax(sub: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode::error(
        &mut out,
        &format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(sub)
        ),
    );
    out
}

/// The filters of one `CLIENT KILL`, as Redis 7.0 parses them (`MAXAGE`,
/// from Redis 7.4, is accepted too).
#[derive(Debug, Default)]
struct KillFilter {
    old_form: bool,
    addr: Option<String>,
    laddr: Option<String>,
    id: Option<u64>,
    kind: Option<Vec<u8>>,
    user: Option<String>,
    max_age: Option<u64>,
    skipme: bool,
}

impl KillFilter {
    fn parse(ctx: &crate::server::Ctx, req: &Req) -> Result<KillFilter, Error> {
        let argc = req.argc();
        let text = |i: usize| String::from_utf8_lossy(req.arg(i)).into_owned();
        if argc == 3 {
            return Ok(KillFilter {
                old_form: true,
                addr: Some(text(2)),
                ..Default::default()
            });
        }
        let mut f = KillFilter {
            skipme: true,
            ..Default::default()
        };
        let mut i = 2;
        while i < argc {
            let opt = req.arg(i);
            let more = argc > i + 1;
            let is = |w: &[u8]| opt.eq_ignore_ascii_case(w) && more;
            if is(b"id") {
                match parse_int(req.arg(i + 1)).filter(|&n| n >= 1) {
                    Some(n) => f.id = Some(n as u64),
                    None => return Err(Error::client("ERR client-id should be greater than 0")),
                }
            } else if is(b"type") {
                let t = req.arg(i + 1).to_ascii_lowercase();
                if !matches!(
                    t.as_slice(),
                    b"normal" | b"pubsub" | b"master" | b"replica" | b"slave"
                ) {
                    return Err(Error::client(format!(
                        "ERR Unknown client type '{}'",
                        text(i + 1)
                    )));
                }
                f.kind = Some(if t == b"slave" {
                    b"replica".to_vec()
                } else {
                    t
                });
            } else if is(b"addr") {
                f.addr = Some(text(i + 1));
            } else if is(b"laddr") {
                f.laddr = Some(text(i + 1));
            } else if is(b"user") {
                let name = text(i + 1);
                let known = ctx.auth.users().exists(&name);
                if !known {
                    return Err(Error::client(format!("ERR No such user '{name}'")));
                }
                f.user = Some(name);
            } else if is(b"skipme") {
                let v = req.arg(i + 1);
                if v.eq_ignore_ascii_case(b"yes") {
                    f.skipme = true;
                } else if v.eq_ignore_ascii_case(b"no") {
                    f.skipme = false;
                } else {
                    return Err(Error::client(SYNTAX));
                }
            } else if is(b"maxage") {
                match parse_int(req.arg(i + 1)).filter(|&n| n >= 0) {
                    Some(n) => f.max_age = Some(n as u64),
                    None => return Err(Error::client(SYNTAX)),
                }
            } else {
                return Err(Error::client(SYNTAX));
            }
            i += 2;
        }
        Ok(f)
    }

    fn matches(&self, c: &ClientMeta) -> bool {
        if self.addr.as_ref().is_some_and(|a| *a != c.addr.to_string()) {
            return false;
        }
        if self
            .laddr
            .as_ref()
            .is_some_and(|a| *a != c.laddr.to_string())
        {
            return false;
        }
        if self.id.is_some_and(|id| id != c.id) {
            return false;
        }
        if let Some(kind) = &self.kind {
            let pubsub = c.activity.is_pubsub();
            let ok = match kind.as_slice() {
                b"normal" => !pubsub,
                b"pubsub" => pubsub,
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        if self
            .user
            .as_ref()
            .is_some_and(|u| *u != *c.activity.user_name())
        {
            return false;
        }
        if self
            .max_age
            .is_some_and(|age| c.created.elapsed().as_secs() <= age)
        {
            return false;
        }
        true
    }
}
