//! Upstream Redis nodes: each worker's connections ([`worker::Worker`]:
//! shared multiplexed connections per node), the pool of pinned connections
//! for sessions in a stateful mode, and the proxy's own calls to nodes.

pub mod call;
pub mod conn;
pub mod control;
pub mod oneshot;
pub mod worker;

use crate::config::Config;
use crate::protocol::Proto;
use crate::replies::ReplyQueue;
use conn::{Conn, ConnOptions, ConnState};
use control::Control;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An extra shared connection (opened beside stalled ones) closes after
/// this long without requests.
pub const EXTRA_IDLE: Duration = Duration::from_secs(10);

/// The error reply for a command that needs a pinned connection when
/// `upstream.max_pinned_connections` are open (Redis's reply to a client over
/// its `maxclients`).
pub const MAX_CLIENTS_REACHED: &str = "ERR max number of clients reached";

/// Connection settings for `addr` from the configuration.
pub fn options(config: &Config, addr: &str, db: u32, proto: Proto, reconnect: bool) -> ConnOptions {
    let u = &config.upstream;
    ConnOptions {
        addr: addr.into(),
        connect_timeout: u.connect_timeout,
        command_timeout: u.command_timeout,
        stall_after: u.stall_after,
        control: Some(control::of(config, addr)),
        retire_after: None,
        backoff_min: u.reconnect_backoff_min,
        backoff_max: u.reconnect_backoff_max,
        username: u.username.clone(),
        password: u.password.clone(),
        db,
        proto,
        reconnect,
        readonly: u.mode == crate::config::Mode::Cluster
            && u.read_from == crate::config::ReadFrom::ReplicaPreferred,
        latency_buckets_us: config.stats.latency_buckets_us.clone().into(),
        tls: u.tls.clone(),
    }
}

/// One worker's shared connections to one node, grouped by the connection
/// state requests depend on (database and RESP version). A session uses one
/// connection of a group at a time (switching waits for its earlier replies),
/// so its requests keep their order. Each group starts with
/// `shared_connections` connections; [`NodeConns::choose`] opens more, up to
/// `max_shared_connections`, while all of them are stalled.
#[derive(Debug)]
pub struct NodeConns {
    addr: Arc<str>,
    config: Arc<Config>,
    groups: Mutex<HashMap<(u32, Proto), Vec<Conn>>>,
    /// Set when there is no node to talk to (sentinel mode, no primary
    /// known): every request fails at once with this reason.
    unavailable: Option<Conn>,
}

impl NodeConns {
    pub fn new(config: Arc<Config>, addr: &str) -> Self {
        NodeConns {
            addr: addr.into(),
            config,
            groups: Mutex::new(HashMap::new()),
            unavailable: None,
        }
    }

    /// No node: requests fail fast with `ERR upstream LABEL unavailable: WHY`.
    pub fn unavailable(config: Arc<Config>, label: &str, why: &str) -> Self {
        NodeConns {
            addr: label.into(),
            groups: Mutex::new(HashMap::new()),
            unavailable: Some(Conn::dead(
                label,
                why,
                config.stats.latency_buckets_us.clone().into(),
            )),
            config,
        }
    }

    /// The always-failing connection of a node that is not there, if so.
    pub fn dead_conn(&self) -> Option<&Conn> {
        self.unavailable.as_ref()
    }

