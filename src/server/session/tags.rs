//! The session side of the tag commands (logic in `crate::tags`).
//!
//! `TAGSET` stays on the pipelined path: it becomes one `FCALL` on the
//! session's own connection, in request order. Standalone, the function's
//! reply is SET's reply and goes straight to the client. In cluster mode the
//! reply may ask for directory entries to be confirmed first (the first key
//! of a tag in a slot), so a task awaits it, does that, and then fills the
//! client's slot; later requests do not wait for it. The other commands take
//! several calls and run through `run_op`.
//!
//! Inside MULTI the tag commands are refused (they are not one Redis
//! command, so they cannot be queued), with an error like Redis's for WATCH.

use super::{Flow, Req, Session};
use crate::cluster::key_slot;
use crate::error::{self, Error, SLOT_NOT_SERVED};
use crate::metrics::Metrics;
use crate::protocol::{encode, Parsed, Proto, RequestParser};
use crate::replies::{Alloc, Post, Redo, ReplyQueue, DISCARD, WHOLE};
use crate::router::merge::Merge;
use crate::tags::layout::{decode_tags, encode_tags};
use crate::tags::ops::{self, Up};
use crate::tags::parse::{self, TagSet};
use crate::tags::{self, lua, meta, Cmd};
use crate::upstream::conn::{Conn, Target};
use bytes::{Bytes, BytesMut};
use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::Poll;

impl Session {
    pub(super) fn tag(&mut self, cmd: Cmd, req: &Req, alloc: &mut Alloc) -> Flow {
        if !self.ctx.config.tags.enabled {
            // Redis answers: unknown command (or COMMAND as it is).
            return self.forward(req, alloc);
        }
        if cmd == Cmd::Command {
            return self.command_meta(req, alloc);
        }
        let in_multi = self.multi_deferred() || self.pinned.as_ref().is_some_and(|p| p.in_multi);
        if in_multi {
            let name = req.cmd.name.to_ascii_uppercase();
            return self.reply_error(alloc, &format!("ERR {name} inside MULTI is not allowed"));
        }
        let args: Vec<&[u8]> = (0..req.argc()).map(|i| req.arg(i)).collect();
        let flow = match cmd {
            Cmd::Set => match parse::tagset(&args) {
                Ok(ts) => self.tagset(ts, alloc),
                Err(e) => self.fail(alloc, &e),
            },
            Cmd::Add => match parse::tagadd(&args) {
                Ok((key, tags)) => {
                    let key = key.to_vec();
                    let tags: Vec<Vec<u8>> = tags.iter().map(|t| t.to_vec()).collect();
                    self.tag_op(alloc, move |up| async move {
                        let t: Vec<&[u8]> = tags.iter().map(|t| &t[..]).collect();
                        up.tagadd(&key, &t).await.map(int)
                    })
                }
                Err(e) => self.fail(alloc, &e),
            },
            Cmd::Inval => match parse::taginval(&args) {
                Ok(tags) => {
                    let tags: Vec<Vec<u8>> = tags.iter().map(|t| t.to_vec()).collect();
                    let ctx = self.ctx.clone();
                    self.tag_op(alloc, move |up| async move {
                        let n = up.taginval(tags).await?;
                        Metrics::add(&ctx.metrics.tag_keys_invalidated, n as u64);
                        Ok(int(n))
                    })
                }
                Err(e) => self.fail(alloc, &e),
            },
            Cmd::Keys => match parse::one(&args, "tagkeys") {
                Ok(tag) => {
                    let tag = tag.to_vec();
                    self.tag_op(
                        alloc,
                        move |up| async move { up.tagkeys(&tag).await.map(list) },
                    )
                }
                Err(e) => self.fail(alloc, &e),
            },
            Cmd::Of => match parse::one(&args, "tagsof") {
                Ok(key) => {
                    let key = key.to_vec();
                    self.tag_op(
                        alloc,
                        move |up| async move { up.tagsof(&key).await.map(list) },
                    )
                }
                Err(e) => self.fail(alloc, &e),
            },
            Cmd::Command => Flow::Next,
        };
        if flow != Flow::Barrier {
            Metrics::add(&self.ctx.metrics.tag_commands, 1);
        }
        flow
    }

    fn up(&mut self) -> Arc<Up> {
        match &self.tag_up {
            Some(up) if up.db() == self.st.db => up.clone(),
            _ => {
                let up = crate::server::tag_up(&self.ctx, &self.worker, self.st.db, self.st.id);
                self.tag_up = Some(up.clone());
                up
            }
        }
    }

