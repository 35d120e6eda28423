//! Acceptance 3: stateful client features through the proxy — transactions
//! (MULTI/EXEC/DISCARD/WATCH), blocking commands, Pub/Sub in RESP2 and RESP3,
//! and per-connection databases (SELECT), also inside pipelines and MULTI.
//!
//! Each scenario is a function of a port with concrete assertions. The
//! `*_through_proxy` tests run it against respite; `scenarios_against_redis`
//! runs every scenario straight against Redis, which proves the scenarios'
//! expectations are Redis's own behaviour. Transcript-comparing scenarios also
//! record Redis's raw frames for the same steps and require identical bytes.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_reply, encode_str, escape, info_field, wait_until, Proxy, RawConn, RedisServer,
};

fn conn(port: u16, resp3: bool) -> RawConn {
    let mut c = RawConn::connect(port);
    if resp3 {
        let r = c.cmd_str(&["HELLO", "3"]);
        assert!(r.starts_with(b"%"), "HELLO 3 failed: {}", escape(&r));
    }
    c
}

fn nil(resp3: bool) -> &'static [u8] {
    if resp3 {
        b"_\r\n"
    } else {
        b"$-1\r\n"
    }
}

fn nil_array(resp3: bool) -> &'static [u8] {
    if resp3 {
        b"_\r\n"
    } else {
        b"*-1\r\n"
    }
}

