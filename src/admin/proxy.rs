//! The proxy's answers to the admin endpoints: readiness and the metrics page.

use super::{AdminState, Histogram, PromWriter};
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

    fn render_hotkeys(&self, out: &mut String) -> bool {
        if !self.0.stats.enabled {
            return false;
        }
        crate::stats::hotkeys_json(&self.0.stats, out);
        true
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
            m::TLS_HANDSHAKE_FAILURES,
            "Client TLS handshakes that failed or timed out (the connection was closed).",
            get(&mt.tls_handshake_failures),
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
            m::OUTPUT_LIMIT_CLOSED,
            "Clients closed for going over their output buffer limit.",
            get(&mt.output_limit_closed),
        );
        w.counter(
            m::PINNED_ACQUIRED,
            "Pinned upstream connections handed to sessions.",
            get(&mt.pinned_acquired),
        );
        w.gauge(
            m::PINNED_OPEN,
            "Pinned upstream connections open now, in use and idle (at most upstream.max_pinned_connections).",
            ctx.pinned.open() as f64,
        );
        w.counter(
            m::PINNED_REFUSED,
            "Commands refused because upstream.max_pinned_connections pinned connections were open.",
            ctx.pinned.refused(),
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
            m::COMPRESS_UNTRUSTED,
            "Values read that begin with the compression magic but whose tag does not verify, passed on as stored.",
            get(&mt.compress_untrusted),
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
        let controls = crate::upstream::control::all(&ctx.config);
        let labels: Vec<[(&str, &str); 1]> =
            controls.iter().map(|c| [("node", &**c.addr())]).collect();
        let refused: Vec<(&[(&str, &str)], f64)> = controls
            .iter()
            .zip(&labels)
            .map(|(c, l)| (&l[..], if c.refusal().is_some() { 1.0 } else { 0.0 }))
            .collect();
        w.gauge_with_labels(
            m::UPSTREAM_HANDSHAKE_REFUSED,
            "Whether the node refused respite's latest handshake (its credentials); /ready is red meanwhile.",
            &refused,
        );
        render_stats(ctx, &mut w);
    }
}

/// The statistics families (`crate::stats`): per-command calls, errors and
/// latency, keyspace hits and misses, upstream latency and in-flight requests.
pub fn render_stats(ctx: &Ctx, w: &mut PromWriter<'_>) {
    let stats = &ctx.stats;
    let bounds = &stats.bounds;
    w.gauge(
        m::UPTIME,
        "Seconds since the proxy started.",
        stats.uptime().as_secs_f64(),
    );
    let nodes = crate::stats::info::nodes(ctx);
    let labels: Vec<[(&str, &str); 1]> =
        nodes.iter().map(|n| [("node", n.addr.as_str())]).collect();
    let conns: Vec<(&[(&str, &str)], f64)> = nodes
        .iter()
        .zip(&labels)
        .map(|(n, l)| (&l[..], n.connected as f64))
        .collect();
    w.gauge_with_labels(
        m::UPSTREAM_CONNECTIONS,
        "Shared connections to the node that are up.",
        &conns,
    );
    let inflight: Vec<(&[(&str, &str)], f64)> = nodes
        .iter()
        .zip(&labels)
        .map(|(n, l)| (&l[..], n.inflight as f64))
        .collect();
    w.gauge_with_labels(
        m::UPSTREAM_INFLIGHT,
        "Requests sent to the node and not answered yet.",
        &inflight,
    );
    let node_buckets: Vec<Vec<(f64, u64)>> =
        nodes.iter().map(|n| n.latency.cumulative(bounds)).collect();
    let series: Vec<Histogram<'_>> = nodes
        .iter()
        .zip(&labels)
        .zip(&node_buckets)
        .map(|((n, l), b)| Histogram {
            labels: &l[..],
            buckets: b,
            sum: n.latency.sum_us as f64 / 1e6,
            count: n.latency.count,
        })
        .collect();
    w.histograms(
        m::UPSTREAM_DURATION,
        "Upstream latency per pipelined batch: from writing it to reading its last reply.",
        &series,
    );
    let cmds = stats.commands();
    let labels: Vec<[(&str, &str); 1]> = cmds.iter().map(|(n, _)| [("cmd", *n)]).collect();
    let calls: Vec<(&[(&str, &str)], u64)> = cmds
        .iter()
        .zip(&labels)
        .map(|((_, c), l)| (&l[..], c.calls))
        .collect();
    w.counter_with_labels(
        m::COMMAND_CALLS,
        "Requests per command (replies written).",
        &calls,
    );
    let errors: Vec<(&[(&str, &str)], u64)> = cmds
        .iter()
        .zip(&labels)
        .map(|((_, c), l)| (&l[..], c.errors))
        .collect();
    w.counter_with_labels(m::COMMAND_ERRORS, "Error replies per command.", &errors);
    let buckets: Vec<Vec<(f64, u64)>> = cmds
        .iter()
        .map(|(_, c)| c.hist.cumulative(bounds))
        .collect();
    let series: Vec<Histogram<'_>> = cmds
        .iter()
        .zip(&labels)
        .zip(&buckets)
        .map(|(((_, c), l), b)| Histogram {
            labels: &l[..],
            buckets: b,
            sum: c.hist.sum_us as f64 / 1e6,
            count: c.hist.count,
        })
        .collect();
    w.histograms(
        m::COMMAND_DURATION,
        "Proxy-side latency per command: from reading the request to writing its reply.",
        &series,
    );
    let t = stats.totals();
    w.counter(
        m::KEYSPACE_HITS,
        "Key lookups that found the key (GET value, each non-nil MGET element, EXISTS 1, ...).",
        t.hits,
    );
    w.counter(
        m::KEYSPACE_MISSES,
        "Key lookups that found nothing (GET nil, each nil MGET element, EXISTS 0, ...).",
        t.misses,
    );
    w.counter(m::KEY_READS, "Key accesses by reading commands.", t.reads);
    w.counter(m::KEY_WRITES, "Key accesses by writing commands.", t.writes);
    w.gauge(
        m::STATS_TRACKED_KEYS,
        "Keys with per-key counters now (at most stats.max_keys).",
        t.tracked as f64,
    );
    w.counter(
        m::STATS_EVICTIONS,
        "Tracked keys replaced by hotter ones.",
        t.evictions,
    );
    w.gauge(
        m::STATS_MEMORY,
        "Approximate bytes held by per-key tracking.",
        t.memory_bytes as f64,
    );
}
