//! One client connection: read requests, route them, write replies in order.
//!
//! A session is one task that reads, writes and collects replies in a single
//! loop, so a request costs no cross-task hand-off on the client side. Every
//! request gets a slot in the [`ReplyQueue`] before it leaves; replies fill the
//! slots in whatever order upstreams answer and are written in slot order.

use super::local;
use super::{ClientMeta, Ctx, Worker};
use crate::command::{self, Kind, Local, Oob, Tx};
use crate::metrics::{Event, Metrics};
use crate::net;
use crate::protocol::{encode, Parsed, Proto, RequestParser};
use crate::replies::{After, Alloc, ReplyQueue, WHOLE};
use crate::upstream::conn::{Conn, Target};
use bytes::{Buf, Bytes, BytesMut};
use std::future::{poll_fn, Future};
use std::io::ErrorKind::WouldBlock;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

mod acl;
mod client_ctl;
mod cluster;
mod cluster_hooks;
mod compress;
mod shard_pubsub;
mod stats;
mod tags;

/// Stop reading from a client whose unwritten replies exceed this.
const WBUF_HIGH: usize = 256 * 1024;
/// How long a quiet session keeps its empty buffers.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Size of the chunks `Session::arena_copy` copies into.
const ARENA_CHUNK: usize = 4096;

/// A request's arguments over the bytes it arrived in, and its command.
pub struct Req<'a> {
    pub raw: &'a [u8],
    pub spans: &'a [(u32, u32)],
    /// What the command table says of the command, classified once here.
    pub cmd: &'static command::Info,
}

impl<'a> Req<'a> {
    /// A request over `raw`, classified by its name.
    #[inline]
    pub fn new(raw: &'a [u8], spans: &'a [(u32, u32)]) -> Req<'a> {
        let cmd = match spans.first() {
            Some(&(off, len)) => command::classify(&raw[off as usize..off as usize + len as usize]),
            None => command::table::unknown(),
        };
        Req { raw, spans, cmd }
    }

    #[inline]
    pub fn argc(&self) -> usize {
        self.spans.len()
    }

    #[inline]
    pub fn arg(&self, i: usize) -> &'a [u8] {
        let (off, len) = self.spans[i];
        &self.raw[off as usize..off as usize + len as usize]
    }
}

/// What the session does after a request.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Next,
    /// The request needs every earlier reply in first; it stays unread.
    Barrier,
    /// Stop reading: the connection closes once the queued replies are written.
    Stop,
    /// The request was taken; later ones wait until every reply is in (a
    /// multi-step command answered by a task must finish before they run).
    WaitAfter,
}

/// Requests for one connection gathered from one read.
struct Batch {
    conn: Conn,
    buf: BytesMut,
    targets: Vec<Target>,
}

/// A connection of the session's own, for transactions, blocking commands and
/// pub/sub.
struct Pinned {
    conn: Conn,
    db: u32,
    proto: Proto,
    in_multi: bool,
    watching: bool,
    /// `SELECT` queued inside MULTI: applies when EXEC runs.
    queued_db: Option<u32>,
    /// Pub/sub, MONITOR or CLIENT TRACKING: frames flow without requests, so
    /// replies are no longer counted and the connection is never reused.
    passthrough: bool,
}

impl Pinned {
    fn clean(&self) -> bool {
        !self.in_multi && !self.watching && !self.passthrough
    }
}

/// Cluster mode: a transaction whose node is not decided yet (see
/// `cluster.rs`, `deferred_multi` and `keyless_multi`).
enum TxWait {
    /// Nothing waits (outside cluster mode, and once the node is known).
    No,
    /// MULTI was answered here; no command of the transaction was sent yet.
    Multi,
    /// MULTI and the keyless commands after it went to a provisional node;
    /// the first keyed command moves them to its own node if that differs.
    Keyless(Held),
}

/// The keyless commands queued on the provisional node, to queue again on
/// the node the transaction's first key picks.
struct Held {
    requests: Vec<Bytes>,
    bytes: usize,
}

/// Whether Redis queues the command inside MULTI as the session routes it
/// there (to the pinned connection) rather than answering it itself.
fn queued_in_multi(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Forward
            | Kind::Blocking
            | Kind::BlockingIfArg(_)
            | Kind::OutOfBand(_)
            | Kind::Passthrough
            | Kind::Local(Local::Ping | Local::Echo | Local::Select)
            | Kind::Transaction(Tx::Unwatch)
    )
}

/// Per-session state the local commands read and change.
pub struct State {
    pub id: u64,
    pub db: u32,
    pub proto: Proto,
    pub authed: bool,
    pub user: Arc<str>,
    pub meta: Arc<ClientMeta>,
    /// The last command named in `meta` (`CLIENT LIST`'s `cmd=`).
    pub last_cmd: super::clients::LastCmd,
    /// `CLIENT REPLY`.
    pub reply: super::clients::ReplyMode,
}

