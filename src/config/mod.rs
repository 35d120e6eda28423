//! Configuration: the validated, typed settings every other module reads.
//!
//! Two stages (see `file.rs`): the TOML file is parsed into `file::FileConfig`
//! (every field optional, unknown fields rejected), command-line and environment
//! overrides are applied, then `validate` turns it into [`Config`], reporting
//! every problem at once.

use std::net::SocketAddr;
use std::time::Duration;

/// Which deployment sits behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Sentinel,
    Cluster,
}

/// Where reads may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Primary,
    ReplicaPreferred,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Client listen address.
    pub listen: SocketAddr,
    /// Worker threads, each a current-thread runtime with its own listener
    /// (SO_REUSEPORT) and its own shared upstream connections. Resolved: never 0.
    pub workers: usize,
    /// Admin HTTP address; `None` when disabled.
    pub admin: Option<SocketAddr>,
    /// `tracing` filter directive, e.g. `info` or `respite=debug`.
    pub log_level: String,
    pub auth: AuthConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub compression: CompressionConfig,
    pub tags: TagsConfig,
    pub stats: StatsConfig,
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Password of the default user clients must `AUTH` with; `None`: no auth.
    pub password: Option<String>,
    /// Extra named users (`AUTH user pass`, `HELLO 3 AUTH user pass`).
    pub users: Vec<User>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub mode: Mode,
    /// `host:port` strings: the server (standalone), the sentinels, or cluster seeds.
    pub nodes: Vec<String>,
    /// Sentinel master name (sentinel mode only).
    pub master_name: Option<String>,
    /// Credentials the proxy uses towards Redis.
    pub username: Option<String>,
    pub password: Option<String>,
    /// Credentials towards the sentinels.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// Shared multiplexed connections per node and per worker.
    pub shared_connections: usize,
    /// Most pinned connections (transactions, blocking, pub/sub) per node.
    pub pinned_pool_size: usize,
    pub connect_timeout: Duration,
    /// A request with no reply after this long fails its connection.
    pub command_timeout: Duration,
    /// First and longest wait between reconnect attempts.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Number of databases `SELECT` accepts (standalone/sentinel).
    pub databases: u32,
    pub read_from: ReadFrom,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_clients: usize,
    /// Largest request frame; refused before it is buffered.
    pub max_request_bytes: usize,
    /// Most arguments in one request.
    pub max_request_args: usize,
    /// Requests a client may have waiting for replies before the proxy stops reading from it.
    pub max_inflight: usize,
    /// Close client connections idle this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// How long graceful shutdown waits for in-flight replies.
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct CompressionConfig {
    pub enabled: bool,
    pub min_size: usize,
    /// Glob patterns of keys never compressed.
    pub exclude: Vec<String>,
    pub max_decompressed_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct TagsConfig {
    pub enabled: bool,
    pub prefix: String,
    pub batch: usize,
    pub sweep_interval: Duration,
    /// Most index entries the background sweep checks per second.
    pub sweep_rate: usize,
}

#[derive(Debug, Clone)]
pub struct StatsConfig {
    pub enabled: bool,
    pub max_keys: usize,
    pub sample_rate: f64,
    /// Latency histogram bucket upper bounds, microseconds.
    pub latency_buckets_us: Vec<u64>,
}
