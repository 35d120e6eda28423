//! The control plane of one node: a connection that never carries client
//! traffic, so what is sent on it never waits behind a slow client request.
//!
//! It serves two things:
//! - **Probes** ([`Control::probe`]): a data connection with requests in
//!   flight that has read nothing for `command_timeout` asks whether the node
//!   is alive. The probe is `PING`; any reply (`-BUSY` and `-LOADING`
//!   included) means alive, and so does an error reply to the handshake. A
//!   refused or failed connection, or no reply within `probe_timeout`, means
//!   the node is unavailable. Concurrent requests share one probe.
//! - **Out-of-band commands** ([`Control::call`], [`Control::shutdown`]):
//!   `SCRIPT KILL` and `FUNCTION KILL` from a client go here, so they reach
//!   Redis while the script runs on a shared connection; their reply is
//!   passed on byte for byte. `SHUTDOWN` uses a connection of its own for
//!   each call (it may wait for replicas, and ends with the node closing the
//!   connection), so probes never wait behind it.
//!
//! It also keeps whether the node accepts **respite's handshake** (its
//! credentials): every connection to the node reports the outcome of its
//! handshake here ([`Control::handshake_refused`], [`Control::handshake_passed`]).
//! A refusal (a `requirepass` or ACL user changed behind respite's back)
//! turns `/ready` red and shows in `PROXY INFO` until a handshake passes
//! again; while refused, a check opens a fresh connection with backoff
//! (`reconnect_backoff_min_ms` to `reconnect_backoff_max_ms`) so recovery
//! is noticed even when no other connection needs to reconnect.
//!
//! There is one `Control` per proxy and node address, shared by every
//! worker's connections to that node ([`of`]). Its task and connection live
//! as long as some connection to the node holds it.
//!
//! Why not deadpool-redis (redis-rs connections) here: see docs/DESIGN.md,
//! "Why the control plane is not deadpool-redis".

use super::conn::{self, ConnOptions, ConnectError};
use crate::config::Config;
use crate::error::Error;
use crate::net;
use crate::net::Stream;
use crate::protocol::{Proto, ReplyScanner};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// One node's control connection and probe state.
#[derive(Debug)]
pub struct Control {
    addr: Arc<str>,
    /// Handshake settings: AUTH as configured, RESP2, database 0.
    opts: ConnOptions,
    probe_timeout: Duration,
    /// The task that owns the connection (started on first need, again if
    /// the runtime it ran on is gone).
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// A probe is queued and has not started: later requests join it.
    probe_queued: AtomicBool,
    outcome: watch::Sender<Outcome>,
    probes: AtomicU64,
    failures: AtomicU64,
    /// The node refused respite's latest handshake with this reply (no
    /// `-`, no CRLF); `None` once one passes.
    refusal: Mutex<Option<Arc<str>>>,
    /// Handshakes refused so far.
    refusals: AtomicU64,
    /// The refusal check task runs.
    rechecking: AtomicBool,
}

/// The result of the latest probe.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Probes completed so far (0: none yet).
    pub seq: u64,
    /// Why the latest probe failed; `None` when it passed.
    pub error: Option<Arc<str>>,
}

#[derive(Debug)]
enum Job {
    Probe,
    Call(Bytes, oneshot::Sender<Result<Bytes, Error>>),
}

/// Why an exchange on the control connection failed.
enum Failed {
    /// The node answered the handshake with an error: it is alive.
    Answered(String),
    /// No connection, or no reply in time.
    Down(String),
    /// The node refused respite's handshake (`AUTH` ...) with this reply:
    /// it is alive, but respite's credentials do not work there.
    Refused(String),
}