/// Asserts two transcripts of the same scenario are byte-identical.
fn assert_same_transcript(direct: &[Vec<u8>], proxied: &[Vec<u8>], what: &str) {
    assert_eq!(
        direct.len(),
        proxied.len(),
        "{what}: transcript lengths differ"
    );
    let diffs: Vec<String> = direct
        .iter()
        .zip(proxied)
        .enumerate()
        .filter(|(_, (d, p))| d != p)
        .map(|(i, (d, p))| {
            format!(
                "step {i}\n    redis:   {}\n    respite: {}",
                escape(d),
                escape(p)
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "{what}: frames differ\n{}",
        diffs.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------

/// MULTI/EXEC, errors inside transactions, DISCARD; returns the transcript.
fn multi_exec_scenario(port: u16, resp3: bool) -> Vec<Vec<u8>> {
    let mut a = conn(port, resp3);
    let mut b = conn(port, resp3);
    let mut t = Vec::new();
    let mut step = |c: &mut RawConn, args: &[&str], want: &[u8]| {
        let r = c.cmd_str(args);
        assert!(
            r == want,
            "{args:?} (resp3={resp3})\n  got:  {}\n  want: {}",
            escape(&r),
            escape(want)
        );
        t.push(r);
    };
    step(&mut a, &["FLUSHALL"], b"+OK\r\n");
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["SET", "tx:a", "1"], b"+QUEUED\r\n");
    step(&mut a, &["INCR", "tx:a"], b"+QUEUED\r\n");
    // Another client is not part of the transaction and sees nothing yet.
    step(&mut b, &["GET", "tx:a"], nil(resp3));
    step(&mut b, &["SET", "tx:other", "b"], b"+OK\r\n");
    step(&mut a, &["GET", "tx:a"], b"+QUEUED\r\n");
    step(&mut a, &["RPUSH", "tx:l", "x", "y"], b"+QUEUED\r\n");
    step(&mut a, &["EXEC"], b"*4\r\n+OK\r\n:2\r\n$1\r\n2\r\n:2\r\n");
    step(&mut b, &["GET", "tx:a"], b"$1\r\n2\r\n");

    // A command rejected while queueing aborts the whole transaction.
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["SET", "tx:a", "9"], b"+QUEUED\r\n");
    step(
        &mut a,
        &["SET", "tx:a"],
        b"-ERR wrong number of arguments for 'set' command\r\n",
    );
    step(
        &mut a,
        &["EXEC"],
        b"-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    step(&mut a, &["GET", "tx:a"], b"$1\r\n2\r\n");

    // A command failing at run time does not stop the others.
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["SET", "tx:s", "text"], b"+QUEUED\r\n");
    step(&mut a, &["INCR", "tx:s"], b"+QUEUED\r\n");
    step(&mut a, &["APPEND", "tx:s", "!"], b"+QUEUED\r\n");
    step(
        &mut a,
        &["EXEC"],
        b"*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n:5\r\n",
    );

    step(&mut a, &["EXEC"], b"-ERR EXEC without MULTI\r\n");
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(
        &mut a,
        &["MULTI"],
        b"-ERR MULTI calls can not be nested\r\n",
    );
    step(&mut a, &["SET", "tx:d", "1"], b"+QUEUED\r\n");
    step(&mut a, &["DISCARD"], b"+OK\r\n");
    step(&mut a, &["GET", "tx:d"], nil(resp3));
    step(&mut a, &["DISCARD"], b"-ERR DISCARD without MULTI\r\n");

    // An empty transaction.
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["EXEC"], b"*0\r\n");
    step(&mut a, &["PING"], b"+PONG\r\n");
    t
}

/// WATCH: a concurrent write aborts EXEC (nil array), no write lets it run,
/// UNWATCH forgets.
fn watch_scenario(port: u16, resp3: bool) -> Vec<Vec<u8>> {
    let mut a = conn(port, resp3);
    let mut b = conn(port, resp3);
    let mut t = Vec::new();
    let mut step = |c: &mut RawConn, args: &[&str], want: &[u8]| {
        let r = c.cmd_str(args);
        assert!(
            r == want,
            "{args:?} (resp3={resp3})\n  got:  {}\n  want: {}",
            escape(&r),
            escape(want)
        );
        t.push(r);
    };
    step(&mut a, &["FLUSHALL"], b"+OK\r\n");
    step(&mut a, &["SET", "w:k", "0"], b"+OK\r\n");
    step(&mut a, &["WATCH", "w:k"], b"+OK\r\n");
    step(&mut a, &["GET", "w:k"], b"$1\r\n0\r\n");
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["SET", "w:k", "from-a"], b"+QUEUED\r\n");
    step(&mut b, &["SET", "w:k", "from-b"], b"+OK\r\n");
    step(&mut a, &["EXEC"], nil_array(resp3));
    step(&mut a, &["GET", "w:k"], b"$6\r\nfrom-b\r\n");

    // Nobody touches the key: the transaction runs.
    step(&mut a, &["WATCH", "w:k"], b"+OK\r\n");
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["SET", "w:k", "from-a"], b"+QUEUED\r\n");
    step(&mut a, &["EXEC"], b"*1\r\n+OK\r\n");
    step(&mut b, &["GET", "w:k"], b"$6\r\nfrom-a\r\n");

    // UNWATCH: a later write by B no longer matters.
    step(&mut a, &["WATCH", "w:k"], b"+OK\r\n");
    step(&mut a, &["UNWATCH"], b"+OK\r\n");
    step(&mut b, &["SET", "w:k", "again-b"], b"+OK\r\n");
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(&mut a, &["INCR", "w:n"], b"+QUEUED\r\n");
    step(&mut a, &["EXEC"], b"*1\r\n:1\r\n");

    // WATCH on several keys, one of them deleted by B.
    step(&mut a, &["WATCH", "w:k", "w:n"], b"+OK\r\n");
    step(&mut b, &["DEL", "w:n"], b":1\r\n");
    step(&mut a, &["MULTI"], b"+OK\r\n");
    step(
        &mut a,
        &["WATCH", "w:k"],
        b"-ERR WATCH inside MULTI is not allowed\r\n",
    );
    step(&mut a, &["INCR", "w:n"], b"+QUEUED\r\n");
    step(&mut a, &["EXEC"], nil_array(resp3));
    step(&mut a, &["EXISTS", "w:n"], b":0\r\n");
    t
}

// ---------------------------------------------------------------------------
// Blocking commands
// ---------------------------------------------------------------------------

