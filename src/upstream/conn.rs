//! One connection to one Redis node: a task that writes batched requests and
//! hands each reply to the slot that asked for it.
//!
//! Sessions append raw request bytes plus one [`Target`] per request to the
//! connection's outbox under a short lock; the connection task swaps the whole
//! outbox out and writes it with one syscall, so everything many clients sent
//! in one scheduler tick travels together. Replies are framed (not parsed) and
//! matched to targets in FIFO order. The task reads whenever the socket is
//! readable, also while a write is blocked, so two full TCP buffers can never
//! wait on each other.
//!
//! Liveness: there is no command timeout. A connection with requests in
//! flight that has read nothing for `command_timeout` asks its node's
//! [`Control`] for a probe; only a failed probe (or a socket error) fails its
//! requests. A shared connection whose oldest request in flight is older than
//! `stall_after` marks itself stalled, so sessions send new requests to
//! another connection of the node (see `NodeConns::choose`).

use super::control::Control;
use crate::error::Error;
use crate::net;
use crate::net::Stream;
use crate::protocol::{encode, Proto, ReplyScanner};
use crate::replies::ReplyQueue;
use crate::stats::hist::AtomicHist;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Where one reply goes: a slot of one session's reply queue.
#[derive(Debug)]
pub struct Target {
    pub queue: Arc<ReplyQueue>,
    pub seq: u64,
    /// Part of a split request, or `replies::WHOLE`.
    pub part: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    Connecting = 0,
    Up = 1,
    Down = 2,
    Closed = 3,
}

/// How to reach and prepare a connection.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    pub addr: Arc<str>,
    pub connect_timeout: Duration,
    /// No reply for this long while requests are in flight: probe the node.
    pub command_timeout: Duration,
    /// Shared connections: older requests in flight than this mark it stalled.
    pub stall_after: Duration,
    /// Where probes go; `None` only for the control connection itself, which
    /// then gives up after `command_timeout` without a reply.
    pub control: Option<Arc<Control>>,
    /// An extra shared connection opened beside stalled ones: it closes
    /// after this long without requests.
    pub retire_after: Option<Duration>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    pub proto: Proto,
    /// Reconnect after a failure (shared connections); pinned ones close for good.
    pub reconnect: bool,
    /// Send `READONLY` (cluster reads from replicas; a no-op on primaries).
    pub readonly: bool,
    /// Bounds of the batch latency histogram, microseconds (`stats.latency_buckets_us`).
    pub latency_buckets_us: Arc<[u64]>,
    /// `[upstream.tls]`: connect with TLS.
    pub tls: Option<crate::config::UpstreamTlsConfig>,
}

#[derive(Debug, Default)]
struct Outbox {
    buf: BytesMut,
    targets: Vec<Target>,
}

#[derive(Debug)]
struct Shared {
    addr: Arc<str>,
    outbox: Mutex<Outbox>,
    notify: Notify,
    state: AtomicU8,
    last_error: Mutex<Option<Arc<str>>>,
    /// Receives frames that answer no request: pub/sub messages, pushes, MONITOR.
    owner: Mutex<Option<Arc<ReplyQueue>>>,
    closing: AtomicBool,
    /// Closed from outside (the primary changed): the owner of a pinned
    /// connection is told, once, and its client connection closes.
    killed: AtomicBool,
    owner_told: AtomicBool,
    /// A shared connection (reconnects): every request on it is answered
    /// within the command timeout, so a session may wait for its reply before
    /// writing earlier ones (see `ReplyQueue`'s batch holding).
    pooled: bool,
    /// Counters for /metrics.
    reconnects: AtomicU64,
    requests: AtomicU64,
    /// Requests answered (by a reply or an error): in flight = requests - answered.
    answered: AtomicU64,
    /// [`STALLED`] and [`RETIRED`]: sessions choose another connection.
    avoid: AtomicU8,
    /// Opened on demand beside stalled ones (closes when idle).
    extra: bool,
    /// The group the connection belongs to.
    db: u32,
    proto: Proto,
    /// Per batch: from taking it for writing to reading its last reply.
    latency: AtomicHist,
    /// A refused connection ([`Conn::refused`]): `last_error` is the whole
    /// error reply text.
    refused: bool,
    /// The latest connect failed because the node refused respite's
    /// handshake: `last_error` is the node's reply.
    handshake_refused: AtomicBool,
    /// Pinned connections: Redis's id for it (`CLIENT ID` in the
    /// handshake), for `CLIENT UNBLOCK`/`CLIENT KILL` sent out of band; 0
    /// until known.
    upstream_id: AtomicU64,
}