impl Control {
    fn new(config: &Config, addr: &str) -> Control {
        let u = &config.upstream;
        let opts = ConnOptions {
            addr: addr.into(),
            connect_timeout: u.connect_timeout,
            command_timeout: u.command_timeout,
            stall_after: u.stall_after,
            control: None,
            retire_after: None,
            backoff_min: u.reconnect_backoff_min,
            backoff_max: u.reconnect_backoff_max,
            username: u.username.clone(),
            password: u.password.clone(),
            db: 0,
            proto: Proto::Resp2,
            reconnect: true,
            readonly: false,
            latency_buckets_us: Arc::from(Vec::new()),
            tls: u.tls.clone(),
        };
        Control {
            addr: addr.into(),
            opts,
            probe_timeout: u.probe_timeout,
            jobs: Mutex::new(None),
            inner: Arc::new(Inner {
                probe_queued: AtomicBool::new(false),
                outcome: watch::Sender::new(Outcome::default()),
                probes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                refusal: Mutex::new(None),
                refusals: AtomicU64::new(0),
                rechecking: AtomicBool::new(false),
            }),
        }
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// Probes run and failed so far.
    pub fn probes(&self) -> (u64, u64) {
        (
            self.inner.probes.load(Ordering::Relaxed),
            self.inner.failures.load(Ordering::Relaxed),
        )
    }

    /// The latest probe's result.
    pub fn last(&self) -> Outcome {
        self.inner.outcome.borrow().clone()
    }

    /// The node's reply to respite's latest handshake when it refused it
    /// (`NOAUTH ...`, `WRONGPASS ...`); `None` when it passed (or none ran).
    pub fn refusal(&self) -> Option<Arc<str>> {
        self.inner.refusal.lock().clone()
    }

    /// Handshakes the node refused so far.
    pub fn refusals(&self) -> u64 {
        self.inner.refusals.load(Ordering::Relaxed)
    }

    /// A connection's handshake was refused with `reply` (no `-`, no CRLF).
    pub fn handshake_refused(&self, reply: &str) {
        if refused(&self.inner, &self.opts.addr, reply)
            && !self.inner.rechecking.swap(true, Ordering::SeqCst)
        {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(recheck(Arc::downgrade(&self.inner), self.opts.clone()));
                }
                Err(_) => self.inner.rechecking.store(false, Ordering::SeqCst),
            }
        }
    }

    /// A connection's handshake passed.
    pub fn handshake_passed(&self) {
        passed(&self.inner, &self.opts.addr);
    }

    /// Start the task (and so connect) if it is not running; a no-op
    /// outside a runtime.
    fn start(&self) {
        let mut jobs = self.jobs.lock();
        if jobs.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        rt.spawn(run(
            self.inner.clone(),
            self.opts.clone(),
            self.probe_timeout,
            rx,
        ));
        *jobs = Some(tx);
    }

    fn send(&self, job: Job) -> Result<(), &'static str> {
        self.start();
        match self.jobs.lock().as_ref() {
            Some(tx) => tx.send(job).map_err(|_| "control connection task ended"),
            None => Err("no runtime for the control connection"),
        }
    }

    /// The node is unreachable on the control connection, for `why`.
    fn unavailable(&self, why: &str) -> Error {
        Error::unavailable(&self.opts.addr, why)
    }

    /// Whether the node answers: joins the probe queued or running, else
    /// queues one. `Err` names why the node counts as unavailable.
    pub async fn probe(self: Arc<Self>) -> Result<(), Arc<str>> {
        let mut rx = self.inner.outcome.subscribe();
        let want = rx.borrow_and_update().seq + 1;
        if !self.inner.probe_queued.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.send(Job::Probe) {
                self.inner.probe_queued.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        }
        loop {
            {
                let o = rx.borrow_and_update();
                if o.seq >= want {
                    return match &o.error {
                        None => Ok(()),
                        Some(e) => Err(e.clone()),
                    };
                }
            }
            if rx.changed().await.is_err() {
                return Err("control connection task ended".into());
            }
        }
    }

    /// Send one command on the control connection and return its reply as
    /// Redis sent it. `Err` when the node could not be reached (or did not
    /// answer within `probe_timeout`).
    pub async fn call(&self, request: Bytes) -> Result<Bytes, Error> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Call(request, tx))
            .map_err(|why| self.unavailable(why))?;
        rx.await
            .unwrap_or_else(|_| Err(self.unavailable("control connection task ended")))
    }

    /// `SHUTDOWN` on a connection of its own: `Ok(Some(reply))` when Redis
    /// answered (an error, or `+OK` to `SHUTDOWN ABORT`), `Ok(None)` when it
    /// closed the connection without a reply (it is shutting down). No time
    /// limit once sent: Redis may wait for replicas or save first.
    pub async fn shutdown(&self, request: Bytes) -> Result<Option<Bytes>, Error> {
        let stream =
            match tokio::time::timeout(self.opts.connect_timeout, conn::open(&self.opts)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(self.unavailable(&e.reason())),
                Err(_) => return Err(self.unavailable("connect timed out")),
            };
        match roundtrip(&stream, &request).await {
            Ok(reply) => Ok(Some(reply)),
            Err(Closed::Eof) => Ok(None),
            Err(Closed::Error(e)) => Err(self.unavailable(&e)),
        }
    }
}