    /// A multi-call tag command answered by a task (ordered like any request).
    fn tag_op<F, Fut>(&mut self, alloc: &mut Alloc, f: F) -> Flow
    where
        F: FnOnce(Arc<Up>) -> Fut,
        Fut: Future<Output = Result<Bytes, Error>> + Send + 'static,
    {
        self.run_op(alloc, move |s| {
            let fut = f(s.up());
            async move {
                match fut.await {
                    Ok(b) => b,
                    Err(e) => e.reply_bytes(),
                }
            }
        })
    }

    fn tagset(&mut self, ts: TagSet, alloc: &mut Alloc) -> Flow {
        let slot = key_slot(ts.key);
        let up = self.up();
        let tags: Vec<Vec<u8>> = ts.tags.iter().map(|t| t.to_vec()).collect();
        let proto = self.st.proto;
        if tags::broken_order() {
            let mut set: Vec<Vec<u8>> = vec![b"SET".to_vec(), ts.key.to_vec(), ts.value.to_vec()];
            if let Some((opt, n)) = ts.expiry {
                set.push(opt.as_bytes().to_vec());
                if opt != "KEEPTTL" {
                    set.push(n.to_vec());
                }
            }
            if let Some(c) = ts.cond {
                set.push(c.as_bytes().to_vec());
            }
            return self.tag_op(alloc, move |up| async move {
                up.tagset_broken(set, tags, proto).await
            });
        }
        if self.cluster.is_none()
            && self.pinned.is_none()
            && ts.cond.is_none()
            && !matches!(ts.expiry, Some(("KEEPTTL", _)))
        {
            return self.tagset_multi(ts, up, alloc);
        }
        let addr: Arc<str> = match &self.cluster {
            Some(t) => match t.map().node_for(slot) {
                Some(s) => s.primary.as_str().into(),
                None => return self.reply_error(alloc, SLOT_NOT_SERVED),
            },
            None => self.worker.node().addr().clone(),
        };
        if !lua::loaded(&addr) {
            // First tag command for this node: load the functions, then run.
            // The request is built only when the task starts (after a
            // barrier this runs again), so compression counts it once.
            return self.tag_op(alloc, move |up| {
                let req = tagset_fcall(&up, slot, &ts);
                async move {
                    let first = up.run_raw(slot, &req).await?;
                    Ok(up.tagset_finish(slot, req, tags, first, proto).await)
                }
            });
        }
        let req = tagset_fcall(&up, slot, &ts);
        if self.cluster.is_some() && self.pinned.is_none() {
            let conn = self.cluster_conn(&addr);
            return self.tagset_task(conn, req, slot, tags, up, alloc);
        }
        // Standalone (or a pinned cluster session): forwarded as it is.
        let mut parser = RequestParser::new(usize::MAX, usize::MAX);
        let Ok(Parsed::Frame { .. }) = parser.parse(&req) else {
            return self.reply_error(alloc, "ERR cannot encode TAGSET");
        };
        let fwd = Req::new(&req, parser.spans());
        let before = alloc.last_seq();
        let flow = self.forward(&fwd, alloc);
        if flow == Flow::Next && alloc.last_seq() != before {
            if let Some(seq) = alloc.last_seq() {
                // Shared: only the rare paths (redo, cluster confirmation) copy them.
                let tags = Arc::new(tags);
                let redo = tagset_redo(up.clone(), req.clone(), slot, tags.clone(), proto);
                alloc.add_redo(seq, redo);
                alloc.add_post(seq, tagset_post(up, addr, slot, tags));
            }
        }
        flow
    }

