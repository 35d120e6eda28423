//! TLS on both sides (issue 21, acceptance 1 and 2), against real
//! `redis-server` processes and certificates made by the test (`rcgen`).
//!
//! Client side: the corpus through respite's TLS listener gives the bytes
//! Redis gives directly; `redis-cli --tls` works unchanged; a client without
//! a certificate is refused with `client_auth = "required"`.
//! Upstream side: mutual TLS to a TLS-only Redis passes the corpus; a wrong
//! CA and an expired certificate fail with an error naming the node and the
//! TLS cause, within `connect_timeout_ms`.

mod common;

use common::corpus::{build_corpus, show_cmd, Corpus};
use common::tls::{TlsConn, TlsFiles};
use common::{encode, escape, free_port, Proxy, RawConn, RedisServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A proxy started with `config` (TOML) written to its own file, plus the
/// usual arguments.
fn proxy_with(upstream: &str, config: &str) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tls.toml");
    std::fs::write(&path, config).expect("write config");
    let mut args = Proxy::default_args(upstream);
    args.push("--config".into());
    args.push(path.display().to_string());
    (Proxy::start_args(args), dir)
}

fn server_tls_section(files: &TlsFiles, port: u16, client_auth: &str) -> String {
    let mut s = format!(
        "[server.tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
         client_auth = \"{client_auth}\"\n",
        files.p("server.pem"),
        files.p("server.key"),
    );
    if client_auth != "none" {
        s.push_str(&format!("client_ca_file = \"{}\"\n", files.p("ca.pem")));
    }
    s
}

/// One connection kind the corpus runs over.
enum Conn {
    Plain(RawConn),
    Tls(Box<TlsConn>),
}

impl Conn {
    fn request(&mut self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Conn::Plain(c) => c.try_send(bytes).and_then(|_| c.try_read_reply()),
            Conn::Tls(c) => c.try_send(bytes).and_then(|_| c.try_read_reply()),
        }
    }
}

/// FLUSHALL, SCRIPT FLUSH, FUNCTION FLUSH straight to Redis.
fn reset(mut c: Conn) {
    for cmd in [
        &["FLUSHALL"][..],
        &["SCRIPT", "FLUSH"][..],
        &["FUNCTION", "FLUSH"][..],
    ] {
        let r = c.request(&common::encode_str(cmd)).expect("reset");
        assert_eq!(r, b"+OK\r\n", "{cmd:?} failed: {}", escape(&r));
    }
}

fn run_corpus(mut conn: Conn, resp3: bool, corpus: &Corpus) -> Result<Vec<Vec<u8>>, String> {
    if resp3 {
        let hello = conn
            .request(&common::encode_str(&["HELLO", "3"]))
            .map_err(|e| e.to_string())?;
        assert!(hello.starts_with(b"%"), "HELLO 3: {}", escape(&hello));
    }
    let mut replies = Vec::with_capacity(corpus.entries.len());
    for (i, e) in corpus.entries.iter().enumerate() {
        let args: Vec<&[u8]> = e.args.iter().map(|a| a.as_slice()).collect();
        match conn.request(&encode(&args)) {
            Ok(r) => replies.push(r),
            Err(err) => {
                return Err(format!(
                    "#{i} [{}] {}: no reply: {err}",
                    e.section,
                    show_cmd(&e.args)
                ))
            }
        }
    }
    Ok(replies)
}