pub struct Session {
    ctx: Arc<Ctx>,
    worker: Arc<Worker>,
    stream: net::Stream,
    queue: Arc<ReplyQueue>,
    parser: RequestParser,
    rbuf: BytesMut,
    wbuf: BytesMut,
    scratch: BytesMut,
    pub(super) st: State,
    /// Shared connection for the current database and protocol.
    shared: Option<(u32, Proto, Conn)>,
    /// The tag commands' upstream side for the current database (built on
    /// the first tag command).
    tag_up: Option<Arc<crate::tags::ops::Up>>,
    /// Connection the last forwarded request went to.
    last_conn: Option<Conn>,
    /// Requests decoded from the current read, one batch per connection,
    /// each written with one submit.
    out: Vec<Batch>,
    /// Emptied batch buffers kept for reuse.
    spare: Vec<(BytesMut, Vec<Target>)>,
    pinned: Option<Pinned>,
    /// Cluster mode: the topology, and this session's shared connection per node.
    cluster: Option<Arc<crate::cluster::topology::Topology>>,
    cluster_conns: crate::command::NameMap<Arc<str>, Conn>,
    /// Connections of recently used nodes by the (pointer, length) of their
    /// address in `recent_map` (cleared with `cluster_conns`).
    recent_conns: Vec<((usize, usize), Conn)>,
    recent_map: Option<Arc<crate::cluster::SlotMap>>,
    /// Topology version, slot map and key table routing uses.
    routing: Option<(
        u64,
        Arc<crate::cluster::SlotMap>,
        Arc<crate::command::keys::KeyTable>,
    )>,
    /// Copies of request bytes kept with their reply slots (see `arena_copy`).
    arena: BytesMut,
    /// Key positions of the request being routed (reused, cluster mode).
    key_scratch: Vec<usize>,
    cluster_proto: Proto,
    /// Topology version `cluster_conns` was filled under.
    cluster_version: u64,
    /// Cluster mode: a transaction waiting for its first key to pick the node.
    tx_wait: TxWait,
    /// Cluster mode: pinned connections a transaction left for another node
    /// (after DISCARD), given back once every reply is in.
    retired: Vec<Pinned>,
    /// Cluster mode: sharded pub/sub subscriptions, once SSUBSCRIBE was used.
    shard: Option<Box<shard_pubsub::ShardSubs>>,
    /// Sentinel mode: the primary generation `shared` was taken in.
    node_gen: u64,
    /// Compression: what each command queued in the open transaction needs
    /// done to its element of the EXEC reply.
    comp_tx: Vec<crate::compress::restore::TxEntry>,
    /// Statistics of this session's requests (`None`: stats disabled).
    stats: Option<Box<crate::stats::Recorder>>,
    /// SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE was used (until RESET): the
    /// client is in Redis's `pubsub` output buffer class.
    pubsub: bool,
    /// Pub/sub or MONITOR: never closed for idleness, as in Redis.
    streaming: bool,
    /// The client's output buffer class has a limit: the queue is told the
    /// write buffer's size after each write.
    out_limited: bool,
    /// The most unwritten bytes the write buffer ever held.
    wbuf_peak: usize,
    stop: bool,
    stalled: bool,
    eof: bool,
    /// The next request is held by `CLIENT PAUSE` (it stays unread).
    paused: bool,
    /// The open transaction queued a write (`CLIENT PAUSE WRITE` holds EXEC).
    tx_writes: bool,
    /// `CLIENT TRACKING on REDIRECT id`: the respite id given (Redis was
    /// given the upstream id of that client's connection).
    redirect_to: Option<u64>,
    /// Cluster mode, RESP3 passthrough: nothing was sent on the pinned
    /// connection since its frames were last known queued (see
    /// `cluster_hooks`).
    passthrough_synced: bool,
    /// Cluster mode: keyspace subscriptions followed on every primary.
    keyspace: Option<crate::cluster::pubsub::Keyspace>,
    /// `CLIENT TRACKINGINFO` requests sent to the pinned connection while
    /// tracking redirects to a respite client, and (Redis's id of that
    /// client's connection, respite's id): their replies name the former,
    /// rewritten to the latter as the client knows it.
    trackinginfo: (u32, Option<(u64, u64)>),
}

impl Session {
    pub fn new(
        ctx: Arc<Ctx>,
        worker: Arc<Worker>,
        stream: net::Stream,
        meta: Arc<ClientMeta>,
    ) -> Session {
        let limits = &ctx.config.limits;
        let authed = !ctx.auth.required();
        let topology = ctx.deployment.cluster().cloned();
        let node_gen = worker.generation();
        let stats = ctx.stats.recorder(worker.index, meta.id);
        let queue = ReplyQueue::new();
        let out_limit = limits.client_output_buffer_limit.normal;
        queue.set_limit(out_limit);
        Session {
            node_gen,
            parser: RequestParser::new(limits.max_request_bytes, limits.max_request_args),
            st: State {
                id: meta.id,
                db: 0,
                proto: Proto::Resp2,
                authed,
                user: "default".into(),
                meta,
                last_cmd: Default::default(),
                reply: Default::default(),
            },
            ctx,
            worker,
            stream,
            queue: Arc::new(queue),
            // Allocated by the first read and reply, not for idle clients.
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            scratch: BytesMut::new(),
            shared: None,
            tag_up: None,
            last_conn: None,
            out: Vec::new(),
            spare: Vec::new(),
            pinned: None,
            cluster: topology,
            cluster_conns: Default::default(),
            recent_conns: Vec::new(),
            recent_map: None,
            routing: None,
            key_scratch: Vec::new(),
            arena: BytesMut::new(),
            cluster_proto: Proto::Resp2,
            cluster_version: 0,
            tx_wait: TxWait::No,
            retired: Vec::new(),
            shard: None,
            comp_tx: Vec::new(),
            stats,
            pubsub: false,
            streaming: false,
            out_limited: !out_limit.is_off(),
            wbuf_peak: 0,
            stop: false,
            stalled: false,
            eof: false,
            paused: false,
            tx_writes: false,
            redirect_to: None,
            passthrough_synced: false,
            keyspace: None,
            trackinginfo: (0, None),
        }
    }

