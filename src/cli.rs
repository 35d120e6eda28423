//! Command line: the flags and environment variables that override the
//! configuration file for what an operator changes at deploy time.
//!
//! Precedence, lowest first: built-in defaults, the file, then the environment
//! and flags (a flag beats its environment variable, as clap does it). Every
//! value here stays raw; `config::load` merges it into the file settings and
//! `config::validate` checks everything together, so a bad flag is reported
//! with every other problem.
//!
//! Secrets have no flag on purpose: a password on the command line is visible
//! to every user of the machine through `ps` and `/proc/*/cmdline`. They come
//! from the environment (or the file) only.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;

use crate::config::{LogFormat, Mode, Secret};

/// Password clients must `AUTH` with to use the proxy.
pub const ENV_PASSWORD: &str = "RESPITE_PASSWORD";
/// Password the proxy uses towards Redis.
pub const ENV_UPSTREAM_PASSWORD: &str = "RESPITE_UPSTREAM_PASSWORD";
/// ACL username the proxy uses towards Redis.
pub const ENV_UPSTREAM_USERNAME: &str = "RESPITE_UPSTREAM_USERNAME";
/// Password the proxy uses towards the sentinels.
pub const ENV_SENTINEL_PASSWORD: &str = "RESPITE_SENTINEL_PASSWORD";
/// Key of the compression envelopes' tags.
pub const ENV_COMPRESSION_SECRET: &str = "RESPITE_COMPRESSION_SECRET";
/// Bearer token of the admin routes that name keys (`admin.token`).
pub const ENV_ADMIN_TOKEN: &str = "RESPITE_ADMIN_TOKEN";

const AFTER_HELP: &str = "\
Secrets are read from the environment only (never from flags, which other users can see):
  RESPITE_PASSWORD           password clients must AUTH with
  RESPITE_UPSTREAM_USERNAME  username the proxy uses towards Redis
  RESPITE_UPSTREAM_PASSWORD  password the proxy uses towards Redis
  RESPITE_SENTINEL_PASSWORD  password the proxy uses towards the sentinels
  RESPITE_COMPRESSION_SECRET key of the compression envelopes' tags
  RESPITE_ADMIN_TOKEN        bearer token of the admin routes that name keys
An empty environment variable counts as unset.";

/// respite's command line.
#[derive(Debug, Clone, Parser)]
#[command(name = "respite", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Configuration file [default: ./proxy.toml if it exists, otherwise built-in defaults]
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Validate the configuration, report every problem, and exit
    #[arg(long)]
    pub check: bool,

    /// Client listen address (IP:PORT; port 0 picks a free port)
    #[arg(long, env = "RESPITE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Upstream node: the server, the sentinels, or cluster seeds. Repeat the
    /// flag or give a comma-separated list
    #[arg(
        long,
        env = "RESPITE_UPSTREAM",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub upstream: Vec<String>,

    /// Deployment behind the proxy
    #[arg(
        long,
        env = "RESPITE_MODE",
        value_parser = PossibleValuesParser::new(Mode::NAMES).try_map(|s| s.parse::<Mode>()),
    )]
    pub mode: Option<Mode>,

    /// Sentinel master name (sentinel mode)
    #[arg(long, env = "RESPITE_MASTER_NAME", value_name = "NAME")]
    pub master_name: Option<String>,

    /// Admin HTTP address (IP:PORT; port 0 picks a free port), or `off`
    #[arg(long, env = "RESPITE_ADMIN", value_name = "ADDR|off")]
    pub admin: Option<String>,

    /// Log filter, e.g. `info` or `info,respite=debug`
    #[arg(long, env = "RESPITE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format: `text` (coloured only on a terminal) or `json` (one
    /// object per line)
    #[arg(
        long,
        env = "RESPITE_LOG_FORMAT",
        value_parser = PossibleValuesParser::new(LogFormat::NAMES).try_map(|s| s.parse::<LogFormat>()),
    )]
    pub log_format: Option<LogFormat>,

    /// Worker threads; 0 = one per available CPU
    #[arg(long, env = "RESPITE_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Secrets from the environment; never from a flag (see the module doc).
    #[arg(skip = Secrets::from_env())]
    pub secrets: Secrets,
}

/// Credentials taken from the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Secrets {
    /// `RESPITE_PASSWORD`: the password clients must `AUTH` with.
    pub password: Option<Secret>,
    /// `RESPITE_UPSTREAM_USERNAME`
    pub upstream_username: Option<String>,
    /// `RESPITE_UPSTREAM_PASSWORD`
    pub upstream_password: Option<Secret>,
    /// `RESPITE_SENTINEL_PASSWORD`
    pub sentinel_password: Option<Secret>,
    /// `RESPITE_COMPRESSION_SECRET`
    pub compression_secret: Option<Secret>,
    /// `RESPITE_ADMIN_TOKEN`
    pub admin_token: Option<Secret>,
    /// Names of the variables above that were set but not valid UTF-8;
    /// `config::load` reports them instead of silently ignoring a password.
    pub not_unicode: Vec<&'static str>,
}