/// The oldest request in flight waited longer than `stall_after`.
const STALLED: u8 = 1;
/// An extra connection that closed after being idle; takes no more requests.
const RETIRED: u8 = 2;

/// Handle to a connection task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Conn {
    shared: Arc<Shared>,
}

impl Conn {
    /// Start the connection task on the current runtime. It connects in the
    /// background: requests submitted meanwhile wait for the outcome.
    pub fn spawn(opts: ConnOptions, owner: Option<Arc<ReplyQueue>>) -> Conn {
        Self::spawn_holding(opts, owner, ())
    }

    /// As [`Conn::spawn`], keeping `guard` until the connection task ends
    /// (its socket is closed by then): how the pinned pool counts the
    /// connections that are open.
    pub fn spawn_holding<G: Send + 'static>(
        opts: ConnOptions,
        owner: Option<Arc<ReplyQueue>>,
        guard: G,
    ) -> Conn {
        let shared = Arc::new(Shared {
            addr: opts.addr.clone(),
            outbox: Mutex::new(Outbox::default()),
            notify: Notify::new(),
            state: AtomicU8::new(ConnState::Connecting as u8),
            last_error: Mutex::new(None),
            owner: Mutex::new(owner),
            closing: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            owner_told: AtomicBool::new(false),
            pooled: opts.reconnect,
            reconnects: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            avoid: AtomicU8::new(0),
            extra: opts.retire_after.is_some(),
            db: opts.db,
            proto: opts.proto,
            latency: AtomicHist::new(opts.latency_buckets_us.clone()),
            refused: false,
            handshake_refused: AtomicBool::new(false),
            upstream_id: AtomicU64::new(0),
        });
        let task = shared.clone();
        tokio::spawn(async move {
            run(task, opts).await;
            drop(guard);
        });
        Conn { shared }
    }

    /// A connection that was refused: every submit fails at once with the
    /// error reply `reply` (e.g. `ERR max number of clients reached`).
    pub fn refused(addr: &str, reply: &str, latency_buckets_us: Arc<[u64]>) -> Conn {
        Self::closed(addr, reply, latency_buckets_us, true)
    }

    /// A connection that never connects: every submit fails at once with
    /// `ERR upstream ADDR unavailable: WHY` (sentinel mode with no primary known).
    pub fn dead(addr: &str, why: &str, latency_buckets_us: Arc<[u64]>) -> Conn {
        Self::closed(addr, why, latency_buckets_us, false)
    }

    fn closed(addr: &str, why: &str, latency_buckets_us: Arc<[u64]>, refused: bool) -> Conn {
        Conn {
            shared: Arc::new(Shared {
                addr: addr.into(),
                outbox: Mutex::new(Outbox::default()),
                notify: Notify::new(),
                state: AtomicU8::new(ConnState::Closed as u8),
                last_error: Mutex::new(Some(why.into())),
                owner: Mutex::new(None),
                closing: AtomicBool::new(true),
                killed: AtomicBool::new(false),
                owner_told: AtomicBool::new(false),
                pooled: false,
                reconnects: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                answered: AtomicU64::new(0),
                avoid: AtomicU8::new(0),
                extra: false,
                db: 0,
                proto: Proto::Resp2,
                latency: AtomicHist::new(latency_buckets_us),
                refused,
                handshake_refused: AtomicBool::new(false),
                upstream_id: AtomicU64::new(0),
            }),
        }
    }

    /// Whether this is a [`Conn::refused`] connection.
    pub fn is_refused(&self) -> bool {
        self.shared.refused
    }

    /// A handle that does not keep the connection alive.
    pub fn downgrade(&self) -> WeakConn {
        WeakConn(Arc::downgrade(&self.shared))
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.shared.addr
    }

    /// A shared (pooled, reconnecting) connection rather than a pinned one.
    #[inline]
    pub fn pooled(&self) -> bool {
        self.shared.pooled
    }

    /// Stalled or retired: a session should choose another connection for
    /// new requests (one relaxed load; sessions check it once per read).
    #[inline]
    pub fn avoid(&self) -> bool {
        self.shared.avoid.load(Ordering::Relaxed) != 0
    }

    /// Its oldest request in flight waited longer than `stall_after`.
    pub fn stalled(&self) -> bool {
        self.shared.avoid.load(Ordering::Relaxed) & STALLED != 0
    }

    /// An extra connection that closed after being idle: [`Conn::submit`]
    /// refuses requests without consuming them, to be sent elsewhere.
    pub fn retired(&self) -> bool {
        self.shared.avoid.load(Ordering::Acquire) & RETIRED != 0
    }

    /// Opened on demand beside stalled connections.
    #[inline]
    pub fn extra(&self) -> bool {
        self.shared.extra
    }

    /// The database and RESP version the connection is set up for.
    pub fn group(&self) -> (u32, Proto) {
        (self.shared.db, self.shared.proto)
    }

    /// Whether both handles name the same connection.
    #[inline]
    pub fn same(&self, other: &Conn) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    pub fn state(&self) -> ConnState {
        match self.shared.state.load(Ordering::Acquire) {
            0 => ConnState::Connecting,
            1 => ConnState::Up,
            2 => ConnState::Down,
            _ => ConnState::Closed,
        }
    }

    pub fn last_error(&self) -> Option<Arc<str>> {
        let e = self.shared.last_error.lock().clone();
        match e {
            Some(reply) if self.shared.handshake_refused.load(Ordering::Acquire) => {
                Some(format!("refused respite's handshake: {reply}").into())
            }
            e => e,
        }
    }

    pub fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Redis's client id for this (pinned) connection, once its handshake
    /// learnt it.
    pub fn upstream_id(&self) -> Option<u64> {
        match self.shared.upstream_id.load(Ordering::Acquire) {
            0 => None,
            id => Some(id),
        }
    }

    /// Requests submitted and not answered yet.
    pub fn inflight(&self) -> u64 {
        let answered = self.shared.answered.load(Ordering::Relaxed);
        self.requests().saturating_sub(answered)
    }

    /// Upstream latency: per batch, from its write to its last reply.
    pub fn latency(&self) -> &AtomicHist {
        &self.shared.latency
    }

    /// Queue `buf` (raw requests) and their `targets` for writing; both are
    /// left empty for reuse. Fails at once when the node is known to be
    /// down: requests never wait on a dead node. A [retired](Conn::retired)
    /// connection leaves both untouched.
    pub fn submit(&self, buf: &mut BytesMut, targets: &mut Vec<Target>) -> Result<(), Error> {
        let wake = {
            let mut ob = self.shared.outbox.lock();
            // Set under this lock (see `try_retire`), so nothing is queued after it.
            if self.shared.avoid.load(Ordering::Relaxed) & RETIRED != 0 {
                return Err(Error::unavailable(&self.shared.addr, "connection retired"));
            }
            let state = self.shared.state.load(Ordering::Acquire);
            if state >= ConnState::Down as u8 {
                buf.clear();
                return Err(self.unavailable());
            }
            let was_empty = ob.buf.is_empty();
            if was_empty {
                std::mem::swap(&mut ob.buf, buf);
            } else {
                ob.buf.extend_from_slice(buf);
                buf.clear();
            }
            self.shared
                .requests
                .fetch_add(targets.len() as u64, Ordering::Relaxed);
            ob.targets.append(targets);
            was_empty
        };
        if wake {
            self.shared.notify.notify_one();
        }
        Ok(())
    }

    /// The error for requests this node cannot serve now.
    pub fn unavailable(&self) -> Error {
        let why = self.shared.last_error.lock().clone();
        if self.shared.refused {
            return Error::refused(why.as_deref().unwrap_or_default().to_string());
        }
        if let Some(reply) = why
            .as_deref()
            .filter(|_| self.shared.handshake_refused.load(Ordering::Acquire))
        {
            return Error::handshake_refused(&self.shared.addr, reply);
        }
        Error::unavailable(&self.shared.addr, why.as_deref().unwrap_or("not connected"))
    }

    /// Point unsolicited frames at a new owner (pinned connections change hands).
    pub fn set_owner(&self, owner: Option<Arc<ReplyQueue>>) {
        *self.shared.owner.lock() = owner;
    }

    /// Ask the task to close the connection and end.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.notify.notify_one();
    }

    /// Close because the node must not be used any more (a failover moved
    /// the primary): nothing queued is written, requests in flight fail with
    /// `why`, and the session owning a pinned connection gets an error reply
    /// and is closed, as a client of the old primary would be.
    pub fn kill(&self, why: &str) {
        *self.shared.last_error.lock() = Some(why.into());
        self.shared
            .handshake_refused
            .store(false, Ordering::Release);
        self.shared.killed.store(true, Ordering::Release);
        self.close();
        if self.state() == ConnState::Closed {
            // The task already ended (the node died first): tell the owner here.
            tell_owner(&self.shared, why, true);
        }
    }
}