    pub async fn run(mut self) {
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let ctx = self.ctx.clone();
        let mut shutdown = pin!(ctx.shutdown.notified());
        let mut shutting_down = self.ctx.is_shutting_down();
        let idle = self.ctx.config.limits.idle_timeout;
        let mut idle_sleep = pin!(tokio::time::sleep(
            idle.unwrap_or(std::time::Duration::from_secs(86400 * 365))
        ));
        let max_inflight = self.ctx.config.limits.max_inflight;
        // Buffers of a session that went quiet are released after TRIM_AFTER.
        let mut trim_sleep = pin!(tokio::time::sleep(TRIM_AFTER));
        let mut trim_armed = false;
        // CLIENT KILL from another session; CLIENT PAUSE holding a request.
        let meta = self.st.meta.clone();
        let mut killed = pin!(meta.ctl.wait_killed());
        let mut pause_end: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        loop {
            if meta.ctl.killed() {
                // As Redis frees a killed client: nothing more is written.
                break;
            }
            let mut errors = 0u64;
            let wbuf = &mut self.wbuf;
            let mut exec_db = None;
            let mut upstream_failed = false;
            // The sink may hold the stats shard's lock: it must not live across an await.
            let shard = &mut self.shard;
            // Pub/sub confirmations tell CLIENT LIST the subscription counts.
            let subscribed = self
                .pinned
                .as_ref()
                .is_some_and(|p| p.passthrough)
                .then_some((&self.st.meta.activity, self.st.proto));
            let trackinginfo = &mut self.trackinginfo;
            let drained = {
                let mut stats = self.stats.as_deref_mut().map(|s| s.sink());
                let d = self.queue.drain(&waker, |mut b, after| {
                    if let Some(s) = shard.as_mut() {
                        if s.intercept(&b, &ctx.config.upstream) {
                            return;
                        }
                    }
                    if after != After::Queued && b.first() == Some(&b'-') {
                        b = cluster_hooks::no_redirect(b, meta.id);
                    }
                    if let Some((a, proto)) = subscribed {
                        a.pubsub_frame(proto, &b);
                    }
                    let b = match trackinginfo {
                        (n @ 1.., Some((upstream, ours))) => {
                            match client_ctl::trackinginfo_redirect(&b, *upstream, *ours) {
                                Some(fixed) => {
                                    *n -= 1;
                                    fixed
                                }
                                None => b,
                            }
                        }
                        _ => b,
                    };
                    if let Some(s) = &mut stats {
                        s.reply(&b);
                    }
                    if b.first() == Some(&b'-') {
                        errors += 1;
                        // READONLY (Redis's words): the node we write to
                        // was demoted.
                        if b.starts_with(b"-READONLY") {
                            upstream_failed = true;
                        }
                    }
                    // An empty reply here is a silenced one (CLIENT REPLY),
                    // for which the drain already checked the EXEC ran.
                    if let After::ExecSelect(db) = after {
                        if b.is_empty() || crate::replies::is_array(&b) {
                            exec_db = Some(db);
                        }
                    }
                    wbuf.extend_from_slice(&b);
                });
                d
            };
            if let Some(bytes) = drained.over_limit {
                self.output_limit_reached(bytes);
                break;
            }
            let (pending, close) = (drained.remaining, drained.close);
            self.wbuf_peak = self.wbuf_peak.max(self.wbuf.len());
            if upstream_failed || self.queue.take_upstream_failure() {
                self.ctx.deployment.request_refresh();
            }
            if let Some(db) = exec_db {
                self.set_db(db);
            }
            if self.shard.as_ref().is_some_and(|s| s.has_work()) {
                self.shard_resubscribe();
            }
            if let Some(r) = drained.redirect {
                self.redirect(r);
                continue;
            }
            if let Some(r) = drained.redo {
                let queue = self.queue.clone();
                tokio::spawn(async move {
                    let reply = r.work.await;
                    queue.deliver(r.seq, WHOLE, reply);
                });
                // Requests not sent yet wait until it is done: they must not
                // run before the request being redone.
                self.stalled = true;
            }
            Metrics::add(&self.ctx.metrics.error_replies, errors);
            if close {
                self.stop = true;
            }
            if !self.wbuf.is_empty() || self.stream.pending_write() {
                match net::write_buf(&self.stream, &mut self.wbuf) {
                    // Replies reaching the client are activity, as in Redis.
                    Ok(n) if n > 0 => {
                        if let Some(t) = idle {
                            idle_sleep.as_mut().reset(tokio::time::Instant::now() + t);
                        }
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == WouldBlock => {}
                    Err(_) => break,
                }
            }
            if self.out_limited {
                self.queue.set_unwritten(self.wbuf.len());
            }
            if close || (self.stop && pending == 0) {
                if self.wbuf.is_empty() {
                    break;
                }
                if close {
                    // QUIT's reply is queued; nothing after it matters.
                    self.stop = true;
                }
            }
            if shutting_down {
                self.cut_blocked();
            }
            if (self.eof || shutting_down) && pending == 0 && self.wbuf.is_empty() {
                break;
            }
            if self.stalled && pending == 0 {
                self.stalled = false;
                self.release_pinned_if_clean(true);
                self.process_input();
                continue;
            }
            if self.paused && self.ctx.pause.holds().is_none() {
                self.paused = false;
                pause_end = None;
                self.process_input();
                continue;
            }
            if self.paused && pause_end.is_none() {
                pause_end = Some(Box::pin(ctx.pause.wait_end()));
            }
            if self.pinned.as_ref().is_some_and(|p| p.clean()) && pending == 0 {
                self.release_pinned_if_clean(true);
            }
            if pending == 0 && !self.retired.is_empty() {
                for p in std::mem::take(&mut self.retired) {
                    self.give_back(p);
                }
            }
            let can_read = !self.stop
                && !self.stalled
                && !self.paused
                && !self.eof
                && !shutting_down
                && pending < max_inflight
                && self.wbuf.len() < WBUF_HIGH;
            if can_read {
                match net::read_buf(&self.stream, &mut self.rbuf) {
                    Ok(0) => {
                        self.eof = true;
                        // A blocking command of a client that is gone must
                        // not be served: its pinned connection closes now
                        // (in `finish`), as Redis frees a blocked client
                        // whose socket closed, before an item can be popped.
                        if self
                            .pinned
                            .as_ref()
                            .is_some_and(|p| p.passthrough || !p.clean() || p.conn.inflight() > 0)
                        {
                            break;
                        }
                        continue;
                    }
                    Ok(_) => {
                        if let Some(t) = idle {
                            idle_sleep.as_mut().reset(tokio::time::Instant::now() + t);
                        }
                        self.process_input();
                        continue;
                    }
                    Err(e) if e.kind() == WouldBlock => {}
                    Err(_) => break,
                }
            }
            let want_write = !self.wbuf.is_empty() || self.stream.pending_write();
            let quiet = pending == 0 && self.rbuf.is_empty() && !want_write;
            if quiet {
                self.trim_oversized();
                if !trim_armed && self.holds_buffers() {
                    trim_sleep
                        .as_mut()
                        .reset(tokio::time::Instant::now() + TRIM_AFTER);
                    trim_armed = true;
                }
            }
            let mut timed_out = false;
            let mut trim_due = false;
            let queue = &self.queue;
            poll_fn(|cx| {
                // The queue woke us (drain registered the waker) if its front is ready.
                let mut ready = queue.writable();
                if can_read && self.stream.poll_read_ready(cx).is_ready() {
                    ready = true;
                }
                if want_write && self.stream.poll_write_ready(cx).is_ready() {
                    ready = true;
                }
                if !shutting_down && shutdown.as_mut().poll(cx).is_ready() {
                    shutting_down = true;
                    ready = true;
                }
                if killed.as_mut().poll(cx).is_ready() {
                    ready = true;
                }
                if let Some(p) = pause_end.as_mut() {
                    if p.as_mut().poll(cx).is_ready() {
                        ready = true;
                    }
                }
                // Idle as Redis's `timeout`: nothing read from or written to
                // the client for that long, no request of its own in flight,
                // and not a pub/sub or MONITOR client.
                if idle.is_some()
                    && pending == 0
                    && !self.streaming
                    // A client held by CLIENT PAUSE is blocked, not idle.
                    && !self.paused
                    && idle_sleep.as_mut().poll(cx).is_ready()
                {
                    timed_out = true;
                    ready = true;
                }
                if trim_armed && trim_sleep.as_mut().poll(cx).is_ready() {
                    trim_due = true;
                    ready = true;
                }
                if ready {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            if timed_out {
                tracing::debug!(client = self.st.id, "Closing idle client");
                break;
            }
            if trim_due {
                // Fires at most once per TRIM_AFTER while buffers are held: a
                // busy session reallocates them on its next read.
                trim_armed = false;
                self.trim_buffers();
            }
        }
        self.finish();
        // TLS: what the socket did not take yet (QUIT's reply) and close_notify.
        self.stream.close(std::time::Duration::from_secs(1)).await;
    }

    /// Shutting down: a blocking command still waiting upstream is cut now
    /// (its connection closes, so Redis cannot serve it an item the client
    /// would never get); the client gets an error reply and is closed.
    fn cut_blocked(&mut self) {
        if let Some(p) = &self.pinned {
            if p.clean() && p.conn.inflight() > 0 {
                p.conn.kill("the proxy is shutting down");
            }
        }
    }

    fn finish(&mut self) {
        if let Some(s) = self.shard.as_mut() {
            s.close();
        }
        // A client cut off for its output buffer limit has replies in flight
        // that were dropped: its connections cannot be reused.
        let idle = self.queue.is_empty() && !self.queue.over_limit();
        if let Some(p) = self.pinned.take() {
            if p.clean() && idle {
                self.give_back(p);
            } else {
                p.conn.close();
            }
        }
        for p in std::mem::take(&mut self.retired) {
            if idle {
                self.give_back(p);
            } else {
                p.conn.close();
            }
        }
        // Replies still held, and those still to come, are freed now rather
        // than when the last upstream connection lets go of the queue.
        self.queue.shut();
        if self.wbuf_peak.max(self.queue.peak()) >= super::trim::AFTER_BYTES {
            super::trim::release_soon();
        }
    }

    /// Over the output buffer limit of its class: logged and counted as
    /// Redis does; the caller closes the connection.
    fn output_limit_reached(&self, bytes: usize) {
        let info = self.st.meta.info_line();
        self.ctx.metrics.event(Event::OutputBufferLimit {
            client: info.trim_end(),
            class: if self.pubsub { "pubsub" } else { "normal" },
            bytes,
        });
    }

    /// A pub/sub or MONITOR command: the client's class for the output
    /// buffer limit and the idle timeout follows, as in Redis.
    fn note_streaming(&mut self, name: &[u8], alloc: &mut Alloc) {
        let subscribe = [&b"subscribe"[..], b"psubscribe", b"ssubscribe"]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n));
        if subscribe || name.eq_ignore_ascii_case(b"monitor") {
            self.streaming = true;
        }
        if subscribe && !self.pubsub {
            self.pubsub = true;
            self.set_output_limit(
                self.ctx.config.limits.client_output_buffer_limit.pubsub,
                alloc,
            );
        }
    }

    /// RESET: an ordinary client again.
    fn leave_streaming(&mut self, alloc: &mut Alloc) {
        self.streaming = false;
        if self.pubsub {
            self.pubsub = false;
            self.set_output_limit(
                self.ctx.config.limits.client_output_buffer_limit.normal,
                alloc,
            );
        }
    }

    fn set_output_limit(&mut self, limit: crate::config::OutputBufferLimit, alloc: &mut Alloc) {
        alloc.set_limit(limit);
        self.out_limited = !limit.is_off();
        if self.out_limited {
            self.queue.set_unwritten(self.wbuf.len());
        }
    }

    /// Whether the session holds buffer memory [`Session::trim_buffers`] could free.
    fn holds_buffers(&self) -> bool {
        self.rbuf.capacity() > 0 || self.wbuf.capacity() > 0 || self.arena.capacity() > 0
    }

    /// Frees the buffers that are empty, so a client that once sent a big
    /// pipeline and then stays connected costs nothing for it (Redis frees
    /// an idle client's query buffer the same way).
    fn trim_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.is_empty() {
            self.wbuf = BytesMut::new();
        }
        self.arena = BytesMut::new();
        self.scratch = BytesMut::new();
    }

    /// Right away, buffers that grew past their usual size for one big
    /// request or reply and are empty now.
    fn trim_oversized(&mut self) {
        if self.rbuf.capacity() > 4 * net::READ_CHUNK {
            self.rbuf = BytesMut::new();
        }
        if self.wbuf.capacity() > WBUF_HIGH {
            self.wbuf = BytesMut::new();
        }
    }

    /// `bytes` as a `Bytes` that outlives the read buffer (a request kept for
    /// a redirect, a key named in an error): copied into a shared chunk, so
    /// most copies cost no allocation. A chunk is freed when its last copy
    /// is dropped.
    fn arena_copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.arena.capacity() - self.arena.len() < bytes.len() {
            self.arena = BytesMut::with_capacity(ARENA_CHUNK.max(bytes.len()));
        }
        self.arena.extend_from_slice(bytes);
        self.arena.split().freeze()
    }

