//! Client side: listeners, worker threads, connection limits, shutdown, and the
//! registry of connected clients.
//!
//! Threading (see docs/DESIGN.md): `workers` threads, each a current-thread
//! tokio runtime with its own `SO_REUSEPORT` listener and its own shared
//! upstream connections. A client's session, and the upstream connections its
//! requests ride on, live on the same thread, so the hot path has no
//! cross-thread wake-ups.

pub mod clients;
pub mod command_names;
pub mod fds;
pub mod local;
pub mod session;
pub mod trim;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::router::Deployment;
pub use crate::upstream::worker::Worker;
use crate::upstream::{NodeConns, PinnedPool};
use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Process-wide state shared by every worker.
#[derive(Debug)]
pub struct Ctx {
    pub config: Arc<Config>,
    /// Client users and their permissions (replaced on reload).
    pub auth: crate::auth::Auth,
    pub metrics: Metrics,
    pub stats: Arc<crate::stats::Stats>,
    pub clients: DashMap<u64, Arc<ClientMeta>>,
    pub pinned: PinnedPool,
    /// Standalone, sentinel or cluster, with the mode's own state.
    pub deployment: crate::router::Deployment,
    /// Compression settings; `None` when disabled.
    pub compress: Option<Arc<crate::compress::Compressor>>,
    /// `CLIENT PAUSE` of this process's clients.
    pub pause: clients::Pause,
    pub shutdown: Notify,
    shutting_down: AtomicBool,
    next_id: AtomicU64,
    client_count: AtomicUsize,
    workers: Mutex<Vec<Arc<Worker>>>,
}

impl Ctx {
    pub fn new(config: Config) -> Arc<Ctx> {
        let config = Arc::new(config);
        Arc::new(Ctx {
            auth: crate::auth::Auth::new(&config.auth),
            deployment: crate::router::Deployment::new(&config),
            compress: crate::compress::Compressor::new(&config.compression),
            pinned: PinnedPool::new(config.clone()),
            stats: Arc::new(crate::stats::Stats::new(&config.stats, config.workers)),
            config,
            metrics: Metrics::default(),
            clients: DashMap::new(),
            pause: Default::default(),
            shutdown: Notify::new(),
            shutting_down: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            client_count: AtomicUsize::new(0),
            workers: Mutex::new(Vec::new()),
        })
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Stop accepting and reading; sessions finish what is in flight.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
    }

    pub fn client_count(&self) -> usize {
        self.client_count.load(Ordering::Acquire)
    }

    /// Redis version reported by the upstream (for HELLO), or ours before it answered.
    pub fn server_version(&self) -> Arc<str> {
        crate::upstream::server_version().unwrap_or_else(|| "7.0.0".into())
    }

    pub fn workers(&self) -> Vec<Arc<Worker>> {
        self.workers.lock().clone()
    }

    /// Whether some upstream connection is up and no node refuses
    /// respite's handshake (`/ready`): a node that refuses it (its password
    /// or ACL user changed behind respite's back) serves only the
    /// connections opened before, so the proxy should not get new traffic.
    pub fn ready(&self) -> bool {
        if !self.handshake_refusals().is_empty() {
            return false;
        }
        match &self.deployment {
            Deployment::Cluster(t) => t.map().is_complete(),
            Deployment::Sentinel(s) => {
                s.primary().is_some() && self.workers().iter().any(|w| w.node().any_up())
            }
            Deployment::Standalone => self.workers().iter().any(|w| w.node().any_up()),
        }
    }

    /// Nodes that refused respite's latest handshake, with their reply.
    pub fn handshake_refusals(&self) -> Vec<(Arc<str>, Arc<str>)> {
        crate::upstream::control::all(&self.config)
            .iter()
            .filter_map(|c| Some((c.addr().clone(), c.refusal()?)))
            .collect()
    }

    /// The node every worker's standalone connections go to now: the
    /// configured server, or in sentinel mode the current primary (or none).
    fn standalone_node(&self) -> NodeConns {
        match self.deployment.sentinel() {
            Some(s) => s.node_conns(),
            None => NodeConns::new(self.config.clone(), &self.config.upstream.nodes[0]),
        }
    }
}