    /// Standalone `TAGSET` without `NX`/`XX`/`KEEPTTL`: plain commands in a
    /// transaction on the shared connection, in request order —
    /// `MULTI`, `SET key value [EX ..]`, `SET record tags GET`, one `ZADD` per
    /// tag, `EXEC` — which costs Redis about 30% less than the function
    /// (BENCHMARKS.md). The value, the record and the entries are written
    /// atomically, so guarantee 2 holds as with the function. What a
    /// transaction cannot do is drop the key from the tags it had before:
    /// the reply's old record says which, and `respite_tagdrop` removes them
    /// afterwards with a re-check. Until then such an entry is stale, and
    /// every reader of an entry set (TAGINVAL, TAGKEYS, the sweep) ignores an
    /// entry whose key's record no longer lists the tag.
    fn tagset_multi(&mut self, ts: TagSet, up: Arc<Up>, alloc: &mut Alloc) -> Flow {
        let conn = self.shared_conn();
        // Another connection (after SELECT or HELLO) could run this before
        // earlier requests: wait for them first.
        if let Some(last) = &self.last_conn {
            if !last.same(&conn) && !alloc.is_empty() {
                self.flush(alloc);
                return Flow::Barrier;
            }
        }
        let b = up.bucket(0);
        let value = up.stored_value(ts.key, ts.value);
        let enc = encode_tags(&ts.tags);
        let score = expiry_score(ts.expiry);
        let mut buf = BytesMut::new();
        let mut cmds: Vec<(usize, usize)> = Vec::with_capacity(4 + ts.tags.len());
        let mut add = |buf: &mut BytesMut, parts: &[&[u8]]| {
            let start = buf.len();
            encode::command(buf, parts);
            cmds.push((start, buf.len()));
        };
        add(&mut buf, &[b"MULTI"]);
        match ts.expiry {
            Some((opt, n)) => add(&mut buf, &[b"SET", ts.key, &value, opt.as_bytes(), n]),
            None => add(&mut buf, &[b"SET", ts.key, &value]),
        }
        add(&mut buf, &[b"SET", &b.record(ts.key), &enc, b"GET"]);
        for t in &ts.tags {
            add(&mut buf, &[b"ZADD", &b.zset(t), score.as_bytes(), ts.key]);
        }
        add(&mut buf, &[b"EXEC"]);
        // Part 0: SET's queueing reply (its error, e.g. OOM, is the
        // client's); part 1: EXEC's. The others are dropped.
        let seq = alloc.pending_parts(vec![Bytes::new(), Bytes::new()], Merge::Last);
        let last = cmds.len() - 1;
        for (i, &(start, end)) in cmds.iter().enumerate() {
            let target = match i {
                1 => (seq, 0),
                i if i == last => (seq, 1),
                _ => (DISCARD, WHOLE),
            };
            self.push(&conn, &buf[start..end], Some(target), alloc);
        }
        let key = ts.key.to_vec();
        let tags: Vec<Vec<u8>> = ts.tags.iter().map(|t| t.to_vec()).collect();
        alloc.add_post(
            seq,
            Post::new(move |reply| exec_reply(reply, up, key, enc, tags)),
        );
        Flow::Next
    }

    /// Cluster `TAGSET`: the `FCALL` goes out now, in order on the session's
    /// connection; a task finishes it and fills the client's slot.
    fn tagset_task(
        &mut self,
        conn: Conn,
        req: Bytes,
        slot: u16,
        tags: Vec<Vec<u8>>,
        up: Arc<Up>,
        alloc: &mut Alloc,
    ) -> Flow {
        // Earlier requests of this read go first.
        self.flush(alloc);
        let private = Arc::new(ReplyQueue::new());
        let pseq = private.alloc().pending();
        let seq = alloc.pending();
        let mut buf = BytesMut::from(&req[..]);
        let mut targets = vec![Target {
            queue: private.clone(),
            seq: pseq,
            part: WHOLE,
        }];
        if let Err(e) = conn.submit(&mut buf, &mut targets) {
            if let Some(t) = &self.cluster {
                t.request_refresh();
            }
            alloc.fill(seq, WHOLE, e.reply_bytes());
            return Flow::Next;
        }
        self.last_conn = Some(conn);
        let queue = self.queue.clone();
        let proto = self.st.proto;
        tokio::spawn(async move {
            let first = poll_fn(|cx| {
                let mut got = None;
                private.drain(cx.waker(), |b, _| got = Some(b));
                match got {
                    Some(b) => Poll::Ready(b),
                    None => Poll::Pending,
                }
            })
            .await;
            let reply = up.tagset_finish(slot, req, tags, first, proto).await;
            queue.deliver(seq, WHOLE, reply);
        });
        Flow::Next
    }