    /// Close every connection so nothing more is written to this node;
    /// requests in flight fail with `why`.
    pub fn kill_all(&self, why: &str) {
        for c in self.groups.lock().drain().flat_map(|(_, v)| v) {
            c.kill(why);
        }
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// The session's home connection of the group: always the same one, never
    /// an extra (cluster sessions and the tag commands' own requests). Created
    /// on first use (must be called on the worker's runtime, where the
    /// connection task then runs).
    pub fn shared(&self, db: u32, proto: Proto, session: u64) -> Conn {
        if let Some(dead) = &self.unavailable {
            return dead.clone();
        }
        let mut groups = self.groups.lock();
        let group = self.group(&mut groups, db, proto);
        let base = self.config.upstream.shared_connections.min(group.len());
        group[(session % base as u64) as usize].clone()
    }

    /// The connection a session should send new requests on: its home
    /// connection unless that one is stalled, else another of the group that
    /// is not, else a new one while the group is below
    /// `max_shared_connections`, else the one with the fewest requests in
    /// flight.
    pub fn choose(&self, db: u32, proto: Proto, session: u64) -> Conn {
        if let Some(dead) = &self.unavailable {
            return dead.clone();
        }
        let mut groups = self.groups.lock();
        let group = self.group(&mut groups, db, proto);
        group.retain(|c| !c.retired());
        let base = self.config.upstream.shared_connections.min(group.len());
        let home = (session % base as u64) as usize;
        let n = group.len();
        if let Some(i) = (0..n).map(|i| (home + i) % n).find(|&i| !group[i].avoid()) {
            return group[i].clone();
        }
        if n < self.config.upstream.max_shared_connections {
            let mut opts = options(&self.config, &self.addr, db, proto, true);
            opts.retire_after = Some(EXTRA_IDLE);
            tracing::debug!(addr = %self.addr, db, open = n, "every shared connection stalled: opening one more");
            let c = Conn::spawn(opts, None);
            group.push(c.clone());
            return c;
        }
        group
            .iter()
            .min_by_key(|c| c.inflight())
            .unwrap_or(&group[home])
            .clone()
    }

    fn group<'a>(
        &self,
        groups: &'a mut HashMap<(u32, Proto), Vec<Conn>>,
        db: u32,
        proto: Proto,
    ) -> &'a mut Vec<Conn> {
        groups.entry((db, proto)).or_insert_with(|| {
            (0..self.config.upstream.shared_connections)
                .map(|_| Conn::spawn(options(&self.config, &self.addr, db, proto, true), None))
                .collect()
        })
    }

    /// The node's control plane (`None` when there is no node).
    pub fn control(&self) -> Option<Arc<Control>> {
        if self.unavailable.is_some() {
            return None;
        }
        Some(control::of(&self.config, &self.addr))
    }

    /// Every shared connection, for metrics and readiness.
    pub fn all(&self) -> Vec<Conn> {
        let mut groups = self.groups.lock();
        for g in groups.values_mut() {
            g.retain(|c| !c.retired());
        }
        groups.values().flatten().cloned().collect()
    }

    pub fn any_up(&self) -> bool {
        self.groups
            .lock()
            .values()
            .flatten()
            .any(|c| c.state() == ConnState::Up)
    }
}

/// Node address, database, RESP version: what a pinned connection is set up for.
type PoolKey = (Arc<str>, u32, Proto);

/// Idle pinned connections kept for reuse, per node, database and RESP version.
/// Only connections whose session left them clean come back here.
///
/// At most `upstream.max_pinned_connections` pinned connections are open at
/// once, in use and idle together: each new one takes a slot that its task
/// gives back when it ends (its socket closed), so the bound holds for the
/// sockets Redis sees, however a connection ends.
#[derive(Debug)]
pub struct PinnedPool {
    config: Arc<Config>,
    idle: Mutex<HashMap<PoolKey, Vec<Conn>>>,
    /// Pinned connections open now (slots taken).
    open: Arc<AtomicUsize>,
    /// Connections refused because every slot was taken.
    refused: AtomicU64,
    /// What a refused session gets instead of a connection.
    refusal: Conn,
    /// Sentinel mode: every pinned connection handed out, so a failover can
    /// close those to the old primary (their sessions may be idle, e.g.
    /// subscribed). Pruned as it grows.
    handed_out: Option<Mutex<HandedOut>>,
}

#[derive(Debug, Default)]
struct HandedOut {
    conns: Vec<conn::WeakConn>,
    /// Length after the last prune: prune again when it doubles.
    pruned_len: usize,
}

impl PinnedPool {
    pub fn new(config: Arc<Config>) -> Self {
        PinnedPool {
            handed_out: (config.upstream.mode == crate::config::Mode::Sentinel)
                .then(|| Mutex::new(HandedOut::default())),
            refusal: Conn::refused(
                "pinned",
                MAX_CLIENTS_REACHED,
                config.stats.latency_buckets_us.clone().into(),
            ),
            config,
            idle: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            refused: AtomicU64::new(0),
        }
    }

