//! Process-wide counters behind `/metrics` and `PROXY INFO`. Every metric name
//! lives here, so the exported names are defined in one place.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub const CONNECTIONS_ACCEPTED: &str = "respite_connections_accepted_total";
pub const CONNECTIONS_REJECTED: &str = "respite_connections_rejected_total";
pub const TLS_HANDSHAKE_FAILURES: &str = "respite_tls_handshake_failures_total";
pub const CLIENTS_CONNECTED: &str = "respite_clients_connected";
pub const COMMANDS: &str = "respite_commands_total";
pub const COMMANDS_LOCAL: &str = "respite_commands_local_total";
pub const ERROR_REPLIES: &str = "respite_error_replies_total";
pub const PROTOCOL_ERRORS: &str = "respite_protocol_errors_total";
pub const OUTPUT_LIMIT_CLOSED: &str = "respite_client_output_buffer_limit_disconnections_total";
pub const PINNED_ACQUIRED: &str = "respite_pinned_connections_acquired_total";
pub const PINNED_OPEN: &str = "respite_pinned_connections";
pub const PINNED_REFUSED: &str = "respite_pinned_connections_refused_total";
pub const UPSTREAM_UP: &str = "respite_upstream_up";
pub const UPSTREAM_REQUESTS: &str = "respite_upstream_requests_total";
pub const UPSTREAM_RECONNECTS: &str = "respite_upstream_reconnects_total";
pub const UPSTREAM_HANDSHAKE_REFUSED: &str = "respite_upstream_handshake_refused";
pub const COMPRESS_VALUES: &str = "respite_compression_values_compressed_total";
pub const COMPRESS_BYTES_IN: &str = "respite_compression_bytes_before_total";
pub const COMPRESS_BYTES_OUT: &str = "respite_compression_bytes_after_total";
pub const COMPRESS_RATIO: &str = "respite_compression_ratio";
pub const COMPRESS_RESTORES: &str = "respite_compression_values_restored_total";
pub const COMPRESS_ERRORS: &str = "respite_compression_errors_total";
pub const COMPRESS_BYTE_OPS: &str = "respite_compression_byte_ops_emulated_total";
pub const COMPRESS_UNTRUSTED: &str = "respite_compression_untrusted_total";
pub const TAG_COMMANDS: &str = "respite_tag_commands_total";
pub const TAG_KEYS_INVALIDATED: &str = "respite_tag_keys_invalidated_total";
pub const TAG_SWEEP_REMOVED: &str = "respite_tag_sweep_removed_total";
// Statistics (`crate::stats`). Labels: `cmd` (a command name from the fixed
// command table, or `other`), `node` (upstream address). Never a key.
pub const UPSTREAM_CONNECTIONS: &str = "respite_upstream_connections";
pub const UPSTREAM_INFLIGHT: &str = "respite_upstream_inflight_requests";
pub const UPSTREAM_DURATION: &str = "respite_upstream_batch_duration_seconds";
pub const COMMAND_CALLS: &str = "respite_command_calls_total";
pub const COMMAND_ERRORS: &str = "respite_command_errors_total";
pub const COMMAND_DURATION: &str = "respite_command_duration_seconds";
pub const KEYSPACE_HITS: &str = "respite_keyspace_hits_total";
pub const KEYSPACE_MISSES: &str = "respite_keyspace_misses_total";
pub const KEY_READS: &str = "respite_key_reads_total";
pub const KEY_WRITES: &str = "respite_key_writes_total";
pub const STATS_TRACKED_KEYS: &str = "respite_stats_tracked_keys";
pub const STATS_EVICTIONS: &str = "respite_stats_evicted_keys_total";
pub const STATS_MEMORY: &str = "respite_stats_memory_bytes";
pub const UPTIME: &str = "respite_uptime_seconds";

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_rejected: AtomicU64,
    /// Client connections to the TLS listener whose handshake failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    pub clients_connected: AtomicI64,
    pub commands: AtomicU64,
    pub commands_local: AtomicU64,
    pub error_replies: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Clients closed for going over their output buffer limit.
    pub output_limit_closed: AtomicU64,
    pub pinned_acquired: AtomicU64,
    /// Values stored lz4-compressed.
    pub compress_values: AtomicU64,
    /// Original bytes of the values stored compressed.
    pub compress_bytes_in: AtomicU64,
    /// Stored bytes (envelope included) of the values stored compressed.
    pub compress_bytes_out: AtomicU64,
    /// Values restored in replies.
    pub compress_restores: AtomicU64,
    /// Envelopes that could not be restored, and byte-level commands refused.
    pub compress_errors: AtomicU64,
    /// Byte-level commands answered on a compressed value (read, restore, answer).
    pub compress_byte_ops: AtomicU64,
    /// Values read that begin with the magic but are not an envelope respite
    /// trusts (tag does not verify): passed on as stored.
    pub compress_untrusted: AtomicU64,
    /// TAGSET, TAGADD, TAGINVAL, TAGKEYS, TAGSOF requests.
    pub tag_commands: AtomicU64,
    /// Keys deleted by TAGINVAL.
    pub tag_keys_invalidated: AtomicU64,
    /// Index entries of dead keys removed by the background sweep.
    pub tag_sweep_removed: AtomicU64,
}

impl Metrics {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Stored bytes per original byte of the values stored compressed (1 before any).
pub fn compression_ratio(m: &Metrics) -> f64 {
    let before = get(&m.compress_bytes_in);
    if before == 0 {
        return 1.0;
    }
    get(&m.compress_bytes_out) as f64 / before as f64
}

/// Something that is both logged and counted. Both happen in
/// [`Metrics::event`], so the log and the counter cannot disagree.
pub enum Event<'a> {
    /// A client sent malformed RESP; its connection closes.
    ProtocolError {
        client: u64,
        error: &'a dyn std::fmt::Display,
    },
    /// A connection refused by `limits.max_clients`.
    ConnectionRejected { peer: std::net::SocketAddr },
    /// A client closed for going over its output buffer limit
    /// (`limits.client_output_buffer_limit`); `client` is its `CLIENT INFO` line.
    OutputBufferLimit {
        client: &'a str,
        class: &'static str,
        bytes: usize,
    },
}

impl Metrics {
    /// Log and count `e`.
    pub fn event(&self, e: Event<'_>) {
        match e {
            Event::ProtocolError { client, error } => {
                Self::add(&self.protocol_errors, 1);
                tracing::debug!(client, error = %error, "protocol error");
            }
            Event::ConnectionRejected { peer } => {
                Self::add(&self.connections_rejected, 1);
                tracing::debug!(%peer, "connection rejected: max number of clients reached");
            }
            Event::OutputBufferLimit {
                client,
                class,
                bytes,
            } => {
                Self::add(&self.output_limit_closed, 1);
                // Redis's own line for this, then what went over which limit.
                tracing::warn!(
                    class,
                    omem = bytes,
                    "Client {client} closed for overcoming of output buffer limits."
                );
            }
        }
    }
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