/// The control connection's task: one job at a time, in order.
async fn run(
    inner: Arc<Inner>,
    opts: ConnOptions,
    probe_timeout: Duration,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    // Connected at once, so a probe while the node is busy needs no handshake.
    let mut link = match tokio::time::timeout(opts.connect_timeout, conn::open(&opts)).await {
        Ok(Ok(s)) => {
            passed(&inner, &opts.addr);
            Some(s)
        }
        Ok(Err(ConnectError::Refused(e))) => {
            refused(&inner, &opts.addr, &e);
            None
        }
        _ => None,
    };
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Probe => {
                inner.probe_queued.store(false, Ordering::SeqCst);
                let error = match exchange(&inner, &mut link, &opts, probe_timeout, PING).await {
                    Ok(_) | Err(Failed::Answered(_) | Failed::Refused(_)) => None,
                    Err(Failed::Down(e)) => {
                        tracing::warn!(addr = %opts.addr, reason = %e, "upstream failed a probe");
                        inner.failures.fetch_add(1, Ordering::Relaxed);
                        Some(Arc::<str>::from(e))
                    }
                };
                inner.probes.fetch_add(1, Ordering::Relaxed);
                inner.outcome.send_modify(|o| {
                    o.seq += 1;
                    o.error = error;
                });
            }
            Job::Call(request, reply) => {
                let r = match exchange(&inner, &mut link, &opts, probe_timeout, &request).await {
                    Ok(b) => Ok(b),
                    Err(Failed::Answered(e) | Failed::Down(e)) => {
                        Err(Error::unavailable(&opts.addr, &e))
                    }
                    Err(Failed::Refused(e)) => Err(Error::handshake_refused(&opts.addr, &e)),
                };
                let _ = reply.send(r);
            }
        }
    }
}

/// One request and its reply on the control connection, (re)connecting
/// first if needed; a connection found closed is replaced once. All within
/// `limit`; a connection that timed out is dropped (its reply may still come).
async fn exchange(
    inner: &Arc<Inner>,
    link: &mut Option<Stream>,
    opts: &ConnOptions,
    limit: Duration,
    request: &[u8],
) -> Result<Bytes, Failed> {
    let fut = async {
        loop {
            let fresh = link.is_none();
            if fresh {
                match conn::open(opts).await {
                    Ok(s) => {
                        passed(inner, &opts.addr);
                        *link = Some(s)
                    }
                    Err(ConnectError::Io(e)) => return Err(Failed::Down(e)),
                    Err(ConnectError::Refused(e)) => {
                        refused(inner, &opts.addr, &e);
                        return Err(Failed::Refused(e));
                    }
                    Err(e) => return Err(Failed::Answered(e.reason())),
                }
            }
            let Some(stream) = link.as_ref() else {
                continue;
            };
            match roundtrip(stream, request).await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    *link = None;
                    if fresh {
                        return Err(Failed::Down(match e {
                            Closed::Eof => "connection closed by server".to_string(),
                            Closed::Error(e) => e,
                        }));
                    }
                    // An old connection the server closed: try a new one.
                }
            }
        }
    };
    let r = tokio::time::timeout(limit, fut).await;
    match r {
        Ok(r) => r,
        Err(_) => {
            *link = None;
            Err(Failed::Down(format!(
                "no reply to {} within {} ms",
                if request == PING {
                    "PING"
                } else {
                    "the command"
                },
                limit.as_millis()
            )))
        }
    }
}

