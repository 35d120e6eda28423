//! Tests of the configuration pipeline: the documented `proxy.toml`, every
//! validation rule, file errors, and command-line overrides.

use std::io::Write;
use std::path::Path;

use clap::Parser;

use super::*;
use crate::cli::Secrets;

fn proxy_toml_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml")
}

fn parse(text: &str) -> FileConfig {
    FileConfig::parse(text, "test.toml").expect("test TOML parses")
}

/// Problems reported for `text`, which must parse but fail validation.
fn problems(text: &str) -> Vec<String> {
    match validate(parse(text)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().to_vec(),
    }
}

fn write_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write temp file");
    f
}

/// A `Cli` as parsed from `args`, with no secrets whatever the environment
/// running the tests holds.
fn cli(args: &[&str]) -> Cli {
    let mut cli = Cli::try_parse_from(std::iter::once("respite").chain(args.iter().copied()))
        .expect("valid command line");
    cli.secrets = Secrets::default();
    cli
}

// ---- the documented defaults ----

#[test]
fn proxy_toml_sets_every_field_to_its_default() {
    let file = FileConfig::read(&proxy_toml_path()).expect("proxy.toml parses");
    // Equality with `with_defaults` (every field with a default is `Some`) means
    // the file lists every setting, and lists it with the built-in value.
    assert_eq!(file, FileConfig::with_defaults());
    assert_eq!(
        validate(file).expect("proxy.toml is valid"),
        Config::default()
    );
}

#[test]
fn proxy_toml_documents_the_settings_without_default() {
    let text = std::fs::read_to_string(proxy_toml_path()).expect("read proxy.toml");
    for key in [
        "# password = ",
        "# [[auth.users]]",
        "# name = ",
        "# master_name = ",
        "# username = ",
        "# sentinel_username = ",
        "# sentinel_password = ",
        "# secret = ",
        "# [server.tls]",
        "# [upstream.tls]",
        "# client_auth = ",
        "# insecure_skip_verify = ",
    ] {
        assert!(text.contains(key), "proxy.toml does not mention {key:?}");
    }
}

#[test]
fn empty_file_gives_the_defaults() {
    let config = validate(parse("")).expect("defaults are valid");
    assert_eq!(config, Config::default());
    assert_eq!(config.listen, Some(DEFAULT_LISTEN));
    assert_eq!(config.admin, Some(DEFAULT_ADMIN));
    assert_eq!(config.log_level, DEFAULT_LOG_LEVEL);
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.upstream.mode, Mode::Standalone);
    assert_eq!(config.upstream.nodes, ["127.0.0.1:6379"]);
    assert_eq!(config.upstream.read_from, ReadFrom::Primary);
    assert_eq!(config.upstream.connect_timeout, Duration::from_millis(1000));
    assert_eq!(
        config.upstream.reconnect_backoff_max,
        Duration::from_secs(2)
    );
    assert_eq!(config.limits.max_request_bytes, 512 << 20);
    assert_eq!(config.limits.idle_timeout, None);
    let out = config.limits.client_output_buffer_limit;
    assert!(out.normal.is_off());
    assert_eq!(
        (
            out.pubsub.hard_bytes,
            out.pubsub.soft_bytes,
            out.pubsub.soft_period
        ),
        (32 << 20, 8 << 20, Duration::from_secs(60))
    );
    assert_eq!(config.compression.min_size, 1024);
    assert_eq!(config.tags.prefix, "__respite:");
    assert_eq!(config.tags.sweep_interval, Duration::from_secs(60));
    assert_eq!(config.stats.latency_buckets_us.len(), 14);
    assert!(config.auth.password.is_none() && config.auth.users.is_empty());
}

#[test]
fn workers_zero_means_available_parallelism() {
    let expected = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(Config::default().workers, expected);
    let config = validate(parse("[server]\nworkers = 3")).expect("valid");
    assert_eq!(config.workers, 3);
}

// ---- values that are accepted ----

