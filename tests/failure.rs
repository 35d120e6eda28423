//! Acceptance 4: upstream failure. When Redis dies, every waiting client gets
//! an error reply quickly and keeps its connection; when Redis comes back,
//! traffic resumes on the same client connections. A proxy started while
//! Redis is down answers with errors and starts working once Redis is up.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_reply, encode_str, escape, free_port, is_timeout, Proxy, RawConn, RedisServer,
};

/// The longest a client may wait for any reply while Redis is down.
const ERROR_WITHIN: Duration = Duration::from_secs(2);
/// How long after Redis is back a client connection must work again.
const RECOVER_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct ClientReport {
    ok_before_kill: usize,
    /// When the first error reply arrived.
    first_error: Option<Instant>,
    errors: usize,
    /// The slowest reply while Redis was down or restarting.
    worst_wait_in_outage: Duration,
    /// When a command succeeded again after an error.
    recovered: Option<Instant>,
    failure: Option<String>,
    last_error_text: String,
}

#[test]
fn redis_killed_clients_get_errors_then_recover_on_same_connection() {
    const CLIENTS: usize = 10;
    let mut redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    proxy.allow_log("upstream connection failed");
    let port = proxy.port();
    let killed_at: Mutex<Option<Instant>> = Mutex::new(None);
    let restarted_at: Mutex<Option<Instant>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    // Clients that have had 5 successes, and clients that have had an error.
    let (warmed_up, errored) = (AtomicUsize::new(0), AtomicUsize::new(0));

    let reports: Vec<ClientReport> = thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let (killed_at, restarted_at, stop) = (&killed_at, &restarted_at, &stop);
                let (warmed_up, errored) = (&warmed_up, &errored);
                s.spawn(move || {
                    let mut rep = ClientReport::default();
                    let mut c = RawConn::connect(port);
                    c.set_read_timeout(Duration::from_secs(5));
                    let key = format!("fail:c{id}");
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        let sent = Instant::now();
                        let req = if seq % 2 == 0 {
                            encode_str(&["INCR", &key])
                        } else {
                            encode_str(&["ECHO", &format!("c{id}:{seq}")])
                        };
                        if let Err(e) = c.try_send(&req) {
                            rep.failure = Some(format!("client {id}: write failed: {e}"));
                            break;
                        }
                        let r = match c.try_read_reply() {
                            Ok(r) => r,
                            Err(e) if is_timeout(&e) => {
                                rep.failure = Some(format!(
                                    "client {id}: no reply within 5 s (request #{seq})"
                                ));
                                break;
                            }
                            Err(e) => {
                                rep.failure = Some(format!(
                                    "client {id}: connection lost on request #{seq}: {e}"
                                ));
                                break;
                            }
                        };
                        let waited = sent.elapsed();
                        let killed = *killed_at.lock().unwrap();
                        let is_err = r.first() == Some(&b'-');
                        if killed.is_some() && rep.recovered.is_none() {
                            rep.worst_wait_in_outage = rep.worst_wait_in_outage.max(waited);
                        }
                        if is_err {
                            rep.errors += 1;
                            if rep.first_error.is_none() {
                                rep.first_error = Some(Instant::now());
                                errored.fetch_add(1, Ordering::Relaxed);
                            }
                            rep.last_error_text = escape(&r);
                            thread::sleep(Duration::from_millis(20));
                            continue;
                        }
                        // A success must be the right answer for this client.
                        if seq % 2 == 1 {
                            let v = format!("c{id}:{seq}");
                            let want = format!("${}\r\n{v}\r\n", v.len());
                            if r != want.as_bytes() {
                                rep.failure =
                                    Some(format!("client {id}: ECHO {v} answered {}", escape(&r)));
                                break;
                            }
                        } else if r.first() != Some(&b':') {
                            rep.failure =
                                Some(format!("client {id}: INCR answered {}", escape(&r)));
                            break;
                        }
                        if killed.is_none() {
                            rep.ok_before_kill += 1;
                            if rep.ok_before_kill == 5 {
                                warmed_up.fetch_add(1, Ordering::Relaxed);
                            }
                        } else if rep.first_error.is_some()
                            && restarted_at.lock().unwrap().is_some()
                            // ECHO is answered by the proxy itself: only a
                            // command that reached Redis shows recovery.
                            && seq % 2 == 0
                        {
                            rep.recovered = Some(Instant::now());
                            break;
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    // Still the same connection: a write and a read-back work.
                    if rep.failure.is_none() && rep.recovered.is_some() {
                        let k = format!("after:c{id}");
                        let r1 = c.cmd_str(&["SET", &k, "back"]);
                        let r2 = c.cmd_str(&["GET", &k]);
                        if r1 != b"+OK\r\n" || r2 != b"$4\r\nback\r\n" {
                            rep.failure = Some(format!(
                                "client {id}: after recovery SET/GET gave {} / {}",
                                escape(&r1),
                                escape(&r2)
                            ));
                        }
                    }
                    rep
                })
            })
            .collect();

        common::wait_until(
            "every client to succeed 5 times",
            Duration::from_secs(10),
            || warmed_up.load(Ordering::Relaxed) == CLIENTS,
        );
        redis.kill();
        *killed_at.lock().unwrap() = Some(Instant::now());
        // Down until every client has seen the outage (each must within
        // ERROR_WITHIN; checked below from the reports).
        common::wait_until("every client to get an error", ERROR_WITHIN * 3, || {
            errored.load(Ordering::Relaxed) == CLIENTS || handles.iter().any(|h| h.is_finished())
        });
        redis.restart();
        let restart = Instant::now();
        *restarted_at.lock().unwrap() = Some(restart);
        // Give every client its recovery window, then stop stragglers.
        while Instant::now() < restart + RECOVER_WITHIN && !handles.iter().all(|h| h.is_finished())
        {
            thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let killed = killed_at.lock().unwrap().unwrap();
    let restart = restarted_at.lock().unwrap().unwrap();
    let mut problems = Vec::new();
    for (id, r) in reports.iter().enumerate() {
        if let Some(f) = &r.failure {
            problems.push(f.clone());
            continue;
        }
        if r.ok_before_kill == 0 {
            problems.push(format!(
                "client {id}: no successful request before the kill"
            ));
        }
        match r.first_error {
            None => problems.push(format!("client {id}: never got an error reply")),
            Some(t) if t.saturating_duration_since(killed) > ERROR_WITHIN => problems.push(
                format!("client {id}: first error {:?} after the kill", t - killed),
            ),
            _ => {}
        }
        if r.worst_wait_in_outage > ERROR_WITHIN {
            problems.push(format!(
                "client {id}: a request waited {:?} for its reply during the outage",
                r.worst_wait_in_outage
            ));
        }
        match r.recovered {
            None => problems.push(format!(
                "client {id}: no success within {RECOVER_WITHIN:?} of the restart (last error {})",
                r.last_error_text
            )),
            Some(t) if t < restart => {
                problems.push(format!("client {id}: success before Redis restarted?"))
            }
            _ => {}
        }
    }
    proxy.assert_running();
    assert!(
        problems.is_empty(),
        "{}\n--- respite log ---\n{}",
        problems.join("\n"),
        proxy.log()
    );
}

