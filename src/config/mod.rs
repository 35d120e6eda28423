//! Configuration: the validated, typed settings every other module reads.
//!
//! Two stages. The TOML file is parsed into [`FileConfig`] (`file.rs`: every
//! field optional, unknown fields rejected); command-line and environment
//! overrides are applied on top of it ([`load`]); then [`validate`]
//! (`validate.rs`) fills in the `DEFAULT_*` values (`defaults.rs`) and turns it
//! into [`Config`], reporting every problem at once in one [`ConfigError`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::Cli;

mod defaults;
mod file;
mod validate;

pub use defaults::*;
pub use file::{
    AdminSection, AuthSection, CompressionSection, FileConfig, FileUser, LimitsSection,
    OutputLimitSection, OutputLimitsSection, Secret, ServerSection, ServerTlsSection, StatsSection,
    TagsSection, UpstreamSection, UpstreamTlsSection,
};
pub use validate::validate;

/// A setting that cannot be used, in words for the operator (a config
/// problem, never a Redis reply: see `crate::error` for those).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_string())
    }
}

impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}

/// The file `load` reads when `--config` is not given, if it exists in the
/// current directory.
pub const DEFAULT_CONFIG_FILE: &str = "proxy.toml";

/// Which deployment sits behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Standalone,
    Sentinel,
    Cluster,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event; coloured only when stderr is a
    /// terminal (and `NO_COLOR` is unset).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where reads may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    Primary,
    ReplicaPreferred,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Client listen address (plaintext); `None` with `listen = "off"`
    /// (TLS only).
    pub listen: Option<SocketAddr>,
    /// The TLS listener (`[server.tls]`); `None`: plaintext only.
    pub tls: Option<ServerTlsConfig>,
    /// Worker threads, each a current-thread runtime with its own listener
    /// (SO_REUSEPORT) and its own shared upstream connections. Resolved: never 0.
    pub workers: usize,
    /// Admin HTTP address; `None` when disabled.
    pub admin: Option<SocketAddr>,
    /// The admin endpoint's access rules and limits (`[admin]`).
    pub admin_http: AdminConfig,
    /// `tracing` filter directive, e.g. `info` or `respite=debug`.
    pub log_level: String,
    pub log_format: LogFormat,
    pub auth: AuthConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub compression: CompressionConfig,
    pub tags: TagsConfig,
    pub stats: StatsConfig,
}

/// `[server.tls]`, with the certificate and key loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: crate::tls::ClientAuth,
    pub min_version: crate::tls::MinVersion,
    /// A client that has not finished its handshake after this long is dropped.
    pub handshake_timeout: Duration,
    /// What new handshakes use; replaceable while running.
    pub server: crate::tls::Swap<rustls::ServerConfig>,
}

/// `[upstream.tls]` when enabled, with the trusted roots and client
/// certificate loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Verification and SNI name; `None`: the host of each node's address.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
    /// What new connections use; replaceable while running.
    pub client: crate::tls::Swap<rustls::ClientConfig>,
}

// Debug by hand below: it must not print the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Bearer token required by the routes that name keys (`/hotkeys`):
    /// `admin.token`, or else `auth.password`; `None`: no token is set.
    pub token: Option<String>,
    /// Host names accepted in `Host` besides the listen address, loopback
    /// addresses and the localhost names; lower case, without a final dot.
    pub allowed_hosts: Vec<String>,
    /// Connections open at once; a new one past this closes the idlest.
    pub max_connections: usize,
    /// Largest request head; larger gets 431 and the connection is closed.
    pub max_header_bytes: usize,
    /// Time to receive a whole request head, idle keep-alive time included.
    pub header_timeout: Duration,
}

// Debug by hand below: it must not print passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Password of the default user clients must `AUTH` with; `None`: no auth.
    pub password: Option<String>,
    /// Extra named users (`AUTH user pass`, `HELLO 3 AUTH user pass`).
    pub users: Vec<User>,
    /// `auth.default_user_admin`: the default user is an administrator.
    pub default_user_admin: bool,
}

// Debug by hand below: it must not print passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// SHA-256 of the password (from `password` or `password_sha256`).
    pub password_sha256: [u8; 32],
    /// `None`: every command, key and channel (no `rules` given).
    pub rules: Option<crate::auth::acl::Rules>,
    pub admin: bool,
}