#[test]
fn accepted_edge_values() {
    let config = validate(parse(
        r#"
        [server]
        listen = "0.0.0.0:0"
        admin = "[::1]:0"
        [upstream]
        mode = "cluster"
        nodes = ["redis-a:7000", "10.0.0.2:7000", "[::1]:7000"]
        databases = 0
        read_from = "replica_preferred"
        [limits]
        idle_timeout_secs = 300
        client_output_buffer_limit.normal = { hard_bytes = 268435456 }
        client_output_buffer_limit.pubsub = { soft_bytes = 0, soft_secs = 0 }
        [compression]
        enabled = false
        max_decompressed_bytes = 1024
        "#,
    ))
    .expect("valid");
    let out = config.limits.client_output_buffer_limit;
    // A class's fields left out keep that class's defaults.
    assert_eq!(
        (out.normal.hard_bytes, out.normal.soft_bytes),
        (256 << 20, 0)
    );
    assert_eq!(
        (
            out.pubsub.hard_bytes,
            out.pubsub.soft_bytes,
            out.pubsub.soft_period
        ),
        (32 << 20, 0, Duration::ZERO)
    );
    assert_eq!(config.listen.expect("listen").port(), 0);
    assert_eq!(config.admin.map(|a| a.port()), Some(0));
    assert_eq!(config.upstream.mode, Mode::Cluster);
    assert_eq!(config.upstream.read_from, ReadFrom::ReplicaPreferred);
    assert_eq!(config.limits.idle_timeout, Some(Duration::from_secs(300)));
}

#[test]
fn admin_off_disables_it() {
    for off in ["off", "OFF"] {
        let config = validate(parse(&format!("[server]\nadmin = {off:?}"))).expect("valid");
        assert_eq!(config.admin, None);
    }
}

#[test]
fn sentinels_is_another_name_for_nodes() {
    let config = validate(parse(
        "[upstream]\nmode = \"sentinel\"\nmaster_name = \"m\"\nsentinels = [\"s1:26379\", \"s2:26379\"]",
    ))
    .expect("valid");
    assert_eq!(config.upstream.nodes, ["s1:26379", "s2:26379"]);
}

#[test]
fn users_and_sentinel_settings_are_carried_over() {
    let config = validate(parse(
        r#"
        [auth]
        password = "client-pw"
        [[auth.users]]
        name = "app"
        password = "app-pw"
        [[auth.users]]
        name = "ops"
        password = "ops-pw"
        [upstream]
        mode = "sentinel"
        nodes = ["s1:26379", "s2:26379"]
        master_name = "mymaster"
        username = "proxy"
        password = "up-pw"
        sentinel_username = "sentinel-user"
        sentinel_password = "sentinel-pw"
        "#,
    ))
    .expect("valid");
    assert_eq!(config.auth.password.as_deref(), Some("client-pw"));
    let users: Vec<_> = config
        .auth
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.password_sha256))
        .collect();
    assert_eq!(
        users,
        [
            ("app", crate::auth::sha256(b"app-pw")),
            ("ops", crate::auth::sha256(b"ops-pw"))
        ]
    );
    let up = &config.upstream;
    assert_eq!(up.master_name.as_deref(), Some("mymaster"));
    assert_eq!(up.username.as_deref(), Some("proxy"));
    assert_eq!(up.password.as_deref(), Some("up-pw"));
    assert_eq!(up.sentinel_username.as_deref(), Some("sentinel-user"));
    assert_eq!(up.sentinel_password.as_deref(), Some("sentinel-pw"));

    // Nor may they leak through Debug, in the file struct or the config.
    let dumped = format!("{config:?}");
    let file_dumped = format!("{:?}", parse("[auth]\npassword = \"client-pw\""));
    for secret in ["client-pw", "app-pw", "ops-pw", "up-pw", "sentinel-pw"] {
        assert!(!dumped.contains(secret), "{secret} in {dumped}");
        assert!(!file_dumped.contains(secret), "{secret} in {file_dumped}");
    }
}

