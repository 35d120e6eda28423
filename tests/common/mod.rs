//! Test harness shared by every integration test: real `redis-server`
//! processes and real `respite` processes on free loopback ports, a raw RESP
//! connection that returns replies as exact bytes, and small helpers.
//!
//! Everything that spawns a process kills and reaps it on `Drop`, so a failing
//! test never leaves servers behind.
//!
//! [`cluster`] adds a real Redis Cluster (`redis-server` in cluster mode,
//! joined with `redis-cli --cluster create`).
//!
//! Each test file includes this with `mod common;`; not every file uses every
//! helper, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod cluster;
pub mod compression;
pub mod corpus;
pub mod jsongen;
pub mod sentinel;
pub mod tags;
pub mod tls;

/// How long a server or proxy may take to answer its first PING.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Read timeout of a [`RawConn`] unless changed.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// Ports handed out by this process, never handed out twice.
fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    USED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free loopback port.
///
/// Candidates come from 20000..32000, below Linux's ephemeral range
/// (32768..61000), so an outgoing connection's local port can never take a
/// port between the moment we pick it and the moment a server binds it. The
/// walk starts at a per-process offset (so test binaries run side by side by
/// other worktrees rarely probe the same ports), never repeats a port within
/// this process, and each candidate is checked by binding it.
pub fn free_port() -> u16 {
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static START: OnceLock<u32> = OnceLock::new();
    let start = *START.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN
    });
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n * 7) % SPAN) as u16;
        if !used_ports().lock().unwrap().insert(port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // Fall back to the kernel's choice; still recorded so it is not reused.
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    used_ports().lock().unwrap().insert(port);
    port
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

fn read_log(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Makes the child die with SIGKILL if the thread that spawned it goes away
/// (a test binary killed by a timeout, or a panicking test thread), so no
/// server outlives its test even when `Drop` never runs. Consequence: spawn
/// servers and proxies on the thread that owns them for the whole test.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls `cond` every few milliseconds until it holds; panics naming `what`
/// when it still does not after `timeout`. Tests synchronise with this, not
/// with sleeps.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `name:value` field of an `INFO` reply, as a number.
pub fn info_field(info: &[u8], name: &str) -> Option<i64> {
    let text = String::from_utf8_lossy(info);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

/// Sends PING on a fresh connection and returns the first complete reply
/// frame, or `None` if the port does not accept or does not answer in time.
pub fn ping_once(port: u16, timeout: Duration) -> Option<Vec<u8>> {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    let mut c = RawConn::from_stream(stream, timeout);
    c.try_send(b"*1\r\n$4\r\nPING\r\n").ok()?;
    c.try_read_reply().ok()
}

/// Waits until `port` answers a PING with any complete reply frame, while
/// `child` is still running. Returns an error text on exit or timeout.
fn wait_ready(child: &mut Child, port: u16, what: &str) -> Result<Vec<u8>, String> {
    wait_ready_by(child, port, what, &ping_once)
}

/// [`wait_ready`] with another PING (e.g. over TLS).
fn wait_ready_by(
    child: &mut Child,
    port: u16,
    what: &str,
    ping_once: &dyn Fn(u16, Duration) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited during startup with {status}"));
        }
        if let Some(reply) = ping_once(port, Duration::from_millis(500)) {
            return Ok(reply);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not answer PING on port {port} within {STARTUP_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A real `redis-server` on a loopback port, killed on drop.
pub struct RedisServer {
    port: u16,
    extra: Vec<String>,
    dir: TempDir,
    child: Option<Child>,
    starts: u32,
    /// TLS only (`--port 0 --tls-port PORT`) with these certificates.
    tls: Option<std::sync::Arc<tls::TlsFiles>>,
}

impl RedisServer {
    /// Starts a TLS-only server (`--port 0 --tls-port PORT`) presenting
    /// `server.pem`, trusting `ca.pem` for client certificates, with
    /// `--tls-auth-clients yes` (mutual TLS) unless `extra_args` says otherwise.
    pub fn start_tls(files: std::sync::Arc<tls::TlsFiles>, extra_args: &[&str]) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::try_start_with(port, extra_args, Some(files.clone())) {
                Ok(s) => return s,
                Err((err, log)) if log.contains("Address already in use") => last_err = err,
                Err((err, log)) => panic!("{err}\n--- redis-server log ---\n{log}"),
            }
        }
        panic!("could not start a TLS redis-server on a free port: {last_err}");
    }

    /// A TLS connection (with the client certificate) straight to this
    /// TLS-only server.
    pub fn tls_conn(&self) -> tls::TlsConn {
        let files = self.tls.as_ref().expect("not a TLS server");
        tls::TlsConn::connect(self.port, files.client_config(true)).expect("TLS connect")
    }

    /// Starts a server with default settings on a free port.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments
    /// (e.g. `&["--requirepass", "pw"]`).
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::try_start_on(port, extra_args) {
                Ok(s) => return s,
                Err((err, log)) => {
                    // Someone else took the port between probe and bind: retry.
                    if log.contains("Address already in use") {
                        last_err = err;
                        continue;
                    }
                    panic!("{err}\n--- redis-server log ---\n{log}");
                }
            }
        }
        panic!("could not start redis-server on a free port: {last_err}");
    }

    /// Starts a server on a given port (e.g. one a proxy already points at).
    pub fn start_on_port(port: u16, extra_args: &[&str]) -> RedisServer {
        Self::try_start_on(port, extra_args)
            .unwrap_or_else(|(err, log)| panic!("{err}\n--- redis-server log ---\n{log}"))
    }

    fn try_start_on(port: u16, extra_args: &[&str]) -> Result<RedisServer, (String, String)> {
        Self::try_start_with(port, extra_args, None)
    }

    fn try_start_with(
        port: u16,
        extra_args: &[&str],
        tls: Option<std::sync::Arc<tls::TlsFiles>>,
    ) -> Result<RedisServer, (String, String)> {
        let dir = tempfile::Builder::new()
            .prefix("respite-redis-")
            .tempdir()
            .expect("create tempdir");
        let mut s = RedisServer {
            port,
            extra: extra_args.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            starts: 0,
            tls,
        };
        s.spawn()?;
        Ok(s)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("redis-{}.log", self.starts))
    }

    fn spawn(&mut self) -> Result<(), (String, String)> {
        self.starts += 1;
        let log_path = self.log_path();
        let log = File::create(&log_path).expect("create redis log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new("redis-server");
        die_with_parent(&mut cmd);
        match &self.tls {
            None => cmd.arg("--port").arg(self.port.to_string()),
            Some(t) => cmd
                .args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .args(["--tls-cert-file", &t.p("server.pem")])
                .args(["--tls-key-file", &t.p("server.key")])
                .args(["--tls-ca-cert-file", &t.p("ca.pem")])
                .args(["--tls-auth-clients", "yes"]),
        };
        let mut child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| (format!("cannot spawn redis-server: {e}"), String::new()))?;
        let ready = match &self.tls {
            None => wait_ready(&mut child, self.port, "redis-server"),
            // The log, not a PING: a server given a certificate the test
            // client rejects on purpose (expired) must start too.
            Some(_) => wait_ready_by(&mut child, self.port, "redis-server (TLS)", &|_, _| {
                read_log(&log_path)
                    .contains("Ready to accept connections")
                    .then(Vec::new)
            }),
        };
        match ready {
            Ok(_) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                kill_and_reap(&mut child);
                Err((e, read_log(&log_path)))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Process id of the running server, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server with SIGKILL and reaps it. No-op if not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }

    /// Starts the server again on the same port with the same arguments
    /// (killing it first if it still runs). Data is not kept.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return,
                Err((err, log)) => {
                    if Instant::now() > deadline {
                        panic!("restart failed: {err}\n--- redis-server log ---\n{log}");
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The log of the current (latest) run.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// A raw connection straight to this server.
    pub fn conn(&self) -> RawConn {
        RawConn::connect(self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `respite` binary, killed on drop.
pub struct Proxy {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
    /// Substrings of WARN/ERROR log lines this test expects (see `Drop`).
    allowed_log: Vec<String>,
}

impl Proxy {
    /// The test expects respite to log WARN or ERROR lines containing
    /// `needle` (an upstream it kills, a client it floods...). Any other such
    /// line fails the test when the proxy is dropped.
    pub fn allow_log(&mut self, needle: &str) {
        self.allowed_log.push(needle.to_string());
    }

    /// Every WARN or ERROR line of the log not matched by [`Proxy::allow_log`].
    pub fn unexpected_log_lines(&self) -> Vec<String> {
        unexpected_lines(&self.log(), &self.allowed_log)
    }

    /// The standard arguments (everything but `--listen`) for a proxy in
    /// front of `upstream`: no admin port, one worker, warn logging.
    pub fn default_args(upstream: &str) -> Vec<String> {
        [
            "--upstream",
            upstream,
            "--admin",
            "off",
            "--workers",
            "1",
            "--log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// A proxy in front of `redis` with [`Proxy::default_args`].
    pub fn start(redis: &RedisServer) -> Proxy {
        Self::start_args(Self::default_args(&redis.addr()))
    }

    /// A proxy with these arguments; the harness prepends
    /// `--listen 127.0.0.1:PORT` with a free port.
    pub fn start_args(args: Vec<String>) -> Proxy {
        Self::start_env(args, Vec::new())
    }

    /// As [`Proxy::start_args`], with extra environment variables
    /// (e.g. `("RESPITE_PASSWORD", "pw")`).
    pub fn start_env(args: Vec<String>, envs: Vec<(String, String)>) -> Proxy {
        Self::start_limited(args, envs, None)
    }

    /// As [`Proxy::start_env`], the proxy started with `RLIMIT_NOFILE`
    /// (soft and hard) set to `nofile` when given.
    pub fn start_limited(
        args: Vec<String>,
        envs: Vec<(String, String)>,
        nofile: Option<u64>,
    ) -> Proxy {
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            match Self::try_start(port, &args, &envs, nofile) {
                Ok(p) => return p,
                Err((err, log)) => {
                    let in_use = log.contains("in use") || log.contains("AddrInUse");
                    last = format!("{err}\n--- respite log ---\n{log}");
                    if !in_use {
                        break;
                    }
                }
            }
        }
        panic!("could not start respite: {last}");
    }

    fn try_start(
        port: u16,
        args: &[String],
        envs: &[(String, String)],
        nofile: Option<u64>,
    ) -> Result<Proxy, (String, String)> {
        let dir = tempfile::Builder::new()
            .prefix("respite-proxy-")
            .tempdir()
            .expect("create tempdir");
        let log_path = dir.path().join("respite.log");
        let log = File::create(&log_path).expect("create proxy log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_respite"));
        die_with_parent(&mut cmd);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and reads only a struct
            // on the child's stack; it runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| (format!("cannot spawn respite: {e}"), String::new()))?;
        match wait_ready(&mut child, port, "respite") {
            Ok(_) => Ok(Proxy {
                port: {
                    proxy_ports().lock().unwrap().insert(port);
                    port
                },
                child: Some(child),
                dir,
                log_path,
                exit: None,
                // Tests run without a compression secret on purpose
                // (tests/compression_integrity.rs checks this warning).
                allowed_log: vec!["compression.secret is not set".to_string()],
            }),
            Err(e) => {
                kill_and_reap(&mut child);
                Err((e, read_log(&log_path)))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("proxy not running")
    }

    /// Resident set size in kB (VmRSS from /proc/PID/status).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Everything the proxy wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(st))) => {
                self.exit = Some(st);
                false
            }
            _ => false,
        }
    }

    /// Panics with the log if the proxy has exited.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "respite exited unexpectedly ({:?})\n--- respite log ---\n{}",
                self.exit,
                self.log()
            );
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the proxy.
    pub fn signal(&self, sig: i32) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions; pid is our child.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// Waits up to `timeout` for the proxy to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.exit {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.exit = Some(st);
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// A raw connection to this proxy.
    pub fn conn(&self) -> RawConn {
        RawConn::connect(self.port)
    }

    /// Directory the proxy runs in (its working directory); files put
    /// there live as long as the `Proxy`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
        // A passing test fails when respite logged a WARN or ERROR it did
        // not expect: that is a bug somewhere, or a test that must say why.
        proxy_ports().lock().unwrap().remove(&self.port);
        if !thread::panicking() {
            // Acceptance 7 of issue 18, for every test: a client of respite
            // never sees MOVED/ASK outside MULTI (respite warns when one
            // was about to reach a client; no allow_log excuses it).
            let log = self.log();
            if let Some(l) = log.lines().find(|l| l.contains(REDIRECT_LEAK)) {
                panic!(
                    "respite (port {}) let a cluster redirect reach a client: {l}",
                    self.port
                );
            }
            let bad = self.unexpected_log_lines();
            if !bad.is_empty() {
                let shown = &bad[..bad.len().min(20)];
                panic!(
                    "respite (port {}) logged {} unexpected WARN/ERROR line(s) \
                     (Proxy::allow_log them if the test expects them):\n{}",
                    self.port,
                    bad.len(),
                    shown.join("\n")
                );
            }
        }
        // A failing test shows what the proxy logged (the test harness
        // prints captured output of failed tests only).
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!(
                "--- respite log (port {}, last {} lines) ---\n{}",
                self.port,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// The WARN and ERROR lines of a respite log (ANSI colour codes removed)
/// that contain none of `allowed`.
pub fn unexpected_lines(log: &str, allowed: &[String]) -> Vec<String> {
    log.lines()
        .map(strip_ansi)
        .filter(|l| {
            let level = if l.trim_start().starts_with('{') {
                // JSON log lines: "level":"WARN"
                if l.contains("\"level\":\"WARN\"") {
                    "WARN"
                } else if l.contains("\"level\":\"ERROR\"") {
                    "ERROR"
                } else {
                    ""
                }
            } else {
                // "2026-12-05T06:59:00.123Z  WARN respite::...: message"
                l.split_whitespace().nth(1).unwrap_or("")
            };
            matches!(level, "WARN" | "ERROR") && !allowed.iter().any(|a| l.contains(a.as_str()))
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `redis::Client` for the server or proxy on `port`.
pub fn client(port: u16) -> redis::Client {
    redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("redis::Client::open")
}

/// Runs a program with `stdin` fed in, killing it after `timeout`.
pub fn run_with_timeout(program: &str, args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = thread::spawn(move || {
        let _ = input.write_all(&data);
        // Dropping `input` closes the pipe: EOF for the program.
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > deadline {
            kill_and_reap(&mut child);
            panic!("{program} {args:?} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let _ = feeder.join();
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

// ---------------------------------------------------------------------------
// RESP bytes
// ---------------------------------------------------------------------------

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Encodes a command given as strings.
pub fn encode_str(args: &[&str]) -> Vec<u8> {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode(&v)
}

/// Printable form of raw bytes for assertion messages (`\r\n` shown escaped).
pub fn escape(bytes: &[u8]) -> String {
    const MAX: usize = 600;
    let mut s: String = bytes
        .iter()
        .take(MAX)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > MAX {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// Position just past the `\r\n` that ends the line starting at `pos`.
fn line_end(buf: &[u8], pos: usize) -> Option<usize> {
    buf[pos..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| pos + i + 2)
}

fn parse_len(buf: &[u8], start: usize, end: usize) -> Result<i64, String> {
    let text = std::str::from_utf8(&buf[start..end - 2]).map_err(|e| e.to_string())?;
    text.parse::<i64>()
        .map_err(|_| format!("bad length {:?} at byte {start}", text))
}

/// Scans one RESP2/RESP3 frame starting at `pos`.
/// `Ok(Some(end))`: a complete frame spans `pos..end`; `Ok(None)`: more bytes
/// are needed; `Err`: the bytes are not RESP. Iterative: Redis sends replies
/// thousands of levels deep (a Lua script returning a self-referencing table).
pub fn scan_frame(buf: &[u8], pos: usize) -> Result<Option<usize>, String> {
    // Elements still expected by each open aggregate.
    let mut open: Vec<i64> = Vec::new();
    let mut p = pos;
    loop {
        if p >= buf.len() {
            return Ok(None);
        }
        let Some(end) = line_end(buf, p) else {
            return Ok(None);
        };
        let mut children = 0;
        match buf[p] {
            b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => p = end,
            b'$' | b'!' | b'=' => {
                let n = parse_len(buf, p + 1, end)?;
                if n < 0 {
                    p = end;
                } else {
                    let stop = end + n as usize + 2;
                    if buf.len() < stop {
                        return Ok(None);
                    }
                    if &buf[stop - 2..stop] != b"\r\n" {
                        return Err(format!("bulk at byte {p} not terminated by CRLF"));
                    }
                    p = stop;
                }
            }
            t @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
                let n = parse_len(buf, p + 1, end)?;
                p = end;
                if n > 0 {
                    children = if t == b'%' || t == b'|' { 2 * n } else { n };
                }
                // An attribute decorates the frame that follows it.
                if t == b'|' && n >= 0 {
                    children += 1;
                }
            }
            other => {
                return Err(format!(
                    "unknown RESP type byte {:?} at byte {p}",
                    other as char
                ))
            }
        }
        if children > 0 {
            open.push(children);
            continue;
        }
        loop {
            match open.last_mut() {
                None => return Ok(Some(p)),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// Splits a byte string into complete frames; returns the frames and the
/// length of an incomplete tail (0 if none).
pub fn split_frames(buf: &[u8]) -> Result<(Vec<Vec<u8>>, usize), String> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match scan_frame(buf, pos)? {
            Some(end) => {
                frames.push(buf[pos..end].to_vec());
                pos = end;
            }
            None => break,
        }
    }
    Ok((frames, buf.len() - pos))
}

/// True for an I/O error that means "no data in time" (a read timeout).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The warning respite logs when a `MOVED`/`ASK` was about to reach a
/// client outside `MULTI` (see `Drop for Proxy`).
pub const REDIRECT_LEAK: &str = "A cluster redirect was about to reach a client outside MULTI";

/// Ports of the respite processes running now: a [`RawConn`] to one of
/// them checks that no reply is a cluster redirect outside `MULTI`.
fn proxy_ports() -> &'static std::sync::Mutex<std::collections::HashSet<u16>> {
    static PORTS: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<u16>>> =
        std::sync::OnceLock::new();
    PORTS.get_or_init(Default::default)
}

/// A blocking connection that speaks raw RESP bytes.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Connected to respite and never sent `MULTI`: a `-MOVED`/`-ASK`
    /// reply fails the test (issue 18, acceptance 7).
    check_redirects: bool,
}

impl RawConn {
    /// Connects to `127.0.0.1:port` with a 10 s read timeout.
    #[track_caller]
    pub fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        let mut c = Self::from_stream(stream, DEFAULT_READ_TIMEOUT);
        c.check_redirects = proxy_ports().lock().unwrap().contains(&port);
        c
    }

    pub fn from_stream(stream: TcpStream, read_timeout: Duration) -> RawConn {
        stream.set_read_timeout(Some(read_timeout)).unwrap();
        stream.set_nodelay(true).unwrap();
        RawConn {
            stream,
            buf: Vec::new(),
            check_redirects: false,
        }
    }

    pub fn set_read_timeout(&mut self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Writes all bytes; panics on error.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.note_sent(bytes);
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write failed: {e}"));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.note_sent(bytes);
        self.stream.write_all(bytes)
    }

    /// A connection that sent `MULTI` may see Redis Cluster's redirects
    /// as replies to queued commands.
    fn note_sent(&mut self, bytes: &[u8]) {
        if self.check_redirects && bytes.windows(5).any(|w| w.eq_ignore_ascii_case(b"multi")) {
            self.check_redirects = false;
        }
    }

    /// Reads exactly one complete reply frame and returns its raw bytes.
    /// Panics on timeout, EOF or bytes that are not RESP.
    #[track_caller]
    pub fn read_reply(&mut self) -> Vec<u8> {
        match self.try_read_reply() {
            Ok(r) => r,
            Err(e) => panic!(
                "reading a reply failed: {e}; buffered bytes: {}",
                escape(&self.buf)
            ),
        }
    }

    /// As [`RawConn::read_reply`], returning errors (timeouts are
    /// `WouldBlock`/`TimedOut`, EOF is `UnexpectedEof`, bad RESP is
    /// `InvalidData`). On a timeout the partial bytes stay buffered.
    pub fn try_read_reply(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match scan_frame(&self.buf, 0) {
                Ok(Some(end)) => {
                    let frame: Vec<u8> = self.buf.drain(..end).collect();
                    if self.check_redirects
                        && (frame.starts_with(b"-MOVED ") || frame.starts_with(b"-ASK "))
                    {
                        panic!(
                            "a client of respite got a cluster redirect outside MULTI: {}",
                            escape(&frame)
                        );
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{e}: {}", escape(&self.buf)),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed; partial reply: {}", escape(&self.buf)),
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one reply, waiting at most `timeout`; `None` on timeout (the
    /// previous read timeout is restored afterwards).
    #[track_caller]
    pub fn read_reply_within(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let old = self.stream.read_timeout().ok().flatten();
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let r = self.try_read_reply();
        self.stream.set_read_timeout(old).unwrap();
        match r {
            Ok(v) => Some(v),
            Err(e) if is_timeout(&e) => None,
            Err(e) => panic!("reading a reply failed: {e}"),
        }
    }

    /// Asserts that nothing arrives within `wait`.
    #[track_caller]
    pub fn expect_silence(&mut self, wait: Duration) {
        if let Some(r) = self.read_reply_within(wait) {
            panic!("expected no reply, got {}", escape(&r));
        }
        assert!(
            self.buf.is_empty(),
            "expected no reply, got partial bytes {}",
            escape(&self.buf)
        );
    }

    /// Sends one command (RESP array of bulk strings) and reads one reply.
    #[track_caller]
    pub fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&encode(args));
        self.read_reply()
    }

    /// [`RawConn::cmd`] with string arguments.
    #[track_caller]
    pub fn cmd_str(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&encode_str(args));
        self.read_reply()
    }

    /// Asserts the peer closes the connection (EOF or reset) within the read
    /// timeout, with no further bytes before it.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        assert!(
            self.buf.is_empty(),
            "expected EOF, but bytes are buffered: {}",
            escape(&self.buf)
        );
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk) {
            Ok(0) => {}
            Ok(n) => panic!("expected EOF, got {}", escape(&chunk[..n])),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) if is_timeout(&e) => panic!("expected EOF, connection still open"),
            Err(e) => panic!("expected EOF, got error {e}"),
        }
    }

    /// Reads whatever arrives until EOF/reset or until nothing came for
    /// `idle`; returns the bytes and whether the connection was closed.
    pub fn drain(&mut self, idle: Duration) -> (Vec<u8>, bool) {
        let old = self.stream.read_timeout().ok().flatten();
        self.stream.set_read_timeout(Some(idle)).unwrap();
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 64 * 1024];
        let closed = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => break false,
                Err(_) => break true,
            }
        };
        let _ = self.stream.set_read_timeout(old);
        (out, closed)
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Asserts two raw replies are equal, printing both escaped.
#[track_caller]
pub fn assert_reply(got: &[u8], want: &[u8]) {
    assert!(
        got == want,
        "reply mismatch\n  got:  {}\n  want: {}",
        escape(got),
        escape(want)
    );
}
