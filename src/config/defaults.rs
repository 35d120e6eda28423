//! Built-in default for every setting, one named constant each.
//!
//! `proxy.toml` at the top of the repository spells out the same values with a
//! comment per field; a test parses it and compares it with these constants, so
//! the documentation and the code cannot drift apart. Durations and sizes use
//! the unit of their TOML key (`*_ms`, `*_secs`, bytes).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{LogFormat, Mode, OutputBufferLimit, ReadFrom};

// ---- [server] ----

/// Client listen address: loopback only, so a fresh install is not reachable
/// from the network until an operator says so.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 6380));
/// Worker threads; 0 means one per CPU the process may run on (its affinity
/// mask, as `std::thread::available_parallelism` reports it, so a container
/// limited to 2 CPUs gets 2 workers).
pub const DEFAULT_WORKERS: usize = 0;
/// Admin HTTP address (`/metrics`, `/health`, `/ready`), loopback only.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 9121));
/// The word that disables the admin listener in `server.admin` / `--admin`.
pub const ADMIN_OFF: &str = "off";
/// The word that disables the plaintext listener in `server.listen` (TLS only).
pub const LISTEN_OFF: &str = "off";
/// `[server.tls]`: client certificates are not asked for.
pub const DEFAULT_SERVER_TLS_CLIENT_AUTH: crate::tls::ClientAuth = crate::tls::ClientAuth::None;
/// `[server.tls]`: TLS 1.2 and 1.3 accepted.
pub const DEFAULT_SERVER_TLS_MIN_VERSION: crate::tls::MinVersion = crate::tls::MinVersion::Tls12;
/// `[server.tls]`: time a client has to complete its handshake.
pub const DEFAULT_SERVER_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// `tracing` filter directive.
pub const DEFAULT_LOG_LEVEL: &str = "info";
/// Human-readable lines (coloured only on a terminal).
pub const DEFAULT_LOG_FORMAT: LogFormat = LogFormat::Text;

// ---- [admin] ----

/// Hosts the admin endpoint answers for besides its own address and the
/// localhost names: none. A `Host` it does not know is refused (421), so a
/// web page cannot reach the endpoint through DNS rebinding.
pub const DEFAULT_ADMIN_ALLOWED_HOSTS: &[&str] = &[];
/// Admin connections open at once. A new connection past this closes the one
/// idle longest (waiting for its first request or between keep-alive
/// requests), so a flood of idle connections cannot lock probes out.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;
/// Largest request head (request line and headers); larger gets 431.
pub const DEFAULT_ADMIN_MAX_HEADER_BYTES: usize = 8192;
/// Smallest accepted `admin.max_header_bytes`: room for a probe with a few
/// ordinary headers.
pub const MIN_ADMIN_MAX_HEADER_BYTES: usize = 1024;
/// Time a connection has to send a whole request head, idle keep-alive time
/// included; then it is closed.
pub const DEFAULT_ADMIN_HEADER_TIMEOUT_MS: u64 = 2000;

// ---- [upstream] ----

/// Deployment behind the proxy.
pub const DEFAULT_UPSTREAM_MODE: Mode = Mode::Standalone;
/// A local Redis on its standard port.
pub const DEFAULT_UPSTREAM_NODES: &[&str] = &["127.0.0.1:6379"];
/// Shared multiplexed connections per node and per worker: one is enough to
/// batch many clients' pipelines; more only helps when one connection's
/// socket becomes the bottleneck.
pub const DEFAULT_UPSTREAM_SHARED_CONNECTIONS: usize = 1;
/// Idle pinned connections kept for reuse per node, database and protocol.
pub const DEFAULT_UPSTREAM_PINNED_POOL_SIZE: usize = 64;
/// Most pinned connections (MULTI, blocking commands, pub/sub, CLIENT
/// TRACKING), in use and idle, the whole process holds: each is a client of
/// Redis's own, so this keeps one proxy well inside Redis's default
/// `maxclients 10000` while leaving room for other proxies and clients.
pub const DEFAULT_UPSTREAM_MAX_PINNED_CONNECTIONS: usize = 1024;
/// How long connecting to an upstream node may take.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS: u64 = 1000;
/// A connection with requests in flight and no reply for this long has its
/// node probed (the requests keep waiting while the node answers the probe).
pub const DEFAULT_UPSTREAM_COMMAND_TIMEOUT_MS: u64 = 5000;
/// How long a probe (`PING` on the node's control connection) may take
/// before the node counts as unavailable.
pub const DEFAULT_UPSTREAM_PROBE_TIMEOUT_MS: u64 = 5000;
/// A shared connection whose oldest request in flight is older than this is
/// stalled: sessions choose another connection of the node for new requests.
pub const DEFAULT_UPSTREAM_STALL_AFTER_MS: u64 = 100;
/// Most shared connections per node, worker, database and RESP version,
/// counting those opened on demand beside stalled ones (at least
/// `shared_connections` when that is larger).
pub const DEFAULT_UPSTREAM_MAX_SHARED_CONNECTIONS: usize = 4;
/// First wait before reconnecting to a node that failed.
pub const DEFAULT_UPSTREAM_RECONNECT_BACKOFF_MIN_MS: u64 = 50;
/// Longest wait between reconnect attempts (the wait doubles up to this).
pub const DEFAULT_UPSTREAM_RECONNECT_BACKOFF_MAX_MS: u64 = 2000;
/// Sentinel mode: how often the sentinels are asked for the primary when
/// nothing (an event, `-READONLY`, a failed connection) asked sooner.
pub const DEFAULT_UPSTREAM_SENTINEL_CHECK_INTERVAL_MS: u64 = 2000;
/// Databases `SELECT` accepts, as Redis's own default `databases 16`.
pub const DEFAULT_UPSTREAM_DATABASES: u32 = 16;
/// Reads go to the primary, so a client reads its own writes.
pub const DEFAULT_UPSTREAM_READ_FROM: ReadFrom = ReadFrom::Primary;

