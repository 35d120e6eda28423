//! Memory a client makes the proxy hold, and when a quiet client is closed:
//! `limits.client_output_buffer_limit` and `limits.idle_timeout_secs` with
//! Redis's semantics, measured as the RSS of the respite process against a
//! real redis-server.

mod common;

use common::{encode_str, Proxy, RawConn, RedisServer};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const MB: u64 = 1024;
/// Redis's own line for a client closed by its output buffer limit.
const CLOSED_LINE: &str = "closed for overcoming of output buffer limits.";

fn proxy_with(redis: &RedisServer, config: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = Proxy::default_args(&redis.addr());
    args.extend(["--config".to_string(), path.display().to_string()]);
    let proxy = Proxy::start_args(args);
    // The file was read at start.
    drop(dir);
    proxy
}

fn rss_kb_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's RSS every 10 ms until dropped; `peak()` is the highest seen.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = rss_kb_of(pid) {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls the proxy's RSS until it is at most `limit_kb`, for up to `within`;
/// returns the last value and how long it took.
fn rss_settles(proxy: &Proxy, limit_kb: u64, within: Duration) -> (u64, Duration) {
    let start = Instant::now();
    loop {
        let rss = proxy.rss_kb();
        if rss <= limit_kb || start.elapsed() > within {
            return (rss, start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_log(proxy: &Proxy, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if proxy.log().contains(needle) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Ids of the clients connected to Redis (the proxy's upstream connections
/// among them).
fn client_ids(redis: &mut RawConn) -> Vec<u64> {
    let list = String::from_utf8_lossy(&redis.cmd_str(&["CLIENT", "LIST"])).into_owned();
    list.split_whitespace()
        .filter_map(|f| f.strip_prefix("id="))
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// A value that neither Redis nor the proxy can shrink.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// Acceptance 2 of issue 16: a subscriber that never reads while ~200 MB is
/// published is closed at the pubsub hard limit (default, Redis's 32 MB);
/// the proxy's memory never grows by more than 64 MB and comes back.
#[test]
fn a_subscriber_that_does_not_read_is_closed_at_the_pubsub_hard_limit() {
    // Redis must not drop the proxy's own subscription first.
    let redis = RedisServer::start_with(&["--client-output-buffer-limit", "pubsub 0 0 0"]);
    let mut proxy = proxy_with(&redis, "");
    proxy.allow_log(CLOSED_LINE);
    let mut sub = proxy.conn();
    sub.send(&encode_str(&["SUBSCRIBE", "ch"]));
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    );
    let mut publisher = redis.conn();
    let message = noise(1 << 20, 7);
    // Warm up: the path every message takes has been used once.
    let r = publisher.cmd(&[b"PUBLISH", b"ch", &message]);
    assert_eq!(r, b":1\r\n");
    let _ = sub
        .read_reply_within(Duration::from_secs(5))
        .expect("first message");
    let base = proxy.rss_kb();
    let sampler = RssPeak::start(proxy.pid());

    let started = Instant::now();
    let mut receivers_seen_zero_at = None;
    for i in 0..200 {
        let r = publisher.cmd(&[b"PUBLISH", b"ch", &message]);
        if r == b":0\r\n" && receivers_seen_zero_at.is_none() {
            receivers_seen_zero_at = Some(i);
        }
    }
    let published = started.elapsed();
    let closed_after = receivers_seen_zero_at.expect("the subscriber was never closed");
    assert!(
        wait_for_log(&proxy, CLOSED_LINE, Duration::from_secs(5)),
        "no output buffer limit line in the log"
    );
    let log = proxy.log();
    let line = log.lines().find(|l| l.contains(CLOSED_LINE)).unwrap();
    assert!(line.contains("\"pubsub\""), "{line}");
    let peak = sampler.peak();
    drop(sampler);
    // The client's connection is closed: what the kernel buffered, then EOF.
    let (_, closed) = sub.drain(Duration::from_secs(5));
    assert!(closed, "the subscriber's connection is still open");

    let (after, took) = rss_settles(&proxy, base + 16 * MB, Duration::from_secs(10));
    eprintln!(
        "pubsub: 200 x 1 MiB published in {:.1}s, subscriber cut after message {closed_after}; \
         RSS base {} MB, peak +{} MB, {} MB {:.1}s after the close",
        published.as_secs_f64(),
        base / MB,
        peak.saturating_sub(base) / MB,
        after / MB,
        took.as_secs_f64()
    );
    // Cut at 32 MB: well before all 200 MB went out.
    assert!(
        closed_after < 100,
        "closed only after {closed_after} MB were published"
    );
    assert!(
        peak < base + 64 * MB,
        "RSS grew by {} kB while the subscriber did not read",
        peak - base
    );
    assert!(
        after <= base + 16 * MB,
        "RSS {after} kB 10 s after the close, {base} kB before"
    );
    // Everyone else is still served.
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
}

/// Acceptance 3 of issue 16: 1 500 pipelined, unread GETs of a 1 MiB value
/// with a normal hard limit of 256 MB. The proxy's RSS stays below the limit
/// plus 64 MB, and after the client is closed it returns to within 32 MB of
/// where it started within 10 s, on the same upstream connection.
#[test]
fn unread_large_replies_are_bounded_by_the_normal_hard_limit_and_memory_returns() {
    let redis = RedisServer::start();
    let hard = 256u64 << 20;
    let mut proxy = proxy_with(
        &redis,
        &format!("[limits]\nclient_output_buffer_limit.normal = {{ hard_bytes = {hard} }}\n"),
    );
    proxy.allow_log(CLOSED_LINE);
    let mut direct = redis.conn();
    let value = noise(1 << 20, 11);
    assert_eq!(direct.cmd(&[b"SET", b"big", &value]), b"+OK\r\n");
    let mut reader = proxy.conn();
    let got = reader.cmd_str(&["GET", "big"]);
    assert_eq!(&got[got.len() - value.len() - 2..got.len() - 2], &value[..]);
    let connections = client_ids(&mut direct);
    let base = proxy.rss_kb();
    let sampler = RssPeak::start(proxy.pid());

    let mut greedy = proxy.conn();
    let mut pipeline = Vec::new();
    for _ in 0..1500 {
        pipeline.extend_from_slice(&encode_str(&["GET", "big"]));
    }
    greedy.send(&pipeline);
    assert!(
        wait_for_log(&proxy, CLOSED_LINE, Duration::from_secs(60)),
        "the client was never closed"
    );
    let closed_at = Instant::now();
    let (after, took) = rss_settles(&proxy, base + 32 * MB, Duration::from_secs(10));
    let peak = sampler.peak();
    drop(sampler);
    eprintln!(
        "normal: RSS base {} MB, peak {} MB (hard limit {} MB), {} MB {:.1}s after the close",
        base / MB,
        peak / MB,
        hard >> 20,
        after / MB,
        took.as_secs_f64()
    );
    let log = proxy.log();
    let line = log.lines().find(|l| l.contains(CLOSED_LINE)).unwrap();
    assert!(line.contains("normal"), "{line}");
    assert!(
        peak < (hard >> 10) + 64 * MB,
        "RSS peaked at {peak} kB with a hard limit of {hard} bytes"
    );
    assert!(
        after <= base + 32 * MB,
        "RSS {after} kB {:.1}s after the close, {base} kB before",
        closed_at.elapsed().as_secs_f64()
    );
    let (_, closed) = greedy.drain(Duration::from_secs(5));
    assert!(closed, "the greedy client is still connected");
    // Others are served, on the same upstream connection as before.
    let got = reader.cmd_str(&["GET", "big"]);
    assert_eq!(&got[got.len() - value.len() - 2..got.len() - 2], &value[..]);
    // Liveness probes may open a control connection; the upstream
    // connections that were there before must all still be there.
    let now = client_ids(&mut direct);
    assert!(
        connections.iter().all(|id| now.contains(id)),
        "an upstream connection was recycled: {connections:?} before, {now:?} after"
    );
}

/// Acceptance 5 of issue 16: `idle_timeout_secs = 2` closes a client that
/// sent nothing and has nothing coming, but not a subscriber (receiving or
/// not), a client slowly reading 300 replies, or a blocked client. A client
/// that stopped reading altogether is idle too, as in Redis (no byte reached
/// it for the whole timeout).
#[test]
fn idle_timeout_closes_only_clients_that_are_really_idle() {
    let redis = RedisServer::start();
    let proxy = proxy_with(&redis, "[limits]\nidle_timeout_secs = 2\n");
    let port = proxy.port();
    let mut direct = redis.conn();
    let value = noise(256 * 1024, 3);
    assert_eq!(direct.cmd(&[b"SET", b"v", &value]), b"+OK\r\n");
    let reply: Vec<u8> = {
        let mut r = format!("${}\r\n", value.len()).into_bytes();
        r.extend_from_slice(&value);
        r.extend_from_slice(b"\r\n");
        r
    };

    // A silent client with nothing pending: closed after ~2 s.
    let silent = thread::spawn(move || {
        let mut c = RawConn::connect(port);
        assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
        let t = Instant::now();
        let (rest, closed) = c.drain(Duration::from_secs(8));
        assert!(rest.is_empty() && closed, "silent client not closed in 8 s");
        t.elapsed()
    });

    // A subscriber that receives a message every 250 ms, one that receives
    // nothing: neither is closed.
    let subscribers = thread::spawn(move || {
        let mut busy = RawConn::connect(port);
        let mut quiet = RawConn::connect(port);
        busy.send(&encode_str(&["SUBSCRIBE", "news"]));
        quiet.send(&encode_str(&["SUBSCRIBE", "nothing"]));
        busy.read_reply();
        quiet.read_reply();
        (busy, quiet)
    });
    let (mut busy, mut quiet) = subscribers.join().unwrap();
    let publisher = {
        let mut p = redis.conn();
        thread::spawn(move || {
            for i in 0..20 {
                let m = format!("m{i}");
                assert_eq!(p.cmd_str(&["PUBLISH", "news", &m]), b":1\r\n");
                thread::sleep(Duration::from_millis(250));
            }
        })
    };

    // A client reading 300 pipelined 256 KiB replies, one every 20 ms.
    let slow = {
        let reply = reply.clone();
        thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let mut pipeline = Vec::new();
            for _ in 0..300 {
                pipeline.extend_from_slice(&encode_str(&["GET", "v"]));
            }
            c.send(&pipeline);
            let t = Instant::now();
            for i in 0..300 {
                let got = c.read_reply();
                assert!(got == reply, "reply {i} differs");
                thread::sleep(Duration::from_millis(20));
            }
            let took = t.elapsed();
            assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
            took
        })
    };

    // A client blocked for 4 s.
    let blocked = thread::spawn(move || {
        let mut c = RawConn::connect(port);
        assert_eq!(c.cmd_str(&["BLPOP", "nothing", "4"]), b"*-1\r\n");
        assert_eq!(c.cmd_str(&["PING"]), b"+PONG\r\n");
    });

    // A client that sends 300 GETs and never reads.
    let stuck = thread::spawn(move || {
        let mut c = RawConn::connect(port);
        let mut pipeline = Vec::new();
        for _ in 0..300 {
            pipeline.extend_from_slice(&encode_str(&["GET", "v"]));
        }
        c.send(&pipeline);
        thread::sleep(Duration::from_secs(5));
        let (got, closed) = c.drain(Duration::from_secs(5));
        (got.len(), closed)
    });

    let silent_after = silent.join().unwrap();
    assert!(
        silent_after >= Duration::from_millis(1900) && silent_after < Duration::from_secs(6),
        "silent client closed after {silent_after:?}"
    );
    publisher.join().unwrap();
    for i in 0..20 {
        let want = format!(
            "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n${}\r\nm{i}\r\n",
            1 + i.to_string().len()
        );
        assert_eq!(busy.read_reply(), want.as_bytes());
    }
    let pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    assert_eq!(busy.cmd_str(&["PING"]), pong, "receiving subscriber closed");
    assert_eq!(quiet.cmd_str(&["PING"]), pong, "quiet subscriber closed");
    let slow_took = slow.join().unwrap();
    assert!(
        slow_took > Duration::from_secs(4),
        "the slow reader read everything in {slow_took:?}: not slow enough to test anything"
    );
    blocked.join().unwrap();
    let (stuck_got, stuck_closed) = stuck.join().unwrap();
    assert!(
        stuck_closed && stuck_got < 300 * reply.len(),
        "a client that stopped reading was not closed ({stuck_got} bytes, closed {stuck_closed})"
    );
    eprintln!(
        "idle: silent client closed after {:.2}s; slow reader took {:.1}s; stuck reader got {} MB before the close",
        silent_after.as_secs_f64(),
        slow_took.as_secs_f64(),
        stuck_got >> 20
    );
}