fn blocking_scenario(port: u16, resp3: bool) {
    let mut a = conn(port, resp3);
    let mut b = conn(port, resp3);
    assert_reply(&a.cmd_str(&["FLUSHALL"]), b"+OK\r\n");

    // BLPOP waits, and is woken by another client's LPUSH.
    a.send(&encode_str(&["BLPOP", "bq", "5"]));
    a.expect_silence(Duration::from_millis(300));
    // Other traffic is not held up by the blocked client.
    let t = Instant::now();
    assert_reply(&b.cmd_str(&["PING"]), b"+PONG\r\n");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "PING slow while a client blocks"
    );
    let pushed = Instant::now();
    assert_reply(&b.cmd_str(&["LPUSH", "bq", "hello"]), b":1\r\n");
    let r = a
        .read_reply_within(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("BLPOP was not woken within 2 s of LPUSH (resp3={resp3})"));
    assert_reply(&r, b"*2\r\n$2\r\nbq\r\n$5\r\nhello\r\n");
    assert!(pushed.elapsed() < Duration::from_secs(2));
    assert_reply(&a.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_reply(&a.cmd_str(&["LLEN", "bq"]), b":0\r\n");

    // BLPOP with a timeout and no data: nil after the timeout.
    let t = Instant::now();
    let r = a.cmd_str(&["BLPOP", "bq:empty", "0.3"]);
    let waited = t.elapsed();
    assert_reply(&r, nil_array(resp3));
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "BLPOP 0.3 returned after {waited:?}"
    );
    assert_reply(
        &a.cmd_str(&["ECHO", "after-timeout"]),
        b"$13\r\nafter-timeout\r\n",
    );

    // XREAD BLOCK woken by XADD.
    a.send(&encode_str(&[
        "XREAD", "BLOCK", "5000", "STREAMS", "bx", "$",
    ]));
    a.expect_silence(Duration::from_millis(300));
    assert_reply(
        &b.cmd_str(&["XADD", "bx", "7-1", "f", "v"]),
        b"$3\r\n7-1\r\n",
    );
    let r = a
        .read_reply_within(Duration::from_secs(2))
        .expect("XREAD not woken");
    let want: &[u8] = if resp3 {
        b"%1\r\n$2\r\nbx\r\n*1\r\n*2\r\n$3\r\n7-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    } else {
        b"*1\r\n*2\r\n$2\r\nbx\r\n*1\r\n*2\r\n$3\r\n7-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    };
    assert_reply(&r, want);

    // Several blocked clients are served in the order they blocked.
    let mut waiters: Vec<RawConn> = (0..4).map(|_| conn(port, resp3)).collect();
    for (i, w) in waiters.iter_mut().enumerate() {
        w.send(&encode_str(&["BRPOP", "bq:fifo", "5"]));
        // Block them one after the other: Redis serves them in that order.
        wait_until("the BRPOP to block", Duration::from_secs(5), || {
            let info = b.cmd_str(&["INFO", "clients"]);
            info_field(&info, "blocked_clients") == Some(i as i64 + 1)
        });
    }
    assert_reply(
        &b.cmd_str(&["LPUSH", "bq:fifo", "m0", "m1", "m2", "m3"]),
        b":4\r\n",
    );
    for (i, w) in waiters.iter_mut().enumerate() {
        let r = w
            .read_reply_within(Duration::from_secs(2))
            .expect("BRPOP not woken");
        assert_reply(
            &r,
            format!("*2\r\n$7\r\nbq:fifo\r\n$2\r\nm{i}\r\n").as_bytes(),
        );
    }
}

// ---------------------------------------------------------------------------
// Pub/Sub
// ---------------------------------------------------------------------------

/// Reads `n` frames (each within 2 s) into the transcript.
fn read_n(c: &mut RawConn, n: usize, t: &mut Vec<Vec<u8>>) {
    for _ in 0..n {
        let r = c
            .read_reply_within(Duration::from_secs(2))
            .expect("expected a Pub/Sub frame within 2 s");
        t.push(r);
    }
}

