//! The proxy's answers to the admin endpoints: readiness and the metrics page.

use super::{AdminState, PromWriter};
use crate::metrics::{self as m, get};
use crate::server::Ctx;
use crate::upstream::conn::ConnState;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct ProxyAdmin(pub Arc<Ctx>);

impl AdminState for ProxyAdmin {
    fn ready(&self) -> bool {
        self.0.ready()
    }

    fn render_metrics(&self, out: &mut String) {
        let ctx = &self.0;
        let mt = &ctx.metrics;
        let mut w = PromWriter::new(out);
        w.counter(
            m::CONNECTIONS_ACCEPTED,
            "Client connections accepted.",
            get(&mt.connections_accepted),
        );
        w.counter(
            m::CONNECTIONS_REJECTED,
            "Client connections refused (limits.max_clients).",
            get(&mt.connections_rejected),
        );
        w.gauge(
            m::CLIENTS_CONNECTED,
            "Clients connected now.",
            mt.clients_connected.load(Ordering::Relaxed) as f64,
        );
        w.counter(
            m::COMMANDS,
            "Requests received from clients.",
            get(&mt.commands),
        );
        w.counter(
            m::COMMANDS_LOCAL,
            "Requests answered by the proxy itself.",
            get(&mt.commands_local),
        );
        w.counter(
            m::ERROR_REPLIES,
            "Error replies sent to clients.",
            get(&mt.error_replies),
        );
        w.counter(
            m::PROTOCOL_ERRORS,
            "Connections closed for malformed RESP.",
            get(&mt.protocol_errors),
        );
        w.counter(
            m::PINNED_ACQUIRED,
            "Pinned upstream connections handed to sessions.",
            get(&mt.pinned_acquired),
        );
        w.counter(
            m::COMPRESS_VALUES,
            "Values stored lz4-compressed.",
            get(&mt.compress_values),
        );
        w.counter(
            m::COMPRESS_BYTES_IN,
            "Original size of the values stored compressed.",
            get(&mt.compress_bytes_in),
        );
        w.counter(
            m::COMPRESS_BYTES_OUT,
            "Stored size (header included) of the values stored compressed.",
            get(&mt.compress_bytes_out),
        );
        w.gauge(
            m::COMPRESS_RATIO,
            "Stored size over original size of the values stored compressed.",
            m::compression_ratio(mt),
        );
        w.counter(
            m::COMPRESS_RESTORES,
            "Compressed values restored in replies.",
            get(&mt.compress_restores),
        );
        w.counter(
            m::COMPRESS_ERRORS,
            "Compressed values that could not be restored, and byte-level commands refused.",
            get(&mt.compress_errors),
        );
        w.counter(
            m::COMPRESS_BYTE_OPS,
            "Byte-level commands answered on compressed values.",
            get(&mt.compress_byte_ops),
        );
        w.counter(
            m::TAG_COMMANDS,
            "Tag commands (TAGSET, TAGADD, TAGINVAL, TAGKEYS, TAGSOF) received.",
            get(&mt.tag_commands),
        );
        w.counter(
            m::TAG_KEYS_INVALIDATED,
            "Keys deleted by TAGINVAL.",
            get(&mt.tag_keys_invalidated),
        );
        w.counter(
            m::TAG_SWEEP_REMOVED,
            "Tag index entries of expired or deleted keys removed by the sweep.",
            get(&mt.tag_sweep_removed),
        );
        // Per upstream node, summed over the workers' shared connections.
        let mut nodes: Vec<(String, bool, u64, u64)> = Vec::new();
        for worker in ctx.workers() {
            for c in worker.all_conns() {
                let addr = c.addr().to_string();
                let up = c.state() == ConnState::Up;
                match nodes.iter_mut().find(|n| n.0 == addr) {
                    Some(n) => {
                        n.1 |= up;
                        n.2 += c.requests();
                        n.3 += c.reconnects();
                    }
                    None => nodes.push((addr, up, c.requests(), c.reconnects())),
                }
            }
        }
        let labels: Vec<[(&str, &str); 1]> =
            nodes.iter().map(|n| [("node", n.0.as_str())]).collect();
        let up: Vec<(&[(&str, &str)], f64)> = nodes
            .iter()
            .zip(&labels)
            .map(|(n, l)| (&l[..], if n.1 { 1.0 } else { 0.0 }))
            .collect();
        w.gauge_with_labels(
            m::UPSTREAM_UP,
            "Whether a shared connection to the node is up.",
            &up,
        );
        let reqs: Vec<(&[(&str, &str)], u64)> = nodes
            .iter()
            .zip(&labels)
            .map(|(n, l)| (&l[..], n.2))
            .collect();
        w.counter_with_labels(
            m::UPSTREAM_REQUESTS,
            "Requests sent on shared connections.",
            &reqs,
        );
        let rec: Vec<(&[(&str, &str)], u64)> = nodes
            .iter()
            .zip(&labels)
            .map(|(n, l)| (&l[..], n.3))
            .collect();
        w.counter_with_labels(
            m::UPSTREAM_RECONNECTS,
            "Reconnect attempts of shared connections.",
            &rec,
        );
    }
}