/// What `CLIENT LIST` shows about a connected client.
#[derive(Debug)]
pub struct ClientMeta {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: Instant,
    pub name: Mutex<Option<Bytes>>,
    pub db: AtomicU32,
    pub resp: AtomicU8,
    /// What `CLIENT LIST` shows of the client's work (see `clients.rs`).
    pub activity: clients::Activity,
    /// `CLIENT KILL` and `CLIENT UNBLOCK` from other sessions.
    pub ctl: Arc<clients::Control>,
}

/// A running proxy: worker threads serving clients.
#[derive(Debug)]
pub struct Server {
    pub ctx: Arc<Ctx>,
    /// The plaintext listener's address (`None`: TLS only).
    pub local_addr: Option<SocketAddr>,
    /// The TLS listener's address.
    pub tls_addr: Option<SocketAddr>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Bind the listeners and start the workers. With port 0, every worker
    /// shares the port the first one got.
    pub fn start(ctx: Arc<Ctx>) -> io::Result<Server> {
        let n = ctx.config.workers.max(1);
        let (plain, local_addr) = bind_all(ctx.config.listen, n)?;
        let (tls, tls_addr) = bind_all(ctx.config.tls.as_ref().map(|t| t.listen), n)?;
        let mut threads = Vec::new();
        for (index, l) in plain.into_iter().zip(tls).enumerate() {
            let ctx = ctx.clone();
            let worker = Arc::new(Worker::new(index, ctx.standalone_node()));
            ctx.workers.lock().push(worker.clone());
            let t = std::thread::Builder::new()
                .name(format!("respite-w{index}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start worker runtime");
                            return;
                        }
                    };
                    rt.block_on(worker_main(ctx, worker, l));
                })?;
            threads.push(t);
        }
        Ok(Server {
            ctx,
            local_addr,
            tls_addr,
            threads,
        })
    }

    /// Wait for the worker threads to end (after shutdown).
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// One listener per worker on `addr` (or `n` times nothing), and the bound address.
#[allow(clippy::type_complexity)]
fn bind_all(
    addr: Option<SocketAddr>,
    n: usize,
) -> io::Result<(Vec<Option<std::net::TcpListener>>, Option<SocketAddr>)> {
    let Some(addr) = addr else {
        return Ok(((0..n).map(|_| None).collect(), None));
    };
    let first = bind(addr, n > 1)?;
    let local = first.local_addr()?;
    let mut listeners = vec![Some(first)];
    for _ in 1..n {
        listeners.push(Some(bind(local, true)?));
    }
    Ok((listeners, Some(local)))
}