    /// Handle every complete request in the read buffer.
    fn process_input(&mut self) {
        self.st.meta.activity.touch(self.st.meta.created);
        let gen = self.worker.generation();
        if gen != self.node_gen {
            self.node_gen = gen;
            self.primary_changed();
        }
        // Once per read: a stalled shared connection (or an extra one, which
        // is left for the home connection as soon as that one is fine) is
        // chosen again for this read's requests.
        if let Some((_, _, c)) = &self.shared {
            if c.avoid() || c.extra() {
                self.shared = None;
            }
        }
        let queue = self.queue.clone();
        let mut alloc = queue.alloc();
        let mut rbuf = std::mem::take(&mut self.rbuf);
        // Taken out for the loop so requests can borrow its spans while the
        // session changes; RequestParser::new(0, 0) does not allocate.
        let mut parser = std::mem::replace(&mut self.parser, RequestParser::new(0, 0));
        let mut n_cmds = 0u64;
        if let Some(s) = &mut self.stats {
            s.begin_batch();
        }
        loop {
            // Before AUTH, Redis's smaller request limits (AUTH may have run
            // in this same batch).
            parser.set_unauthenticated(!self.st.authed);
            match parser.parse(&rbuf) {
                Ok(Parsed::Frame { len }) => {
                    let req = Req::new(&rbuf[..len], parser.spans());
                    if self.held_by_pause(&req) {
                        self.paused = true;
                        break;
                    }
                    let flow = self.handle_request(&req, &mut alloc);
                    if self.after_request(flow, &mut rbuf, len, &mut n_cmds) {
                        break;
                    }
                }
                Ok(Parsed::Inline { len, args }) => {
                    // Re-encoded as RESP: forwarded bytes are always RESP.
                    let mut raw = BytesMut::new();
                    encode::command(&mut raw, &args);
                    let mut p = RequestParser::new(usize::MAX, usize::MAX);
                    let Ok(Parsed::Frame { .. }) = p.parse(&raw) else {
                        break;
                    };
                    let req = Req::new(&raw, p.spans());
                    if self.held_by_pause(&req) {
                        self.paused = true;
                        break;
                    }
                    let flow = self.handle_request(&req, &mut alloc);
                    if self.after_request(flow, &mut rbuf, len, &mut n_cmds) {
                        break;
                    }
                }
                Ok(Parsed::Empty { len }) => rbuf.advance(len),
                Ok(Parsed::Incomplete { need }) => {
                    if need > rbuf.capacity() {
                        rbuf.reserve(need - rbuf.len());
                    }
                    break;
                }
                Err(e) => {
                    self.ctx.metrics.event(Event::ProtocolError {
                        client: self.st.id,
                        error: &e,
                    });
                    let mut b = BytesMut::new();
                    encode::error(&mut b, &format!("ERR {e}"));
                    alloc.ready(b.freeze(), After::Close);
                    self.stop = true;
                    rbuf.clear();
                    break;
                }
            }
        }
        alloc.end_batch();
        self.flush(&mut alloc);
        self.rbuf = rbuf;
        self.parser = parser;
        Metrics::add(&self.ctx.metrics.commands, n_cmds);
    }