/// A connection handle that does not keep it alive.
#[derive(Debug, Clone)]
pub struct WeakConn(std::sync::Weak<Shared>);

impl WeakConn {
    /// Whether this names `conn`.
    pub fn is(&self, conn: &Conn) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&conn.shared))
    }

    pub fn upgrade(&self) -> Option<Conn> {
        self.0.upgrade().map(|shared| Conn { shared })
    }
}

/// The owner of a killed pinned connection gets one error reply (unless its
/// requests in flight just got theirs), then its client connection closes.
fn tell_owner(shared: &Shared, why: &str, with_error: bool) {
    if !shared.killed.load(Ordering::Acquire) || shared.owner_told.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(owner) = shared.owner.lock().take() {
        let e = if with_error {
            owner.note_upstream_failure();
            Error::unavailable(&shared.addr, why).reply_bytes()
        } else {
            Bytes::new()
        };
        owner.push_close(e);
    }
}

async fn run(shared: Arc<Shared>, opts: ConnOptions) {
    let mut backoff = opts.backoff_min;
    let mut first = true;
    loop {
        if !first {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        shared
            .state
            .store(ConnState::Connecting as u8, Ordering::Release);
        let mut inflight = VecDeque::new();
        let mut refusal = false;
        let reason = match connect(&opts, &shared.upstream_id).await {
            Ok(stream) => {
                if let Some(c) = &opts.control {
                    c.handshake_passed();
                }
                shared.handshake_refused.store(false, Ordering::Release);
                *shared.last_error.lock() = None;
                shared.state.store(ConnState::Up as u8, Ordering::Release);
                backoff = opts.backoff_min;
                tracing::debug!(addr = %opts.addr, "upstream connected");
                io_loop(&shared, &opts, &stream, &mut inflight).await
            }
            Err(ConnectError::NotNow(reply)) => {
                // The node is busy (a script past busy-reply-threshold) or
                // loading: the requests waiting get its own reply, as on a
                // new direct connection, and the handshake is tried again
                // soon. The node is not down.
                tracing::debug!(addr = %opts.addr, "upstream busy during handshake");
                answer_queued(&shared, &reply);
                first = true;
                tokio::select! {
                    _ = tokio::time::sleep(opts.backoff_min) => {}
                    _ = wait_closing(&shared) => {
                        shared.state.store(ConnState::Closed as u8, Ordering::Release);
                        return;
                    }
                }
                continue;
            }
            Err(ConnectError::Refused(reply)) => {
                // Logged once by the node's control plane, not per attempt.
                if let Some(c) = &opts.control {
                    c.handshake_refused(&reply);
                }
                refusal = true;
                reply
            }
            Err(e) => e.reason(),
        };
        let closing = shared.closing.load(Ordering::Acquire);
        if refusal {
            tracing::debug!(addr = %opts.addr, %reason, "upstream refused respite's handshake");
        } else if !closing {
            tracing::warn!(addr = %opts.addr, %reason, "upstream connection failed");
        }
        let killed = shared.killed.load(Ordering::Acquire);
        let reason = match shared.last_error.lock().clone() {
            Some(why) if killed => {
                refusal = false;
                why.to_string()
            }
            _ => reason,
        };
        shared.handshake_refused.store(refusal, Ordering::Release);
        let end = closing || !opts.reconnect;
        let failed = fail_all(
            &shared,
            &reason,
            inflight,
            if end {
                ConnState::Closed
            } else {
                ConnState::Down
            },
        );
        if end {
            tell_owner(&shared, &reason, failed == 0);
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = wait_closing(&shared) => {
                shared.state.store(ConnState::Closed as u8, Ordering::Release);
                return;
            }
        }
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

async fn wait_closing(shared: &Shared) {
    loop {
        if shared.closing.load(Ordering::Acquire) {
            return;
        }
        shared.notify.notified().await;
    }
}

/// Answer the requests waiting for the connection with `reply` (a `-BUSY`
/// or `-LOADING` the node gave the handshake); the state stays as it is.
fn answer_queued(shared: &Shared, reply: &Bytes) {
    let queued = {
        let mut ob = shared.outbox.lock();
        ob.buf.clear();
        std::mem::take(&mut ob.targets)
    };
    shared
        .answered
        .fetch_add(queued.len() as u64, Ordering::Relaxed);
    for t in queued {
        t.queue.deliver(t.seq, t.part, reply.clone());
    }
}

/// Mark the node down and answer every request it holds with an error.
/// Returns how many requests failed.
fn fail_all(shared: &Shared, reason: &str, inflight: VecDeque<Target>, state: ConnState) -> usize {
    let e = if shared.handshake_refused.load(Ordering::Acquire) {
        Error::handshake_refused(&shared.addr, reason)
    } else {
        Error::unavailable(&shared.addr, reason)
    }
    .reply_bytes();
    *shared.last_error.lock() = Some(reason.into());
    shared.avoid.fetch_and(!STALLED, Ordering::Relaxed);
    let queued = {
        let mut ob = shared.outbox.lock();
        shared.state.store(state as u8, Ordering::Release);
        ob.buf.clear();
        std::mem::take(&mut ob.targets)
    };
    let n = (inflight.len() + queued.len()) as u64;
    shared.answered.fetch_add(n, Ordering::Relaxed);
    for t in inflight.into_iter().chain(queued) {
        t.queue.deliver_failure(t.seq, t.part, e.clone());
    }
    n as usize
}

/// Why a connection could not be set up.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The socket failed, closed or timed out.
    Io(String),
    /// The node answered the handshake with an error (`WRONGPASS`, ...).
    Refused(String),
    /// The node answered `-BUSY` or `-LOADING` (its whole reply): not now.
    NotNow(Bytes),
}

impl ConnectError {
    pub(crate) fn reason(&self) -> String {
        match self {
            ConnectError::Io(e) => e.clone(),
            ConnectError::Refused(e) => format!("handshake refused: {e}"),
            ConnectError::NotNow(r) => format!(
                "handshake refused: {}",
                String::from_utf8_lossy(r.get(1..r.len().saturating_sub(2)).unwrap_or(b""))
            ),
        }
    }
}

async fn connect(opts: &ConnOptions, id: &AtomicU64) -> Result<Stream, ConnectError> {
    match tokio::time::timeout(opts.connect_timeout, open_learning(opts, Some(id))).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Io("connect timed out".to_string())),
    }
}

