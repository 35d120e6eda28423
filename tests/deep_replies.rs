//! Replies of any depth Redis produces pass through byte for byte (issue 15,
//! items 5 and 6): a Lua script returning a self-referencing table makes
//! Redis send about 8 000 levels of `*1`; the shared upstream connection
//! that carries it keeps serving every client. A reply that truly cannot be
//! framed (only a broken server sends one) fails the requests in flight on
//! that connection with an error naming the cause, and the proxy reconnects.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{assert_reply, encode_str, escape, split_frames, Proxy, RawConn, RedisServer};

const SELF_REFERENCING: &str = "local a = {}; local b = {a}; a[1] = b; return a";

/// Clients of the same proxy (one worker: one shared upstream connection)
/// run SET/GET while `body` runs; every reply they get must be right.
fn with_bystanders(port: u16, clients: usize, body: impl FnOnce()) -> u64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|id| {
                let (stop, done) = (&stop, &done);
                s.spawn(move || {
                    let mut c = RawConn::connect(port);
                    let key = format!("deep:bystander:{id}");
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) || n < 5 {
                        n += 1;
                        let v = n.to_string();
                        assert_reply(&c.cmd_str(&["SET", &key, &v]), b"+OK\r\n");
                        let want = format!("${}\r\n{v}\r\n", v.len());
                        assert_reply(&c.cmd_str(&["GET", &key]), want.as_bytes());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        body();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().expect("a bystander got a wrong reply");
        }
    });
    done.load(Ordering::Relaxed)
}

#[test]
fn self_referencing_table_reply_is_byte_exact_and_harms_nobody() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let eval = encode_str(&["EVAL", SELF_REFERENCING, "0"]);

    let mut direct = redis.conn();
    direct.send(&eval);
    let want = direct.read_reply();
    // What makes this test mean something: Redis nests far deeper than the
    // 128 levels respite once allowed.
    let depth = want.chunks(4).take_while(|w| *w == b"*1\r\n").count();
    assert!(
        want.starts_with(&b"*1\r\n".repeat(1000)),
        "Redis sent {}",
        escape(&want)
    );

    let mut c = proxy.conn();
    let rounds = with_bystanders(proxy.port(), 8, || {
        for _ in 0..20 {
            c.send(&eval);
            let got = c.read_reply();
            assert!(
                got == want,
                "through respite: {} bytes, directly: {} bytes ({} levels): {}",
                got.len(),
                want.len(),
                depth,
                escape(&got)
            );
        }
        // Pipelined with ordinary commands on the same connection.
        let mut pipe = encode_str(&["SET", "deep:k", "v"]);
        pipe.extend_from_slice(&eval);
        pipe.extend_from_slice(&encode_str(&["GET", "deep:k"]));
        c.send(&pipe);
        assert_reply(&c.read_reply(), b"+OK\r\n");
        assert!(c.read_reply() == want, "pipelined deep reply differs");
        assert_reply(&c.read_reply(), b"$1\r\nv\r\n");
    });
    assert!(rounds > 0);
    // The same client connection, and the proxy, keep working.
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
    let log = proxy.log();
    assert!(
        !log.contains("upstream connection failed"),
        "the shared connection was dropped: {log}"
    );

    // RESP3 clients get the same bytes as RESP3 clients of Redis.
    direct.cmd_str(&["HELLO", "3"]);
    direct.send(&eval);
    let want3 = direct.read_reply();
    c.cmd_str(&["HELLO", "3"]);
    c.send(&eval);
    assert!(c.read_reply() == want3, "RESP3 deep reply differs");
}

#[test]
fn lua_lpush_of_7999_arguments() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let script = "local a = {} for i = 1, 7999 do a[i] = i end \
                  return redis.call('lpush', KEYS[1], unpack(a))";
    let mut direct = redis.conn();
    let want = direct.cmd_str(&["EVAL", script, "1", "deep:l:direct"]);
    assert_reply(&want, b":7999\r\n");
    let mut c = proxy.conn();
    assert_reply(&c.cmd_str(&["EVAL", script, "1", "deep:l"]), b":7999\r\n");
    // And again: nothing was left behind on the connection.
    assert_reply(&c.cmd_str(&["EVAL", script, "1", "deep:l"]), b":15998\r\n");
    assert_reply(&c.cmd_str(&["LLEN", "deep:l"]), b":15998\r\n");
}

/// A server that speaks just enough RESP for respite's handshake, then
/// answers `GET bad` with a byte that starts no RESP type. Redis never does:
/// this stands for a broken server or a corrupted stream.
fn broken_upstream() -> (u16, thread::JoinHandle<()>, std::sync::Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = thread::spawn(move || {
        let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((s, _)) = listener.accept() {
                s.set_nonblocking(true).unwrap();
                conns.push((s, Vec::new()));
            }
            let mut idle = true;
            conns.retain_mut(|(s, buf)| {
                let mut chunk = [0u8; 4096];
                match s.read(&mut chunk) {
                    Ok(0) => return false,
                    Ok(n) => {
                        idle = false;
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
                let Ok((frames, rest)) = split_frames(buf) else {
                    return false;
                };
                buf.drain(..buf.len() - rest);
                for f in frames {
                    let text = String::from_utf8_lossy(&f).to_ascii_uppercase();
                    let info = "# Server\r\nredis_version:7.0.15\r\n";
                    let info = format!("${}\r\n{info}\r\n", info.len());
                    let reply: &[u8] = if text.contains("INFO") {
                        info.as_bytes()
                    } else if text.contains("$3\r\nBAD\r\n") {
                        b"?bad\r\n"
                    } else if text.contains("GET") {
                        b"$2\r\nok\r\n"
                    } else {
                        b"+OK\r\n"
                    };
                    if s.write_all(reply).is_err() {
                        return false;
                    }
                }
                true
            });
            if idle {
                thread::sleep(Duration::from_millis(2));
            }
        }
    });
    (port, h, stop)
}

#[test]
fn unframable_reply_fails_in_flight_requests_naming_the_cause() {
    let (port, server, stop) = broken_upstream();
    let mut proxy = Proxy::start_args(Proxy::default_args(&format!("127.0.0.1:{port}")));
    proxy.allow_log("upstream connection failed");
    let mut a = proxy.conn();
    let mut b = proxy.conn();
    assert_reply(&a.cmd_str(&["GET", "good"]), b"$2\r\nok\r\n");
    let err = a.cmd_str(&["GET", "bad"]);
    let text = String::from_utf8_lossy(&err).into_owned();
    assert!(
        text.starts_with(&format!("-ERR upstream 127.0.0.1:{port} unavailable: "))
            && text.contains("Protocol error: unexpected reply type byte 0x3f"),
        "got {text:?}"
    );
    // Both client connections stay open and work again once the proxy has
    // reconnected (it retries after its backoff).
    let deadline = Instant::now() + Duration::from_secs(10);
    for c in [&mut a, &mut b] {
        loop {
            let r = c.cmd_str(&["GET", "good"]);
            if r == b"$2\r\nok\r\n" {
                break;
            }
            assert!(r.starts_with(b"-ERR upstream "), "{}", escape(&r));
            assert!(Instant::now() < deadline, "no recovery: {}", escape(&r));
            thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    drop(proxy);
    server.join().unwrap();
}