    /// Consume a handled request's bytes unless it waits behind a barrier;
    /// true when processing of the read buffer must stop.
    fn after_request(
        &mut self,
        flow: Flow,
        rbuf: &mut BytesMut,
        len: usize,
        n_cmds: &mut u64,
    ) -> bool {
        match flow {
            Flow::Barrier => {
                self.stalled = true;
                true
            }
            Flow::WaitAfter => {
                *n_cmds += 1;
                rbuf.advance(len);
                self.stalled = true;
                true
            }
            Flow::Stop => {
                *n_cmds += 1;
                rbuf.advance(len);
                self.stop = true;
                true
            }
            Flow::Next => {
                *n_cmds += 1;
                rbuf.advance(len);
                false
            }
        }
    }

    /// Route one request, and keep `CLIENT LIST`'s view of the transaction
    /// (`x`, `multi=`) current.
    fn handle(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let before = self.in_tx();
        let flow = self.handle_one(req, alloc);
        if before || self.in_tx() {
            let queued = match (before, self.in_tx()) {
                (_, false) => None,
                (false, true) => Some(0),
                (true, true) => {
                    let n = self.st.meta.activity.multi().unwrap_or(0);
                    let queues = flow != Flow::Barrier
                        && !req.arg(0).eq_ignore_ascii_case(b"multi")
                        && !req.arg(0).eq_ignore_ascii_case(b"watch");
                    Some(n + u32::from(queues))
                }
            };
            self.st.meta.activity.set_multi(queued);
        }
        flow
    }

    /// Inside MULTI (the pinned connection's, or one whose node is not
    /// decided yet in cluster mode).
    fn in_tx(&self) -> bool {
        self.pinned.as_ref().is_some_and(|p| p.in_multi) || !matches!(self.tx_wait, TxWait::No)
    }

    fn handle_one(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        self.st.last_cmd.note(&self.st.meta, req);
        let kind = req.cmd.kind;
        if !self.st.authed
            && !matches!(
                kind,
                Kind::Local(Local::Auth | Local::Hello | Local::Quit | Local::Reset)
            )
        {
            return self.reply_error(alloc, crate::error::NOAUTH);
        }
        if let Some(flow) = self.acl_check(req, alloc) {
            return flow;
        }
        if self.pinned.as_ref().is_some_and(|p| p.passthrough) {
            return self.handle_passthrough(req, kind, alloc);
        }
        if let Kind::Tag(cmd) = kind {
            return self.tag(cmd, req, alloc);
        }
        if self.ctx.compress.is_some() {
            return self.handle_compressed(req, kind, alloc);
        }
        self.route(req, kind, alloc)
    }

    /// Route one request by its kind (after compression rewrote it, if it did).
    fn route(&mut self, req: &Req, kind: Kind, alloc: &mut Alloc) -> Flow {
        match self.tx_wait {
            TxWait::No => self.route_known(req, kind, alloc),
            TxWait::Multi => self.deferred_multi(req, kind, alloc),
            TxWait::Keyless(_) => self.keyless_multi(req, kind, alloc),
        }
    }

    /// Cluster mode: MULTI was answered here and no command was sent yet.
    fn multi_deferred(&self) -> bool {
        matches!(self.tx_wait, TxWait::Multi)
    }

    /// [`Session::route`] once no transaction waits for its node.
    fn route_known(&mut self, req: &Req, kind: Kind, alloc: &mut Alloc) -> Flow {
        if kind == Kind::Local(Local::Select) && self.pinned.is_some() {
            return self.select_pinned(req, alloc);
        }
        match kind {
            Kind::Forward => self.forward(req, alloc),
            // Inside MULTI Redis queues them (+QUEUED, then their reply in
            // EXEC's array), so the pinned connection must see them.
            Kind::Local(Local::Ping | Local::Echo)
                if self.pinned.as_ref().is_some_and(|p| p.in_multi) =>
            {
                self.forward(req, alloc)
            }
            Kind::Local(l) => self.local(l, req, alloc),
            Kind::Refused(msg) => self.reply_error(alloc, msg),
            Kind::Blocking => self.forward_pinned(req, alloc, |_| {}),
            Kind::BlockingIfArg(word) => {
                let blocks =
                    (1..req.argc()).any(|i| req.arg(i).eq_ignore_ascii_case(word.as_bytes()));
                if blocks {
                    self.forward_pinned(req, alloc, |_| {})
                } else {
                    self.forward(req, alloc)
                }
            }
            Kind::Transaction(tx) => match tx {
                Tx::Multi if self.cluster.is_some() && self.pinned.is_none() => {
                    self.defer_multi(alloc)
                }
                Tx::Multi => self.forward_pinned(req, alloc, |p| p.in_multi = true),
                Tx::Watch => self.forward_pinned(req, alloc, |p| {
                    if !p.in_multi {
                        p.watching = true
                    }
                }),
                Tx::Exec if self.pinned.is_some() => {
                    let conn = self.pinned.as_ref().map(|p| p.conn.clone());
                    let after = match self.pinned.as_mut() {
                        Some(p) => {
                            p.in_multi = false;
                            p.watching = false;
                            p.queued_db.take().map_or(After::Nothing, After::ExecSelect)
                        }
                        None => After::Nothing,
                    };
                    if let Some(conn) = conn {
                        let seq = alloc.pending_then(after);
                        self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
                    }
                    Flow::Next
                }
                Tx::Discard | Tx::Unwatch if self.pinned.is_some() => {
                    self.forward_pinned(req, alloc, |p| {
                        if tx == Tx::Unwatch {
                            if !p.in_multi {
                                p.watching = false;
                            }
                        } else {
                            p.in_multi = false;
                            p.watching = false;
                            p.queued_db = None;
                        }
                    })
                }
                // Without a transaction Redis answers these with an error (or
                // OK for UNWATCH) on any connection.
                _ => self.forward(req, alloc),
            },
            Kind::Passthrough => self.enter_passthrough(req, alloc),
            Kind::OutOfBand(oob) => self.out_of_band(oob, req, alloc),
            Kind::Tag(cmd) => self.tag(cmd, req, alloc),
        }
    }

