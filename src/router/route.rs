//! Where the proxy's own requests for a slot go, on one worker's
//! connections: the standalone (or sentinel primary) node, or the cluster
//! node serving the slot. Used by the tag commands' tasks and the tag
//! sweep, which run beside sessions and need no session state.

use crate::cluster::topology::Topology;
use crate::config::Config;
use crate::error::{Error, SLOT_NOT_SERVED};
use crate::protocol::Proto;
use crate::upstream::conn::Conn;
use crate::upstream::worker::Worker;
use std::sync::Arc;

/// A worker's connections and, in cluster mode, the slot map.
#[derive(Debug, Clone)]
pub struct Route {
    config: Arc<Config>,
    topology: Option<Arc<Topology>>,
    worker: Arc<Worker>,
}

impl Route {
    /// `topology` is `Some` in cluster mode only.
    pub fn new(config: Arc<Config>, topology: Option<Arc<Topology>>, worker: Arc<Worker>) -> Route {
        Route {
            config,
            topology,
            worker,
        }
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn cluster(&self) -> bool {
        self.topology.is_some()
    }

    /// The node serving `slot` (standalone: the node).
    pub fn owner(&self, slot: u16) -> Result<String, Error> {
        match &self.topology {
            None => Ok(self.worker.node().addr().to_string()),
            Some(t) => t
                .map()
                .node_for(slot)
                .map(|s| s.primary.clone())
                .ok_or_else(|| Error::cluster(SLOT_NOT_SERVED)),
        }
    }

    /// Every primary serving slots (standalone: the node).
    pub fn primaries(&self) -> Vec<String> {
        match &self.topology {
            None => vec![self.worker.node().addr().to_string()],
            Some(t) => t.map().serving_primaries(),
        }
    }

    /// A shared RESP2 connection to `addr` (standalone: the node's, on
    /// database `db`; cluster nodes have only database 0).
    pub fn conn(&self, addr: &str, db: u32, session: u64) -> Conn {
        match &self.topology {
            None => self.worker.node().shared(db, Proto::Resp2, session),
            Some(_) => self
                .worker
                .node_at(&self.config, addr)
                .shared(0, Proto::Resp2, session),
        }
    }

    /// A `MOVED` named `addr` for `slot`: update the slot map.
    pub fn moved(&self, slot: u16, addr: &str) {
        if let Some(t) = &self.topology {
            t.moved(slot, addr);
        }
    }

    /// `TRYAGAIN`/`CLUSTERDOWN` seen: ask for a fresh slot map soon.
    pub fn request_refresh(&self) {
        if let Some(t) = &self.topology {
            t.request_refresh();
        }
    }
}
