//! Upstream Redis nodes: shared multiplexed connections per worker, and the
//! pool of pinned connections for sessions in a stateful mode.

pub mod call;
pub mod conn;
pub mod oneshot;

use crate::config::Config;
use crate::protocol::Proto;
use crate::server::replies::ReplyQueue;
use conn::{Conn, ConnOptions, ConnState};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Connection settings for `addr` from the configuration.
pub fn options(config: &Config, addr: &str, db: u32, proto: Proto, reconnect: bool) -> ConnOptions {
    let u = &config.upstream;
    ConnOptions {
        addr: addr.into(),
        connect_timeout: u.connect_timeout,
        command_timeout: u.command_timeout,
        backoff_min: u.reconnect_backoff_min,
        backoff_max: u.reconnect_backoff_max,
        username: u.username.clone(),
        password: u.password.clone(),
        db,
        proto,
        reconnect,
        latency_buckets_us: config.stats.latency_buckets_us.clone().into(),
    }
}

/// One worker's shared connections to one node, grouped by the connection
/// state requests depend on (database and RESP version). A session always uses
/// the same connection of a group, so its requests keep their order.
#[derive(Debug)]
pub struct NodeConns {
    addr: Arc<str>,
    config: Arc<Config>,
    groups: Mutex<HashMap<(u32, Proto), Vec<Conn>>>,
}

impl NodeConns {
    pub fn new(config: Arc<Config>, addr: &str) -> Self {
        NodeConns {
            addr: addr.into(),
            config,
            groups: Mutex::new(HashMap::new()),
        }
    }

    pub fn addr(&self) -> &Arc<str> {
        &self.addr
    }

    /// The shared connection for a session; created on first use (must be
    /// called on the worker's runtime, where the connection task then runs).
    pub fn shared(&self, db: u32, proto: Proto, session: u64) -> Conn {
        let mut groups = self.groups.lock();
        let group = groups.entry((db, proto)).or_insert_with(|| {
            (0..self.config.upstream.shared_connections)
                .map(|_| Conn::spawn(options(&self.config, &self.addr, db, proto, true), None))
                .collect()
        });
        group[(session % group.len() as u64) as usize].clone()
    }

    /// Every shared connection, for metrics and readiness.
    pub fn all(&self) -> Vec<Conn> {
        self.groups.lock().values().flatten().cloned().collect()
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
#[derive(Debug)]
pub struct PinnedPool {
    config: Arc<Config>,
    idle: Mutex<HashMap<PoolKey, Vec<Conn>>>,
}

impl PinnedPool {
    pub fn new(config: Arc<Config>) -> Self {
        PinnedPool {
            config,
            idle: Mutex::new(HashMap::new()),
        }
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
            None => Conn::spawn(options(&self.config, addr, db, proto, false), Some(owner)),
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