    /// `SCRIPT KILL`, `FUNCTION KILL`, `SHUTDOWN` (standalone and sentinel
    /// mode): sent on the node's control connection, so they reach Redis
    /// while a script holds a shared connection, and answered with Redis's
    /// own reply. Earlier requests of the session may still be waiting (even
    /// behind the script being killed); later ones wait for this reply. A
    /// `SHUTDOWN` that Redis answers by closing the connection closes the
    /// client connection too, with no reply, as Redis's own would close.
    /// Cluster mode, a transaction or a pinned connection: forwarded.
    fn out_of_band(&mut self, oob: Oob, req: &Req, alloc: &mut Alloc) -> Flow {
        let args: Vec<&[u8]> = (0..req.argc()).map(|i| req.arg(i)).collect();
        if self.cluster.is_some() || !oob.applies(&args) {
            return self.forward(req, alloc);
        }
        if let Some(p) = &self.pinned {
            if !(p.clean() && alloc.is_empty()) {
                return self.forward(req, alloc);
            }
            self.release_pinned_if_clean(true);
        }
        let node = self.worker.node();
        let Some(control) = node.control() else {
            // No node (sentinel mode, no primary known): fails with the reason.
            return self.forward(req, alloc);
        };
        let request = Bytes::copy_from_slice(req.raw);
        let queue = self.queue.clone();
        let seq = alloc.pending();
        tokio::spawn(async move {
            let failed = |e: crate::error::Error| e.reply_bytes();
            let reply = match oob {
                Oob::Kill => control.call(request).await.unwrap_or_else(failed),
                Oob::Shutdown => match control.shutdown(request).await {
                    Ok(Some(reply)) => reply,
                    Ok(None) => {
                        // Queued behind the (empty) reply: close after it.
                        queue.push_close(Bytes::new());
                        Bytes::new()
                    }
                    Err(why) => failed(why),
                },
            };
            queue.deliver(seq, WHOLE, reply);
        });
        Flow::WaitAfter
    }

    /// Pub/sub, MONITOR and tracking: everything goes to the pinned connection
    /// and every frame it sends comes back in arrival order.
    fn handle_passthrough(&mut self, req: &Req, kind: Kind, alloc: &mut Alloc) -> Flow {
        if kind == Kind::Passthrough {
            self.note_streaming(req.arg(0), alloc);
        }
        match kind {
            Kind::Local(Local::Reset) => {
                // RESET leaves every mode; the connection is dropped, not reused.
                if let Some(p) = self.pinned.take() {
                    p.conn.close();
                }
                self.keyspace = None;
                self.local(Local::Reset, req, alloc)
            }
            // Tracking state lives on the pinned connection: Redis answers
            // (GETREDIR after a REDIRECT to a respite id is answered with
            // that id, in `client_control`).
            Kind::Local(Local::Client)
                if req.argc() == 2
                    && (req.arg(1).eq_ignore_ascii_case(b"trackinginfo")
                        || (req.arg(1).eq_ignore_ascii_case(b"getredir")
                            && self.redirect_to.is_none())) =>
            {
                let conn = match &self.pinned {
                    Some(p) => p.conn.clone(),
                    None => return Flow::Next,
                };
                if self.trackinginfo.1.is_some() && req.arg(1).eq_ignore_ascii_case(b"trackinginfo")
                {
                    self.trackinginfo.0 += 1;
                }
                self.push(&conn, req.raw, None, alloc);
                Flow::Next
            }
            Kind::Local(
                l @ (Local::Quit | Local::Auth | Local::Hello | Local::Client | Local::Select),
            ) => self.local(l, req, alloc),
            _ if self.cluster.is_some() && is_shard_pubsub(req.cmd) => {
                self.shard_command(req, alloc)
            }
            _ => {
                if self.cluster.is_some() {
                    if let Some(flow) = self.passthrough_cluster(req, alloc) {
                        return flow;
                    }
                }
                let conn = match &self.pinned {
                    Some(p) => p.conn.clone(),
                    None => return Flow::Next,
                };
                self.push(&conn, req.raw, None, alloc);
                if self.cluster.is_some() {
                    self.keyspace_follow(req);
                }
                Flow::Next
            }
        }
    }

    /// SELECT on a pinned connection: Redis must see it (inside MULTI it is
    /// queued and applies at EXEC), and the session follows.
    fn select_pinned(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        let valid = req.argc() == 2
            && crate::protocol::request::parse_int(req.arg(1))
                .is_some_and(|db| db >= 0 && db < self.ctx.config.upstream.databases as i64);
        let in_multi = self.pinned.as_ref().is_some_and(|p| p.in_multi);
        if !valid && !in_multi {
            return self.local(Local::Select, req, alloc);
        }
        let db = if valid {
            crate::protocol::request::parse_int(req.arg(1)).map(|v| v as u32)
        } else {
            None
        };
        let conn = match &mut self.pinned {
            Some(p) => {
                if in_multi {
                    if db.is_some() {
                        p.queued_db = db;
                    }
                } else if let Some(db) = db {
                    p.db = db;
                }
                p.conn.clone()
            }
            None => return Flow::Next,
        };
        if !in_multi {
            if let Some(db) = db {
                self.set_db(db);
            }
        }
        let seq = alloc.pending();
        self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
        Flow::Next
    }

    fn set_db(&mut self, db: u32) {
        self.st.db = db;
        self.st
            .meta
            .db
            .store(db, std::sync::atomic::Ordering::Relaxed);
        if let Some(p) = &mut self.pinned {
            p.db = db;
        }
    }

    fn enter_passthrough(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        if !alloc.is_empty() {
            self.flush(alloc);
            return Flow::Barrier;
        }
        if self.pinned.is_none() {
            self.pin(req);
            if let Some(flow) = self.refused_pin(alloc) {
                return flow;
            }
        }
        self.note_streaming(req.arg(0), alloc);
        let conn = match &mut self.pinned {
            Some(p) => {
                let entering = !p.passthrough;
                p.passthrough = true;
                let conn = p.conn.clone();
                if entering && self.st.reply.active() {
                    self.passthrough_reply_mode(&conn, alloc);
                }
                conn
            }
            None => return Flow::Next,
        };
        if self.cluster.is_some() && is_shard_pubsub(req.cmd) {
            return self.shard_command(req, alloc);
        }
        self.push(&conn, req.raw, None, alloc);
        if self.cluster.is_some() {
            self.keyspace_follow(req);
        }
        Flow::Next
    }