fn assert_same(corpus: &Corpus, want: &[Vec<u8>], got: &[Vec<u8>], label: &str) {
    assert_eq!(want.len(), got.len());
    let diffs: Vec<String> = want
        .iter()
        .zip(got)
        .enumerate()
        .filter(|(_, (w, g))| w != g)
        .map(|(i, (w, g))| {
            format!(
                "#{i} [{}] {}\n    redis:   {}\n    {label}: {}",
                corpus.entries[i].section,
                show_cmd(&corpus.entries[i].args),
                escape(w),
                escape(g)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{} of {} replies differ ({label}):\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

/// Acceptance 1: the corpus over respite's TLS listener (a client with a
/// certificate, `client_auth = "optional"`), in RESP2 and RESP3, gives the
/// bytes Redis gives directly over plaintext.
#[test]
fn corpus_through_tls_listener_is_identical() {
    let files = TlsFiles::new();
    let corpus = build_corpus();
    let redis = RedisServer::start();
    let tls_port = free_port();
    let (mut proxy, _dir) = proxy_with(
        &redis.addr(),
        &server_tls_section(&files, tls_port, "optional"),
    );
    for resp3 in [false, true] {
        reset(Conn::Plain(redis.conn()));
        let direct = run_corpus(Conn::Plain(redis.conn()), resp3, &corpus).unwrap();
        reset(Conn::Plain(redis.conn()));
        let tls = TlsConn::connect(tls_port, files.client_config(true)).expect("TLS connect");
        let through = run_corpus(Conn::Tls(Box::new(tls)), resp3, &corpus)
            .unwrap_or_else(|e| panic!("{e}\n--- respite log ---\n{}", proxy.log()));
        assert_same(&corpus, &direct, &through, "respite TLS listener");
    }
    // Without a client certificate too (optional), and plaintext beside it.
    let mut c = TlsConn::connect(tls_port, files.client_config(false)).expect("TLS connect");
    assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_eq!(proxy.conn().cmd_str(&["PING"]), b"+PONG\r\n");
    proxy.assert_running();
}

/// A large value and a deep pipeline cross the TLS listener intact (many
/// TLS records each way, the socket filling up).
#[test]
fn big_values_and_pipelines_over_tls() {
    let files = TlsFiles::new();
    let redis = RedisServer::start();
    let tls_port = free_port();
    let (proxy, _dir) = proxy_with(&redis.addr(), &server_tls_section(&files, tls_port, "none"));
    let mut c = TlsConn::connect(tls_port, files.client_config(false)).expect("TLS connect");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let set = encode(&[b"SET", b"big", &big]);
    assert_eq!(
        Conn::Tls(Box::new(
            TlsConn::connect(tls_port, files.client_config(false)).unwrap()
        ))
        .request(&set)
        .unwrap(),
        b"+OK\r\n"
    );
    let got = c
        .try_send(&encode(&[b"GET", b"big"]))
        .and_then(|_| c.try_read_reply())
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.log()));
    let mut want = format!("${}\r\n", big.len()).into_bytes();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"\r\n");
    assert!(
        got == want,
        "GET big over TLS differs ({} bytes)",
        got.len()
    );
    // 2000 pipelined INCRs, written before any reply is read.
    let mut pipe = Vec::new();
    for _ in 0..2000 {
        pipe.extend_from_slice(&encode(&[b"INCR", b"n"]));
    }
    c.try_send(&pipe).unwrap();
    for i in 1..=2000 {
        assert_eq!(
            c.try_read_reply().unwrap(),
            format!(":{i}\r\n").into_bytes()
        );
    }
}

fn redis_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .expect("run redis-cli")
}