/// A subscriber and a publisher; every frame the subscriber and publisher
/// receive, in order. `tag` keeps channel names apart between runs.
fn pubsub_scenario(port: u16, resp3: bool, tag: &str) -> Vec<Vec<u8>> {
    let ch1 = format!("{tag}:ch1");
    let ch2 = format!("{tag}:ch2");
    let pat = format!("{tag}:ch*");
    let mut a = conn(port, resp3);
    let mut b = conn(port, false);
    let mut bystander = conn(port, resp3);
    let mut t = Vec::new();

    a.send(&encode_str(&["SUBSCRIBE", &ch1, &ch2]));
    read_n(&mut a, 2, &mut t);
    a.send(&encode_str(&["PSUBSCRIBE", &pat]));
    read_n(&mut a, 1, &mut t);

    t.push(b.cmd_str(&["PUBLISH", &ch1, "hello"]));
    read_n(&mut a, 2, &mut t); // message + pmessage
    t.push(b.cmd(&[b"PUBLISH", ch2.as_bytes(), b"bin\r\n\x00\xff"]));
    read_n(&mut a, 2, &mut t);
    let big = "p".repeat(10_000);
    t.push(b.cmd_str(&["PUBLISH", &ch1, &big]));
    read_n(&mut a, 2, &mut t);
    t.push(b.cmd_str(&["PUBLISH", &format!("{tag}:other"), "nobody"]));
    t.push(b.cmd_str(&["PUBLISH", "unrelated", "x"]));

    // Subscribed mode: PING answers in the Pub/Sub shape in RESP2; RESP3
    // allows ordinary commands.
    a.send(&encode_str(&["PING"]));
    read_n(&mut a, 1, &mut t);
    a.send(&encode_str(&["GET", "ps:key"]));
    read_n(&mut a, 1, &mut t);

    // The bystander never sees any of it.
    t.push(bystander.cmd_str(&["PING"]));
    bystander.expect_silence(Duration::from_millis(100));

    a.send(&encode_str(&["UNSUBSCRIBE", &ch1]));
    read_n(&mut a, 1, &mut t);
    t.push(b.cmd_str(&["PUBLISH", &ch1, "pattern-only"]));
    read_n(&mut a, 1, &mut t);
    a.send(&encode_str(&["PUNSUBSCRIBE"]));
    read_n(&mut a, 1, &mut t);
    a.send(&encode_str(&["UNSUBSCRIBE"]));
    read_n(&mut a, 1, &mut t);
    // Unsubscribing with no subscriptions left still answers.
    a.send(&encode_str(&["UNSUBSCRIBE"]));
    read_n(&mut a, 1, &mut t);
    t.push(b.cmd_str(&["PUBLISH", &ch2, "after"]));
    a.expect_silence(Duration::from_millis(100));

    // Back to normal mode.
    t.push(a.cmd_str(&["PING"]));
    t.push(a.cmd_str(&["SET", "ps:key", "v"]));
    t.push(a.cmd_str(&["GET", "ps:key"]));
    t.push(a.cmd_str(&["DEL", "ps:key"]));
    t
}