/// Connect and run the handshake, with no time limit of its own.
pub(crate) async fn open(opts: &ConnOptions) -> Result<Stream, ConnectError> {
    open_learning(opts, None).await
}

/// As [`open`]; a pinned connection (one that does not reconnect) also
/// learns its id at Redis into `id`.
async fn open_learning(opts: &ConnOptions, id: Option<&AtomicU64>) -> Result<Stream, ConnectError> {
    let stream = net::connect(&opts.addr, opts.tls.as_ref())
        .await
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    let id = id.filter(|_| !opts.reconnect);
    handshake(&stream, opts, id).await?;
    Ok(stream)
}

/// AUTH, HELLO 3 and SELECT as configured, pipelined; an error reply fails
/// the connection (`-NOAUTH` to any step: respite needs a password it does
/// not have), except to the last steps, `CLIENT ID` (pinned
/// connections, into `id`) and `INFO server` (the version is only
/// informative, and a node running a long script answers it `-BUSY`).
async fn handshake(
    stream: &Stream,
    opts: &ConnOptions,
    id: Option<&AtomicU64>,
) -> Result<(), ConnectError> {
    let io = |e: std::io::Error| ConnectError::Io(e.to_string());
    let mut out = BytesMut::new();
    let mut expected = 0;
    match (&opts.username, &opts.password) {
        (Some(u), Some(p)) => {
            encode::command(&mut out, &[b"AUTH".as_slice(), u.as_bytes(), p.as_bytes()])
        }
        (None, Some(p)) => encode::command(&mut out, &[b"AUTH".as_slice(), p.as_bytes()]),
        _ => {}
    }
    if opts.password.is_some() {
        expected += 1;
    }
    if opts.proto == Proto::Resp3 {
        encode::command(&mut out, &[b"HELLO".as_slice(), b"3"]);
        expected += 1;
    }
    if opts.db != 0 {
        let db = encode::itoa(opts.db as i64);
        encode::command(&mut out, &[b"SELECT".as_slice(), db.as_bytes()]);
        expected += 1;
    }
    if opts.readonly {
        encode::command(&mut out, &[b"READONLY".as_slice()]);
        expected += 1;
    }
    // Pinned connections: their id, for CLIENT UNBLOCK sent out of band.
    // Its reply comes second to last; an error to it (an ACL without
    // CLIENT) only leaves the id unknown.
    if id.is_some() {
        encode::command(&mut out, &[b"CLIENT".as_slice(), b"ID"]);
        expected += 1;
    }
    let informative = if id.is_some() { 2 } else { 1 };
    // Learn the server version for HELLO replies.
    encode::command(&mut out, &[b"INFO".as_slice(), b"server"]);
    expected += 1;
    while !out.is_empty() {
        stream.writable().await.map_err(io)?;
        match net::write_buf(stream, &mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut scanner = ReplyScanner::new();
    // The first error reply decides; the rest are read so nothing is left over.
    let mut failed = None;
    while expected > 0 {
        match scanner
            .scan(&rbuf)
            .map_err(|e| ConnectError::Io(e.to_string()))?
        {
            Some(len) => {
                let frame = rbuf.split_to(len).freeze();
                expected -= 1;
                // Without AUTH, a node that now wants a password answers
                // every step `-NOAUTH`: the connection could not serve a
                // single request, so the handshake counts as refused.
                if frame.starts_with(b"-NOAUTH") && failed.is_none() {
                    let text = String::from_utf8_lossy(&frame[1..frame.len() - 2]).into_owned();
                    failed = Some(ConnectError::Refused(text));
                    continue;
                }
                if expected == 1 && informative == 2 {
                    if let (Some(id), Some(n)) = (id, frame.strip_prefix(b":")) {
                        let n = n
                            .strip_suffix(b"\r\n")
                            .and_then(crate::protocol::request::parse_int);
                        id.store(
                            n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
                            Ordering::Release,
                        );
                    }
                    continue;
                }
                if frame.first() == Some(&b'-') {
                    if expected == 0 || failed.is_some() {
                        continue;
                    }
                    failed = Some(
                        if frame.starts_with(b"-BUSY") || frame.starts_with(b"-LOADING") {
                            ConnectError::NotNow(frame)
                        } else {
                            let text =
                                String::from_utf8_lossy(&frame[1..frame.len() - 2]).into_owned();
                            ConnectError::Refused(text)
                        },
                    );
                } else if expected == 0 {
                    super::learn_version(&frame);
                }
            }
            None => {
                stream.readable().await.map_err(io)?;
                match net::read_buf(stream, &mut rbuf) {
                    Ok(0) => {
                        return Err(ConnectError::Io(
                            "connection closed during handshake".to_string(),
                        ))
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io(e)),
                }
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs until the connection fails or is closed; returns why.
async fn io_loop(
    shared: &Shared,
    opts: &ConnOptions,
    stream: &Stream,
    inflight: &mut VecDeque<Target>,
) -> String {
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut scanner = ReplyScanner::new();
    // Checks run only while requests are in flight (or, on an extra
    // connection, to notice it is idle): an idle connection costs no timer.
    let mut check = opts.command_timeout / 4;
    if shared.pooled {
        check = check.min(opts.stall_after / 2);
    }
    let mut tick = tokio::time::interval(check.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_progress = Instant::now();
    // Batches in flight: (requests taken up to and including it, taken at).
    let mut batches = Batches::default();
    // The node's answer to a probe this connection asked for.
    let mut probe: Option<Probe> = None;
    let mut stalled = false;
    shared.avoid.fetch_and(!STALLED, Ordering::Relaxed);
    loop {
        // Checked before writing: a connection closed because its node must
        // not be used any more writes nothing that was queued since.
        if shared.closing.load(Ordering::Acquire) {
            return "closed".to_string();
        }
        {
            let mut ob = shared.outbox.lock();
            if !ob.buf.is_empty() {
                if wbuf.is_empty() {
                    std::mem::swap(&mut wbuf, &mut ob.buf);
                } else {
                    wbuf.extend_from_slice(&ob.buf);
                    ob.buf.clear();
                }
            }
            if !ob.targets.is_empty() {
                let now = Instant::now();
                if inflight.is_empty() {
                    last_progress = now;
                }
                batches.taken(ob.targets.len(), now);
                inflight.extend(ob.targets.drain(..));
            }
        }
        while !wbuf.is_empty() {
            match net::write_buf(stream, &mut wbuf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return e.to_string(),
            }
        }
        loop {
            match read_replies(stream, &mut rbuf, scanner.need()) {
                Ok(0) => return "connection closed by server".to_string(),
                Ok(_) => {
                    last_progress = Instant::now();
                    let before = inflight.len();
                    let r = dispatch(shared, &mut scanner, &mut rbuf, inflight);
                    let answered = before - inflight.len();
                    if answered > 0 {
                        shared
                            .answered
                            .fetch_add(answered as u64, Ordering::Relaxed);
                        batches.answered(answered, last_progress, &shared.latency);
                        if stalled && !batches.older_than(opts.stall_after, last_progress) {
                            stalled = false;
                            shared.avoid.fetch_and(!STALLED, Ordering::Relaxed);
                        }
                    }
                    if let Err(e) = r {
                        // The reason the connection is failed with.
                        return e.to_string();
                    }
                    // A node streaming without a pause (pub/sub, a large
                    // reply) must not keep the sessions of this worker from
                    // running: they drain, write and close clients.
                    tokio::task::coop::consume_budget().await;
                    if shared.closing.load(Ordering::Acquire) {
                        return "closed".to_string();
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return e.to_string(),
            }
        }
        if shared.closing.load(Ordering::Acquire) {
            return "closed".to_string();
        }
        tokio::select! {
            biased;
            r = stream.readable() => if let Err(e) = r { return e.to_string() },
            r = stream.writable(), if !wbuf.is_empty() => if let Err(e) = r { return e.to_string() },
            _ = shared.notify.notified(), if wbuf.is_empty() => {}
            r = wait_probe(&mut probe), if probe.is_some() => {
                probe = None;
                match r {
                    // Alive: the requests keep waiting, as on a direct connection.
                    Ok(()) => last_progress = Instant::now(),
                    Err(why) => {
                        return format!(
                            "no reply for {} ms and the node failed a probe: {why}",
                            last_progress.elapsed().as_millis()
                        )
                    }
                }
            }
            _ = tick.tick(), if !inflight.is_empty() || opts.retire_after.is_some() => {
                let now = Instant::now();
                if shared.pooled && !stalled && batches.older_than(opts.stall_after, now) {
                    stalled = true;
                    shared.avoid.fetch_or(STALLED, Ordering::Relaxed);
                }
                if !inflight.is_empty()
                    && probe.is_none()
                    && now.saturating_duration_since(last_progress) > opts.command_timeout
                {
                    match &opts.control {
                        Some(c) => probe = Some(Box::pin(c.clone().probe())),
                        None => {
                            return format!("no reply within {} ms", opts.command_timeout.as_millis())
                        }
                    }
                }
                if let Some(idle) = opts.retire_after {
                    if inflight.is_empty()
                        && wbuf.is_empty()
                        && now.saturating_duration_since(last_progress) >= idle
                        && try_retire(shared)
                    {
                        return "retired after being idle".to_string();
                    }
                }
            }
        }
    }
}

/// A probe's outcome: `Err` with the reason when the node failed it.
type Probe = Pin<Box<dyn Future<Output = Result<(), Arc<str>>> + Send>>;

async fn wait_probe(probe: &mut Option<Probe>) -> Result<(), Arc<str>> {
    match probe {
        Some(p) => p.await,
        None => std::future::pending().await,
    }
}

/// Close an idle extra connection if nothing is queued on it: from now on
/// [`Conn::submit`] refuses requests (under the same lock), so none is lost.
fn try_retire(shared: &Shared) -> bool {
    let ob = shared.outbox.lock();
    if !ob.buf.is_empty() || !ob.targets.is_empty() {
        return false;
    }
    shared.avoid.fetch_or(RETIRED, Ordering::Release);
    shared.closing.store(true, Ordering::Release);
    true
}

/// A reply still arriving that needs a buffer at least this long gets an
/// allocation of its own, sized to it. Replies are handed on as slices of the
/// read buffer, and a slice keeps its whole allocation alive: without this, a
/// client holding large replies (unread, or pub/sub messages) would keep up to
/// twice their size allocated, and bytes of other clients' replies with them.
const OWN_ALLOCATION: usize = 64 * 1024;

/// Read what the socket has into `rbuf`. `need`: the length the reply at its
/// start needs at least ([`ReplyScanner::need`]).
fn read_replies(stream: &Stream, rbuf: &mut BytesMut, need: usize) -> std::io::Result<usize> {
    if need >= OWN_ALLOCATION && need > rbuf.len() {
        if rbuf.capacity() < need {
            // At least double for a reply of several large parts (MGET), so
            // its earlier parts are copied a bounded number of times.
            let mut own = BytesMut::with_capacity(need.max(2 * rbuf.len()));
            own.extend_from_slice(rbuf);
            *rbuf = own;
        }
        // Not past the reply's end: what follows goes to the next buffer.
        return net::read_spare(stream, rbuf);
    }
    net::read_buf(stream, rbuf)
}

/// Hand every complete reply in `rbuf` to its target.
fn dispatch(
    shared: &Shared,
    scanner: &mut ReplyScanner,
    rbuf: &mut BytesMut,
    inflight: &mut VecDeque<Target>,
) -> Result<(), Error> {
    while let Some(len) = scanner.scan(rbuf).map_err(Error::io)? {
        let frame: Bytes = rbuf.split_to(len).freeze();
        if frame[0] == b'>' {
            // RESP3 push: never the answer to a request.
            if let Some(owner) = &*shared.owner.lock() {
                if !owner.push_stream(frame) {
                    return Err(Error::io(owner_gone(shared)));
                }
            }
            continue;
        }
        match inflight.pop_front() {
            Some(t) => t.queue.deliver(t.seq, t.part, frame),
            None => match &*shared.owner.lock() {
                Some(owner) => {
                    if !owner.push_stream(frame) {
                        return Err(Error::io(owner_gone(shared)));
                    }
                }
                None => return Err(Error::io("reply with no request (protocol out of sync)")),
            },
        }
    }
    Ok(())
}

/// The session owning this pinned connection is gone (or was cut off for its
/// output buffer limit): stop reading frames nobody will take, at once rather
/// than when that session gets to close the connection.
fn owner_gone(shared: &Shared) -> String {
    shared.closing.store(true, Ordering::Release);
    "closed".to_string()
}

/// Batches written and not fully answered, for the upstream latency histogram
/// (one timestamp per batch, not per request).
#[derive(Debug, Default)]
struct Batches {
    /// (requests taken up to and including the batch, when it was taken).
    open: VecDeque<(u64, Instant)>,
    taken: u64,
    answered: u64,
}

impl Batches {
    fn taken(&mut self, n: usize, now: Instant) {
        self.taken += n as u64;
        self.open.push_back((self.taken, now));
    }

    /// Whether the oldest batch in flight was taken more than `age` before `now`.
    fn older_than(&self, age: Duration, now: Instant) -> bool {
        self.open
            .front()
            .is_some_and(|&(_, t)| now.saturating_duration_since(t) > age)
    }

    fn answered(&mut self, n: usize, now: Instant, hist: &AtomicHist) {
        self.answered += n as u64;
        while let Some(&(end, t)) = self.open.front() {
            if end > self.answered {
                break;
            }
            hist.record(now.saturating_duration_since(t).as_micros() as u64);
            self.open.pop_front();
        }
    }
}