    /// `COMMAND` (bare, INFO, DOCS, COUNT, LIST): Redis's reply with the tag
    /// commands added; anything else is forwarded.
    fn command_meta(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let args: Vec<Vec<u8>> = (0..req.argc()).map(|i| req.arg(i).to_vec()).collect();
        let sub = args.get(1).map(|a| a.to_ascii_lowercase());
        let names = &args[2.min(args.len())..];
        let any_tag = names.iter().any(|n| meta::is_tag_name(n));
        let intercept = match sub.as_deref() {
            None => true,
            Some(b"info") | Some(b"docs") => names.is_empty() || any_tag,
            Some(b"count") => args.len() == 2,
            Some(b"list") => args.len() == 2,
            _ => false,
        };
        if !intercept {
            return self.forward(req, alloc);
        }
        let proto = self.st.proto;
        let raw = Bytes::copy_from_slice(req.raw);
        self.run_op(alloc, move |s| {
            let conn = s.meta_conn();
            async move {
                let sub = sub.unwrap_or_default();
                if sub == b"docs" && !names_empty(&args) {
                    // Redis for the other names (none: build ours alone).
                    let others: Vec<&[u8]> = args[2..]
                        .iter()
                        .filter(|n| !meta::is_tag_name(n))
                        .map(|n| &n[..])
                        .collect();
                    let base = if others.is_empty() {
                        let mut b = BytesMut::new();
                        encode::map(&mut b, proto, 0);
                        b.freeze()
                    } else {
                        let mut parts: Vec<&[u8]> = vec![b"COMMAND", b"DOCS"];
                        parts.extend(others);
                        match call(&conn, ops::command(&parts)).await {
                            Ok(b) => b,
                            Err(e) => return e,
                        }
                    };
                    let mut extra = BytesMut::new();
                    for n in &args[2..] {
                        meta::docs(n, proto, &mut extra);
                    }
                    return append(&base, &extra);
                }
                let reply = match call(&conn, raw).await {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                if reply.first() == Some(&b'-') {
                    return reply;
                }
                match &sub[..] {
                    b"count" => match crate::protocol::Value::decode_exact(&reply) {
                        Ok(crate::protocol::Value::Int(n)) => int(n + meta::count() as i64),
                        _ => reply,
                    },
                    b"list" => {
                        let mut extra = BytesMut::new();
                        for n in meta::names() {
                            encode::bulk(&mut extra, n.as_bytes());
                        }
                        append(&reply, &extra)
                    }
                    b"docs" => {
                        let mut extra = BytesMut::new();
                        for n in meta::names() {
                            meta::docs(n.as_bytes(), proto, &mut extra);
                        }
                        append(&reply, &extra)
                    }
                    _ if names_empty(&args) => {
                        let mut extra = BytesMut::new();
                        for n in meta::names() {
                            meta::info(n.as_bytes(), &mut extra);
                        }
                        append(&reply, &extra)
                    }
                    _ => {
                        // COMMAND INFO names: replace the tag names' nils.
                        let Some((kind, items)) = meta::elements(&reply) else {
                            return reply;
                        };
                        let mut built: Vec<Vec<u8>> = Vec::new();
                        for (n, item) in args[2..].iter().zip(&items) {
                            let mut b = BytesMut::new();
                            if meta::info(n, &mut b) {
                                built.push(b.to_vec());
                            } else {
                                built.push(item.to_vec());
                            }
                        }
                        let refs: Vec<&[u8]> = built.iter().map(|b| &b[..]).collect();
                        meta::aggregate(kind, &refs)
                    }
                }
            }
        })
    }

    /// The session's connection for `COMMAND` (any node in cluster mode).
    fn meta_conn(&mut self) -> Conn {
        match self.cluster.clone() {
            Some(t) => {
                let primaries = t.map().serving_primaries();
                match primaries.get((self.st.id % primaries.len().max(1) as u64) as usize) {
                    Some(a) => self.cluster_conn(a),
                    None => self.shared_conn(),
                }
            }
            None => self.shared_conn(),
        }
    }
}

fn names_empty(args: &[Vec<u8>]) -> bool {
    args.len() <= 2
}

async fn call(conn: &Conn, req: Bytes) -> Result<Bytes, Bytes> {
    crate::upstream::call::call_one(conn, req)
        .await
        .map_err(|e| e.reply_bytes())
}

/// An aggregate reply with `extra` elements (already encoded) appended.
fn append(reply: &[u8], extra: &[u8]) -> Bytes {
    let Some((kind, mut items)) = meta::elements(reply) else {
        return Bytes::copy_from_slice(reply);
    };
    let mut pos = 0;
    let mut added = Vec::new();
    while pos < extra.len() {
        match crate::protocol::Value::decode(&extra[pos..]) {
            Ok(Some((_, len))) => {
                added.push(&extra[pos..pos + len]);
                pos += len;
            }
            _ => break,
        }
    }
    items.extend(added);
    meta::aggregate(kind, &items)
}

fn int(n: i64) -> Bytes {
    let mut b = BytesMut::new();
    encode::int(&mut b, n);
    b.freeze()
}

fn list(items: Vec<Vec<u8>>) -> Bytes {
    let mut b = BytesMut::new();
    encode::array(&mut b, items.len());
    for i in &items {
        encode::bulk(&mut b, i);
    }
    b.freeze()
}

/// A `TAGSET` entry's score: the key's expiry in unix ms (the proxy's clock:
/// scores are hints, every removal re-checks the key), `inf` when persistent.
/// The arguments were checked by `parse::tagset`.
fn expiry_score(expiry: Option<(&str, &[u8])>) -> String {
    let Some((opt, n)) = expiry else {
        return "inf".into();
    };
    let v = crate::protocol::request::parse_int(n).unwrap_or(0);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    };
    let ms = match opt {
        "EX" => now().saturating_add(v.saturating_mul(1000)),
        "PX" => now().saturating_add(v),
        "EXAT" => v.saturating_mul(1000),
        "PXAT" => v,
        _ => return "inf".into(),
    };
    ms.to_string()
}