fn check_pubsub_shape(t: &[Vec<u8>], resp3: bool, tag: &str) {
    let k = if resp3 { ">" } else { "*" };
    let ch1 = format!("{tag}:ch1");
    let b = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    assert_eq!(
        escape(&t[0]),
        escape(format!("{k}3\r\n{}{}:1\r\n", b("subscribe"), b(&ch1)).as_bytes()),
        "first SUBSCRIBE confirmation"
    );
    assert_eq!(
        t[3], b":2\r\n",
        "PUBLISH reaches the channel and the pattern"
    );
    assert_eq!(
        escape(&t[4]),
        escape(format!("{k}3\r\n{}{}{}", b("message"), b(&ch1), b("hello")).as_bytes())
    );
    assert_eq!(
        escape(&t[5]),
        escape(
            format!(
                "{k}4\r\n{}{}{}{}",
                b("pmessage"),
                b(&format!("{tag}:ch*")),
                b(&ch1),
                b("hello")
            )
            .as_bytes()
        )
    );
    assert_eq!(t[12], b":0\r\n", "PUBLISH to a channel nobody listens to");
    let ping = &t[14];
    if resp3 {
        assert_eq!(ping, b"+PONG\r\n");
    } else {
        assert_eq!(ping, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    }
}

// ---------------------------------------------------------------------------
// SELECT
// ---------------------------------------------------------------------------

fn select_scenario(port: u16, redis: &RedisServer) {
    let mut a = conn(port, false);
    let mut b = conn(port, false);
    assert_reply(&a.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["SET", "sel:k", "a3"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["GET", "sel:k"]), b"$-1\r\n");
    assert_reply(&b.cmd_str(&["SET", "sel:k", "b0"]), b"+OK\r\n");
    assert_reply(&a.cmd_str(&["GET", "sel:k"]), b"$2\r\na3\r\n");
    assert_reply(&b.cmd_str(&["GET", "sel:k"]), b"$2\r\nb0\r\n");
    // A new connection starts in database 0 whatever others selected.
    let mut c = conn(port, false);
    assert_reply(&c.cmd_str(&["GET", "sel:k"]), b"$2\r\nb0\r\n");
    // The data really is in Redis's database 3.
    let mut d = redis.conn();
    assert_reply(&d.cmd_str(&["SELECT", "3"]), b"+OK\r\n");
    assert_reply(&d.cmd_str(&["GET", "sel:k"]), b"$2\r\na3\r\n");

    // SELECT inside one pipelined write.
    let mut req = Vec::new();
    for cmd in [
        &["SELECT", "3"][..],
        &["SET", "pk", "v3"],
        &["SELECT", "0"],
        &["GET", "pk"],
        &["SET", "pk", "v0"],
        &["SELECT", "3"],
        &["GET", "pk"],
        &["SELECT", "0"],
        &["GET", "pk"],
    ] {
        req.extend_from_slice(&encode_str(cmd));
    }
    b.send(&req);
    let replies: Vec<Vec<u8>> = (0..9).map(|_| b.read_reply()).collect();
    let want: [&[u8]; 9] = [
        b"+OK\r\n",
        b"+OK\r\n",
        b"+OK\r\n",
        b"$-1\r\n",
        b"+OK\r\n",
        b"+OK\r\n",
        b"$2\r\nv3\r\n",
        b"+OK\r\n",
        b"$2\r\nv0\r\n",
    ];
    for (i, (g, w)) in replies.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "pipelined step {i}: got {} want {}",
            escape(g),
            escape(w)
        );
    }
    // Meanwhile A is still in database 3.
    assert_reply(&a.cmd_str(&["GET", "pk"]), b"$2\r\nv3\r\n");

    // SELECT inside MULTI changes the connection's database for good.
    assert_reply(&b.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["SELECT", "5"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["SET", "mk", "m5"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["SELECT", "0"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["GET", "mk"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["EXEC"]), b"*4\r\n+OK\r\n+OK\r\n+OK\r\n$-1\r\n");
    assert_reply(&b.cmd_str(&["GET", "mk"]), b"$-1\r\n");
    assert_reply(&b.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&b.cmd_str(&["SELECT", "6"]), b"+QUEUED\r\n");
    assert_reply(&b.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_reply(&b.cmd_str(&["SET", "after-exec", "in6"]), b"+OK\r\n");
    assert_reply(&d.cmd_str(&["SELECT", "5"]), b"+OK\r\n");
    assert_reply(&d.cmd_str(&["GET", "mk"]), b"$2\r\nm5\r\n");
    assert_reply(&d.cmd_str(&["SELECT", "6"]), b"+OK\r\n");
    assert_reply(&d.cmd_str(&["GET", "after-exec"]), b"$3\r\nin6\r\n");
    assert_reply(&d.cmd_str(&["SELECT", "0"]), b"+OK\r\n");
    assert_reply(&d.cmd_str(&["EXISTS", "after-exec", "mk"]), b":0\r\n");

    // Out-of-range database: error, and the connection keeps its database.
    assert_reply(
        &a.cmd_str(&["SELECT", "16"]),
        b"-ERR DB index is out of range\r\n",
    );
    assert_reply(&a.cmd_str(&["GET", "sel:k"]), b"$2\r\na3\r\n");

    // Eight clients in eight databases pipelining on the same key name.
    thread::scope(|s| {
        for db in 1..=8usize {
            s.spawn(move || {
                let mut c = conn(port, false);
                let mut req = encode_str(&["SELECT", &db.to_string()]);
                for i in 0..300 {
                    let v = format!("db{db}:{i}");
                    req.extend_from_slice(&encode_str(&["SET", "same-name", &v]));
                    req.extend_from_slice(&encode_str(&["GET", "same-name"]));
                }
                c.send(&req);
                assert_reply(&c.read_reply(), b"+OK\r\n");
                for i in 0..300 {
                    let v = format!("db{db}:{i}");
                    assert_reply(&c.read_reply(), b"+OK\r\n");
                    assert_reply(
                        &c.read_reply(),
                        format!("${}\r\n{v}\r\n", v.len()).as_bytes(),
                    );
                }
            });
        }
    });
    for db in 1..=8usize {
        assert_reply(&d.cmd_str(&["SELECT", &db.to_string()]), b"+OK\r\n");
        let v = format!("db{db}:299");
        assert_reply(
            &d.cmd_str(&["GET", "same-name"]),
            format!("${}\r\n{v}\r\n", v.len()).as_bytes(),
        );
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn multi_exec_discard_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    for resp3 in [false, true] {
        let direct = multi_exec_scenario(redis.port(), resp3);
        let proxied = multi_exec_scenario(proxy.port(), resp3);
        assert_same_transcript(&direct, &proxied, "MULTI/EXEC");
    }
    proxy.assert_running();
}

#[test]
fn watch_abort_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    for resp3 in [false, true] {
        let direct = watch_scenario(redis.port(), resp3);
        let proxied = watch_scenario(proxy.port(), resp3);
        assert_same_transcript(&direct, &proxied, "WATCH");
    }
    proxy.assert_running();
}

#[test]
fn blocking_commands_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    blocking_scenario(proxy.port(), false);
    blocking_scenario(proxy.port(), true);
    proxy.assert_running();
}

#[test]
fn pubsub_resp2_frames_match_redis_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let direct = pubsub_scenario(redis.port(), false, "r2");
    let proxied = pubsub_scenario(proxy.port(), false, "r2");
    check_pubsub_shape(&proxied, false, "r2");
    assert_same_transcript(&direct, &proxied, "Pub/Sub RESP2");
    proxy.assert_running();
}

#[test]
fn pubsub_resp3_push_frames_match_redis_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    let direct = pubsub_scenario(redis.port(), true, "r3");
    let proxied = pubsub_scenario(proxy.port(), true, "r3");
    check_pubsub_shape(&proxied, true, "r3");
    assert_same_transcript(&direct, &proxied, "Pub/Sub RESP3");
    proxy.assert_running();
}

#[test]
fn select_isolation_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    select_scenario(proxy.port(), &redis);
    proxy.assert_running();
}

/// Every scenario straight against Redis: the expectations above are what
/// Redis itself does.
#[test]
fn scenarios_against_redis() {
    let redis = RedisServer::start();
    for resp3 in [false, true] {
        let first = multi_exec_scenario(redis.port(), resp3);
        assert_eq!(first.len(), 30);
        watch_scenario(redis.port(), resp3);
        blocking_scenario(redis.port(), resp3);
        let tag = if resp3 { "d3" } else { "d2" };
        let t = pubsub_scenario(redis.port(), resp3, tag);
        check_pubsub_shape(&t, resp3, tag);
        // The same scenario again gives the same frames (it is comparable).
        assert_same_transcript(
            &t,
            &pubsub_scenario(redis.port(), resp3, tag),
            "Pub/Sub rerun",
        );
    }
    select_scenario(redis.port(), &redis);
}
