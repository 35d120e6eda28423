//! `PROXY INFO [section]`: INFO-formatted text (`# Section` lines, then
//! `field:value` lines, a blank line between sections), the same numbers
//! `/metrics` exports.
//!
//! Each section is one function in [`SECTIONS`]; a feature that adds
//! counters to [`crate::metrics::Metrics`] adds or fills its section there.

use super::hist::Hist;
use crate::metrics::get;
use crate::server::Ctx;
use crate::upstream::conn::ConnState;
use std::fmt::Write;
use std::sync::atomic::Ordering;

type Section = fn(&Ctx, &mut String);

/// Every section, in output order: (title, writer).
pub const SECTIONS: &[(&str, Section)] = &[
    ("Server", server),
    ("Clients", clients),
    ("Stats", totals),
    ("Upstreams", upstreams),
    ("Commandstats", commandstats),
    ("Keyspace hits", keyspace_hits),
    ("Compression", compression),
    ("Tags", tags),
    ("Keystats", keystats),
];

/// Section names compare without case, spaces or underscores
/// (`keyspace_hits` selects "Keyspace hits").
fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The INFO text: every section, or the one named (nothing for an unknown
/// name, as Redis does).
pub fn render(ctx: &Ctx, section: Option<&str>) -> String {
    let want = section
        .map(norm)
        .filter(|s| !matches!(s.as_str(), "all" | "default" | "everything"));
    let mut out = String::new();
    for (title, f) in SECTIONS {
        if want.as_ref().is_some_and(|w| *w != norm(title)) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let _ = write!(out, "# {title}\r\n");
        f(ctx, &mut out);
    }
    out
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{key}:{value}\r\n");
}

fn server(ctx: &Ctx, out: &mut String) {
    line(out, "respite_version", env!("CARGO_PKG_VERSION"));
    line(out, "mode", ctx.config.upstream.mode.as_str());
    line(out, "process_id", std::process::id());
    line(out, "tcp_port", ctx.config.listen.map_or(0, |a| a.port()));
    line(out, "uptime_in_seconds", ctx.stats.uptime().as_secs());
    line(out, "workers", ctx.config.workers.max(1));
}

fn clients(ctx: &Ctx, out: &mut String) {
    let m = &ctx.metrics;
    line(
        out,
        "connected_clients",
        m.clients_connected.load(Ordering::Relaxed),
    );
    line(out, "maxclients", ctx.config.limits.max_clients);
    line(
        out,
        "total_connections_received",
        get(&m.connections_accepted),
    );
    line(out, "rejected_connections", get(&m.connections_rejected));
    line(out, "pinned_connections_acquired", get(&m.pinned_acquired));
    line(out, "pinned_connections", ctx.pinned.open());
    line(
        out,
        "max_pinned_connections",
        ctx.config.upstream.max_pinned_connections,
    );
    line(out, "pinned_connections_refused", ctx.pinned.refused());
}

fn totals(ctx: &Ctx, out: &mut String) {
    let m = &ctx.metrics;
    line(out, "total_commands_processed", get(&m.commands));
    line(out, "local_commands_processed", get(&m.commands_local));
    line(out, "error_replies", get(&m.error_replies));
    line(out, "protocol_errors", get(&m.protocol_errors));
    line(
        out,
        "client_output_buffer_limit_disconnections",
        get(&m.output_limit_closed),
    );
}

/// One upstream node as the proxy sees it, summed over every worker's
/// shared connections to it.
#[derive(Debug, Clone)]
pub struct NodeState {
    pub addr: String,
    pub connections: u64,
    pub connected: u64,
    /// Shared connections now stalled (oldest request older than `stall_after_ms`).
    pub stalled: u64,
    pub inflight: u64,
    pub requests: u64,
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// Batch write to last reply read, per batch.
    pub latency: Hist,
}

/// Upstream nodes in first-seen order.
pub fn nodes(ctx: &Ctx) -> Vec<NodeState> {
    let mut nodes: Vec<NodeState> = Vec::new();
    for worker in ctx.workers() {
        for c in worker.all_conns() {
            let addr = c.addr().to_string();
            let i = match nodes.iter().position(|n| n.addr == addr) {
                Some(i) => i,
                None => {
                    nodes.push(NodeState {
                        addr,
                        connections: 0,
                        connected: 0,
                        stalled: 0,
                        inflight: 0,
                        requests: 0,
                        reconnects: 0,
                        last_error: None,
                        latency: Hist::new(&ctx.stats.bounds),
                    });
                    nodes.len() - 1
                }
            };
            let n = &mut nodes[i];
            n.connections += 1;
            n.connected += (c.state() == ConnState::Up) as u64;
            n.stalled += c.stalled() as u64;
            n.inflight += c.inflight();
            n.requests += c.requests();
            n.reconnects += c.reconnects();
            if let Some(e) = c.last_error() {
                n.last_error = Some(e.to_string());
            }
            n.latency.merge(&c.latency().snapshot());
        }
    }
    nodes
}

fn upstreams(ctx: &Ctx, out: &mut String) {
    let nodes = nodes(ctx);
    line(out, "upstream_nodes", nodes.len());
    // Nodes refusing respite's handshake (its credentials): `/ready` is red.
    let refusals = ctx.handshake_refusals();
    line(out, "upstream_handshake_refused", refusals.len());
    for (i, (addr, reply)) in refusals.iter().enumerate() {
        line(
            out,
            &format!("handshake_refused{i}"),
            format_args!(
                "addr={addr},reply={}",
                reply.replace([',', '\r', '\n'], " ")
            ),
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let err = n
            .last_error
            .as_deref()
            .unwrap_or("")
            .replace([',', '\r', '\n'], " ");
        line(
            out,
            &format!("node{i}"),
            format_args!(
                "addr={},connected={},connections={},stalled={},inflight={},requests={},reconnects={},batches={},batch_usec={},last_error={}",
                n.addr,
                n.connected,
                n.connections,
                n.stalled,
                n.inflight,
                n.requests,
                n.reconnects,
                n.latency.count,
                n.latency.sum_us,
                err
            ),
        );
    }
}

fn commandstats(ctx: &Ctx, out: &mut String) {
    for (name, c) in ctx.stats.commands() {
        let per_call = c.hist.sum_us as f64 / c.calls.max(1) as f64;
        line(
            out,
            &format!("cmdstat_{name}"),
            format_args!(
                "calls={},usec={},usec_per_call={:.2},failed_calls={}",
                c.calls, c.hist.sum_us, per_call, c.errors
            ),
        );
    }
}

fn keyspace_hits(ctx: &Ctx, out: &mut String) {
    let t = ctx.stats.totals();
    line(out, "keyspace_hits", t.hits);
    line(out, "keyspace_misses", t.misses);
    let rate = if t.hits + t.misses == 0 {
        0.0
    } else {
        t.hits as f64 / (t.hits + t.misses) as f64
    };
    line(out, "keyspace_hit_rate", format_args!("{rate:.4}"));
    line(out, "key_reads", t.reads);
    line(out, "key_writes", t.writes);
}

fn compression(ctx: &Ctx, out: &mut String) {
    line(
        out,
        "compression_enabled",
        ctx.config.compression.enabled as u8,
    );
    line(out, "compression_min_size", ctx.config.compression.min_size);
    let m = &ctx.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    line(out, "values_compressed", get(&m.compress_values));
    line(out, "bytes_before", get(&m.compress_bytes_in));
    line(out, "bytes_after", get(&m.compress_bytes_out));
    line(
        out,
        "compression_ratio",
        format_args!("{:.4}", crate::metrics::compression_ratio(m)),
    );
    line(out, "values_restored", get(&m.compress_restores));
    line(out, "compression_errors", get(&m.compress_errors));
    line(out, "byte_ops_emulated", get(&m.compress_byte_ops));
    line(out, "values_untrusted", get(&m.compress_untrusted));
}

fn tags(ctx: &Ctx, out: &mut String) {
    line(out, "tags_enabled", ctx.config.tags.enabled as u8);
    let m = &ctx.metrics;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    line(out, "tag_commands", get(&m.tag_commands));
    line(out, "tag_keys_invalidated", get(&m.tag_keys_invalidated));
    line(out, "tag_sweep_removed", get(&m.tag_sweep_removed));
}

fn keystats(ctx: &Ctx, out: &mut String) {
    let s = &ctx.stats;
    let t = s.totals();
    line(out, "stats_enabled", s.enabled as u8);
    line(out, "tracked_keys", t.tracked);
    line(out, "max_keys", s.max_keys);
    line(out, "evicted_keys", t.evictions);
    line(out, "sample_rate", s.sample_rate);
    line(out, "tracking_memory_bytes", t.memory_bytes);
}
