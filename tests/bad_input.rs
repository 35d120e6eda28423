//! Acceptance 5: hostile or broken clients. Oversized headers are refused
//! like Redis refuses them, malformed RESP gets one `-ERR Protocol error: ...`
//! and a close, random bytes and huge unread pipelines neither crash the
//! proxy nor grow its memory without bound, and other clients stay served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_reply, encode_str, escape, split_frames, Proxy, RawConn, RedisServer};

/// Growth of the proxy's RSS allowed after hostile headers and random input.
const RSS_BOUND_KB: u64 = 100 * 1024;
/// Growth allowed while one client pipelines without reading.
const RSS_BOUND_UNREAD_KB: u64 = 200 * 1024;

/// Malformed inputs and the exact error Redis 7 sends before closing.
const MALFORMED: &[(&str, &[u8], &[u8])] = &[
    (
        "bulk length over 512 MB",
        b"*1\r\n$600000000\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    (
        "second argument over 512 MB",
        b"*2\r\n$3\r\nSET\r\n$600000000\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    (
        "non-numeric multibulk length",
        b"*abc\r\n",
        b"-ERR Protocol error: invalid multibulk length\r\n",
    ),
    (
        "multibulk length over INT_MAX",
        b"*3000000000\r\n",
        b"-ERR Protocol error: invalid multibulk length\r\n",
    ),
    (
        "simple string inside a command",
        b"*1\r\n+foo\r\n",
        b"-ERR Protocol error: expected '$', got '+'\r\n",
    ),
    (
        "integer as second argument",
        b"*2\r\n$3\r\nGET\r\n:5\r\n",
        b"-ERR Protocol error: expected '$', got ':'\r\n",
    ),
    (
        "non-numeric bulk length",
        b"*1\r\n$abc\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    (
        "negative bulk length",
        b"*1\r\n$-3\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    (
        "inline command with unbalanced quotes",
        b"SET a \"b\r\n",
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
];

/// Sends `input` and returns the one reply, asserting the server closes
/// right after it.
fn reply_then_close(port: u16, input: &[u8], what: &str) -> Vec<u8> {
    let mut c = RawConn::connect(port);
    c.set_read_timeout(Duration::from_secs(5));
    c.send(input);
    let r = c
        .try_read_reply()
        .unwrap_or_else(|e| panic!("{what}: no reply on port {port}: {e}"));
    c.expect_eof();
    r
}

fn assert_alive(proxy: &mut Proxy) {
    proxy.assert_running();
    let t = Instant::now();
    let mut c = proxy.conn();
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "PING took {:?}",
        t.elapsed()
    );
}

/// Redis itself answers each malformed input with the recorded error and
/// closes: the table above is Redis's behaviour, not a guess.
#[test]
fn malformed_inputs_rejected_by_redis_itself() {
    let redis = RedisServer::start();
    for (what, input, want) in MALFORMED {
        let got = reply_then_close(redis.port(), input, what);
        assert!(
            &got[..] == *want,
            "{what}: Redis answered {} (table says {})",
            escape(&got),
            escape(want)
        );
    }
}

#[test]
fn malformed_resp_gets_same_protocol_error_as_redis_then_close() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    for (what, input, _) in MALFORMED {
        let want = reply_then_close(redis.port(), input, what);
        assert!(want.starts_with(b"-ERR Protocol error: "));
        let got = reply_then_close(proxy.port(), input, what);
        assert!(
            got == want,
            "{what} ({}):\n  respite: {}\n  redis:   {}",
            escape(input),
            escape(&got),
            escape(&want)
        );
        assert_alive(&mut proxy);
    }
}

/// Requests before the bad frame in the same write still get their replies,
/// in order, before the error.
#[test]
fn valid_requests_before_malformed_one_are_answered_first() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let mut input = encode_str(&["SET", "before", "1"]);
    input.extend_from_slice(&encode_str(&["ECHO", "still-here"]));
    input.extend_from_slice(b"*1\r\n$600000000\r\n");
    for port in [redis.port(), proxy.port()] {
        let mut c = RawConn::connect(port);
        c.send(&input);
        assert_reply(&c.read_reply(), b"+OK\r\n");
        assert_reply(&c.read_reply(), b"$10\r\nstill-here\r\n");
        assert_reply(
            &c.read_reply(),
            b"-ERR Protocol error: invalid bulk length\r\n",
        );
        c.expect_eof();
    }
    assert_alive(&mut proxy);
}