#[test]
fn the_admin_token_falls_back_to_the_client_password() {
    let config = validate(parse("[auth]\npassword = \"pw\"")).expect("valid");
    assert_eq!(config.admin_http.token.as_deref(), Some("pw"));
    let config =
        validate(parse("[auth]\npassword = \"pw\"\n[admin]\ntoken = \"t\"")).expect("valid");
    assert_eq!(config.admin_http.token.as_deref(), Some("t"));
    assert_eq!(validate(parse("")).expect("valid").admin_http.token, None);
    assert!(
        !format!("{config:?}").contains("\"t\""),
        "token in Debug output"
    );
}

#[test]
fn admin_allowed_hosts_are_kept_in_compared_form() {
    let config = validate(parse(
        "[admin]\nallowed_hosts = [\"Proxy.Internal.\", \"10.0.0.1\", \"[FD00::1]\"]",
    ))
    .expect("valid");
    assert_eq!(
        config.admin_http.allowed_hosts,
        ["proxy.internal", "10.0.0.1", "[fd00::1]"]
    );
}

// ---- every validation rule, each alone ----

#[test]
fn each_rule_reports_its_own_problem() {
    let cases: &[(&str, &str)] = &[
        ("[server]\nlisten = \"localhost:6380\"", "server.listen:"),
        ("[server]\nlisten = \"127.0.0.1\"", "server.listen:"),
        ("[server]\nadmin = \"nope\"", "server.admin:"),
        (
            "[server]\nlisten = \"127.0.0.1:7000\"\nadmin = \"127.0.0.1:7000\"",
            "server.admin: 127.0.0.1:7000 is also server.listen",
        ),
        ("[server]\nlog_level = \"inf0\"", "server.log_level:"),
        ("[auth]\npassword = \"\"", "auth.password: empty"),
        ("[admin]\ntoken = \"\"", "admin.token: empty"),
        ("[admin]\nmax_connections = 0", "admin.max_connections: must be at least 1"),
        ("[admin]\nmax_header_bytes = 1023", "admin.max_header_bytes: must be at least 1024"),
        ("[admin]\nheader_timeout_ms = 0", "admin.header_timeout_ms: must be at least 1"),
        (
            "[admin]\nallowed_hosts = [\"h.example:80\"]",
            "admin.allowed_hosts[0]: \"h.example:80\" is not a host name or IP address",
        ),
        ("[admin]\nallowed_hosts = [\"[nope]\"]", "admin.allowed_hosts[0]:"),
        (
            "[[auth.users]]\nname = \"\"\npassword = \"x\"",
            "auth.users[0].name: missing or empty",
        ),
        (
            "[[auth.users]]\npassword = \"x\"",
            "auth.users[0].name: missing or empty",
        ),
        (
            "[[auth.users]]\nname = \"a\"",
            "auth.users[0].password: missing or empty",
        ),
        (
            "[[auth.users]]\nname = \"a\"\npassword = \"x\"\n[[auth.users]]\nname = \"a\"\npassword = \"y\"",
            "auth.users[1].name: \"a\" is already auth.users[0]",
        ),
        (
            "[[auth.users]]\nname = \"a\"\npassword_sha256 = \"abc\"",
            "auth.users[0].password_sha256: not 64 hexadecimal digits",
        ),
        (
            "[[auth.users]]\nname = \"a\"\npassword = \"x\"\nrules = \"+@read +@nosuch\"",
            "auth.users[0].rules: \"+@nosuch\": unknown command category",
        ),
        ("[upstream]\nnodes = []", "upstream.nodes: at least one"),
        ("[upstream]\nnodes = [\"redis\"]", "upstream.nodes[0]: \"redis\" is not HOST:PORT"),
        ("[upstream]\nnodes = [\"a:1\", \"a:1\"]", "upstream.nodes[1]: \"a:1\" is already upstream.nodes[0]"),
        ("[upstream]\nnodes = [\"a:1\", \"::1:6379\"]", "upstream.nodes[1]:"),
        ("[upstream]\nmode = \"sentinel\"", "upstream.master_name: required in sentinel mode"),
        ("[upstream]\nmode = \"sentinel\"\nmaster_name = \"\"", "upstream.master_name: required"),
        ("[upstream]\nusername = \"\"", "upstream.username: empty"),
        ("[upstream]\nshared_connections = 0", "upstream.shared_connections: must be at least 1, got 0"),
        ("[upstream]\npinned_pool_size = 0", "upstream.pinned_pool_size: must be at least 1"),
        ("[upstream]\nmax_pinned_connections = 0", "upstream.max_pinned_connections: must be at least 1"),
        ("[upstream]\nconnect_timeout_ms = 0", "upstream.connect_timeout_ms: must be at least 1"),
        ("[upstream]\ncommand_timeout_ms = 0", "upstream.command_timeout_ms: must be at least 1"),
        ("[upstream]\nprobe_timeout_ms = 0", "upstream.probe_timeout_ms: must be at least 1"),
        ("[upstream]\nstall_after_ms = 0", "upstream.stall_after_ms: must be at least 1"),
        (
            "[upstream]\nshared_connections = 3\nmax_shared_connections = 2",
            "upstream.max_shared_connections: must be at least upstream.shared_connections (3), got 2",
        ),
        ("[upstream]\nreconnect_backoff_min_ms = 0", "upstream.reconnect_backoff_min_ms: must be at least 1"),
        (
            "[upstream]\nreconnect_backoff_min_ms = 500\nreconnect_backoff_max_ms = 100",
            "upstream.reconnect_backoff_max_ms: must be at least upstream.reconnect_backoff_min_ms (500), got 100",
        ),
        ("[upstream]\ndatabases = 0", "upstream.databases: must be at least 1"),
        ("[limits]\nmax_clients = 0", "limits.max_clients: must be at least 1"),
        ("[limits]\nmax_request_bytes = 1023\n[compression]\nenabled = false", "limits.max_request_bytes: must be at least 1024, got 1023"),
        ("[limits]\nmax_request_args = 0", "limits.max_request_args: must be at least 1"),
        ("[limits]\nmax_inflight = 0", "limits.max_inflight: must be at least 1"),
        (
            "[limits]\nclient_output_buffer_limit.pubsub = { hard_bytes = 100, soft_bytes = 200 }",
            "limits.client_output_buffer_limit.pubsub.soft_bytes: must not exceed hard_bytes (100), got 200",
        ),
        ("[compression]\nmin_size = 15", "compression.min_size: must be at least 16, got 15"),
        ("[compression]\nexclude = [\"a*\", \"\"]", "compression.exclude[1]: empty pattern"),
        ("[compression]\nmax_decompressed_bytes = 1024", "compression.max_decompressed_bytes: must be at least limits.max_request_bytes"),
        ("[compression]\nsecret = \"short\"", "compression.secret: must be at least 16 bytes"),
        ("[compression]\nprevious_secrets = [\"0123456789abcdef\", \"\"]", "compression.previous_secrets[1]: must be at least 16 bytes"),
        ("[tags]\nprefix = \"\"", "tags.prefix: must not be empty"),
        ("[tags]\nbatch = 0", "tags.batch: must be at least 1"),
        ("[tags]\nsweep_interval_ms = 0", "tags.sweep_interval_ms: must be at least 1"),
        ("[tags]\nsweep_rate = 0", "tags.sweep_rate: must be at least 1"),
        ("[stats]\nmax_keys = 0", "stats.max_keys: must be at least 1"),
        ("[stats]\nsample_rate = 0.0", "stats.sample_rate: must be in (0, 1], got 0"),
        ("[stats]\nsample_rate = 1.5", "stats.sample_rate: must be in (0, 1]"),
        ("[stats]\nsample_rate = nan", "stats.sample_rate: must be in (0, 1]"),
        ("[stats]\nlatency_buckets_us = []", "stats.latency_buckets_us: must not be empty"),
        ("[stats]\nlatency_buckets_us = [1, 5, 5]", "stats.latency_buckets_us: must be strictly increasing, but 5 is followed by 5"),
        ("[stats]\nlatency_buckets_us = [10, 5]", "stats.latency_buckets_us: must be strictly increasing"),
    ];
    for (text, expected) in cases {
        let found = problems(text);
        assert_eq!(found.len(), 1, "{text}\n=> {found:#?}");
        assert!(found[0].starts_with(expected), "{text}\n=> {found:#?}");
        assert!(!found[0].contains(['\r', '\n']), "{found:?}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"
        [server]
        listen = "not an address"
        admin = "also not"
        [upstream]
        mode = "sentinel"
        nodes = ["ok:1", "bad"]
        shared_connections = 0
        reconnect_backoff_min_ms = 10
        reconnect_backoff_max_ms = 5
        [limits]
        max_inflight = 0
        [compression]
        min_size = 8
        [tags]
        batch = 0
        [stats]
        sample_rate = 2.0
        latency_buckets_us = [3, 2]
    "#;
    let err = validate(parse(text)).expect_err("invalid");
    let keys: Vec<&str> = err
        .problems()
        .iter()
        .map(|p| p.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "server.admin",
            "upstream.nodes[1]",
            "upstream.master_name",
            "upstream.shared_connections",
            "upstream.reconnect_backoff_max_ms",
            "limits.max_inflight",
            "compression.min_size",
            "tags.batch",
            "stats.sample_rate",
            "stats.latency_buckets_us",
        ]
    );
    // Display: one problem per line.
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), keys.len());
    assert_eq!(shown.lines().collect::<Vec<_>>(), err.problems());
}