fn bind(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// Accepts on `l`, or waits forever without one.
async fn accept_on(l: &Option<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn worker_main(
    ctx: Arc<Ctx>,
    worker: Arc<Worker>,
    (plain, tls): (Option<std::net::TcpListener>, Option<std::net::TcpListener>),
) {
    let register = |l: Option<std::net::TcpListener>| l.map(TcpListener::from_std).transpose();
    let (plain, tls) = match (register(plain), register(tls)) {
        (Ok(p), Ok(t)) => (p, t),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot register listener");
            return;
        }
    };
    worker.set_runtime(tokio::runtime::Handle::current());
    // Connect the default group now, so /ready and the first request do not wait.
    if !ctx.deployment.is_cluster() {
        let _ = worker.node().shared(0, crate::protocol::Proto::Resp2, 0);
    }
    if worker.index == 0 {
        tokio::spawn(tag_sweeper(ctx.clone(), worker.clone()));
        if !ctx.deployment.is_cluster() {
            tokio::spawn(crate::auth::learn_commands(ctx.clone(), worker.clone()));
        }
    }
    let local_tasks = Arc::new(AtomicUsize::new(0));
    let mut shutdown = std::pin::pin!(ctx.shutdown.notified());
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        if ctx.is_shutting_down() {
            break;
        }
        tokio::select! {
            r = accept_on(&plain) => match r {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accept(&ctx, &worker, &local_tasks, stream, peer, false)
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the connection
                    // waits in the backlog, so retrying at once would spin.
                    accept_failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
            r = accept_on(&tls) => match r {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accept(&ctx, &worker, &local_tasks, stream, peer, true)
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the connection
                    // waits in the backlog, so retrying at once would spin.
                    accept_failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop((plain, tls));
    // Sessions finish their in-flight replies; the grace period is enforced by main.
    while local_tasks.load(Ordering::Acquire) > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// First wait after a failed `accept`; it doubles while `accept` keeps failing.
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
/// Longest wait between `accept` attempts while they fail.
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_millis(500);
/// At most one `accept failed` line per this many milliseconds, process-wide;
/// it counts the failures not logged since the previous one.
const ACCEPT_LOG_EVERY_MS: u64 = 5000;

/// Lets one event through per period and counts the others (process-wide
/// for `accept` failures, whichever worker meets them).
#[derive(Debug)]
struct LogLimiter {
    /// Milliseconds (since `start`) before which nothing is let through.
    next_ms: AtomicU64,
    suppressed: AtomicU64,
    every_ms: u64,
}

impl LogLimiter {
    const fn new(every_ms: u64) -> Self {
        LogLimiter {
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            every_ms,
        }
    }

    /// At `now_ms`: `Some(events suppressed since the last one let through)`
    /// if this one may be logged.
    fn allow(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms < next
            || self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.every_ms,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Log a failed `accept`, at most once per [`ACCEPT_LOG_EVERY_MS`].
fn accept_failed(e: &io::Error) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    static LIMIT: LogLimiter = LogLimiter::new(ACCEPT_LOG_EVERY_MS);
    let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
    let Some(suppressed) = LIMIT.allow(now) else {
        return;
    };
    tracing::warn!(
        error = %e,
        not_logged_since = suppressed,
        "accept failed; retrying with backoff (at most one such line per {} s)",
        ACCEPT_LOG_EVERY_MS / 1000
    );
}

fn accept(
    ctx: &Arc<Ctx>,
    worker: &Arc<Worker>,
    local_tasks: &Arc<AtomicUsize>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
) {
    crate::net::tune(&stream);
    Metrics::add(&ctx.metrics.connections_accepted, 1);
    let count = ctx.client_count.fetch_add(1, Ordering::AcqRel) + 1;
    if count > ctx.config.limits.max_clients {
        ctx.client_count.fetch_sub(1, Ordering::AcqRel);
        ctx.metrics
            .event(crate::metrics::Event::ConnectionRejected { peer });
        // As Redis does: one error line, then close.
        let _ = stream.try_write(b"-ERR max number of clients reached\r\n");
        return;
    }
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let laddr = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let meta = Arc::new(ClientMeta {
        id,
        addr: peer,
        laddr,
        created: Instant::now(),
        name: Mutex::new(None),
        db: AtomicU32::new(0),
        resp: AtomicU8::new(2),
        activity: Default::default(),
        ctl: Default::default(),
    });
    ctx.clients.insert(id, meta.clone());
    ctx.metrics
        .clients_connected
        .fetch_add(1, Ordering::Relaxed);
    local_tasks.fetch_add(1, Ordering::AcqRel);
    let ctx = ctx.clone();
    let worker = worker.clone();
    let local_tasks = local_tasks.clone();
    tokio::spawn(async move {
        use tracing::Instrument;
        let stream = match ctx.config.tls.as_ref().filter(|_| tls) {
            None => Some(crate::net::Stream::Plain(stream)),
            Some(t) => {
                let hs = crate::tls::accept(t.server.get(), stream);
                match tokio::time::timeout(t.handshake_timeout, hs).await {
                    Ok(Ok(io)) => Some(crate::net::Stream::Tls(Box::new(io))),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        Metrics::add(&ctx.metrics.tls_handshake_failures, 1);
                        None
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        Metrics::add(&ctx.metrics.tls_handshake_failures, 1);
                        None
                    }
                }
            }
        };
        if let Some(stream) = stream {
            session::Session::new(ctx.clone(), worker, stream, meta)
                .run()
                .instrument(tracing::debug_span!("client", id))
                .await;
        }
        ctx.clients.remove(&id);
        ctx.metrics
            .clients_connected
            .fetch_sub(1, Ordering::Relaxed);
        ctx.client_count.fetch_sub(1, Ordering::AcqRel);
        local_tasks.fetch_sub(1, Ordering::AcqRel);
    });
}

/// The routing of the proxy's own calls (tag tasks, the tag sweep) on
/// `worker`'s connections.
pub fn route(ctx: &Ctx, worker: &Arc<Worker>) -> crate::router::route::Route {
    crate::router::route::Route::new(
        ctx.config.clone(),
        ctx.deployment.cluster().cloned(),
        worker.clone(),
    )
}

/// What the tag commands of a session on `worker` (database `db`, client
/// `id`) use: its routing, and compression for the values `TAGSET` stores.
pub fn tag_up(ctx: &Arc<Ctx>, worker: &Arc<Worker>, db: u32, id: u64) -> Arc<crate::tags::ops::Up> {
    let pack = ctx.compress.as_ref().map(|_| {
        let ctx = ctx.clone();
        Arc::new(move |key: &[u8], value: &[u8]| {
            ctx.compress
                .as_ref()
                .and_then(|c| c.pack(key, value, &ctx.metrics))
        }) as crate::tags::ops::Pack
    });
    crate::tags::ops::Up::new(route(ctx, worker), pack, db, id)
}

/// Run the tag sweep every `tags.sweep_interval` until shutdown (worker 0).
async fn tag_sweeper(ctx: Arc<Ctx>, worker: Arc<Worker>) {
    use std::time::Duration;
    if !ctx.config.tags.enabled {
        return;
    }
    let interval = ctx
        .config
        .tags
        .sweep_interval
        .max(Duration::from_millis(10));
    let route = route(&ctx, &worker);
    loop {
        let deadline = Instant::now() + interval;
        while Instant::now() < deadline {
            if ctx.is_shutting_down() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100).min(interval)).await;
        }
        match crate::tags::sweep::sweep_once(&route, interval).await {
            Ok(Some(n)) => {
                Metrics::add(&ctx.metrics.tag_sweep_removed, n);
                tracing::debug!(removed = n, "tag sweep done")
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "tag sweep failed"),
        }
    }
}

/// Sentinel mode: each primary the sentinel publishes (`rx`, subscribed
/// before the sentinel starts) becomes every worker's node. The old node's
/// connections, shared and pinned, are killed after every worker was
/// swapped: requests in flight on them fail, pinned sessions are closed.
pub async fn follow_primary(
    ctx: Arc<Ctx>,
    sentinel: Arc<crate::sentinel::Sentinel>,
    mut rx: tokio::sync::watch::Receiver<Option<Arc<str>>>,
) {
    let master = sentinel.master_name();
    let mut current = rx.borrow_and_update().clone();
    while rx.changed().await.is_ok() {
        let primary = rx.borrow_and_update().clone();
        if primary == current {
            continue;
        }
        let old = std::mem::replace(&mut current, primary.clone());
        let why = match &primary {
            Some(p) => format!("primary of master '{master}' moved to {p}"),
            None => format!("primary of master '{master}' was demoted"),
        };
        let mut old_nodes = Vec::new();
        for w in ctx.workers() {
            let node = Arc::new(sentinel.node_conns_for(primary.as_deref()));
            old_nodes.push(w.swap_node(node.clone()));
            if node.dead_conn().is_none() {
                w.preconnect(node);
            }
        }
        for n in old_nodes {
            n.kill_all(&why);
        }
        if let Some(old) = &old {
            ctx.pinned.kill_node(old, &why);
        }
    }
}

/// Cluster mode: whenever the slot map changes, close every worker's
/// connections to nodes that are no longer part of the cluster.
pub async fn drop_departed_nodes(ctx: Arc<Ctx>, topology: Arc<crate::cluster::topology::Topology>) {
    let mut seen = topology.version();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let v = topology.version();
        if v == seen {
            continue;
        }
        seen = v;
        let map = topology.map();
        if map.covered_slots() == 0 {
            continue;
        }
        let keep = map.all_nodes();
        for w in ctx.workers() {
            let n = w.drop_nodes_except(&keep);
            if n > 0 {
                tracing::info!(
                    worker = w.index,
                    nodes = n,
                    "closed connections to departed cluster nodes"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn accept_errors_are_logged_once_per_period_with_a_count() {
        let l = LogLimiter::new(5000);
        assert_eq!(l.allow(0), Some(0));
        // A flood: one failure per millisecond for 12 s, as a spinning
        // accept loop on EMFILE would meet.
        let logged: Vec<(u64, u64)> = (1..12_000)
            .filter_map(|t| l.allow(t).map(|n| (t, n)))
            .collect();
        assert_eq!(logged, vec![(5000, 4999), (10_000, 4999)]);
    }
}