/// Acceptance 1: `redis-cli --tls --cacert ca.pem` works unchanged against
/// the TLS listener; with `client_auth = "required"` it needs `--cert`/`--key`,
/// and a client without a certificate is refused.
#[test]
fn redis_cli_and_required_client_certificates() {
    let files = TlsFiles::new();
    let redis = RedisServer::start();
    let tls_port = free_port();
    let (mut proxy, _dir) = proxy_with(
        &redis.addr(),
        &server_tls_section(&files, tls_port, "required"),
    );
    let port = tls_port.to_string();
    let ca = files.p("ca.pem");
    let (cert, key) = (files.p("client.pem"), files.p("client.key"));
    let with_cert = [
        "--tls", "--cacert", &ca, "--cert", &cert, "--key", &key, "-p", &port,
    ];
    let out = redis_cli(&[&with_cert[..], &["SET", "k", "hello tls"]].concat());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n", "{out:?}");
    let out = redis_cli(&[&with_cert[..], &["GET", "k"]].concat());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello tls\n",
        "{out:?}"
    );
    // The same key is there straight in Redis: it really went through.
    assert_eq!(redis.conn().cmd_str(&["GET", "k"]), b"$9\r\nhello tls\r\n");

    // No certificate: refused (no reply to the command).
    let out = redis_cli(&["--tls", "--cacert", &ca, "-p", &port, "GET", "k"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("hello tls"),
        "a client without a certificate got an answer: {out:?}"
    );
    let refused = TlsConn::connect(tls_port, files.client_config(false)).and_then(|mut c| {
        c.try_send(b"*1\r\n$4\r\nPING\r\n")?;
        c.try_read_reply()
    });
    assert!(refused.is_err(), "no certificate, yet {refused:?}");
    proxy.assert_running();
}

fn upstream_tls_section(files: &TlsFiles, ca: &str, cert: &str) -> String {
    format!(
        "[upstream]\nconnect_timeout_ms = 500\n[upstream.tls]\nenabled = true\nca_file = \"{}\"\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\n",
        files.p(ca),
        files.p(&format!("{cert}.pem")),
        files.p(&format!("{cert}.key")),
    )
}

/// Acceptance 2: respite in front of a TLS-only Redis that requires client
/// certificates (`--port 0 --tls-port P --tls-auth-clients yes`), with mutual
/// TLS: the corpus gives the bytes Redis gives directly over TLS.
#[test]
fn corpus_over_mutual_tls_upstream() {
    let files = Arc::new(TlsFiles::new());
    let corpus = build_corpus();
    let redis = RedisServer::start_tls(files.clone(), &[]);
    let (mut proxy, _dir) = proxy_with(
        &redis.addr(),
        &upstream_tls_section(&files, "ca.pem", "client"),
    );
    for resp3 in [false, true] {
        reset(Conn::Tls(Box::new(redis.tls_conn())));
        let direct = run_corpus(Conn::Tls(Box::new(redis.tls_conn())), resp3, &corpus).unwrap();
        reset(Conn::Tls(Box::new(redis.tls_conn())));
        let through = run_corpus(Conn::Plain(proxy.conn()), resp3, &corpus)
            .unwrap_or_else(|e| panic!("{e}\n--- respite log ---\n{}", proxy.log()));
        assert_same(&corpus, &direct, &through, "respite, TLS upstream");
    }
    // Pinned connections (MULTI, blocking commands) use TLS too.
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "m", "1"]), b"+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_eq!(c.cmd_str(&["BLPOP", "nolist", "0.05"]), b"*-1\r\n");
    proxy.assert_running();
}