#[test]
fn cluster_mode_ignores_databases() {
    let config = validate(parse("[upstream]\nmode = \"cluster\"\ndatabases = 0")).expect("valid");
    assert_eq!(config.upstream.databases, 0);
}

// ---- file errors ----

#[test]
fn unknown_fields_are_rejected_with_the_file_name() {
    for (text, field) in [
        ("[server]\nlisten_addr = \"127.0.0.1:1\"", "listen_addr"),
        ("[compresion]\nenabled = true", "compresion"),
        ("[[auth.users]]\nname = \"a\"\npasword = \"x\"", "pasword"),
        ("[upstream]\ntimeout_ms = 5", "timeout_ms"),
        ("[stats]\nenabled = true\nbuckets = [1]", "buckets"),
        // Redis's replica class has no meaning for proxy clients.
        (
            "[limits]\nclient_output_buffer_limit.replica = { hard_bytes = 1 }",
            "replica",
        ),
        (
            "[limits]\nclient_output_buffer_limit.pubsub = { hard = 1 }",
            "hard",
        ),
    ] {
        let err = FileConfig::parse(text, "my.toml").expect_err("unknown field");
        let msg = err.to_string();
        assert!(msg.starts_with("my.toml: "), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
        assert!(msg.contains(field), "{msg}");
    }
}

#[test]
fn syntax_and_type_errors_name_the_file() {
    for text in [
        "[server\nlisten = 1",
        "[server]\nworkers = -1",
        "[server]\nworkers = \"4\"",
        "[upstream]\nmode = \"replicated\"",
        "[server]\nlog_format = \"logfmt\"",
        "[upstream]\nread_from = \"replica\"",
        "[limits]\nmax_request_bytes = 1.5",
    ] {
        let f = write_file(text);
        let err = FileConfig::read(f.path()).expect_err(text);
        assert!(
            err.to_string().starts_with(&f.path().display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let path_str = path.to_str().expect("utf-8 temp path");
    let err = load(&cli(&["--config", path_str])).expect_err("missing file");
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

#[test]
fn config_path_prefers_flag_then_cwd_file_then_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let implicit = dir.path().join(DEFAULT_CONFIG_FILE);
    assert_eq!(resolve_config_path(None, &implicit), None);
    std::fs::write(&implicit, "").expect("write");
    assert_eq!(resolve_config_path(None, &implicit), Some(implicit.clone()));
    let explicit = Path::new("/elsewhere/respite.toml");
    assert_eq!(
        resolve_config_path(Some(explicit), &implicit),
        Some(explicit.to_path_buf())
    );
}

// ---- overrides ----

#[test]
fn flags_override_the_file() {
    let f = write_file(
        r#"
        [server]
        listen = "127.0.0.1:7000"
        workers = 2
        log_level = "warn"
        log_format = "json"
        [upstream]
        nodes = ["file-node:6379"]
        connect_timeout_ms = 250
        "#,
    );
    let path = f.path().to_str().expect("utf-8 temp path");

    // Without flags the file's values hold.
    let config = load(&cli(&["--config", path])).expect("valid");
    assert_eq!(config.listen.expect("listen").port(), 7000);
    assert_eq!(config.workers, 2);
    assert_eq!(config.log_format, LogFormat::Json);
    assert_eq!(config.upstream.nodes, ["file-node:6379"]);

    let config = load(&cli(&[
        "--config",
        path,
        "--listen",
        "0.0.0.0:7001",
        "--workers",
        "5",
        "--log-level",
        "debug",
        "--log-format",
        "text",
        "--upstream",
        "s1:26379",
        "--upstream",
        "s2:26379",
        "--mode",
        "sentinel",
        "--master-name",
        "cache",
        "--admin",
        "off",
    ]))
    .expect("valid");
    assert_eq!(config.listen, Some("0.0.0.0:7001".parse().expect("addr")));
    assert_eq!(config.workers, 5);
    assert_eq!(config.log_level, "debug");
    assert_eq!(config.log_format, LogFormat::Text);
    assert_eq!(config.upstream.nodes, ["s1:26379", "s2:26379"]);
    assert_eq!(config.upstream.mode, Mode::Sentinel);
    assert_eq!(config.upstream.master_name.as_deref(), Some("cache"));
    assert_eq!(config.admin, None);
    // Settings without a flag keep the file's value.
    assert_eq!(config.upstream.connect_timeout, Duration::from_millis(250));
}

#[test]
fn environment_secrets_override_the_file() {
    let f = write_file(
        r#"
        [auth]
        password = "file-client"
        [upstream]
        password = "file-upstream"
        username = "file-user"
        [compression]
        secret = "file-compression-secret"
        "#,
    );
    let mut cli = cli(&["--config", f.path().to_str().expect("utf-8 temp path")]);
    cli.secrets = Secrets {
        password: Some(Secret("env-client".into())),
        upstream_username: Some("env-user".into()),
        upstream_password: Some(Secret("env-upstream".into())),
        sentinel_password: Some(Secret("env-sentinel".into())),
        compression_secret: Some(Secret("env-compression-secret".into())),
        admin_token: Some(Secret("env-admin".into())),
        not_unicode: Vec::new(),
    };
    let config = load(&cli).expect("valid");
    assert_eq!(config.admin_http.token.as_deref(), Some("env-admin"));
    assert_eq!(config.auth.password.as_deref(), Some("env-client"));
    assert_eq!(config.upstream.username.as_deref(), Some("env-user"));
    assert_eq!(config.upstream.password.as_deref(), Some("env-upstream"));
    assert_eq!(
        config.upstream.sentinel_password.as_deref(),
        Some("env-sentinel")
    );
    assert_eq!(
        config.compression.secret,
        Some(Secret("env-compression-secret".into()))
    );
}

#[test]
fn override_problems_are_reported_with_file_problems() {
    let f = write_file("[tags]\nbatch = 0");
    let mut cli = cli(&[
        "--config",
        f.path().to_str().expect("utf-8 temp path"),
        "--listen",
        "nowhere",
        "--upstream",
        "a:1, ,b:2",
    ]);
    cli.secrets.not_unicode = vec![crate::cli::ENV_PASSWORD];
    let err = load(&cli).expect_err("invalid");
    let keys: Vec<&str> = err
        .problems()
        .iter()
        .map(|p| p.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "RESPITE_PASSWORD",
            "server.listen",
            "upstream.nodes[1]",
            "tags.batch"
        ]
    );
}

#[test]
fn empty_overrides_count_as_unset() {
    let config = load(&cli(&[
        "--config",
        write_file("").path().to_str().expect("utf-8 temp path"),
        "--listen",
        "",
        "--master-name",
        "",
        "--upstream",
        " ",
    ]))
    .expect("valid");
    assert_eq!(config.listen, Some(DEFAULT_LISTEN));
    assert_eq!(config.upstream.master_name, None);
    assert_eq!(config.upstream.nodes, DEFAULT_UPSTREAM_NODES);
}

#[test]
fn mode_and_read_from_names_round_trip() {
    for name in Mode::NAMES {
        assert_eq!(name.parse::<Mode>().map(|m| m.to_string()), Ok(name.into()));
    }
    for name in ReadFrom::NAMES {
        assert_eq!(
            name.parse::<ReadFrom>().map(|m| m.to_string()),
            Ok(name.into())
        );
    }
    assert!("Cluster".parse::<Mode>().is_err());
}

#[test]
fn tls_sections_are_checked() {
    // "off" without a TLS listener leaves clients nowhere to connect.
    let p = problems("[server]\nlisten = \"off\"\n");
    assert!(p.iter().any(|p| p.starts_with("server.listen:")), "{p:?}");
    // Missing fields and inconsistent client auth, all reported.
    let p = problems("[server.tls]\nclient_auth = \"required\"\n");
    for key in [
        "server.tls.listen:",
        "server.tls.cert_file:",
        "server.tls.key_file:",
        "server.tls.client_ca_file:",
    ] {
        assert!(p.iter().any(|p| p.starts_with(key)), "{key} not in {p:?}");
    }
    let e = FileConfig::parse("[server.tls]\nmin_version = \"1.1\"\n", "t.toml")
        .expect_err("1.1 is not a choice");
    assert!(e.to_string().contains("1.1"), "{e}");
    // Upstream: a certificate without its key; a file that is not there.
    let p = problems("[upstream.tls]\nenabled = true\ncert_file = \"/x.pem\"\n");
    assert!(
        p.iter().any(|p| p.contains("cert_file and key_file")),
        "{p:?}"
    );
    let p = problems("[upstream.tls]\nenabled = true\nca_file = \"/nonexistent/ca.pem\"\n");
    assert!(
        p.iter()
            .any(|p| p.starts_with("upstream.tls:") && p.contains("/nonexistent/ca.pem")),
        "{p:?}"
    );
    // Not enabled: nothing is read, no TLS.
    let c = validate(parse(
        "[upstream.tls]\nenabled = false\nca_file = \"/nonexistent\"\n",
    ))
    .expect("valid");
    assert!(c.upstream.tls.is_none());
}

#[test]
fn max_shared_connections_unset_grows_with_shared_connections() {
    let config = validate(parse("[upstream]\nshared_connections = 6")).expect("valid");
    assert_eq!(config.upstream.max_shared_connections, 6);
    let config = validate(parse("[upstream]\nshared_connections = 2")).expect("valid");
    assert_eq!(config.upstream.max_shared_connections, 4);
    let config = validate(parse("[upstream]\nmax_shared_connections = 1")).expect("valid");
    assert_eq!(config.upstream.max_shared_connections, 1);
    assert_eq!(config.upstream.stall_after, Duration::from_millis(100));
    assert_eq!(config.upstream.probe_timeout, Duration::from_millis(5000));
}