/// Record a refused handshake; true when the node accepted the previous one
/// (or none ran): the refusal is new, logged once here.
fn refused(inner: &Inner, addr: &str, reply: &str) -> bool {
    inner.refusals.fetch_add(1, Ordering::Relaxed);
    let mut r = inner.refusal.lock();
    let new = r.is_none();
    if r.as_deref() != Some(reply) {
        *r = Some(reply.into());
    }
    drop(r);
    if new {
        tracing::warn!(
            %addr,
            %reply,
            "upstream refused respite's handshake: /ready is red until it accepts it again"
        );
    }
    new
}

/// Record a handshake that passed.
fn passed(inner: &Inner, addr: &str) {
    if inner.refusal.lock().take().is_some() {
        tracing::info!(%addr, "upstream accepts respite's handshake again");
    }
}

/// While the node refuses respite's handshake: try a fresh connection with
/// backoff until one passes (or the node's `Control` is gone), so recovery
/// shows on `/ready` even when no connection reconnects by itself.
async fn recheck(inner: Weak<Inner>, opts: ConnOptions) {
    let mut backoff = opts.backoff_min;
    loop {
        tokio::time::sleep(backoff).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.refusal.lock().is_none() {
            inner.rechecking.store(false, Ordering::SeqCst);
            // A refusal noted meanwhile found this task still running.
            if inner.refusal.lock().is_none() || inner.rechecking.swap(true, Ordering::SeqCst) {
                return;
            }
        }
        match tokio::time::timeout(opts.connect_timeout, conn::open(&opts)).await {
            Ok(Ok(_)) => passed(&inner, &opts.addr),
            Ok(Err(ConnectError::Refused(e))) => {
                refused(&inner, &opts.addr, &e);
            }
            _ => {}
        }
        backoff = (backoff * 2).min(opts.backoff_max);
    }
}

enum Closed {
    /// The server closed the connection before a whole reply.
    Eof,
    Error(String),
}

/// Write `request` and read one complete reply frame.
async fn roundtrip(stream: &Stream, request: &[u8]) -> Result<Bytes, Closed> {
    let err = |e: std::io::Error| Closed::Error(e.to_string());
    let mut out = BytesMut::from(request);
    while !out.is_empty() {
        stream.writable().await.map_err(err)?;
        match net::write_buf(stream, &mut out) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(err(e)),
        }
    }
    let mut rbuf = BytesMut::with_capacity(512);
    let mut scanner = ReplyScanner::new();
    loop {
        if let Some(len) = scanner
            .scan(&rbuf)
            .map_err(|e| Closed::Error(e.to_string()))?
        {
            return Ok(rbuf.split_to(len).freeze());
        }
        stream.readable().await.map_err(err)?;
        match net::read_buf(stream, &mut rbuf) {
            Ok(0) => return Err(Closed::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(err(e)),
        }
    }
}

/// Every live `Control`, by the proxy's configuration (its address tells
/// proxies in one process apart) and node address.
type Entry = (usize, Arc<str>, Weak<Control>);
static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn config_key(config: &Config) -> usize {
    config as *const Config as usize
}

/// The control plane of `addr` for the proxy configured by `config`,
/// created (and connected, when called on a runtime) on first use.
pub fn of(config: &Config, addr: &str) -> Arc<Control> {
    let key = config_key(config);
    let mut reg = REGISTRY.lock();
    if let Some(c) = reg
        .iter()
        .find(|e| e.0 == key && &*e.1 == addr)
        .and_then(|e| e.2.upgrade())
    {
        return c;
    }
    reg.retain(|e| e.2.strong_count() > 0);
    let c = Arc::new(Control::new(config, addr));
    c.start();
    reg.push((key, addr.into(), Arc::downgrade(&c)));
    c
}

/// Every control plane of this proxy that is in use.
pub fn all(config: &Config) -> Vec<Arc<Control>> {
    let key = config_key(config);
    REGISTRY
        .lock()
        .iter()
        .filter(|e| e.0 == key)
        .filter_map(|e| e.2.upgrade())
        .collect()
}