#[test]
fn client_blocked_in_blpop_gets_error_when_redis_dies() {
    let mut redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    proxy.allow_log("upstream connection failed");
    let mut blocked = proxy.conn();
    blocked.send(&encode_str(&["BLPOP", "never", "30"]));
    blocked.expect_silence(Duration::from_millis(300));
    let mut busy = proxy.conn();
    assert_reply(&busy.cmd_str(&["PING"]), b"+PONG\r\n");

    redis.kill();
    let killed = Instant::now();
    let r = blocked
        .read_reply_within(ERROR_WITHIN + Duration::from_millis(500))
        .expect("blocked client got no reply after Redis died");
    assert!(
        r.starts_with(b"-"),
        "blocked client got {} instead of an error",
        escape(&r)
    );
    assert!(killed.elapsed() <= ERROR_WITHIN + Duration::from_millis(500));

    redis.restart();
    // The once-blocked connection is usable again.
    let deadline = Instant::now() + RECOVER_WITHIN;
    loop {
        let r = blocked.cmd_str(&["LPUSH", "never", "x"]);
        if r == b":1\r\n" {
            break;
        }
        assert!(r.starts_with(b"-"), "unexpected reply {}", escape(&r));
        assert!(
            Instant::now() < deadline,
            "no recovery: last reply {}",
            escape(&r)
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_reply(
        &blocked.cmd_str(&["BLPOP", "never", "1"]),
        b"*2\r\n$5\r\nnever\r\n$1\r\nx\r\n",
    );
    proxy.assert_running();
}

#[test]
fn proxy_started_while_redis_down_errors_then_works() {
    let redis_port = free_port();
    let mut proxy = Proxy::start_args(Proxy::default_args(&format!("127.0.0.1:{redis_port}")));
    proxy.allow_log("upstream connection failed");
    let mut c = proxy.conn();
    c.set_read_timeout(ERROR_WITHIN + Duration::from_secs(1));

    for cmd in [&["SET", "k", "v"][..], &["GET", "k"]] {
        let t = Instant::now();
        let r = c
            .try_send(&encode_str(cmd))
            .and_then(|_| c.try_read_reply())
            .unwrap_or_else(|e| panic!("{cmd:?} with Redis down: no reply ({e})"));
        assert!(
            r.starts_with(b"-"),
            "{cmd:?} with Redis down answered {}",
            escape(&r)
        );
        assert!(t.elapsed() <= ERROR_WITHIN, "error took {:?}", t.elapsed());
    }

    let _redis = RedisServer::start_on_port(redis_port, &[]);
    let deadline = Instant::now() + RECOVER_WITHIN;
    loop {
        let r = c.cmd_str(&["SET", "k", "v"]);
        if r == b"+OK\r\n" {
            break;
        }
        assert!(r.starts_with(b"-"), "unexpected reply {}", escape(&r));
        assert!(
            Instant::now() < deadline,
            "still failing {RECOVER_WITHIN:?} after Redis started: {}",
            escape(&r)
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    let mut fresh = proxy.conn();
    assert_reply(&fresh.cmd_str(&["GET", "k"]), b"$1\r\nv\r\n");
    proxy.assert_running();
}

/// The harness itself: `kill` really stops Redis and `restart` brings it
/// back on the same port with the same arguments.
#[test]
fn harness_kill_and_restart_on_same_port() {
    let mut redis = RedisServer::start_with(&["--maxclients", "123"]);
    let port = redis.port();
    let mut c = redis.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n");
    redis.kill();
    assert!(redis.pid().is_none());
    match c
        .try_send(&encode_str(&["PING"]))
        .and_then(|_| c.try_read_reply())
    {
        Ok(r) => panic!("killed server answered {}", escape(&r)),
        Err(e) => assert!(
            !is_timeout(&e),
            "killed server: read timed out instead of failing"
        ),
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    redis.restart();
    assert_eq!(redis.port(), port);
    let mut c = redis.conn();
    assert_reply(&c.cmd_str(&["GET", "k"]), b"$-1\r\n");
    assert_reply(
        &c.cmd_str(&["CONFIG", "GET", "maxclients"]),
        b"*2\r\n$10\r\nmaxclients\r\n$3\r\n123\r\n",
    );
}

// ------------------------------------------- issue 15 item 8: refused handshake

/// `GET path` on the admin port: (status, body); status 0 while the port
/// is not bound yet.
fn admin_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_string())
}

/// A proxy with an admin port and this `[upstream]` section (fast
/// reconnects); returns it with its admin port.
fn proxy_admin(redis: &RedisServer, upstream: &str) -> (Proxy, u16, tempfile::TempDir) {
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!("[upstream]\nreconnect_backoff_max_ms = 100\n{upstream}\n"),
    )
    .unwrap();
    let mut args = Proxy::default_args(&redis.addr());
    let i = args.iter().position(|a| a == "--admin").unwrap();
    args[i + 1] = format!("127.0.0.1:{admin}");
    args.extend(["--config".to_string(), config.display().to_string()]);
    let mut proxy = Proxy::start_args(args);
    proxy.allow_log("upstream refused respite's handshake");
    proxy.allow_log("upstream connection failed");
    common::wait_until("/ready", Duration::from_secs(10), || {
        admin_get(admin, "/ready").0 == 200
    });
    (proxy, admin, dir)
}

/// The `handshake_refused*` lines of `PROXY INFO upstreams`, and its count.
fn refusal_info(c: &mut RawConn) -> (i64, Vec<String>) {
    let reply = c.cmd_str(&["PROXY", "INFO", "upstreams"]);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let count = common::info_field(&reply, "upstream_handshake_refused")
        .unwrap_or_else(|| panic!("no upstream_handshake_refused in {text}"));
    let lines = text
        .lines()
        .filter(|l| l.starts_with("handshake_refused"))
        .map(str::to_string)
        .collect();
    (count, lines)
}

/// Send `GET key` until the reply is not the error of a connection Redis
/// closed (the first reconnect attempt decides); returns that reply.
fn get_after_reconnect(c: &mut RawConn, key: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd_str(&["GET", key]);
        let closed = r.starts_with(b"-ERR upstream") && r.windows(11).any(|w| w == b"unavailable");
        if !closed || Instant::now() > deadline {
            return r;
        }
    }
}

/// The node refuses respite's handshake and then accepts it again: the
/// first reply after the refusal names it, `/ready` is red and `PROXY INFO`
/// says why from that moment on (one reconnect attempt), and once the
/// credentials work again `/ready` turns green and the same client
/// connection works, without restarting respite. `change` breaks them
/// (directly on Redis, on `admin`), `restore` mends them.
fn refused_then_recovered(
    upstream: &str,
    setup: &[&[&str]],
    change: &[&str],
    after_change: Option<&[&str]>,
    restore: &[&[&str]],
    reply: &str,
) {
    let redis = RedisServer::start();
    let mut admin_conn = redis.conn();
    for cmd in setup {
        assert_eq!(admin_conn.cmd_str(cmd), b"+OK\r\n", "{cmd:?}");
    }
    let (proxy, admin, _dir) = proxy_admin(&redis, upstream);
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["SET", "hs:k", "v"]), b"+OK\r\n");
    assert_eq!(refusal_info(&mut c).0, 0);

    let r = admin_conn.cmd_str(change);
    assert!(
        r == b"+OK\r\n" || r == b":1\r\n",
        "{change:?}: {}",
        escape(&r)
    );
    if let Some(cmd) = after_change {
        // Respite's connections, opened before, still work: close them.
        let r = admin_conn.cmd_str(cmd);
        assert!(r.starts_with(b":"), "{}", escape(&r));
    }
    let want = format!(
        "-ERR upstream {} refused respite's handshake: {reply}\r\n",
        redis.addr()
    );
    let got = get_after_reconnect(&mut c, "hs:k");
    assert_reply(&got, want.as_bytes());
    // Already red: the attempt that refused the client also told /ready.
    assert_eq!(admin_get(admin, "/ready"), (503, "not ready\n".to_string()));
    let (count, lines) = refusal_info(&mut c);
    assert_eq!(count, 1, "{lines:?}");
    assert_eq!(
        lines,
        [format!(
            "handshake_refused0:addr={},reply={reply}",
            redis.addr()
        )]
    );
    let nodes = String::from_utf8_lossy(&c.cmd_str(&["PROXY", "NODES"])).into_owned();
    assert!(
        nodes.contains(&format!("handshake=refused: {reply}")),
        "{nodes}"
    );
    let (_, metrics) = admin_get(admin, "/metrics");
    assert!(
        metrics.contains(&format!(
            "respite_upstream_handshake_refused{{node=\"{}\"}} 1",
            redis.addr()
        )),
        "{metrics}"
    );
    // A command that needs a connection of its own gets the same error.
    let mut b = proxy.conn();
    assert_reply(&b.cmd_str(&["BLPOP", "hs:q", "1"]), want.as_bytes());

    for cmd in restore {
        assert_eq!(admin_conn.cmd_str(cmd), b"+OK\r\n", "{cmd:?}");
    }
    common::wait_until("/ready green again", Duration::from_secs(10), || {
        admin_get(admin, "/ready").0 == 200
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c.cmd_str(&["GET", "hs:k"]);
        if r == b"$1\r\nv\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GET after recovery: {}",
            escape(&r)
        );
    }
    assert_eq!(b.cmd_str(&["BLPOP", "hs:q", "0.01"]), b"*-1\r\n");
    assert_eq!(refusal_info(&mut c), (0, Vec::new()));
    let log = proxy.log();
    assert_eq!(
        log.matches("upstream refused respite's handshake").count(),
        1,
        "one warning per refusal, not one per attempt:\n{log}"
    );
}

/// Issue 15 item 8: `CONFIG SET requirepass` sent directly to Redis while
/// respite logs in without a password.
#[test]
fn requirepass_set_behind_respites_back_turns_ready_red_until_cleared() {
    refused_then_recovered(
        "",
        &[],
        &["CONFIG", "SET", "requirepass", "sekrit"],
        Some(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]),
        &[&["CONFIG", "SET", "requirepass", ""]],
        "NOAUTH Authentication required.",
    );
}

/// Issue 15 item 8: `ACL DELUSER` of the user respite logs in with (which
/// also closes its connections), then the user is created again.
#[test]
fn acl_deluser_of_respites_user_turns_ready_red_until_recreated() {
    let create: &[&str] = &[
        "ACL", "SETUSER", "respite", "on", ">pw", "~*", "&*", "+@all",
    ];
    refused_then_recovered(
        "username = \"respite\"\npassword = \"pw\"",
        &[create],
        &["ACL", "DELUSER", "respite"],
        None,
        &[create],
        "WRONGPASS invalid username-password pair or user is disabled.",
    );
}
