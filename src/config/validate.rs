//! Validation: turns the optional file settings into the typed [`Config`],
//! filling in defaults and collecting every problem before failing.
//!
//! Each check records a problem and carries on with a placeholder value, so one
//! run reports everything that is wrong. Problems read `key: what is wrong`,
//! with the key as it is spelt in `proxy.toml`; values are quoted with Rust's
//! debug escaping so a control character in the input cannot break the line.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::defaults::*;
use super::file::{
    FileConfig, FileUser, OutputLimitSection, Secret, ServerTlsSection, UpstreamTlsSection,
};
use super::{
    AdminConfig, AuthConfig, CompressionConfig, Config, ConfigError, Invalid, LimitsConfig, Mode,
    OutputBufferLimit, OutputBufferLimits, ServerTlsConfig, StatsConfig, TagsConfig,
    UpstreamConfig, UpstreamTlsConfig, User,
};

/// Level names `tracing` accepts in a filter directive.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks `file` and builds the [`Config`] it describes; fields the file leaves
/// out take their `DEFAULT_*` value. Every problem found is in the error.
pub fn validate(file: FileConfig) -> Result<Config, ConfigError> {
    let mut p = Problems::default();

    // ---- [server] ----
    let server = file.server;
    // `None` below means "invalid, already reported".
    // `Some(None)`: "off" (TLS only).
    let listen: Option<Option<SocketAddr>> = match server.listen {
        Some(s) if s.eq_ignore_ascii_case(LISTEN_OFF) => Some(None),
        Some(s) => p.socket_addr("server.listen", &s).map(Some),
        None => Some(Some(DEFAULT_LISTEN)),
    };
    let tls = server.tls.and_then(|t| server_tls(&mut p, t));
    if listen == Some(None) && tls.is_none() {
        p.add(
            "server.listen",
            "\"off\" needs a [server.tls] listener (clients must be able to connect somewhere)",
        );
    }
    if let (Some(Some(listen)), Some(t)) = (listen, &tls) {
        if t.listen == listen && listen.port() != 0 {
            p.add(
                "server.tls.listen",
                format!("{listen} is also server.listen; they need different ports"),
            );
        }
    }
    let workers = match server.workers.unwrap_or(DEFAULT_WORKERS) {
        // The affinity mask, not the machine's CPU count: a process pinned to
        // two cores (taskset, cgroup cpusets) gains nothing from more workers.
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let admin: Option<Option<SocketAddr>> = match server.admin {
        Some(s) if s.eq_ignore_ascii_case(ADMIN_OFF) => Some(None),
        Some(s) => p.socket_addr("server.admin", &s).map(Some),
        None => Some(Some(DEFAULT_ADMIN)),
    };
    if let (Some(Some(listen)), Some(Some(admin))) = (listen, admin) {
        // Port 0 means "any free port" for each, so only a fixed port can clash.
        if admin == listen && admin.port() != 0 {
            p.add(
                "server.admin",
                format!("{admin} is also server.listen; they need different ports"),
            );
        }
    }
    let log_level = server
        .log_level
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
    if let Err(e) = check_log_filter(&log_level) {
        p.add("server.log_level", e);
    }
    let log_format = server.log_format.unwrap_or(DEFAULT_LOG_FORMAT);

    // ---- [auth] ----
    let auth = AuthConfig {
        password: p.secret("auth.password", file.auth.password),
        users: p.users(file.auth.users.unwrap_or_default()),
        default_user_admin: file.auth.default_user_admin.unwrap_or(false),
    };

    // ---- [admin] ----
    let a = file.admin;
    let admin_http = AdminConfig {
        // A token of its own, or else the clients' password: whoever may use
        // Redis through the proxy may also see which keys are hot.
        token: p
            .secret("admin.token", a.token)
            .or_else(|| auth.password.clone()),
        allowed_hosts: p.allowed_hosts(a.allowed_hosts.unwrap_or_else(|| {
            DEFAULT_ADMIN_ALLOWED_HOSTS
                .iter()
                .map(|s| s.to_string())
                .collect()
        })),
        max_connections: a.max_connections.unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS),
        max_header_bytes: a.max_header_bytes.unwrap_or(DEFAULT_ADMIN_MAX_HEADER_BYTES),
        header_timeout: Duration::from_millis(
            a.header_timeout_ms
                .unwrap_or(DEFAULT_ADMIN_HEADER_TIMEOUT_MS),
        ),
    };
    p.at_least("admin.max_connections", admin_http.max_connections, 1);
    p.at_least(
        "admin.max_header_bytes",
        admin_http.max_header_bytes,
        MIN_ADMIN_MAX_HEADER_BYTES,
    );
    p.at_least(
        "admin.header_timeout_ms",
        admin_http.header_timeout.as_millis(),
        1,
    );

    // ---- [upstream] ----
    let up = file.upstream;
    let mode = up.mode.unwrap_or(DEFAULT_UPSTREAM_MODE);
    let nodes = up.nodes.unwrap_or_else(|| {
        DEFAULT_UPSTREAM_NODES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    p.nodes(&nodes);
    let master_name = up.master_name;
    if mode == Mode::Sentinel && master_name.as_deref().is_none_or(str::is_empty) {
        p.add(
            "upstream.master_name",
            "required in sentinel mode (the name the sentinels monitor, e.g. \"mymaster\")",
        );
    }
    let username = p.non_empty("upstream.username", up.username);
    let password = p.secret("upstream.password", up.password);
    let sentinel_username = p.non_empty("upstream.sentinel_username", up.sentinel_username);
    let sentinel_password = p.secret("upstream.sentinel_password", up.sentinel_password);
    let sentinel_check_ms = up
        .sentinel_check_interval_ms
        .unwrap_or(DEFAULT_UPSTREAM_SENTINEL_CHECK_INTERVAL_MS);
    p.at_least("upstream.sentinel_check_interval_ms", sentinel_check_ms, 1);
    let shared_connections = up
        .shared_connections
        .unwrap_or(DEFAULT_UPSTREAM_SHARED_CONNECTIONS);
    p.at_least("upstream.shared_connections", shared_connections, 1);
    let pinned_pool_size = up
        .pinned_pool_size
        .unwrap_or(DEFAULT_UPSTREAM_PINNED_POOL_SIZE);
    p.at_least("upstream.pinned_pool_size", pinned_pool_size, 1);
    let max_pinned_connections = up
        .max_pinned_connections
        .unwrap_or(DEFAULT_UPSTREAM_MAX_PINNED_CONNECTIONS);
    p.at_least("upstream.max_pinned_connections", max_pinned_connections, 1);
    let connect_timeout_ms = up
        .connect_timeout_ms
        .unwrap_or(DEFAULT_UPSTREAM_CONNECT_TIMEOUT_MS);
    p.at_least("upstream.connect_timeout_ms", connect_timeout_ms, 1);
    let command_timeout_ms = up
        .command_timeout_ms
        .unwrap_or(DEFAULT_UPSTREAM_COMMAND_TIMEOUT_MS);
    p.at_least("upstream.command_timeout_ms", command_timeout_ms, 1);
    let probe_timeout_ms = up
        .probe_timeout_ms
        .unwrap_or(DEFAULT_UPSTREAM_PROBE_TIMEOUT_MS);
    p.at_least("upstream.probe_timeout_ms", probe_timeout_ms, 1);
    let stall_after_ms = up.stall_after_ms.unwrap_or(DEFAULT_UPSTREAM_STALL_AFTER_MS);
    p.at_least("upstream.stall_after_ms", stall_after_ms, 1);
    // Unset, it grows with `shared_connections`; set, it must leave room for them.
    let max_shared_connections = match up.max_shared_connections {
        Some(n) => {
            if n < shared_connections {
                p.add(
                    "upstream.max_shared_connections",
                    format!(
                        "must be at least upstream.shared_connections ({shared_connections}), got {n}"
                    ),
                );
            }
            n
        }
        None => DEFAULT_UPSTREAM_MAX_SHARED_CONNECTIONS.max(shared_connections),
    };
    let backoff_min_ms = up
        .reconnect_backoff_min_ms
        .unwrap_or(DEFAULT_UPSTREAM_RECONNECT_BACKOFF_MIN_MS);
    // The backoff doubles from the minimum: starting at 0 it would stay 0 and
    // reconnect in a busy loop.
    p.at_least("upstream.reconnect_backoff_min_ms", backoff_min_ms, 1);
    let backoff_max_ms = up
        .reconnect_backoff_max_ms
        .unwrap_or(DEFAULT_UPSTREAM_RECONNECT_BACKOFF_MAX_MS);
    if backoff_min_ms > backoff_max_ms {
        p.add(
            "upstream.reconnect_backoff_max_ms",
            format!(
                "must be at least upstream.reconnect_backoff_min_ms ({backoff_min_ms}), got {backoff_max_ms}"
            ),
        );
    }
    let databases = up.databases.unwrap_or(DEFAULT_UPSTREAM_DATABASES);
    // Redis Cluster has only database 0, so the setting means nothing there and
    // a cluster config copied from a standalone one should not fail on it.
    if mode != Mode::Cluster {
        p.at_least("upstream.databases", databases, 1);
    }
    let upstream = UpstreamConfig {
        mode,
        nodes,
        master_name,
        username,
        password,
        sentinel_username,
        sentinel_password,
        sentinel_check_interval: Duration::from_millis(sentinel_check_ms),
        shared_connections,
        pinned_pool_size,
        max_pinned_connections,
        connect_timeout: Duration::from_millis(connect_timeout_ms),
        command_timeout: Duration::from_millis(command_timeout_ms),
        probe_timeout: Duration::from_millis(probe_timeout_ms),
        stall_after: Duration::from_millis(stall_after_ms),
        max_shared_connections,
        reconnect_backoff_min: Duration::from_millis(backoff_min_ms),
        reconnect_backoff_max: Duration::from_millis(backoff_max_ms),
        databases,
        read_from: up.read_from.unwrap_or(DEFAULT_UPSTREAM_READ_FROM),
        tls: up.tls.and_then(|t| upstream_tls(&mut p, t)),
    };

    // ---- [limits] ----
    let l = file.limits;
    let limits = LimitsConfig {
        max_clients: l.max_clients.unwrap_or(DEFAULT_LIMITS_MAX_CLIENTS),
        max_request_bytes: l
            .max_request_bytes
            .unwrap_or(DEFAULT_LIMITS_MAX_REQUEST_BYTES),
        max_request_args: l
            .max_request_args
            .unwrap_or(DEFAULT_LIMITS_MAX_REQUEST_ARGS),
        max_inflight: l.max_inflight.unwrap_or(DEFAULT_LIMITS_MAX_INFLIGHT),
        idle_timeout: match l
            .idle_timeout_secs
            .unwrap_or(DEFAULT_LIMITS_IDLE_TIMEOUT_SECS)
        {
            0 => None,
            secs => Some(Duration::from_secs(secs)),
        },
        shutdown_grace: Duration::from_millis(
            l.shutdown_grace_ms
                .unwrap_or(DEFAULT_LIMITS_SHUTDOWN_GRACE_MS),
        ),
        client_output_buffer_limit: {
            let o = l.client_output_buffer_limit.unwrap_or_default();
            OutputBufferLimits {
                normal: p.output_limit("normal", o.normal, DEFAULT_LIMITS_OUTPUT_NORMAL),
                pubsub: p.output_limit("pubsub", o.pubsub, DEFAULT_LIMITS_OUTPUT_PUBSUB),
            }
        },
    };
    p.at_least("limits.max_clients", limits.max_clients, 1);
    p.at_least(
        "limits.max_request_bytes",
        limits.max_request_bytes,
        MIN_LIMITS_MAX_REQUEST_BYTES,
    );
    p.at_least("limits.max_request_args", limits.max_request_args, 1);
    p.at_least("limits.max_inflight", limits.max_inflight, 1);

    // ---- [compression] ----
    let c = file.compression;
    let compression = CompressionConfig {
        enabled: c.enabled.unwrap_or(DEFAULT_COMPRESSION_ENABLED),
        min_size: c.min_size.unwrap_or(DEFAULT_COMPRESSION_MIN_SIZE),
        exclude: c.exclude.unwrap_or_else(|| {
            DEFAULT_COMPRESSION_EXCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        max_decompressed_bytes: c
            .max_decompressed_bytes
            .unwrap_or(DEFAULT_COMPRESSION_MAX_DECOMPRESSED_BYTES),
        secret: c.secret,
        previous_secrets: c.previous_secrets.unwrap_or_default(),
        accept_v1_envelopes: c
            .accept_v1_envelopes
            .unwrap_or(DEFAULT_COMPRESSION_ACCEPT_V1_ENVELOPES),
    };
    // A short secret can be guessed offline from one stored envelope.
    let secrets = compression
        .secret
        .iter()
        .map(|s| ("compression.secret".to_string(), s))
        .chain(
            compression
                .previous_secrets
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("compression.previous_secrets[{i}]"), s)),
        );
    for (key, s) in secrets {
        if s.0.len() < MIN_COMPRESSION_SECRET_BYTES {
            p.add(
                key,
                format!(
                    "must be at least {MIN_COMPRESSION_SECRET_BYTES} bytes (e.g. the output of \
                     `openssl rand -hex 32`), got {}",
                    s.0.len()
                ),
            );
        }
    }
    p.at_least(
        "compression.min_size",
        compression.min_size,
        MIN_COMPRESSION_MIN_SIZE,
    );
    for (i, pattern) in compression.exclude.iter().enumerate() {
        if pattern.is_empty() {
            p.add(format!("compression.exclude[{i}]"), "empty pattern");
        }
    }
    // A value the proxy accepted and compressed must be readable again.
    if compression.enabled && compression.max_decompressed_bytes < limits.max_request_bytes {
        p.add(
            "compression.max_decompressed_bytes",
            format!(
                "must be at least limits.max_request_bytes ({}), got {}: a large value written \
                 through the proxy could not be read back",
                limits.max_request_bytes, compression.max_decompressed_bytes
            ),
        );
    }

    // ---- [tags] ----
    let t = file.tags;
    let tags = TagsConfig {
        enabled: t.enabled.unwrap_or(DEFAULT_TAGS_ENABLED),
        prefix: t.prefix.unwrap_or_else(|| DEFAULT_TAGS_PREFIX.to_string()),
        batch: t.batch.unwrap_or(DEFAULT_TAGS_BATCH),
        sweep_interval: Duration::from_millis(
            t.sweep_interval_ms
                .unwrap_or(DEFAULT_TAGS_SWEEP_INTERVAL_MS),
        ),
        sweep_rate: t.sweep_rate.unwrap_or(DEFAULT_TAGS_SWEEP_RATE),
    };
    // An empty prefix would put the index among the application's own keys.
    if tags.prefix.is_empty() {
        p.add("tags.prefix", "must not be empty");
    }
    if tags.prefix.contains(['{', '}']) {
        p.add(
            "tags.prefix",
            "must not contain '{' or '}' (the index names slots with hashtags)",
        );
    }
    p.at_least("tags.batch", tags.batch, 1);
    p.at_least("tags.sweep_interval_ms", tags.sweep_interval.as_millis(), 1);
    p.at_least("tags.sweep_rate", tags.sweep_rate, 1);

    // ---- [stats] ----
    let s = file.stats;
    let stats = StatsConfig {
        enabled: s.enabled.unwrap_or(DEFAULT_STATS_ENABLED),
        max_keys: s.max_keys.unwrap_or(DEFAULT_STATS_MAX_KEYS),
        sample_rate: s.sample_rate.unwrap_or(DEFAULT_STATS_SAMPLE_RATE),
        latency_buckets_us: s
            .latency_buckets_us
            .unwrap_or_else(|| DEFAULT_STATS_LATENCY_BUCKETS_US.to_vec()),
    };
    p.at_least("stats.max_keys", stats.max_keys, 1);
    // Written so that NaN fails too.
    if !(stats.sample_rate > 0.0 && stats.sample_rate <= 1.0) {
        p.add(
            "stats.sample_rate",
            format!("must be in (0, 1], got {}", stats.sample_rate),
        );
    }
    if stats.latency_buckets_us.is_empty() {
        p.add("stats.latency_buckets_us", "must not be empty");
    }
    if let Some(w) = stats.latency_buckets_us.windows(2).find(|w| w[0] >= w[1]) {
        p.add(
            "stats.latency_buckets_us",
            format!(
                "must be strictly increasing, but {} is followed by {}",
                w[0], w[1]
            ),
        );
    }

    match (listen, admin) {
        (Some(listen), Some(admin)) if p.0.is_empty() => Ok(Config {
            listen,
            tls,
            workers,
            admin,
            admin_http,
            log_level,
            log_format,
            auth,
            upstream,
            limits,
            compression,
            tags,
            stats,
        }),
        _ => Err(ConfigError::new(p.0)),
    }
}

/// `[server.tls]`: every file is read and the rustls configuration built
/// here, so a bad certificate is reported by `--check` too.
fn server_tls(p: &mut Problems, t: ServerTlsSection) -> Option<ServerTlsConfig> {
    let listen = match t.listen {
        Some(s) => p.socket_addr("server.tls.listen", &s),
        None => {
            p.add(
                "server.tls.listen",
                "required (IP:PORT of the TLS listener)",
            );
            None
        }
    };
    let mut need = |key: &str, v: Option<PathBuf>| {
        if v.is_none() {
            p.add(key, "required with [server.tls]");
        }
        v
    };
    let cert_file = need("server.tls.cert_file", t.cert_file);
    let key_file = need("server.tls.key_file", t.key_file);
    let client_auth = t.client_auth.unwrap_or(DEFAULT_SERVER_TLS_CLIENT_AUTH);
    let min_version = t.min_version.unwrap_or(DEFAULT_SERVER_TLS_MIN_VERSION);
    if client_auth != crate::tls::ClientAuth::None && t.client_ca_file.is_none() {
        p.add(
            "server.tls.client_ca_file",
            "required when client_auth is \"optional\" or \"required\" (the CA client certificates must chain to)",
        );
    }
    if client_auth == crate::tls::ClientAuth::None && t.client_ca_file.is_some() {
        p.add(
            "server.tls.client_auth",
            "client_ca_file is set but client_auth is \"none\": set \"optional\" or \"required\"",
        );
    }
    let timeout_ms = t
        .handshake_timeout_ms
        .unwrap_or(DEFAULT_SERVER_TLS_HANDSHAKE_TIMEOUT_MS);
    p.at_least("server.tls.handshake_timeout_ms", timeout_ms, 1);
    let (listen, cert_file, key_file) = (listen?, cert_file?, key_file?);
    let server = match crate::tls::server_config(
        &cert_file,
        &key_file,
        t.client_ca_file.as_deref(),
        client_auth,
        min_version,
    ) {
        Ok(c) => c,
        Err(e) => {
            p.add("server.tls", e);
            return None;
        }
    };
    Some(ServerTlsConfig {
        listen,
        cert_file,
        key_file,
        client_ca_file: t.client_ca_file,
        client_auth,
        min_version,
        handshake_timeout: Duration::from_millis(timeout_ms),
        server: crate::tls::Swap::new(server),
    })
}

/// `[upstream.tls]`; `None` when not enabled.
fn upstream_tls(p: &mut Problems, t: UpstreamTlsSection) -> Option<UpstreamTlsConfig> {
    if !t.enabled.unwrap_or(false) {
        return None;
    }
    let insecure = t.insecure_skip_verify.unwrap_or(false);
    let cert_key = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        _ => {
            p.add(
                "upstream.tls",
                "cert_file and key_file go together (the client certificate and its key)",
            );
            return None;
        }
    };
    if let Some(n) = &t.server_name {
        if let Err(e) = crate::tls::server_name(Some(n), "") {
            p.add("upstream.tls.server_name", e);
            return None;
        }
    }
    let client = match crate::tls::client_config(
        t.ca_file.as_deref(),
        cert_key,
        insecure,
        crate::tls::MinVersion::Tls12,
    ) {
        Ok(c) => c,
        Err(e) => {
            p.add("upstream.tls", e);
            return None;
        }
    };
    Some(UpstreamTlsConfig {
        ca_file: t.ca_file,
        cert_file: t.cert_file,
        key_file: t.key_file,
        server_name: t.server_name,
        insecure_skip_verify: insecure,
        client: crate::tls::Swap::new(client),
    })
}

/// The problems found so far, `key: message` each.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    fn at_least<T: PartialOrd + std::fmt::Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.add(key, format!("must be at least {min}, got {value}"));
        }
    }

    /// An address to bind: a literal IP, since `Config` holds a `SocketAddr`
    /// and resolving a name at startup would make the bound address depend on DNS.
    fn socket_addr(&mut self, key: &str, s: &str) -> Option<SocketAddr> {
        let addr = s.parse().ok();
        if addr.is_none() {
            self.add(
                key,
                format!(
                    "{s:?} is not IP:PORT (e.g. 127.0.0.1:6380, 0.0.0.0:6380 or [::]:6380; \
                     port 0 picks a free port)"
                ),
            );
        }
        addr
    }

    /// An optional string that, when present, must say something: an empty
    /// username is a mistake, not a request for none.
    fn non_empty(&mut self, key: &str, value: Option<String>) -> Option<String> {
        if value.as_deref() == Some("") {
            self.add(key, "empty; remove the setting instead");
        }
        value
    }

    /// One class of `limits.client_output_buffer_limit`; fields left out
    /// keep the class's default.
    fn output_limit(
        &mut self,
        class: &str,
        section: Option<OutputLimitSection>,
        default: OutputBufferLimit,
    ) -> OutputBufferLimit {
        let s = section.unwrap_or_default();
        let limit = OutputBufferLimit {
            hard_bytes: s.hard_bytes.unwrap_or(default.hard_bytes),
            soft_bytes: s.soft_bytes.unwrap_or(default.soft_bytes),
            soft_period: s.soft_secs.map_or(default.soft_period, Duration::from_secs),
        };
        if limit.hard_bytes != 0 && limit.soft_bytes > limit.hard_bytes {
            self.add(
                format!("limits.client_output_buffer_limit.{class}.soft_bytes"),
                format!(
                    "must not exceed hard_bytes ({}), got {}",
                    limit.hard_bytes, limit.soft_bytes
                ),
            );
        }
        limit
    }

    fn secret(&mut self, key: &str, value: Option<Secret>) -> Option<String> {
        self.non_empty(key, value.map(|s| s.0))
    }

    fn nodes(&mut self, nodes: &[String]) {
        if nodes.is_empty() {
            self.add("upstream.nodes", "at least one HOST:PORT is needed");
        }
        let mut seen = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            if let Err(e) = check_host_port(node) {
                self.add(format!("upstream.nodes[{i}]"), format!("{node:?} {e}"));
            } else if let Some(first) = seen.insert(node.as_str(), i) {
                self.add(
                    format!("upstream.nodes[{i}]"),
                    format!("{node:?} is already upstream.nodes[{first}]"),
                );
            }
        }
    }

    /// `admin.allowed_hosts`: host names or IP addresses without a port,
    /// kept lower case and without a final dot, the form they are compared in.
    fn allowed_hosts(&mut self, hosts: Vec<String>) -> Vec<String> {
        let mut out = Vec::with_capacity(hosts.len());
        for (i, host) in hosts.into_iter().enumerate() {
            let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
            let ok = match bare {
                Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
                None => is_hostname(&host),
            };
            if !ok {
                self.add(
                    format!("admin.allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name or IP address (no port, no scheme)"),
                );
            }
            let host = host.to_ascii_lowercase();
            out.push(host.strip_suffix('.').unwrap_or(&host).to_string());
        }
        out
    }

    fn users(&mut self, users: Vec<FileUser>) -> Vec<User> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(users.len());
        for (i, user) in users.into_iter().enumerate() {
            let name = user.name.unwrap_or_default();
            if name.is_empty() {
                self.add(format!("auth.users[{i}].name"), "missing or empty");
            } else if let Some(first) = seen.get(&name) {
                self.add(
                    format!("auth.users[{i}].name"),
                    format!("{name:?} is already auth.users[{first}]"),
                );
            } else {
                seen.insert(name.clone(), i);
            }
            let hash = match (
                user.password.map(|s| s.0),
                user.password_sha256.map(|s| s.0),
            ) {
                (Some(p), None) if !p.is_empty() => crate::auth::sha256(p.as_bytes()),
                (None, Some(h)) => match crate::auth::parse_sha256(&h) {
                    Some(h) => h,
                    None => {
                        self.add(
                            format!("auth.users[{i}].password_sha256"),
                            "not 64 hexadecimal digits (the SHA-256 of the password, as Redis's ACL #<hash>)",
                        );
                        [0; 32]
                    }
                },
                (Some(_), Some(_)) => {
                    self.add(
                        format!("auth.users[{i}].password"),
                        "set password or password_sha256, not both",
                    );
                    [0; 32]
                }
                _ => {
                    self.add(format!("auth.users[{i}].password"), "missing or empty");
                    [0; 32]
                }
            };
            let rules = match user.rules.as_deref().map(crate::auth::acl::Rules::parse) {
                None => None,
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    self.add(format!("auth.users[{i}].rules"), e);
                    None
                }
            };
            out.push(User {
                name,
                password_sha256: hash,
                rules,
                admin: user.admin.unwrap_or(false),
            });
        }
        out
    }
}

