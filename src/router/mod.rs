//! Routing: the deployment the proxy fronts ([`Deployment`], the one source
//! of the mode), where the proxy's own requests for a slot go
//! ([`route::Route`]), and how a split request's replies merge back
//! ([`merge`]).

pub mod info;
pub mod merge;
pub mod route;

use crate::config::{Config, Mode};
use std::sync::Arc;

/// The deployment the proxy fronts: the one source of the mode. Chosen once
/// from `upstream.mode`; code that behaves differently per mode matches on
/// it, and a session picks its routing part from it (see
/// `server::session::route`).
#[derive(Debug)]
pub enum Deployment {
    /// One Redis server (`upstream.nodes[0]`).
    Standalone,
    /// The primary named by Redis Sentinel, kept fresh by `Sentinel::run`.
    Sentinel(Arc<crate::sentinel::Sentinel>),
    /// Redis Cluster: the slot map and key table, kept fresh by `Topology::run`.
    Cluster(Arc<crate::cluster::topology::Topology>),
}

impl Deployment {
    pub fn new(config: &Arc<Config>) -> Deployment {
        match config.upstream.mode {
            Mode::Standalone => Deployment::Standalone,
            Mode::Sentinel => Deployment::Sentinel(crate::sentinel::Sentinel::new(config.clone())),
            Mode::Cluster => {
                Deployment::Cluster(crate::cluster::topology::Topology::new(config.clone()))
            }
        }
    }

    /// Cluster mode's topology.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::topology::Topology>> {
        match self {
            Deployment::Cluster(t) => Some(t),
            _ => None,
        }
    }

    /// Sentinel mode's view of the primary.
    pub fn sentinel(&self) -> Option<&Arc<crate::sentinel::Sentinel>> {
        match self {
            Deployment::Sentinel(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Deployment::Cluster(_))
    }

    /// An upstream node failed or was demoted: look again at who serves
    /// what (the slot map, or the sentinels' primary) soon.
    pub fn request_refresh(&self) {
        match self {
            Deployment::Standalone => {}
            Deployment::Sentinel(s) => s.request_refresh(),
            Deployment::Cluster(t) => t.request_refresh(),
        }
    }
}