    /// Forward on the pinned connection, pinning first (after every earlier
    /// reply is in, so the pinned command cannot overtake them).
    fn forward_pinned(
        &mut self,
        req: &Req,
        alloc: &mut Alloc,
        update: impl FnOnce(&mut Pinned),
    ) -> Flow {
        if self.pinned.is_none() {
            if !alloc.is_empty() {
                self.flush(alloc);
                return Flow::Barrier;
            }
            self.pin(req);
            if let Some(flow) = self.refused_pin(alloc) {
                return flow;
            }
        }
        let conn = match &mut self.pinned {
            Some(p) => {
                update(p);
                p.conn.clone()
            }
            None => return Flow::Next,
        };
        let seq = self.pinned_slot(req, alloc);
        self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
        Flow::Next
    }

    /// Sentinel mode, the primary moved: later requests take connections to
    /// the new one; a pinned connection to the old one is closed (the
    /// session gets an error reply and closes, as after a failover).
    fn primary_changed(&mut self) {
        self.shared = None;
        let node = self.worker.node();
        if let Some(p) = &self.pinned {
            if p.conn.addr() != node.addr() {
                p.conn.kill("the primary changed");
            }
        }
    }

    fn pin(&mut self, req: &Req) {
        let dead = match &self.cluster {
            Some(_) => None,
            None => self.worker.node().dead_conn().cloned(),
        };
        match dead {
            // No node to pin to: the first request fails with the reason.
            Some(d) => self.pin_conn(d, self.st.db, self.st.proto),
            None => {
                let addr = self.pin_addr(req);
                self.pin_at(&addr, self.st.db, self.st.proto);
            }
        }
    }

    /// Pin a connection of the pool to `addr`.
    fn pin_at(&mut self, addr: &Arc<str>, db: u32, proto: Proto) {
        let conn = self.ctx.pinned.acquire(addr, db, proto, self.queue.clone());
        self.pin_conn(conn, db, proto);
    }

    fn pin_conn(&mut self, conn: Conn, db: u32, proto: Proto) {
        // A refused connection (upstream.max_pinned_connections) answers the
        // request that needed it with the error; `flush` then unpins it.
        Metrics::add(
            &self.ctx.metrics.pinned_acquired,
            u64::from(!conn.is_refused()),
        );
        self.st.meta.ctl.set_pinned(&conn);
        self.pinned = Some(Pinned {
            conn,
            db,
            proto,
            in_multi: false,
            watching: false,
            queued_db: None,
            passthrough: false,
        });
    }

    /// The connection just pinned was refused (`upstream.max_pinned_connections`
    /// are open): unpin it, and the request that needed it gets Redis's
    /// answer to a client over `maxclients`.
    fn refused_pin(&mut self, alloc: &mut Alloc) -> Option<Flow> {
        if !self.pinned.as_ref().is_some_and(|p| p.conn.is_refused()) {
            return None;
        }
        self.pinned = None;
        Some(self.reply_error(alloc, crate::upstream::MAX_CLIENTS_REACHED))
    }

    /// Give a clean pinned connection back to the pool, or close it when
    /// another session may still name it (`CLIENT UNBLOCK`/`KILL` in
    /// progress) or the client was killed.
    fn give_back(&mut self, p: Pinned) {
        if self.st.meta.ctl.may_release(&p.conn) {
            self.ctx.pinned.release(p.conn, p.db, p.proto);
        } else {
            p.conn.close();
        }
    }

    /// Give a clean pinned connection back once nothing is in flight on it.
    fn release_pinned_if_clean(&mut self, queue_empty: bool) {
        if queue_empty && self.pinned.as_ref().is_some_and(|p| p.clean()) {
            if let Some(p) = self.pinned.take() {
                if self.last_conn.as_ref().is_some_and(|c| c.same(&p.conn)) {
                    self.last_conn = None;
                }
                self.give_back(p);
            }
        }
    }

    /// Forward on the shared connection (or the pinned one while pinned).
    fn forward(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        if let Some(p) = &self.pinned {
            if p.clean() && !alloc.is_empty() && self.cluster.is_some() {
                // Cluster: the transaction (or blocking command) is over but
                // its reply is not in; this request may belong to another
                // node, so it waits, then is routed by its slot.
                self.flush(alloc);
                return Flow::Barrier;
            }
            if !(p.clean() && alloc.is_empty()) {
                let conn = p.conn.clone();
                let seq = self.pinned_slot(req, alloc);
                self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
                return Flow::Next;
            }
            self.release_pinned_if_clean(true);
        }
        if self.cluster.is_some() {
            return self.forward_cluster(req, alloc);
        }
        let conn = self.shared_conn();
        // Another connection of the same node (after SELECT or HELLO) could
        // run this request before earlier ones: wait for them first.
        if let Some(last) = &self.last_conn {
            if !last.same(&conn) && !alloc.is_empty() {
                self.flush(alloc);
                return Flow::Barrier;
            }
        }
        let seq = alloc.pending();
        self.push(&conn, req.raw, Some((seq, WHOLE)), alloc);
        Flow::Next
    }