/// Whatever a connection received must be well-formed RESP, and if anything
/// arrived in reply to garbage it is an error.
fn check_received(what: &str, bytes: &[u8]) {
    let (frames, tail) =
        split_frames(bytes).unwrap_or_else(|e| panic!("{what}: proxy sent non-RESP: {e}"));
    assert_eq!(
        tail,
        0,
        "{what}: proxy sent an incomplete frame: {}",
        escape(bytes)
    );
    for f in frames {
        assert!(
            f.starts_with(b"-"),
            "{what}: expected only error replies, got {}",
            escape(&f)
        );
    }
}

#[test]
fn huge_headers_then_silence_keep_proxy_up_and_small() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let baseline = proxy.rss_kb();
    let mut conns = Vec::new();
    // Claims to be followed by 10^9 arguments (Redis itself would wait).
    for _ in 0..5 {
        let mut c = proxy.conn();
        c.send(b"*1000000000\r\n$3\r\nGET\r\n$1\r\na\r\n$1\r\nb\r\n");
        conns.push(("array of 10^9 elements", c));
    }
    // Claims a 400 MB argument (under Redis's 512 MB limit), sends 3 bytes.
    for _ in 0..5 {
        let mut c = proxy.conn();
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$400000000\r\nabc");
        conns.push(("400 MB bulk", c));
    }
    thread::sleep(Duration::from_millis(500));
    assert_alive(&mut proxy);
    let grown = proxy.rss_kb().saturating_sub(baseline);
    assert!(
        grown < RSS_BOUND_KB,
        "RSS grew by {grown} kB after oversized headers (baseline {baseline} kB)"
    );
    for (what, c) in conns.iter_mut() {
        let (bytes, _closed) = c.drain(Duration::from_millis(200));
        check_received(what, &bytes);
    }
    drop(conns);
    assert_alive(&mut proxy);
}

/// xorshift64*: a tiny fixed-seed generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Random bytes biased towards RESP's own alphabet, so parsing gets deep.
    fn resp_ish(&mut self, n: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"*$+-:_,#!=%~>|(\r\n0123456789-? ";
        (0..n)
            .map(|_| {
                let r = self.next();
                if r % 4 == 0 {
                    r as u8
                } else {
                    ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                }
            })
            .collect()
    }
}

#[test]
fn random_bytes_from_fixed_seed_do_not_hurt_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let baseline = proxy.rss_kb();
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    for round in 0..24 {
        let payload = match round % 4 {
            0 => rng.bytes(32 * 1024),
            1 => rng.resp_ish(32 * 1024),
            2 => {
                let mut p = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n".to_vec();
                p.extend(rng.resp_ish(4096));
                p
            }
            _ => {
                let mut p = format!("*{}\r\n", rng.next() % 100_000).into_bytes();
                p.extend(rng.resp_ish(8192));
                p
            }
        };
        let what = format!("random round {round}");
        let mut c = proxy.conn();
        // The proxy may close early; a failed write is fine.
        let _ = c.try_send(&payload);
        let (bytes, _closed) = c.drain(Duration::from_millis(300));
        // Replies to garbage: valid RESP only (errors, or replies to the
        // commands that random inline lines happen to form).
        split_frames(&bytes)
            .map(|(_, tail)| assert_eq!(tail, 0, "{what}: incomplete frame {}", escape(&bytes)))
            .unwrap_or_else(|e| panic!("{what}: proxy sent non-RESP: {e}: {}", escape(&bytes)));
        proxy.assert_running();
    }
    assert_alive(&mut proxy);
    let grown = proxy.rss_kb().saturating_sub(baseline);
    assert!(
        grown < RSS_BOUND_KB,
        "RSS grew by {grown} kB after random input (baseline {baseline} kB)"
    );
    // Redis behind it is untouched by the garbage the proxy refused.
    let mut d = redis.conn();
    assert_reply(&d.cmd_str(&["PING"]), b"+PONG\r\n");
}