/// The client's reply to a `TAGSET` sent as a transaction: SET's reply from
/// the `EXEC` array. When the old record names tags the key no longer has,
/// a task removes those entries.
fn exec_reply(reply: Bytes, up: Arc<Up>, key: Vec<u8>, enc: Vec<u8>, tags: Vec<Vec<u8>>) -> Bytes {
    let Some((b'*', items)) = meta::elements(&reply) else {
        // An error (the connection, OOM, EXECABORT): the client's reply.
        return reply;
    };
    let (Some(set), Some(old)) = (items.first(), items.get(1)) else {
        return error::reply("ERR unexpected reply to TAGSET's transaction");
    };
    if let Ok(crate::protocol::Value::Bulk(old)) = crate::protocol::Value::decode_exact(old) {
        if old != enc {
            let gone: Vec<Vec<u8>> = decode_tags(&old)
                .into_iter()
                .filter(|t| !tags.contains(t))
                .collect();
            if !gone.is_empty() {
                tokio::spawn(async move {
                    if let Err(e) = up.tagdrop(&key, gone).await {
                        tracing::debug!(error = %e, "dropping a key's old tag entries failed (the sweep will)");
                    }
                });
            }
        }
    }
    reply.slice_ref(set)
}

/// The `FCALL respite_tagset` a `TAGSET` becomes.
fn tagset_fcall(up: &Up, slot: u16, ts: &TagSet) -> Bytes {
    let b = up.bucket(slot);
    let mut keys: Vec<Vec<u8>> = Vec::with_capacity(3 + ts.tags.len());
    keys.push(ts.key.to_vec());
    keys.push(b.record(ts.key));
    keys.extend(ts.tags.iter().map(|t| b.zset(t)));
    if up.cluster() {
        keys.push(b.fl.clone());
    }
    let value = up.stored_value(ts.key, ts.value);
    let enc = encode_tags(&ts.tags);
    let (opt, n) = ts.expiry.unwrap_or(("", b""));
    let mut args: Vec<&[u8]> = vec![
        &value,
        &enc,
        &b.zp,
        &b.fl,
        opt.as_bytes(),
        n,
        ts.cond.unwrap_or("").as_bytes(),
    ];
    args.extend(ts.tags.iter().copied());
    lua::fcall("respite_tagset", &keys, &args)
}

/// The forwarded `TAGSET` met a missing library (`FUNCTION FLUSH`, a Redis
/// restart without persistence: the `FCALL` did nothing): load it again and
/// run the call again, so the client gets `TAGSET`'s normal reply. The
/// session holds its later requests until this is done; any it had already
/// sent (pipelined behind this `TAGSET`) ran before it.
fn tagset_redo(up: Arc<Up>, req: Bytes, slot: u16, tags: Arc<Vec<Vec<u8>>>, proto: Proto) -> Redo {
    Redo::new(move |reply| {
        if !lua::is_not_found(reply) {
            return None;
        }
        let first = reply.clone();
        Some(Box::pin(async move {
            let tags = Arc::unwrap_or_clone(tags);
            up.tagset_finish(slot, req, tags, first, proto).await
        }))
    })
}

/// The forwarded `TAGSET`'s reply: a missing library that running it again
/// did not cure becomes a retryable error (and is loaded again by the next
/// tag command); a pinned cluster session's directory confirmation runs in
/// the background.
fn tagset_post(up: Arc<Up>, addr: Arc<str>, slot: u16, tags: Arc<Vec<Vec<u8>>>) -> Post {
    Post::new(move |reply| {
        if lua::is_not_found(&reply) {
            lua::forget(&addr);
            return error::reply(
                "TRYAGAIN respite is loading its tag functions again (FUNCTION FLUSH or a Redis restart removed them); retry",
            );
        }
        if reply.first() == Some(&b'*') {
            let proto = Proto::Resp2;
            tokio::spawn(async move {
                let tags = Arc::unwrap_or_clone(tags);
                up.tagset_finish(slot, Bytes::new(), tags, reply, proto)
                    .await;
            });
            return Bytes::from_static(b"+OK\r\n");
        }
        reply
    })
}
