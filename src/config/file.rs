//! The TOML file format: serde structs mirroring `proxy.toml` section by section.
//!
//! Every field is optional (a missing field takes its `DEFAULT_*` value in
//! `validate`) and every struct denies unknown fields, so a misspelt key is an
//! error instead of a silently ignored setting. Types here are only as strict
//! as parsing needs; range and consistency checks belong to `validate`, which
//! can report all of them at once.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::defaults::*;
use super::{ConfigError, LogFormat, Mode, ReadFrom};
use crate::tls::{ClientAuth, MinVersion};

/// The whole file. A missing section is the same as an empty one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerSection,
    pub admin: AdminSection,
    pub auth: AuthSection,
    pub upstream: UpstreamSection,
    pub limits: LimitsSection,
    pub compression: CompressionSection,
    pub tags: TagsSection,
    pub stats: StatsSection,
}

/// `[server]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `IP:PORT`; port 0 picks a free port.
    pub listen: Option<String>,
    /// 0 = one per available CPU.
    pub workers: Option<usize>,
    /// `IP:PORT` or `"off"`.
    pub admin: Option<String>,
    pub log_level: Option<String>,
    /// `"text"` or `"json"`.
    pub log_format: Option<LogFormat>,
    pub tls: Option<ServerTlsSection>,
}

/// `[server.tls]`: a TLS listener beside (or instead of) `listen`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    pub listen: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: Option<ClientAuth>,
    pub min_version: Option<MinVersion>,
    pub handshake_timeout_ms: Option<u64>,
}

/// `[upstream.tls]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    pub enabled: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

/// `[admin]`: the admin HTTP endpoint (its address is `server.admin`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Bearer token for the routes that name keys; falls back to `auth.password`.
    pub token: Option<Secret>,
    pub allowed_hosts: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub header_timeout_ms: Option<u64>,
}

/// `[auth]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    pub password: Option<Secret>,
    pub users: Option<Vec<FileUser>>,
    /// Whether the default user (the `password` one, or everybody when no
    /// auth is configured) is an administrator.
    pub default_user_admin: Option<bool>,
}

/// One `[[auth.users]]` entry. Both fields are options so that a missing one
/// is reported by `validate` together with every other problem.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUser {
    pub name: Option<String>,
    pub password: Option<Secret>,
    /// The SHA-256 of the password in hex, as Redis's ACL `#<hash>`.
    pub password_sha256: Option<Secret>,
    /// Permissions in Redis ACL syntax (`+@read ~cache:* -@dangerous`).
    pub rules: Option<String>,
    /// May run commands that change respite's own upstream credentials.
    pub admin: Option<bool>,
}

/// `[upstream]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub mode: Option<Mode>,
    /// Also accepted as `sentinels` (the natural name in sentinel mode).
    #[serde(alias = "sentinels")]
    pub nodes: Option<Vec<String>>,
    pub master_name: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    pub sentinel_check_interval_ms: Option<u64>,
    pub shared_connections: Option<usize>,
    pub pinned_pool_size: Option<usize>,
    pub max_pinned_connections: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    pub command_timeout_ms: Option<u64>,
    pub probe_timeout_ms: Option<u64>,
    pub stall_after_ms: Option<u64>,
    pub max_shared_connections: Option<usize>,
    pub reconnect_backoff_min_ms: Option<u64>,
    pub reconnect_backoff_max_ms: Option<u64>,
    pub databases: Option<u32>,
    pub read_from: Option<ReadFrom>,
    pub tls: Option<UpstreamTlsSection>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_clients: Option<usize>,
    pub max_request_bytes: Option<usize>,
    pub max_request_args: Option<usize>,
    pub max_inflight: Option<usize>,
    /// 0 = never close idle clients.
    pub idle_timeout_secs: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub client_output_buffer_limit: Option<OutputLimitsSection>,
}

/// `[limits] client_output_buffer_limit.<class> = { ... }`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputLimitsSection {
    pub normal: Option<OutputLimitSection>,
    pub pubsub: Option<OutputLimitSection>,
}

/// One class's limit; a field left out keeps the class's default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputLimitSection {
    pub hard_bytes: Option<usize>,
    pub soft_bytes: Option<usize>,
    pub soft_secs: Option<u64>,
}

impl OutputLimitSection {
    fn from_limit(l: super::OutputBufferLimit) -> Self {
        OutputLimitSection {
            hard_bytes: Some(l.hard_bytes),
            soft_bytes: Some(l.soft_bytes),
            soft_secs: Some(l.soft_period.as_secs()),
        }
    }
}

/// `[compression]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionSection {
    pub enabled: Option<bool>,
    pub min_size: Option<usize>,
    pub exclude: Option<Vec<String>>,
    pub max_decompressed_bytes: Option<usize>,
    /// Key of the envelope tags; shared by every respite on one Redis.
    pub secret: Option<Secret>,
    /// Earlier secrets whose envelopes still verify (rotation).
    pub previous_secrets: Option<Vec<Secret>>,
    /// Trust untagged envelopes of format version 1 (migration).
    pub accept_v1_envelopes: Option<bool>,
}

/// `[tags]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsSection {
    pub enabled: Option<bool>,
    pub prefix: Option<String>,
    pub batch: Option<usize>,
    pub sweep_interval_ms: Option<u64>,
    pub sweep_rate: Option<usize>,
}

/// `[stats]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSection {
    pub enabled: Option<bool>,
    pub max_keys: Option<usize>,
    pub sample_rate: Option<f64>,
    pub latency_buckets_us: Option<Vec<u64>>,
}