// ---- [limits] ----

/// Most client connections open at once.
pub const DEFAULT_LIMITS_MAX_CLIENTS: usize = 10_000;
/// Largest request frame, 512 MiB: Redis's own `proto-max-bulk-len`.
pub const DEFAULT_LIMITS_MAX_REQUEST_BYTES: usize = 512 * 1024 * 1024;
/// Most arguments in one request (Redis's limit on a multibulk's length is
/// larger; 4 Mi arguments is already far beyond any sane command).
pub const DEFAULT_LIMITS_MAX_REQUEST_ARGS: usize = 4_194_304;
/// Requests one client may have waiting for replies before the proxy stops
/// reading from its socket.
pub const DEFAULT_LIMITS_MAX_INFLIGHT: usize = 1024;
/// Idle client connections are never closed (0), as Redis's `timeout 0`.
pub const DEFAULT_LIMITS_IDLE_TIMEOUT_SECS: u64 = 0;
/// How long graceful shutdown waits for in-flight replies.
pub const DEFAULT_LIMITS_SHUTDOWN_GRACE_MS: u64 = 5000;
/// Output buffer limit of ordinary clients: none, as Redis's
/// `client-output-buffer-limit normal 0 0 0` (`max_inflight` bounds them).
pub const DEFAULT_LIMITS_OUTPUT_NORMAL: OutputBufferLimit = OutputBufferLimit {
    hard_bytes: 0,
    soft_bytes: 0,
    soft_period: Duration::ZERO,
};
/// Output buffer limit of pub/sub clients, Redis's `pubsub 32mb 8mb 60`.
pub const DEFAULT_LIMITS_OUTPUT_PUBSUB: OutputBufferLimit = OutputBufferLimit {
    hard_bytes: 32 * 1024 * 1024,
    soft_bytes: 8 * 1024 * 1024,
    soft_period: Duration::from_secs(60),
};

// ---- [compression] ----

/// Compression of large values is on.
pub const DEFAULT_COMPRESSION_ENABLED: bool = true;
/// Values shorter than this are stored as they are: below about 1 KiB lz4
/// rarely pays for its header and the CPU.
pub const DEFAULT_COMPRESSION_MIN_SIZE: usize = 1024;
/// Key glob patterns never compressed: none.
pub const DEFAULT_COMPRESSION_EXCLUDE: &[&str] = &[];
/// Largest size a stored value may claim to decompress to, 512 MiB, the same
/// as the largest request, so a corrupt header cannot make the proxy allocate
/// without bound.
pub const DEFAULT_COMPRESSION_MAX_DECOMPRESSED_BYTES: usize = 512 * 1024 * 1024;
/// The compression envelope's header length (magic, version, codec, length,
/// tag); a value shorter than this plus its lz4 form is stored as it is.
pub const COMPRESSION_HEADER_BYTES: usize = 17;
/// Smallest accepted `compression.min_size`.
pub const MIN_COMPRESSION_MIN_SIZE: usize = 16;
/// Untagged envelopes of format version 1 are not trusted: nothing tells
/// them from bytes a client planted.
pub const DEFAULT_COMPRESSION_ACCEPT_V1_ENVELOPES: bool = false;
/// Shortest accepted `compression.secret` (and previous secret), in bytes.
pub const MIN_COMPRESSION_SECRET_BYTES: usize = 16;
/// Smallest accepted `limits.max_request_bytes`: a limit lower than this would
/// refuse ordinary commands.
pub const MIN_LIMITS_MAX_REQUEST_BYTES: usize = 1024;

// ---- [tags] ----

/// Tag commands (`TAGSET`, `TAGINVAL`, ...) are available.
pub const DEFAULT_TAGS_ENABLED: bool = true;
/// Prefix of the keys the tag index lives in.
pub const DEFAULT_TAGS_PREFIX: &str = "__respite:";
/// Keys deleted or checked per upstream round trip during invalidation.
pub const DEFAULT_TAGS_BATCH: usize = 1000;
/// How often the background sweep removes index entries of expired keys.
pub const DEFAULT_TAGS_SWEEP_INTERVAL_MS: u64 = 60_000;
/// Most index entries the sweep checks per second, so it never competes with
/// client traffic.
pub const DEFAULT_TAGS_SWEEP_RATE: usize = 10_000;

// ---- [stats] ----

/// Per-key and per-command statistics are collected.
pub const DEFAULT_STATS_ENABLED: bool = true;
/// Keys the heavy-hitter structure tracks at most.
pub const DEFAULT_STATS_MAX_KEYS: usize = 100_000;
/// Fraction of requests counted per key: all of them.
pub const DEFAULT_STATS_SAMPLE_RATE: f64 = 1.0;
/// Latency histogram bucket upper bounds in microseconds, 50 µs to 1 s.
pub const DEFAULT_STATS_LATENCY_BUCKETS_US: &[u64] = &[
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];
