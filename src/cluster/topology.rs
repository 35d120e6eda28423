//! The live view of a Redis Cluster: the current slot map and command key
//! table, refreshed periodically, after `MOVED`, and when a node fails.

use super::{SlotMap, SLOT_COUNT};
use crate::command::keys::KeyTable;
use crate::config::Config;
use crate::error::Error;
use crate::upstream::oneshot;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Periodic refresh, even when nothing suggests a change.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// At most one refresh per this interval, however many redirects ask for one.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Topology {
    config: Arc<Config>,
    map: RwLock<Arc<SlotMap>>,
    keys: RwLock<Arc<KeyTable>>,
    version: AtomicU64,
    refresh: Notify,
    refreshes: AtomicU64,
}

impl Topology {
    pub fn new(config: Arc<Config>) -> Arc<Topology> {
        Arc::new(Topology {
            config,
            map: RwLock::new(Arc::new(SlotMap::new())),
            keys: RwLock::new(Arc::new(KeyTable::builtin().clone())),
            version: AtomicU64::new(0),
            refresh: Notify::new(),
            refreshes: AtomicU64::new(0),
        })
    }

    /// The slot map as of now (cheap: one Arc clone).
    pub fn map(&self) -> Arc<SlotMap> {
        self.map.read().clone()
    }

    pub fn keys(&self) -> Arc<KeyTable> {
        self.keys.read().clone()
    }

    /// Changes whenever the map does.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// `MOVED`: the slot has a new owner now; a full refresh follows soon.
    pub fn moved(&self, slot: u16, addr: &str) {
        {
            let mut g = self.map.write();
            let mut m = (**g).clone();
            if m.update_slot(slot, addr) {
                *g = Arc::new(m);
                self.version.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.request_refresh();
    }

    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Refresh loop: run on any runtime for the life of the process.
    pub async fn run(self: Arc<Self>) {
        let mut first = true;
        loop {
            match self.fetch().await {
                Ok(map) => {
                    let changed = {
                        let mut g = self.map.write();
                        let changed = **g != map;
                        if changed {
                            *g = Arc::new(map);
                        }
                        changed
                    };
                    if changed {
                        self.version.fetch_add(1, Ordering::AcqRel);
                        tracing::info!(nodes = ?self.map().primaries(), "cluster slot map updated");
                    }
                    self.refreshes.fetch_add(1, Ordering::Relaxed);
                    if first {
                        first = false;
                        self.fetch_command_table().await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cluster topology refresh failed"),
            }
            tokio::time::sleep(MIN_REFRESH_GAP).await;
            let wait = if self.map().covered_slots() == SLOT_COUNT as usize {
                REFRESH_EVERY
            } else {
                Duration::from_millis(500)
            };
            let _ = tokio::time::timeout(wait, self.refresh.notified()).await;
        }
    }

    /// Ask the known nodes, then the seeds, until one answers.
    async fn fetch(&self) -> Result<SlotMap, Error> {
        let mut candidates = self.map().all_nodes();
        for s in &self.config.upstream.nodes {
            if !candidates.contains(s) {
                candidates.push(s.clone());
            }
        }
        let mut last = "no nodes to ask".to_string();
        for addr in candidates {
            let host = addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'))
                .unwrap_or("127.0.0.1");
            match oneshot::request(&self.config, &addr, &[&[b"CLUSTER", b"SHARDS"]]).await {
                Ok(r) if r[0].first() != Some(&b'-') => {
                    let tls = self.config.upstream.tls.is_some();
                    match SlotMap::from_cluster_shards_over(&r[0], host, tls) {
                        Ok(m) if m.covered_slots() > 0 => return Ok(m),
                        Ok(_) => last = format!("{addr}: no slots assigned"),
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                Ok(_) => {
                    match oneshot::request(&self.config, &addr, &[&[b"CLUSTER", b"SLOTS"]]).await {
                        Ok(r) => match SlotMap::from_cluster_slots(&r[0], host) {
                            Ok(m) if m.covered_slots() > 0 => return Ok(m),
                            Ok(_) => last = format!("{addr}: no slots assigned"),
                            Err(e) => last = format!("{addr}: {e}"),
                        },
                        Err(e) => last = format!("{addr}: {e}"),
                    }
                }
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(Error::io(last))
    }

    /// Key positions from the cluster's own `COMMAND`, so module and newer
    /// commands route correctly; the built-in table stays when it fails.
    async fn fetch_command_table(&self) {
        let Some(addr) = self.map().primaries().into_iter().next() else {
            return;
        };
        match oneshot::request(&self.config, &addr, &[&[b"COMMAND"]]).await {
            Ok(r) => match KeyTable::from_command_reply(&r[0]) {
                Ok(t) if !t.is_empty() => {
                    let t = Arc::new(t);
                    crate::command::table::learn_upstream(t.clone());
                    *self.keys.write() = t;
                    // Sessions keep a snapshot per version (see `Session::routing`).
                    self.version.fetch_add(1, Ordering::AcqRel);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "COMMAND reply not understood; using the built-in key table")
                }
            },
            Err(e) => tracing::warn!(error = %e, "COMMAND failed; using the built-in key table"),
        }
    }
}