// Debug by hand below: it must not print passwords.
#[derive(Clone, PartialEq, Eq)]
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
    /// Sentinel mode: ask the sentinels at least this often.
    pub sentinel_check_interval: Duration,
    /// Shared multiplexed connections per node and per worker.
    pub shared_connections: usize,
    /// Idle pinned connections kept for reuse per node, database and protocol.
    pub pinned_pool_size: usize,
    /// Most pinned connections (transactions, blocking, pub/sub), in use and
    /// idle, in the whole process; a command that needs one more is refused.
    pub max_pinned_connections: usize,
    pub connect_timeout: Duration,
    /// A connection with requests in flight and no reply for this long has
    /// its node probed; only a failed probe fails the requests.
    pub command_timeout: Duration,
    /// Longest wait for the answer to a probe.
    pub probe_timeout: Duration,
    /// A shared connection whose oldest request in flight is older than this
    /// is avoided for new requests.
    pub stall_after: Duration,
    /// Most shared connections per node, worker, database and RESP version
    /// (at least `shared_connections`).
    pub max_shared_connections: usize,
    /// First and longest wait between reconnect attempts.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Number of databases `SELECT` accepts (standalone/sentinel).
    pub databases: u32,
    pub read_from: ReadFrom,
    /// TLS towards every node (data nodes, sentinels, cluster nodes).
    pub tls: Option<UpstreamTlsConfig>,
}

impl UpstreamConfig {
    /// Host of the first configured node: where a cluster redirect that
    /// names no host (`MOVED 3999 :6380`) points.
    pub fn default_host(&self) -> String {
        self.nodes
            .first()
            .and_then(|n| n.rsplit_once(':'))
            .map(|(h, _)| h.to_string())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Redis's `client-output-buffer-limit`, per class of client.
    pub client_output_buffer_limit: OutputBufferLimits,
}

/// What the proxy may hold for one client before closing it, as Redis's
/// `client-output-buffer-limit <class> <hard> <soft> <soft-seconds>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputBufferLimit {
    /// A client holding this many bytes is closed at once; 0: no hard limit.
    pub hard_bytes: usize,
    /// A client holding this many bytes for longer than `soft_period` is
    /// closed; 0: no soft limit.
    pub soft_bytes: usize,
    pub soft_period: Duration,
}

impl OutputBufferLimit {
    /// No limit at all (Redis's `0 0 0`).
    pub fn is_off(&self) -> bool {
        self.hard_bytes == 0 && self.soft_bytes == 0
    }
}

