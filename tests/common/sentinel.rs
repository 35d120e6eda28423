//! A real Sentinel deployment for integration tests: one primary and two
//! replicas ([`RedisServer`]s) and three `redis-sentinel` processes on free
//! loopback ports, with quick timings, killed on `Drop`.
//!
//! [`SentinelSet::start`] returns once every sentinel sees both replicas and
//! the two other sentinels, so a failover can be agreed on at once.

use super::{die_with_parent, free_port, kill_and_reap, read_log, wait_ready};
use super::{RawConn, RedisServer};
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const MASTER_NAME: &str = "mymaster";
/// Sentinel `down-after-milliseconds`.
pub const DOWN_AFTER_MS: u64 = 1000;
/// Sentinel `failover-timeout`.
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// How long the deployment may take to settle.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One `redis-sentinel` process with its own config file (sentinels
/// rewrite it, so it lives in the process's own directory).
pub struct SentinelProc {
    port: u16,
    /// The TLS port, for a sentinel started with [`SentinelSet::start_tls`].
    tls_port: Option<u16>,
    dir: TempDir,
    child: Option<Child>,
    starts: u32,
}

impl SentinelProc {
    fn start(port: u16, master_port: u16) -> SentinelProc {
        Self::start_with(port, master_port, "", None)
    }

