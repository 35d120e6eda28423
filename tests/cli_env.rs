//! Environment variables feeding the command line. A separate test binary with
//! a single test, because the process environment is shared by every thread
//! and the unit tests parse command lines concurrently.

use clap::Parser;
use respite::cli::Cli;
use respite::config::{self, Mode, Secret};

#[test]
fn environment_variables_feed_the_command_line() {
    let vars = [
        ("RESPITE_LISTEN", "0.0.0.0:7100"),
        ("RESPITE_UPSTREAM", "s1:26379, s2:26379,[::1]:26379"),
        ("RESPITE_MODE", "sentinel"),
        ("RESPITE_MASTER_NAME", "cache"),
        ("RESPITE_ADMIN", "127.0.0.1:0"),
        ("RESPITE_LOG_LEVEL", "info,respite=debug"),
        ("RESPITE_WORKERS", "2"),
        ("RESPITE_PASSWORD", "client-pw"),
        ("RESPITE_UPSTREAM_USERNAME", "proxy"),
        ("RESPITE_UPSTREAM_PASSWORD", "upstream-pw"),
        ("RESPITE_SENTINEL_PASSWORD", ""),
    ];
    for (name, value) in vars {
        std::env::set_var(name, value);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("empty.toml");
    std::fs::write(&file, "").expect("write config");
    let file = file.to_str().expect("utf-8 temp path");

    let cli = Cli::try_parse_from(["respite", "--config", file]).expect("valid environment");
    // clap splits the list on commas; `load` trims the blanks around entries.
    assert_eq!(cli.upstream, ["s1:26379", " s2:26379", "[::1]:26379"]);
    assert_eq!(cli.mode, Some(Mode::Sentinel));
    assert_eq!(cli.workers, Some(2));
    assert_eq!(cli.secrets.password, Some(Secret("client-pw".into())));
    assert_eq!(cli.secrets.sentinel_password, None, "empty counts as unset");

    let config = config::load(&cli).expect("valid config");
    assert_eq!(config.listen, Some("0.0.0.0:7100".parse().expect("addr")));
    assert_eq!(
        config.upstream.nodes,
        ["s1:26379", "s2:26379", "[::1]:26379"]
    );
    assert_eq!(config.upstream.master_name.as_deref(), Some("cache"));
    assert_eq!(config.admin.map(|a| a.port()), Some(0));
    assert_eq!(config.log_level, "info,respite=debug");
    assert_eq!(config.workers, 2);
    assert_eq!(config.auth.password.as_deref(), Some("client-pw"));
    assert_eq!(config.upstream.username.as_deref(), Some("proxy"));
    assert_eq!(config.upstream.password.as_deref(), Some("upstream-pw"));

    // A flag beats its environment variable.
    let cli = Cli::try_parse_from([
        "respite",
        "--config",
        file,
        "--upstream",
        "flag-node:6379",
        "--mode",
        "standalone",
    ])
    .expect("valid");
    assert_eq!(cli.upstream, ["flag-node:6379"]);
    let config = config::load(&cli).expect("valid config");
    assert_eq!(config.upstream.mode, Mode::Standalone);
    assert_eq!(config.upstream.nodes, ["flag-node:6379"]);

    // A bad environment value is rejected like a bad flag.
    std::env::set_var("RESPITE_MODE", "replicated");
    assert!(Cli::try_parse_from(["respite", "--config", file]).is_err());

    for (name, _) in vars {
        std::env::remove_var(name);
    }
}