impl Secrets {
    /// Reads the process environment.
    pub fn from_env() -> Secrets {
        Self::from_lookup(std::env::var_os)
    }

    /// Reads the variables through `lookup`, so tests need not touch the
    /// process environment (which every test thread shares).
    pub fn from_lookup(lookup: impl Fn(&'static str) -> Option<OsString>) -> Secrets {
        let mut not_unicode = Vec::new();
        let mut get = |name: &'static str| match lookup(name)?.into_string() {
            Ok(s) if s.is_empty() => None,
            Ok(s) => Some(s),
            Err(_) => {
                not_unicode.push(name);
                None
            }
        };
        let password = get(ENV_PASSWORD).map(Secret);
        let upstream_username = get(ENV_UPSTREAM_USERNAME);
        let upstream_password = get(ENV_UPSTREAM_PASSWORD).map(Secret);
        let sentinel_password = get(ENV_SENTINEL_PASSWORD).map(Secret);
        let compression_secret = get(ENV_COMPRESSION_SECRET).map(Secret);
        let admin_token = get(ENV_ADMIN_TOKEN).map(Secret);
        Secrets {
            password,
            upstream_username,
            upstream_password,
            sentinel_password,
            compression_secret,
            admin_token,
            not_unicode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        // clap checks conflicting names, bad defaults, etc. only in debug_assert.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_override_parses() {
        let cli = Cli::try_parse_from([
            "respite",
            "--config",
            "/etc/respite.toml",
            "--check",
            "--listen",
            "0.0.0.0:7000",
            "--upstream",
            "redis-a:6379",
            "--upstream",
            "redis-b:6379,redis-c:6379",
            "--mode",
            "sentinel",
            "--master-name",
            "mymaster",
            "--admin",
            "off",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--workers",
            "3",
        ])
        .expect("valid command line");
        assert_eq!(cli.config, Some(PathBuf::from("/etc/respite.toml")));
        assert!(cli.check);
        assert_eq!(cli.listen.as_deref(), Some("0.0.0.0:7000"));
        assert_eq!(
            cli.upstream,
            ["redis-a:6379", "redis-b:6379", "redis-c:6379"]
        );
        assert_eq!(cli.mode, Some(Mode::Sentinel));
        assert_eq!(cli.master_name.as_deref(), Some("mymaster"));
        assert_eq!(cli.admin.as_deref(), Some("off"));
        assert_eq!(cli.log_level.as_deref(), Some("debug"));
        assert_eq!(cli.log_format, Some(LogFormat::Json));
        assert_eq!(cli.workers, Some(3));
    }

    #[test]
    fn bad_mode_and_workers_are_rejected() {
        assert!(Cli::try_parse_from(["respite", "--mode", "replicated"]).is_err());
        assert!(Cli::try_parse_from(["respite", "--log-format", "logfmt"]).is_err());
        assert!(Cli::try_parse_from(["respite", "--workers", "many"]).is_err());
        assert!(Cli::try_parse_from(["respite", "--workers", "-1"]).is_err());
    }

    #[test]
    fn there_is_no_password_flag() {
        for flag in ["--password", "--upstream-password", "--sentinel-password"] {
            assert!(
                Cli::try_parse_from(["respite", flag, "hunter2"]).is_err(),
                "{flag} must not exist"
            );
        }
        // Nor a positional argument a secret could slip into.
        assert!(Cli::try_parse_from(["respite", "hunter2"]).is_err());
    }

    #[test]
    fn secrets_come_from_the_lookup() {
        let env = |name: &'static str| -> Option<OsString> {
            match name {
                ENV_PASSWORD => Some("client-pw".into()),
                ENV_UPSTREAM_USERNAME => Some("proxy".into()),
                ENV_UPSTREAM_PASSWORD => Some("".into()),
                ENV_ADMIN_TOKEN => Some("t0ken".into()),
                _ => None,
            }
        };
        let s = Secrets::from_lookup(env);
        assert_eq!(s.password, Some(Secret("client-pw".into())));
        assert_eq!(s.upstream_username.as_deref(), Some("proxy"));
        assert_eq!(s.upstream_password, None, "empty counts as unset");
        assert_eq!(s.sentinel_password, None);
        assert_eq!(s.admin_token, Some(Secret("t0ken".into())));
        assert!(s.not_unicode.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn non_unicode_secret_is_recorded_not_dropped() {
        use std::os::unix::ffi::OsStringExt;
        let s = Secrets::from_lookup(|name| {
            (name == ENV_SENTINEL_PASSWORD).then(|| OsString::from_vec(vec![0xff, 0xfe]))
        });
        assert_eq!(s.sentinel_password, None);
        assert_eq!(s.not_unicode, [ENV_SENTINEL_PASSWORD]);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let s = Secrets {
            password: Some(Secret("hunter2".into())),
            ..Secrets::default()
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