    /// `tls`: the extra configuration lines and the TLS port.
    fn start_with(port: u16, master_port: u16, tls: &str, tls_port: Option<u16>) -> SentinelProc {
        let dir = tempfile::Builder::new()
            .prefix("respite-sentinel-")
            .tempdir()
            .expect("create tempdir");
        let conf = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             protected-mode no\n\
             daemonize no\n\
             dir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 2\n\
             {tls}",
            dir = dir.path().display()
        );
        std::fs::write(dir.path().join("sentinel.conf"), conf).expect("write sentinel.conf");
        let mut s = SentinelProc {
            port,
            tls_port,
            dir,
            child: None,
            starts: 0,
        };
        s.spawn();
        s
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir
            .path()
            .join(format!("sentinel-{}.log", self.starts))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path()).expect("create sentinel log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new("redis-sentinel");
        die_with_parent(&mut cmd);
        let mut child = cmd
            .arg(self.dir.path().join("sentinel.conf"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn redis-sentinel (apt-get install redis-sentinel)");
        if let Err(e) = wait_ready(&mut child, self.port, "redis-sentinel") {
            kill_and_reap(&mut child);
            panic!("{e}\n--- sentinel log ---\n{}", read_log(&self.log_path()));
        }
        self.child = Some(child);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:TLSPORT` of a sentinel started with TLS.
    pub fn tls_addr(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port.expect("no TLS port"))
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }

    /// Start again on the same port with the config it rewrote.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn conn(&self) -> RawConn {
        RawConn::connect(self.port)
    }

    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }
}

impl Drop for SentinelProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// 1 primary, 2 replicas, 3 sentinels.
pub struct SentinelSet {
    /// `servers[0]` is the first primary.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProc>,
    /// [`SentinelSet::start_tls`]: the TLS port of each of `servers`.
    pub tls_ports: Vec<u16>,
}

impl SentinelSet {
    pub fn start() -> SentinelSet {
        let primary = RedisServer::start();
        let pport = primary.port().to_string();
        let mut servers = vec![primary];
        for _ in 0..2 {
            servers.push(RedisServer::start_with(&[
                "--replicaof",
                "127.0.0.1",
                &pport,
            ]));
        }
        let sentinels = (0..3)
            .map(|_| SentinelProc::start(free_port(), servers[0].port()))
            .collect();
        let set = SentinelSet {
            servers,
            sentinels,
            tls_ports: Vec::new(),
        };
        set.wait_settled();
        set
    }

    /// As [`SentinelSet::start`], every server and sentinel also listening
    /// on a TLS port (mutual TLS, `files`' certificates), with replication
    /// and the sentinels' own connections over TLS (`tls-replication yes`):
    /// the sentinels know the servers by their TLS ports only, so a client
    /// given the sentinels' TLS addresses uses nothing but TLS. The plaintext
    /// ports stay for the test's own checks.
    pub fn start_tls(files: &super::tls::TlsFiles) -> SentinelSet {
        let tls_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let server_args = |i: usize| -> Vec<String> {
            let mut a = super::tls::redis_args(files, tls_ports[i]);
            a.extend(["--tls-replication".to_string(), "yes".to_string()]);
            if i > 0 {
                a.extend([
                    "--replicaof".to_string(),
                    "127.0.0.1".to_string(),
                    tls_ports[0].to_string(),
                ]);
            }
            a
        };
        let servers: Vec<RedisServer> = (0..3)
            .map(|i| {
                let a = server_args(i);
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                RedisServer::start_with(&a)
            })
            .collect();
        let sentinels = (0..3)
            .map(|_| {
                let tls_port = free_port();
                let conf = format!(
                    "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients yes\ntls-replication yes\n",
                    files.p("server.pem"),
                    files.p("server.key"),
                    files.p("ca.pem"),
                );
                SentinelProc::start_with(free_port(), tls_ports[0], &conf, Some(tls_port))
            })
            .collect();
        let set = SentinelSet {
            servers,
            sentinels,
            tls_ports,
        };
        set.wait_settled();
        set
    }

    /// Arguments naming every sentinel by its TLS address.
    pub fn proxy_args_tls(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--mode", "sentinel", "--master-name", MASTER_NAME]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for s in &self.sentinels {
            args.push("--upstream".into());
            args.push(s.tls_addr());
        }
        args
    }

    /// `--upstream` arguments naming every sentinel.
    pub fn proxy_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["--mode", "sentinel", "--master-name", MASTER_NAME]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for s in &self.sentinels {
            args.push("--upstream".into());
            args.push(s.addr());
        }
        args
    }

    /// Index in `servers` of the server on `port`.
    pub fn server_index(&self, port: u16) -> usize {
        self.servers
            .iter()
            .position(|s| s.port() == port)
            .unwrap_or_else(|| panic!("no server on port {port}"))
    }

    /// Wait until every sentinel knows 2 replicas and 2 other sentinels.
    fn wait_settled(&self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let views: Vec<(i64, i64)> = self
                .sentinels
                .iter()
                .map(|s| {
                    let reply = s.conn().cmd_str(&["SENTINEL", "MASTER", MASTER_NAME]);
                    (
                        field(&reply, "num-slaves"),
                        field(&reply, "num-other-sentinels"),
                    )
                })
                .collect();
            if views.iter().all(|v| *v == (2, 2)) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "sentinels did not settle: (replicas, other sentinels) = {views:?}\n{}",
                    self.sentinels[0].log()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The primary port the first reachable sentinel reports.
    pub fn reported_primary(&self) -> Option<u16> {
        for s in &self.sentinels {
            if s.child.is_none() {
                continue;
            }
            let reply = s
                .conn()
                .cmd_str(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            if let Some(port) = text.lines().nth(4).and_then(|l| l.trim().parse().ok()) {
                return Some(port);
            }
        }
        None
    }
}

/// `ROLE` of the server on `port`: "master", "slave", or "down".
pub fn role(port: u16) -> String {
    match super::ping_once(port, Duration::from_millis(300)) {
        None => "down".to_string(),
        Some(_) => {
            let reply = RawConn::connect(port).cmd_str(&["ROLE"]);
            let text = String::from_utf8_lossy(&reply).into_owned();
            text.lines().nth(2).unwrap_or("?").to_string()
        }
    }
}

/// An integer field of a RESP2 flat field/value array of bulk strings.
fn field(reply: &[u8], name: &str) -> i64 {
    let text = String::from_utf8_lossy(reply);
    let lines: Vec<&str> = text.split("\r\n").collect();
    lines
        .iter()
        .position(|l| *l == name)
        .and_then(|i| lines.get(i + 2))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}