/// Sends GET through the proxy until the reply is an error naming the node
/// and containing `cause`; each reply must come within the connect timeout
/// (plus scheduling slack).
fn assert_upstream_fails(proxy: &mut Proxy, redis: &RedisServer, cause: &str) {
    proxy.allow_log("upstream connection failed");
    let mut c = proxy.conn();
    let deadline = Instant::now() + Duration::from_secs(10);
    let want_node = format!("upstream {} unavailable", redis.addr());
    loop {
        let t = Instant::now();
        let r = c.cmd_str(&["GET", "k"]);
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(500 + 700),
            "the failure took {took:?}, connect_timeout_ms is 500"
        );
        let text = String::from_utf8_lossy(&r).into_owned();
        if text.starts_with("-ERR ") && text.contains(&want_node) && text.contains(cause) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no error naming {want_node} and {cause:?}; last reply {text:?}\n--- log ---\n{}",
            proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Acceptance 2: a CA that did not sign Redis's certificate fails the
/// connection with an error that names the node and the TLS cause.
#[test]
fn wrong_ca_fails_naming_node_and_cause() {
    let files = Arc::new(TlsFiles::new());
    let redis = RedisServer::start_tls(files.clone(), &[]);
    let (mut proxy, _dir) = proxy_with(
        &redis.addr(),
        &upstream_tls_section(&files, "other-ca.pem", "client"),
    );
    assert_upstream_fails(
        &mut proxy,
        &redis,
        "TLS handshake failed: invalid peer certificate: UnknownIssuer",
    );
    assert!(proxy.log().contains("UnknownIssuer"), "{}", proxy.log());
}

/// Acceptance 2: Redis presenting an expired certificate is refused, the
/// error naming the node and "expired".
#[test]
fn expired_server_certificate_fails_naming_node_and_cause() {
    let files = Arc::new(TlsFiles::new());
    let expired = [
        "--tls-cert-file",
        &files.p("expired.pem"),
        "--tls-key-file",
        &files.p("expired.key"),
    ]
    .map(String::from);
    let args: Vec<&str> = expired.iter().map(String::as_str).collect();
    let redis = RedisServer::start_tls(files.clone(), &args);
    let (mut proxy, _dir) = proxy_with(
        &redis.addr(),
        &upstream_tls_section(&files, "ca.pem", "client"),
    );
    assert_upstream_fails(
        &mut proxy,
        &redis,
        "TLS handshake failed: invalid peer certificate: certificate expired",
    );
}

/// Acceptance 2: respite's own client certificate expired: Redis refuses it
/// and the error names the node and the alert Redis sent.
#[test]
fn expired_client_certificate_fails_naming_node_and_cause() {
    let files = Arc::new(TlsFiles::new());
    let redis = RedisServer::start_tls(files.clone(), &[]);
    let (mut proxy, _dir) = proxy_with(
        &redis.addr(),
        &upstream_tls_section(&files, "ca.pem", "expired"),
    );
    assert_upstream_fails(&mut proxy, &redis, "CertificateExpired");
}

/// Without a client certificate a Redis with `--tls-auth-clients yes`
/// refuses respite; with `insecure_skip_verify` the wrong CA is accepted
/// (and a loud warning is logged at start).
#[test]
fn insecure_skip_verify_warns_and_connects() {
    let files = Arc::new(TlsFiles::new());
    let redis = RedisServer::start_tls(files.clone(), &[]);
    let config = format!(
        "[upstream.tls]\nenabled = true\nca_file = \"{}\"\ninsecure_skip_verify = true\n\
         cert_file = \"{}\"\nkey_file = \"{}\"\n",
        files.p("other-ca.pem"),
        files.p("client.pem"),
        files.p("client.key"),
    );
    let (mut proxy, _dir) = proxy_with(&redis.addr(), &config);
    proxy.allow_log("INSECURE: upstream.tls.insecure_skip_verify");
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "{}", proxy.log());
    assert_eq!(c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    assert!(
        proxy.log().contains("INSECURE") && proxy.log().contains("WARN"),
        "{}",
        proxy.log()
    );
    proxy.assert_running();
}

/// A configuration naming a certificate file that does not exist is refused
/// at start with the file named.
#[test]
fn missing_certificate_file_is_a_config_error() {
    let files = TlsFiles::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let bad = server_tls_section(&files, free_port(), "none")
        .replace(&files.p("server.pem"), "/nonexistent/server.pem");
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_respite"))
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.tls") && err.contains("/nonexistent/server.pem"),
        "{err}"
    );
}