impl FileConfig {
    /// Parses TOML text. `origin` (usually the file name) starts the error
    /// message so the operator knows which file is wrong.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (position, source excerpt,
            // reason); keep it whole as one problem.
            ConfigError::one(format!("{origin}: {}", e.to_string().trim_end()))
        })
    }

    /// Reads and parses a file; a file that cannot be read is an error naming it.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The file with every field that has a default set to it, i.e. what the
    /// documented `proxy.toml` must parse to. Fields without a default
    /// (passwords, the admin token, usernames, the sentinel master name, users) stay `None`.
    pub fn with_defaults() -> FileConfig {
        let strings = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        FileConfig {
            server: ServerSection {
                listen: Some(DEFAULT_LISTEN.to_string()),
                workers: Some(DEFAULT_WORKERS),
                admin: Some(DEFAULT_ADMIN.to_string()),
                log_level: Some(DEFAULT_LOG_LEVEL.to_string()),
                log_format: Some(DEFAULT_LOG_FORMAT),
                tls: None,
            },
            admin: AdminSection {
                token: None,
                allowed_hosts: Some(strings(DEFAULT_ADMIN_ALLOWED_HOSTS)),
                max_connections: Some(DEFAULT_ADMIN_MAX_CONNECTIONS),
                max_header_bytes: Some(DEFAULT_ADMIN_MAX_HEADER_BYTES),
                header_timeout_ms: Some(DEFAULT_ADMIN_HEADER_TIMEOUT_MS),
            },
            auth: AuthSection {
                default_user_admin: Some(false),
                ..AuthSection::default()
            },
            upstream: UpstreamSection {
                mode: Some(DEFAULT_UPSTREAM_MODE),
                nodes: Some(strings(DEFAULT_UPSTREAM_NODES)),
                master_name: None,
                username: None,
                password: None,
                sentinel_username: None,
                sentinel_password: None,
                sentinel_check_interval_ms: Some(DEFAULT_UPSTREAM_SENTINEL_CHECK_INTERVAL_MS),
                shared_connections: Some(DEFAULT_UPSTREAM_SHARED_CONNECTIONS),
                pinned_pool_size: Some(DEFAULT_UPSTREAM_PINNED_POOL_SIZE),
                max_pinned_connections: Some(DEFAULT_UPSTREAM_MAX_PINNED_CONNECTIONS),
                connect_timeout_ms: Some(DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS),
                command_timeout_ms: Some(DEFAULT_UPSTREAM_COMMAND_TIMEOUT_MS),
                probe_timeout_ms: Some(DEFAULT_UPSTREAM_PROBE_TIMEOUT_MS),
                stall_after_ms: Some(DEFAULT_UPSTREAM_STALL_AFTER_MS),
                max_shared_connections: Some(DEFAULT_UPSTREAM_MAX_SHARED_CONNECTIONS),
                reconnect_backoff_min_ms: Some(DEFAULT_UPSTREAM_RECONNECT_BACKOFF_MIN_MS),
                reconnect_backoff_max_ms: Some(DEFAULT_UPSTREAM_RECONNECT_BACKOFF_MAX_MS),
                databases: Some(DEFAULT_UPSTREAM_DATABASES),
                read_from: Some(DEFAULT_UPSTREAM_READ_FROM),
                tls: None,
            },
            limits: LimitsSection {
                max_clients: Some(DEFAULT_LIMITS_MAX_CLIENTS),
                max_request_bytes: Some(DEFAULT_LIMITS_MAX_REQUEST_BYTES),
                max_request_args: Some(DEFAULT_LIMITS_MAX_REQUEST_ARGS),
                max_inflight: Some(DEFAULT_LIMITS_MAX_INFLIGHT),
                idle_timeout_secs: Some(DEFAULT_LIMITS_IDLE_TIMEOUT_SECS),
                shutdown_grace_ms: Some(DEFAULT_LIMITS_SHUTDOWN_GRACE_MS),
                client_output_buffer_limit: Some(OutputLimitsSection {
                    normal: Some(OutputLimitSection::from_limit(DEFAULT_LIMITS_OUTPUT_NORMAL)),
                    pubsub: Some(OutputLimitSection::from_limit(DEFAULT_LIMITS_OUTPUT_PUBSUB)),
                }),
            },
            compression: CompressionSection {
                enabled: Some(DEFAULT_COMPRESSION_ENABLED),
                min_size: Some(DEFAULT_COMPRESSION_MIN_SIZE),
                exclude: Some(strings(DEFAULT_COMPRESSION_EXCLUDE)),
                max_decompressed_bytes: Some(DEFAULT_COMPRESSION_MAX_DECOMPRESSED_BYTES),
                secret: None,
                previous_secrets: Some(Vec::new()),
                accept_v1_envelopes: Some(DEFAULT_COMPRESSION_ACCEPT_V1_ENVELOPES),
            },
            tags: TagsSection {
                enabled: Some(DEFAULT_TAGS_ENABLED),
                prefix: Some(DEFAULT_TAGS_PREFIX.to_string()),
                batch: Some(DEFAULT_TAGS_BATCH),
                sweep_interval_ms: Some(DEFAULT_TAGS_SWEEP_INTERVAL_MS),
                sweep_rate: Some(DEFAULT_TAGS_SWEEP_RATE),
            },
            stats: StatsSection {
                enabled: Some(DEFAULT_STATS_ENABLED),
                max_keys: Some(DEFAULT_STATS_MAX_KEYS),
                sample_rate: Some(DEFAULT_STATS_SAMPLE_RATE),
                latency_buckets_us: Some(DEFAULT_STATS_LATENCY_BUCKETS_US.to_vec()),
            },
        }
    }
}

/// A password read from the file or the environment. Its `Debug` output is
/// redacted, so a configuration dumped into a log or a panic message does not
/// carry secrets.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
