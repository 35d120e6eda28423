//! Redis Cluster's key space, as pure data: which hash slot a key hashes to,
//! which node serves each slot, and the redirections that change that answer.
//! No sockets here: the router and the topology refresher feed these types
//! the bytes they read and act on what comes back.
//!
//! - [`slots`]: CRC16 key slots with hash tags, and the [`SlotMap`].
//! - [`discover`]: building a [`SlotMap`] from `CLUSTER SHARDS` / `CLUSTER SLOTS` replies.
//! - [`redirect`]: `-MOVED` and `-ASK` error replies.

pub mod discover;
pub mod fanout;
pub mod pubsub;
pub mod redirect;
pub mod slots;
pub mod topology;

pub use redirect::{parse_redirect, Redirect, RedirectKind};
pub use slots::{key_slot, NodeAddr, Shard, SlotMap, SlotRange, SLOT_COUNT};

use crate::protocol::ProtocolError;

/// A topology reply the proxy could not turn into a slot map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The bytes are not one complete RESP value.
    #[error("cluster topology reply: {0}")]
    Protocol(#[from] ProtocolError),
    /// The node answered with an error (e.g. cluster support disabled).
    #[error("cluster topology reply is an error: {0}")]
    ErrorReply(String),
    /// Valid RESP, but not shaped like the reply of the command we sent.
    #[error("unexpected cluster topology reply: {0}")]
    Shape(String),
}

/// `host:port` as `connect` wants it: an IPv6 host gets brackets, so the
/// last colon always separates the port.
pub(crate) fn join_host_port(host: &str, port: u16) -> NodeAddr {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