/// `PROXY NODES`'s `primary:` line.
fn proxy_primary(p: &Proxy) -> String {
    let reply = p.conn().cmd_str(&["PROXY", "NODES"]);
    String::from_utf8_lossy(&reply)
        .lines()
        .find_map(|l| l.strip_prefix("primary:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Acceptance 3 (sentinel): the proxy knows only the sentinels' TLS
/// addresses; the sentinels know the servers by their TLS ports (mutual TLS,
/// `tls-replication yes`). Writes go to the primary over TLS, and after
/// `SENTINEL FAILOVER` to the new primary, again over TLS.
#[test]
fn sentinel_failover_over_tls() {
    let files = Arc::new(TlsFiles::new());
    let set = common::sentinel::SentinelSet::start_tls(&files);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tls.toml");
    std::fs::write(&path, upstream_tls_section(&files, "ca.pem", "client")).unwrap();
    let mut args = set.proxy_args_tls();
    for a in ["--workers", "1", "--admin", "off", "--log-level", "info"] {
        args.push(a.to_string());
    }
    args.extend(["--config".to_string(), path.display().to_string()]);
    let mut proxy = Proxy::start_args(args);
    // The old primary is demoted under the proxy's connections.
    proxy.allow_log("upstream connection failed");
    proxy.allow_log("sentinel check");
    let first = format!("127.0.0.1:{}", set.tls_ports[0]);
    wait_for("writes through the proxy", Duration::from_secs(15), || {
        (proxy.conn().cmd_str(&["SET", "k", "before"]) == b"+OK\r\n").then_some(())
    });
    assert_eq!(proxy_primary(&proxy), first, "{}", proxy.log());
    assert_eq!(
        set.servers[0].conn().cmd_str(&["GET", "k"]),
        b"$6\r\nbefore\r\n"
    );
    let r =
        set.sentinels[0]
            .conn()
            .cmd_str(&["SENTINEL", "FAILOVER", common::sentinel::MASTER_NAME]);
    assert_eq!(r, b"+OK\r\n");
    let new = wait_for(
        "the proxy to follow the failover",
        Duration::from_secs(30),
        || {
            let p = proxy_primary(&proxy);
            (p != first && !p.is_empty()).then_some(p)
        },
    );
    let i = set
        .tls_ports
        .iter()
        .position(|t| new == format!("127.0.0.1:{t}"))
        .unwrap_or_else(|| panic!("new primary {new} is not a TLS port\n{}", proxy.log()));
    wait_for(
        "a write on the new primary",
        Duration::from_secs(15),
        || (proxy.conn().cmd_str(&["SET", "k", "after"]) == b"+OK\r\n").then_some(()),
    );
    assert_eq!(
        set.servers[i].conn().cmd_str(&["GET", "k"]),
        b"$5\r\nafter\r\n"
    );
    assert_eq!(common::sentinel::role(set.servers[i].port()), "master");
}

/// Issue 21 acceptance 3 (cluster): three cluster nodes that speak TLS
/// (`tls-cluster yes`, `tls-replication yes`; TLS-only with `--port 0`
/// unless `with_plain_ports`), respite seeded with one TLS address. Keys of
/// every node are written and read through respite over TLS; then a slot
/// moves to another node and respite follows the `MOVED` to its TLS port.
fn cluster_over_tls(with_plain_ports: bool) {
    let files = Arc::new(TlsFiles::new());
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let mut extra: Vec<String> = [
            "--cluster-enabled",
            "yes",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
            "--cluster-node-timeout",
            "2000",
            "--cluster-port",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        extra.push(free_port().to_string());
        if with_plain_ports {
            extra.extend(["--port".to_string(), free_port().to_string()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        nodes.push(RedisServer::start_tls(files.clone(), &extra));
    }
    let (ca, cert, key) = (
        files.p("ca.pem"),
        files.p("client.pem"),
        files.p("client.key"),
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
    let mut args = vec![
        "--tls",
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--cluster",
        "create",
    ];
    args.extend(addrs.iter().map(String::as_str));
    args.push("--cluster-yes");
    let out = common::run_with_timeout("redis-cli", &args, b"", Duration::from_secs(60));
    assert!(out.status.success(), "redis-cli --cluster create: {out:?}");
    for n in &nodes {
        wait_for("cluster_state:ok", Duration::from_secs(20), || {
            let info = n.tls_conn().cmd_str(&["CLUSTER", "INFO"]);
            String::from_utf8_lossy(&info)
                .contains("cluster_state:ok")
                .then_some(())
        });
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tls.toml");
    std::fs::write(&path, upstream_tls_section(&files, "ca.pem", "client")).unwrap();
    let mut pargs = Proxy::default_args(&nodes[0].addr());
    pargs.extend(["--mode".to_string(), "cluster".to_string()]);
    pargs.extend(["--config".to_string(), path.display().to_string()]);
    let mut proxy = Proxy::start_args(pargs);
    let mut c = proxy.conn();
    wait_for("the slot map", Duration::from_secs(20), || {
        (c.cmd_str(&["SET", "tls:first", "1"]) == b"+OK\r\n").then_some(())
    });
    for i in 0..300 {
        let (k, v) = (format!("tls:k{i}"), format!("v{i}"));
        assert_eq!(c.cmd_str(&["SET", &k, &v]), b"+OK\r\n", "{k}");
    }
    for i in 0..300 {
        let (k, v) = (format!("tls:k{i}"), format!("v{i}"));
        let want = format!("${}\r\n{v}\r\n", v.len());
        assert_eq!(c.cmd_str(&["GET", &k]), want.as_bytes(), "{k}");
    }
    // Every node got its share, over TLS.
    let mut total = 0;
    for n in &nodes {
        let r = n.tls_conn().cmd_str(&["DBSIZE"]);
        let keys: i64 = String::from_utf8_lossy(&r[1..r.len() - 2]).parse().unwrap();
        assert!(keys > 0, "{} holds no key", n.addr());
        total += keys;
    }
    assert_eq!(total, 301);

    // Move the (empty) slot of a new key to another node behind respite's back.
    let key = "tls:moved";
    let owner = (0..3)
        .find(|&i| nodes[i].tls_conn().cmd_str(&["GET", key]) == b"$-1\r\n")
        .expect("an owner");
    let target = (owner + 1) % 3;
    let slot = nodes[0].tls_conn().cmd_str(&["CLUSTER", "KEYSLOT", key]);
    let slot = String::from_utf8_lossy(&slot[1..slot.len() - 2]).into_owned();
    let id = nodes[target].tls_conn().cmd_str(&["CLUSTER", "MYID"]);
    let id = String::from_utf8_lossy(&id)
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    for n in [target, owner, (owner + 2) % 3] {
        let r = nodes[n]
            .tls_conn()
            .cmd_str(&["CLUSTER", "SETSLOT", &slot, "NODE", &id]);
        assert_eq!(r, b"+OK\r\n", "SETSLOT on {}", nodes[n].addr());
    }
    assert_eq!(c.cmd_str(&["SET", key, "moved"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", key]), b"$5\r\nmoved\r\n");
    assert_eq!(
        nodes[target].tls_conn().cmd_str(&["GET", key]),
        b"$5\r\nmoved\r\n"
    );
    // respite only ever talked TLS to the nodes' TLS ports.
    let nodes_text = String::from_utf8_lossy(&c.cmd_str(&["PROXY", "NODES"])).into_owned();
    for line in nodes_text.lines().filter(|l| l.starts_with("worker")) {
        assert!(
            addrs.iter().any(|a| line.contains(&format!("node={a},"))),
            "a connection to a port that is not a TLS one: {line}\n{nodes_text}"
        );
    }
    proxy.assert_running();
}

#[test]
fn cluster_of_tls_only_nodes_follows_moved_over_tls() {
    cluster_over_tls(false);
}

/// Nodes with a plaintext port beside the TLS one: `CLUSTER SHARDS` lists
/// both, and respite (with `[upstream.tls]`) must pick `tls-port`.
#[test]
fn cluster_with_both_ports_is_reached_on_the_tls_ports() {
    cluster_over_tls(true);
}