    /// Send a redirected request again (cluster `MOVED`/`ASK`/`TRYAGAIN`/`CLUSTERDOWN`).
    fn redirect(&mut self, r: crate::replies::Redirected) {
        let queue = self.queue.clone();
        let mut alloc = queue.alloc();
        match self.cluster_redirect(&r) {
            Some((conn, _))
                if r.reply.starts_with(b"-TRYAGAIN") || r.reply.starts_with(b"-CLUSTERDOWN") =>
            {
                let conn = self.redirect_conn(&r, conn);
                // Keys of the slot in migration (TRYAGAIN), or the cluster
                // failing over (CLUSTERDOWN): asking again at once would fail
                // again, so wait, doubling each time, off this task.
                drop(alloc);
                let target = Target {
                    queue: self.queue.clone(),
                    seq: r.seq,
                    part: r.part,
                };
                let delay = crate::cluster::redirect::backoff(r.attempt);
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut buf = BytesMut::from(&r.request[..]);
                    let mut targets = vec![target];
                    if let Err(e) = conn.submit(&mut buf, &mut targets) {
                        let b = e.reply_bytes();
                        for t in targets {
                            t.queue.deliver(t.seq, t.part, b.clone());
                        }
                    }
                });
                return;
            }
            Some((conn, asking)) => {
                let conn = self.redirect_conn(&r, conn);
                if asking {
                    self.push(
                        &conn,
                        b"*1\r\n$6\r\nASKING\r\n",
                        Some((crate::replies::DISCARD, WHOLE)),
                        &mut alloc,
                    );
                }
                self.push(&conn, &r.request, Some((r.seq, r.part)), &mut alloc);
            }
            // No better node known: the client gets the redirect error itself.
            None => alloc.fill(r.seq, r.part, r.reply),
        }
        self.flush(&mut alloc);
    }

    fn shared_conn(&mut self) -> Conn {
        match &self.shared {
            Some((db, proto, c)) if *db == self.st.db && *proto == self.st.proto => c.clone(),
            _ => {
                let c = self
                    .worker
                    .node()
                    .choose(self.st.db, self.st.proto, self.st.id);
                self.shared = Some((self.st.db, self.st.proto, c.clone()));
                c
            }
        }
    }

    /// Add a request to the batch for `conn` (`target`: slot and part).
    fn push(&mut self, conn: &Conn, raw: &[u8], target: Option<(u64, u32)>, alloc: &mut Alloc) {
        let batch = match self.out.iter().position(|b| b.conn.same(conn)) {
            Some(i) => &mut self.out[i],
            None => {
                let (buf, targets) = self.spare.pop().unwrap_or_default();
                self.out.push(Batch {
                    conn: conn.clone(),
                    buf,
                    targets,
                });
                let last = self.out.len() - 1;
                &mut self.out[last]
            }
        };
        batch.buf.extend_from_slice(raw);
        if self.passthrough_synced && self.pinned.as_ref().is_some_and(|p| p.conn.same(conn)) {
            self.passthrough_synced = false;
        }
        if let Some((seq, part)) = target {
            if conn.pooled() {
                alloc.hold(seq);
            }
            batch.targets.push(Target {
                queue: self.queue.clone(),
                seq,
                part,
            });
        }
        self.last_conn = Some(conn.clone());
    }

    /// Submit the batches: per connection one lock and at most one wake-up.
    fn flush(&mut self, alloc: &mut Alloc) {
        while let Some(mut batch) = self.out.pop() {
            if !batch.buf.is_empty() {
                let mut submitted = batch.conn.submit(&mut batch.buf, &mut batch.targets);
                // An idle extra connection closed just now. Nothing of this
                // session was in flight on it (it closes only when empty), so
                // the batch can go to another connection of its group in order.
                for _ in 0..4 {
                    if submitted.is_ok() || self.cluster.is_some() || !batch.conn.retired() {
                        break;
                    }
                    let (db, proto) = batch.conn.group();
                    let c = self.worker.node().choose(db, proto, self.st.id);
                    if self.shared.as_ref().is_some_and(|s| s.2.same(&batch.conn)) {
                        self.shared = Some((db, proto, c.clone()));
                    }
                    if self.last_conn.as_ref().is_some_and(|l| l.same(&batch.conn)) {
                        self.last_conn = Some(c.clone());
                    }
                    batch.conn = c;
                    submitted = batch.conn.submit(&mut batch.buf, &mut batch.targets);
                }
                if let Err(e) = submitted {
                    if let Some(t) = &self.cluster {
                        // A node is down: its replica may be taking over.
                        t.request_refresh();
                    }
                    let b = e.reply_bytes();
                    for t in batch.targets.drain(..) {
                        alloc.fill(t.seq, t.part, b.clone());
                    }
                    if self
                        .pinned
                        .as_ref()
                        .is_some_and(|p| p.conn.same(&batch.conn))
                    {
                        // A pinned connection that died takes its state with it.
                        self.pinned = None;
                        self.last_conn = None;
                    }
                }
            }
            batch.buf.clear();
            batch.targets.clear();
            self.spare.push((batch.buf, batch.targets));
        }
    }

    fn local(&mut self, l: Local, req: &Req, alloc: &mut Alloc) -> Flow {
        Metrics::add(&self.ctx.metrics.commands_local, 1);
        if l == Local::Client {
            if let Some(flow) = self.client_control(req, alloc) {
                return flow;
            }
        }
        let mut out = std::mem::take(&mut self.scratch);
        let effect = local::run(&self.ctx, &mut self.st, l, req, &mut out);
        if matches!(l, Local::Auth | Local::Hello | Local::Reset) {
            self.st.meta.activity.set_user(&self.st.user);
        }
        if l == Local::Reset {
            // RESET leaves every subscription (the pinned connection goes)
            // and turns tracking off.
            self.st.meta.activity.reset_pubsub();
            self.st.meta.activity.set_tracking(false, false, None);
            self.redirect_to = None;
            self.trackinginfo = (0, None);
        }
        let reply = out.split().freeze();
        self.scratch = out;
        match effect {
            local::Effect::None => {
                alloc.ready(reply, After::Nothing);
                Flow::Next
            }
            local::Effect::Close => {
                alloc.ready(reply, After::Close);
                Flow::Stop
            }
            local::Effect::Tracking => {
                // CLIENT TRACKING: the connection receives invalidations from
                // now on, so it becomes a pinned passthrough connection.
                self.enter_passthrough(req, alloc)
            }
            local::Effect::Reset => {
                if !alloc.is_empty() {
                    self.flush(alloc);
                    return Flow::Barrier;
                }
                if let Some(p) = self.pinned.take() {
                    p.conn.close();
                }
                self.keyspace = None;
                self.last_conn = None;
                self.leave_streaming(alloc);
                alloc.ready(reply, After::Nothing);
                Flow::Next
            }
        }
    }

    /// Answer a request from a task: multi-step commands made of several
    /// upstream calls. It starts once every earlier reply is in, and later
    /// requests wait until it has answered, so it is ordered like any command.
    /// `build` runs only when the task starts (after a barrier it runs again
    /// for the same request).
    fn run_op<F>(&mut self, alloc: &mut Alloc, build: impl FnOnce(&mut Self) -> F) -> Flow
    where
        F: Future<Output = Bytes> + Send + 'static,
    {
        if !alloc.is_empty() {
            self.flush(alloc);
            return Flow::Barrier;
        }
        let op = build(self);
        let seq = alloc.pending();
        let queue = self.queue.clone();
        tokio::spawn(async move {
            let reply = op.await;
            queue.deliver(seq, WHOLE, reply);
        });
        Flow::WaitAfter
    }

    /// Answer the request with the error line `msg` (Redis's words).
    fn reply_error(&mut self, alloc: &mut Alloc, msg: &str) -> Flow {
        alloc.ready(crate::error::reply(msg), After::Nothing);
        Flow::Next
    }

    /// Answer the request with `e`'s reply.
    fn fail(&mut self, alloc: &mut Alloc, e: &crate::error::Error) -> Flow {
        alloc.ready(e.reply_bytes(), After::Nothing);
        Flow::Next
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.st.id).finish()
    }
}

fn is_shard_pubsub(cmd: &command::Info) -> bool {
    matches!(cmd.name, "ssubscribe" | "sunsubscribe")
}

/// A static reply.
pub fn static_reply(b: &'static [u8]) -> Bytes {
    Bytes::from_static(b)
}

/// The arguments of one raw RESP request (for re-routing a retried request).
fn split_request(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut p = RequestParser::new(usize::MAX, usize::MAX);
    match p.parse(raw) {
        Ok(Parsed::Frame { .. }) => Some((0..p.argc()).map(|i| p.arg(raw, i)).collect()),
        _ => None,
    }
}