/// The output buffer limit of each client class Redis has that a proxy
/// client can be in (`replica` cannot: replication does not go through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBufferLimits {
    pub normal: OutputBufferLimit,
    /// Clients subscribed with SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE.
    pub pubsub: OutputBufferLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressionConfig {
    pub enabled: bool,
    pub min_size: usize,
    /// Glob patterns of keys never compressed.
    pub exclude: Vec<String>,
    pub max_decompressed_bytes: usize,
    /// Key of the envelope tags; `None`: a built-in key (a checksum only).
    pub secret: Option<Secret>,
    /// Earlier secrets whose envelopes still verify.
    pub previous_secrets: Vec<Secret>,
    /// Trust untagged version-1 envelopes.
    pub accept_v1_envelopes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsConfig {
    pub enabled: bool,
    pub prefix: String,
    pub batch: usize,
    pub sweep_interval: Duration,
    /// Most index entries the background sweep checks per second.
    pub sweep_rate: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatsConfig {
    pub enabled: bool,
    pub max_keys: usize,
    pub sample_rate: f64,
    /// Latency histogram bucket upper bounds, microseconds.
    pub latency_buckets_us: Vec<u64>,
}

impl Mode {
    /// The names accepted in the file and on the command line.
    pub const NAMES: [&'static str; 3] = ["standalone", "sentinel", "cluster"];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Sentinel => "sentinel",
            Mode::Cluster => "cluster",
        }
    }
}

impl FromStr for Mode {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Mode, Invalid> {
        match s {
            "standalone" => Ok(Mode::Standalone),
            "sentinel" => Ok(Mode::Sentinel),
            "cluster" => Ok(Mode::Cluster),
            _ => Err(Invalid(format!(
                "unknown mode {s:?}, expected one of {}",
                Mode::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LogFormat {
    /// The names accepted in the file and on the command line.
    pub const NAMES: [&'static str; 2] = ["text", "json"];

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl FromStr for LogFormat {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<LogFormat, Invalid> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(Invalid(format!(
                "unknown log format {s:?}, expected one of {}",
                LogFormat::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ReadFrom {
    /// The names accepted in the file.
    pub const NAMES: [&'static str; 2] = ["primary", "replica_preferred"];

    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Primary => "primary",
            ReadFrom::ReplicaPreferred => "replica_preferred",
        }
    }
}

impl FromStr for ReadFrom {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<ReadFrom, Invalid> {
        match s {
            "primary" => Ok(ReadFrom::Primary),
            "replica_preferred" => Ok(ReadFrom::ReplicaPreferred),
            _ => Err(Invalid(format!(
                "unknown read_from {s:?}, expected one of {}",
                ReadFrom::NAMES.join(", ")
            ))),
        }
    }
}

impl fmt::Display for ReadFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Config {
    /// The built-in defaults, with `workers` resolved for this machine.
    fn default() -> Config {
        // The defaults are constants checked by a test, not user input.
        validate(FileConfig::default()).expect("built-in defaults are valid")
    }
}

// Debug by hand for the structs holding secrets: a config dumped into a log or
// a panic message must not carry passwords.

fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("password", &redacted(&self.password))
            .field("users", &self.users)
            .field("default_user_admin", &self.default_user_admin)
            .finish()
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &redacted(&self.token))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_connections", &self.max_connections)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("header_timeout", &self.header_timeout)
            .finish()
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("rules", &self.rules)
            .field("admin", &self.admin)
            .finish()
    }
}

impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("mode", &self.mode)
            .field("nodes", &self.nodes)
            .field("master_name", &self.master_name)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &redacted(&self.sentinel_password))
            .field("sentinel_check_interval", &self.sentinel_check_interval)
            .field("shared_connections", &self.shared_connections)
            .field("pinned_pool_size", &self.pinned_pool_size)
            .field("max_pinned_connections", &self.max_pinned_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("probe_timeout", &self.probe_timeout)
            .field("stall_after", &self.stall_after)
            .field("max_shared_connections", &self.max_shared_connections)
            .field("reconnect_backoff_min", &self.reconnect_backoff_min)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .field("databases", &self.databases)
            .field("read_from", &self.read_from)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Everything wrong with a configuration, one problem per line when displayed,
/// so an operator fixes them all in one go instead of one per restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// `problems` must not be empty: an error without a problem is a bug.
    pub fn new(problems: Vec<String>) -> ConfigError {
        debug_assert!(!problems.is_empty());
        ConfigError { problems }
    }

    pub fn one(problem: impl Into<String>) -> ConfigError {
        ConfigError::new(vec![problem.into()])
    }

    /// Each problem, e.g. `upstream.databases: must be at least 1, got 0`.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

/// Loads the configuration: built-in defaults, then the file (`--config`, or
/// `./proxy.toml` if it exists), then environment and command-line overrides,
/// then validation of the result.
pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
    let mut file = match config_path(cli) {
        Some(path) => FileConfig::read(&path)?,
        None => FileConfig::default(),
    };
    let mut problems = apply_overrides(&mut file, cli);
    match validate(file) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError::new(problems)),
        Err(e) => {
            problems.extend(e.problems);
            Err(ConfigError::new(problems))
        }
    }
}

/// The file [`load`] reads, if any: `--config` when given (it must then
/// exist), otherwise `proxy.toml` in the current directory when present.
pub fn config_path(cli: &Cli) -> Option<PathBuf> {
    resolve_config_path(cli.config.as_deref(), Path::new(DEFAULT_CONFIG_FILE))
}

fn resolve_config_path(explicit: Option<&Path>, implicit: &Path) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        // `exists`, not `is_file`: a `proxy.toml` that is a directory or
        // unreadable should be reported, not silently skipped.
        None => implicit.exists().then(|| implicit.to_path_buf()),
    }
}

/// Puts the environment and command-line values over the file's. Empty
/// strings count as unset, the usual convention for environment variables
/// (`RESPITE_MASTER_NAME=` in a compose file). Returns the problems found that
/// `validate` cannot see (a secret that is not UTF-8).
fn apply_overrides(file: &mut FileConfig, cli: &Cli) -> Vec<String> {
    fn set(target: &mut Option<String>, value: &Option<String>) {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            *target = Some(v.clone());
        }
    }
    set(&mut file.server.listen, &cli.listen);
    set(&mut file.server.admin, &cli.admin);
    set(&mut file.server.log_level, &cli.log_level);
    set(&mut file.upstream.master_name, &cli.master_name);
    if let Some(workers) = cli.workers {
        file.server.workers = Some(workers);
    }
    if let Some(mode) = cli.mode {
        file.upstream.mode = Some(mode);
    }
    if let Some(format) = cli.log_format {
        file.server.log_format = Some(format);
    }
    // `RESPITE_UPSTREAM="a:6379, b:6379"` is a natural way to write a list, so
    // blanks around entries are dropped. An empty entry in a non-empty list is
    // kept for `validate` to report rather than silently skipped.
    let nodes: Vec<String> = cli.upstream.iter().map(|n| n.trim().to_string()).collect();
    if nodes.iter().any(|n| !n.is_empty()) {
        file.upstream.nodes = Some(nodes);
    }

    let secrets = &cli.secrets;
    if let Some(p) = &secrets.password {
        file.auth.password = Some(p.clone());
    }
    set(&mut file.upstream.username, &secrets.upstream_username);
    if let Some(t) = &secrets.admin_token {
        file.admin.token = Some(t.clone());
    }
    if let Some(p) = &secrets.upstream_password {
        file.upstream.password = Some(p.clone());
    }
    if let Some(p) = &secrets.sentinel_password {
        file.upstream.sentinel_password = Some(p.clone());
    }
    if let Some(s) = &secrets.compression_secret {
        file.compression.secret = Some(s.clone());
    }
    secrets
        .not_unicode
        .iter()
        .map(|name| format!("{name}: not valid UTF-8"))
        .collect()
}

#[cfg(test)]
mod tests;