/// Checks the form of an upstream node address. Hostnames are allowed and
/// resolved only when connecting (a name must not fail the config because DNS
/// is briefly down at startup), so this checks the shape, not the host.
fn check_host_port(s: &str) -> Result<(), Invalid> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err("is not HOST:PORT (e.g. 127.0.0.1:6379 or redis.internal:6379)".into());
    };
    match port.parse::<u16>() {
        Ok(0) => return Err("has port 0; an upstream needs a real port".into()),
        Ok(_) => {}
        Err(_) => return Err(format!("has an invalid port {port:?} (1-65535)").into()),
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!("has an invalid IPv6 address {host:?}").into()),
        };
    }
    if host.contains(':') {
        return Err("looks like an IPv6 address without brackets; write [ADDR]:PORT".into());
    }
    if is_hostname(host) {
        Ok(())
    } else {
        Err(format!("has an invalid host {host:?}").into())
    }
}

/// A DNS name or IPv4 literal: dot-separated labels of letters, digits, `-`
/// and `_` (common in internal names, e.g. docker compose services), none
/// empty or longer than 63, not starting or ending with `-`.
fn is_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A `tracing` filter made of comma-separated `LEVEL` or `TARGET=LEVEL`
/// directives. Stricter than `tracing` (which reads a bare word as a target
/// to log at every level) so that a typo such as `inf0` or `warning` is an
/// error rather than a filter that silently logs nothing.
fn check_log_filter(filter: &str) -> Result<(), Invalid> {
    if filter.trim().is_empty() {
        return Err("must not be empty (e.g. \"info\")".into());
    }
    for directive in filter.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return Err(format!("{directive:?} has no target before '='").into()),
            None => directive,
        };
        if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!(
                "{directive:?} is not LEVEL or TARGET=LEVEL with LEVEL one of {}",
                LOG_LEVELS.join(", ")
            )
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        for ok in [
            "127.0.0.1:6379",
            "redis:6379",
            "redis-0.redis.default.svc.cluster.local:6379",
            "redis_primary:1",
            "[::1]:6379",
            "[fe80::1]:65535",
            "example.com.:6379",
        ] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "redis",
            "redis:",
            ":6379",
            "redis:0",
            "redis:65536",
            "redis:port",
            "::1:6379",
            "[::1:6379",
            "[nothost]:6379",
            "-redis:6379",
            "re dis:6379",
            "a..b:6379",
            "http://redis:6379",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn log_filters() {
        for ok in [
            "info",
            "WARN",
            "info,respite=debug",
            "respite::server=trace",
            "off",
        ] {
            assert_eq!(check_log_filter(ok), Ok(()), "{ok}");
        }
        for bad in ["", " ", "inf0", "warning", "respite=loud", "=info", "info,"] {
            assert!(check_log_filter(bad).is_err(), "{bad:?} accepted");
        }
    }
}