#[test]
fn unread_pipeline_of_500k_gets_is_bounded_and_others_stay_fast() {
    const GETS: usize = 500_000;
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    // 600-byte value: 500 000 replies would be 300 MB if buffered, yet the
    // value stays below the compression threshold.
    let value = "v".repeat(600);
    assert_reply(&redis.conn().cmd_str(&["SET", "hog", &value]), b"+OK\r\n");
    let baseline = proxy.rss_kb();
    let redis_baseline = redis_used_memory_kb(&mut redis.conn());
    let redis_max = AtomicU64::new(redis_baseline);

    let done = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let max_rss = AtomicU64::new(baseline);
    let port = proxy.port();
    let pid = proxy.pid();
    let (pings, writer_blocked) = thread::scope(|s| {
        let hog = s.spawn(|| {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let one = encode_str(&["GET", "hog"]);
            let chunk: Vec<u8> = one.repeat(1000);
            let mut blocked = false;
            for _ in 0..GETS / 1000 {
                if stream.write_all(&chunk).is_err() {
                    // Blocked for 2 s (or refused): the proxy pushed back.
                    blocked = true;
                    break;
                }
                written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            // Keep the connection open, unread, while replies would pile up.
            thread::sleep(Duration::from_secs(3));
            done.store(true, Ordering::Relaxed);
            (stream, blocked)
        });
        s.spawn(|| {
            let mut direct = redis.conn();
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                if n % 4 == 0 {
                    redis_max.fetch_max(redis_used_memory_kb(&mut direct), Ordering::Relaxed);
                }
                n += 1;
                if let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kb) = st
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    {
                        max_rss.fetch_max(kb, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let mut c = RawConn::connect(port);
        let mut pings = Vec::new();
        while !done.load(Ordering::Relaxed) {
            let t = Instant::now();
            assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
            pings.push(t.elapsed());
            thread::sleep(Duration::from_millis(50));
        }
        let (stream, blocked) = hog.join().unwrap();
        drop(stream);
        (pings, blocked)
    });

    proxy.assert_running();
    let grown = max_rss.load(Ordering::Relaxed).saturating_sub(baseline);
    let mut sorted = pings.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let worst = *sorted.last().unwrap();
    eprintln!(
        "unread pipeline: wrote {} bytes, blocked={writer_blocked}, RSS +{grown} kB, \
         Redis used_memory +{} kB, \
         PING median {median:?} worst {worst:?} over {} pings",
        written.load(Ordering::Relaxed),
        redis_max
            .load(Ordering::Relaxed)
            .saturating_sub(redis_baseline),
        pings.len()
    );
    assert!(
        grown < RSS_BOUND_UNREAD_KB,
        "RSS grew by {grown} kB while a client did not read its replies"
    );
    // Pushing the backlog into Redis instead (its client output buffers are
    // unlimited by default) is no better.
    let redis_grown = redis_max
        .load(Ordering::Relaxed)
        .saturating_sub(redis_baseline);
    assert!(
        redis_grown < RSS_BOUND_UNREAD_KB,
        "Redis used_memory grew by {redis_grown} kB while a proxy client did not read"
    );
    assert!(pings.len() >= 10, "only {} PINGs measured", pings.len());
    assert!(
        median < Duration::from_millis(100),
        "PING median {median:?}"
    );
    assert!(worst < Duration::from_secs(1), "PING worst {worst:?}");
    assert_alive(&mut proxy);
}

/// Redis's `used_memory` in kB, from INFO.
fn redis_used_memory_kb(c: &mut RawConn) -> u64 {
    let info = c.cmd_str(&["INFO", "memory"]);
    let text = String::from_utf8_lossy(&info);
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|b| b / 1024)
        .unwrap_or_else(|| panic!("no used_memory in INFO: {}", escape(&info)))
}