    /// Pinned connections open now, in use and idle.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Pinned connections refused so far (`upstream.max_pinned_connections`).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A slot for one more pinned connection, if one is free.
    fn take_slot(&self) -> Option<Slot> {
        let max = self.config.upstream.max_pinned_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(self.open.clone()))
    }

    /// Every slot is taken: close one idle connection kept for another
    /// node, database or protocol, so that its slot is free for the next
    /// request (it frees once the connection's task has ended).
    fn evict_one_idle(&self) {
        let victim = self
            .idle
            .lock()
            .values_mut()
            .max_by_key(|l| l.len())
            .and_then(|l| l.pop());
        if let Some(c) = victim {
            c.close();
        }
    }

    /// Close every pinned connection to `addr`, idle or in use (see
    /// [`Conn::kill`]): the node is no longer the primary.
    pub fn kill_node(&self, addr: &str, why: &str) {
        let idle: Vec<Conn> = {
            let mut idle = self.idle.lock();
            let keys: Vec<PoolKey> = idle.keys().filter(|k| &*k.0 == addr).cloned().collect();
            keys.into_iter()
                .filter_map(|k| idle.remove(&k))
                .flatten()
                .collect()
        };
        for c in idle {
            c.kill(why);
        }
        let Some(h) = &self.handed_out else { return };
        let live: Vec<Conn> = {
            let mut h = h.lock();
            h.conns.retain(|w| w.upgrade().is_some());
            h.pruned_len = h.conns.len();
            h.conns.iter().filter_map(|w| w.upgrade()).collect()
        };
        for c in live.into_iter().filter(|c| &**c.addr() == addr) {
            c.kill(why);
        }
    }

    fn track(&self, conn: &Conn) {
        let Some(h) = &self.handed_out else { return };
        let mut h = h.lock();
        if h.conns.len() >= 2 * h.pruned_len.max(16) {
            h.conns
                .retain(|w| w.upgrade().is_some_and(|c| c.state() != ConnState::Closed));
            h.pruned_len = h.conns.len();
        }
        h.conns.push(conn.downgrade());
    }

    pub fn acquire(&self, addr: &Arc<str>, db: u32, proto: Proto, owner: Arc<ReplyQueue>) -> Conn {
        let reused = {
            let mut idle = self.idle.lock();
            let list = idle.entry((addr.clone(), db, proto)).or_default();
            let mut found = None;
            while let Some(c) = list.pop() {
                if matches!(c.state(), ConnState::Up | ConnState::Connecting) {
                    found = Some(c);
                    break;
                }
                c.close();
            }
            found
        };
        match reused {
            Some(c) => {
                c.set_owner(Some(owner));
                c
            }
            None => {
                let Some(slot) = self.take_slot() else {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    self.evict_one_idle();
                    return self.refusal.clone();
                };
                let opts = options(&self.config, addr, db, proto, false);
                let c = Conn::spawn_holding(opts, Some(owner), slot);
                self.track(&c);
                c
            }
        }
    }

    /// Give back a connection with nothing in flight and no transaction state.
    pub fn release(&self, conn: Conn, db: u32, proto: Proto) {
        conn.set_owner(None);
        if conn.state() != ConnState::Up {
            conn.close();
            return;
        }
        let mut idle = self.idle.lock();
        let list = idle.entry((conn.addr().clone(), db, proto)).or_default();
        if list.len() < self.config.upstream.pinned_pool_size {
            list.push(conn);
        } else {
            conn.close();
        }
    }
}

/// One open pinned connection's place in `PinnedPool::open`, given back when
/// dropped (by the connection's task as it ends).
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

static SERVER_VERSION: Mutex<Option<Arc<str>>> = Mutex::new(None);

/// The `redis_version` the upstream last reported.
pub fn server_version() -> Option<Arc<str>> {
    SERVER_VERSION.lock().clone()
}

/// Take `redis_version:` from an `INFO server` reply.
fn learn_version(info: &[u8]) {
    let text = String::from_utf8_lossy(info);
    if let Some(v) = text.lines().find_map(|l| l.strip_prefix("redis_version:")) {
        *SERVER_VERSION.lock() = Some(v.trim().into());
    }
}
