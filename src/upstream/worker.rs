//! One worker thread's upstream connections: the standalone (or sentinel
//! primary) node, which sentinel mode swaps, and the cluster nodes it has
//! talked to.

use super::conn::Conn;
use super::NodeConns;
use crate::config::Config;
use crate::protocol::Proto;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// One worker thread's upstream connections.
#[derive(Debug)]
pub struct Worker {
    pub index: usize,
    /// Standalone: the one node. Sentinel mode swaps it when the primary
    /// changes (sessions notice through [`Worker::generation`], one atomic
    /// load per read batch, and only then take this lock).
    node: RwLock<Arc<NodeConns>>,
    /// Bumped after every swap of `node`.
    generation: AtomicU64,
    /// The worker's runtime, to start connections on it from other threads.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Cluster: every node this worker has talked to, by address.
    pub nodes: Mutex<HashMap<Arc<str>, Arc<NodeConns>>>,
}

impl Worker {
    pub fn new(index: usize, node: NodeConns) -> Worker {
        Worker {
            index,
            node: RwLock::new(Arc::new(node)),
            generation: AtomicU64::new(0),
            runtime: OnceLock::new(),
            nodes: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime this worker's connections run on (set once, by the
    /// worker thread).
    pub fn set_runtime(&self, rt: tokio::runtime::Handle) {
        let _ = self.runtime.set(rt);
    }

    /// The standalone (or sentinel primary) node's connections.
    pub fn node(&self) -> Arc<NodeConns> {
        self.node.read().clone()
    }

    /// Changes whenever [`Worker::swap_node`] replaced the node: a session
    /// that cached a connection compares it once per read batch.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Open `node`'s default connection on this worker's runtime, so the
    /// first request after a switch does not wait for it.
    pub fn preconnect(&self, node: Arc<NodeConns>) {
        if let Some(rt) = self.runtime.get() {
            rt.spawn(async move {
                let _ = node.shared(0, Proto::Resp2, 0);
            });
        }
    }

    /// Point this worker at another node; returns the old one for closing.
    /// The generation changes after the swap, so a session that sees it
    /// finds the new node.
    pub fn swap_node(&self, node: Arc<NodeConns>) -> Arc<NodeConns> {
        let old = std::mem::replace(&mut *self.node.write(), node);
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// Every shared upstream connection of this worker (standalone and cluster
    /// nodes), for `/metrics` and `PROXY NODES`.
    pub fn all_conns(&self) -> Vec<Conn> {
        let mut conns = self.node().all();
        for n in self.nodes.lock().values() {
            conns.extend(n.all());
        }
        conns
    }

    /// Close and forget the connections to cluster nodes not in `keep`
    /// (nodes that left the cluster); returns how many were dropped.
    pub fn drop_nodes_except(&self, keep: &[String]) -> usize {
        let gone: Vec<Arc<NodeConns>> = {
            let mut nodes = self.nodes.lock();
            let addrs: Vec<Arc<str>> = nodes
                .keys()
                .filter(|a| !keep.iter().any(|k| k.as_str() == &***a))
                .cloned()
                .collect();
            addrs.iter().filter_map(|a| nodes.remove(a)).collect()
        };
        for n in &gone {
            for c in n.all() {
                c.close();
            }
        }
        gone.len()
    }

    /// The worker's connections to a cluster node, created on first use.
    pub fn node_at(&self, config: &Arc<Config>, addr: &str) -> Arc<NodeConns> {
        let mut nodes = self.nodes.lock();
        if let Some(n) = nodes.get(addr) {
            return n.clone();
        }
        let n = Arc::new(NodeConns::new(config.clone(), addr));
        nodes.insert(addr.into(), n.clone());
        n
    }
}
