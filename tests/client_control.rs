//! `CLIENT REPLY`, `CLIENT UNBLOCK`, `CLIENT KILL` and `CLIENT PAUSE` /
//! `UNPAUSE` on respite's own clients, as Redis runs them on its own
//! (issue 15, items 3 and 4; acceptance 3, 4 and the `CLIENT KILL` part of
//! 6). Where the reply does not depend on which server answers, the bytes
//! are compared with Redis's.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{
    assert_reply, encode_str, escape, info_field, wait_until, Proxy, RawConn, RedisServer,
};

fn id(c: &mut RawConn) -> String {
    let r = c.cmd_str(&["CLIENT", "ID"]);
    String::from_utf8_lossy(&r[1..r.len() - 2]).into_owned()
}

/// Sends `cmds` in one write, then reads frames until one equals `until`;
/// returns every byte read (`until` included).
fn exchange(c: &mut RawConn, cmds: &[&[&str]], until: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for cmd in cmds {
        out.extend_from_slice(&encode_str(cmd));
    }
    c.send(&out);
    let mut got = Vec::new();
    loop {
        let f = c.read_reply();
        got.extend_from_slice(&f);
        if f == until {
            return got;
        }
    }
}

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// Waits until Redis counts `n` blocked clients.
fn blocked(redis: &RedisServer, n: i64) {
    let mut r = redis.conn();
    wait_until("blocked clients", Duration::from_secs(10), || {
        info_field(&r.cmd_str(&["INFO", "clients"]), "blocked_clients") == Some(n)
    });
}

/// One scripted `CLIENT REPLY` session; every step ends with an `ECHO` in
/// a mode that shows it, and with the bytes the client got up to it.
fn reply_script(port: u16, publisher: u16) -> Vec<Vec<u8>> {
    let mut c = RawConn::connect(port);
    let mut p = RawConn::connect(publisher);
    let mut steps = Vec::new();
    steps.push(exchange(
        &mut c,
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["SET", "a", "1"],
            &["GET", "a"],
            &["CLIENT", "REPLY", "OFF"],
            &["GET", "a"],
            &["CLIENT", "REPLY", "SKIP"],
            &["GET", "nosuch-command-arity"],
            &["NOSUCHCOMMAND"],
            &["CLIENT", "REPLY", "ON"],
            &["CLIENT", "REPLY", "FOO"],
            &["CLIENT", "REPLY"],
            &["CLIENT", "REPLY", "SKIP"],
            &["CLIENT", "REPLY", "SKIP"],
            &["GET", "a"],
            &["ECHO", "m1"],
        ],
        &bulk("m1"),
    ));
    // Transactions: the EXEC of a transaction that SELECTs still moves the
    // client when its reply is dropped; SKIP, then ON at once.
    steps.push(exchange(
        &mut c,
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["MULTI"],
            &["SET", "b", "2"],
            &["EXEC"],
            &["CLIENT", "REPLY", "OFF"],
            &["MULTI"],
            &["SELECT", "1"],
            &["SET", "in1", "x"],
            &["EXEC"],
            &["CLIENT", "REPLY", "ON"],
            &["GET", "in1"],
            &["SELECT", "0"],
            &["GET", "b"],
            &["CLIENT", "REPLY", "SKIP"],
            &["CLIENT", "REPLY", "ON"],
            &["ECHO", "m2"],
        ],
        &bulk("m2"),
    ));
    // A blocking command whose reply is skipped, and one under OFF.
    steps.push(exchange(
        &mut c,
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["BLPOP", "nolist", "0.1"],
            &["CLIENT", "REPLY", "OFF"],
            &["BLPOP", "nolist", "0.1"],
            &["CLIENT", "REPLY", "ON"],
            &["BLPOP", "nolist", "0.1"],
            &["ECHO", "m3"],
        ],
        &bulk("m3"),
    ));
    // SUBSCRIBE after CLIENT REPLY OFF: Redis still sends pub/sub
    // confirmations and messages; CLIENT REPLY ON is refused in RESP2
    // pub/sub mode (silently, replies being off); RESET turns replies on.
    c.send(
        &[
            encode_str(&["CLIENT", "REPLY", "OFF"]),
            encode_str(&["SUBSCRIBE", "ch"]),
        ]
        .concat(),
    );
    let confirm = c.read_reply();
    let publish = p.cmd_str(&["PUBLISH", "ch", "hello"]);
    assert_reply(&publish, b":1\r\n");
    let message = c.read_reply();
    steps.push([confirm, message].concat());
    steps.push(exchange(
        &mut c,
        &[&["CLIENT", "REPLY", "ON"], &["PING"], &["RESET"]],
        b"+RESET\r\n",
    ));
    steps.push(exchange(&mut c, &[&["ECHO", "m4"]], &bulk("m4")));
    // RESP3: the pub/sub connection takes other commands; OFF silences
    // their replies, not the messages.
    let mut b = RawConn::connect(port);
    b.cmd_str(&["HELLO", "3"]);
    let got = exchange(
        &mut b,
        &[
            &["SUBSCRIBE", "ch3"],
            &["CLIENT", "REPLY", "OFF"],
            &["PING"],
            &["GET", "a"],
        ],
        b">3\r\n$9\r\nsubscribe\r\n$3\r\nch3\r\n:1\r\n",
    );
    steps.push(got);
    assert_reply(&p.cmd_str(&["PUBLISH", "ch3", "m"]), b":1\r\n");
    steps.push(b.read_reply());
    steps.push(exchange(
        &mut b,
        &[
            &["CLIENT", "REPLY", "SKIP"],
            &["PING"],
            &["CLIENT", "REPLY", "ON"],
            &["ECHO", "m5"],
        ],
        &bulk("m5"),
    ));
    steps.push(exchange(
        &mut b,
        &[&["CLIENT", "REPLY", "SKIP"], &["PING"], &["ECHO", "m6"]],
        &bulk("m6"),
    ));
    b.expect_silence(Duration::from_millis(100));
    c.expect_silence(Duration::from_millis(100));
    steps
}

#[test]
fn client_reply_gives_redis_bytes() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let direct = reply_script(redis.port(), redis.port());
    let mut r = redis.conn();
    r.cmd_str(&["FLUSHALL"]);
    let through = reply_script(proxy.port(), redis.port());
    assert_eq!(direct.len(), through.len());
    for (i, (d, t)) in direct.iter().zip(&through).enumerate() {
        assert!(
            d == t,
            "step {i}\n  respite: {}\n  redis:   {}",
            escape(t),
            escape(d)
        );
    }
}

/// Each blocking command, unblocked with TIMEOUT and with ERROR; the
/// unblocking client's and the blocked client's replies.
fn unblock_script(redis: &RedisServer, port: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = RawConn::connect(port);
    for cmd in [
        &["BLPOP", "l1", "0"][..],
        &["BLMOVE", "l1", "l2", "LEFT", "RIGHT", "0"],
        &["BZPOPMIN", "z1", "0"],
        &["XREAD", "BLOCK", "0", "STREAMS", "s1", "$"],
    ] {
        for how in ["TIMEOUT", "ERROR"] {
            let mut a = RawConn::connect(port);
            let aid = id(&mut a);
            // Not blocked: 0.
            out.push(b.cmd_str(&["CLIENT", "UNBLOCK", &aid]));
            a.send(&encode_str(cmd));
            blocked(redis, 1);
            out.push(b.cmd_str(&["CLIENT", "UNBLOCK", &aid, how]));
            out.push(a.read_reply());
            blocked(redis, 0);
            out.push(a.cmd_str(&["PING"]));
            out.push(b.cmd_str(&["CLIENT", "UNBLOCK", &aid, how]));
        }
    }
    for bad in [
        &["CLIENT", "UNBLOCK"][..],
        &["CLIENT", "UNBLOCK", "abc"],
        &["CLIENT", "UNBLOCK", "abc", "foo"],
        &["CLIENT", "UNBLOCK", "1", "foo"],
        &["CLIENT", "UNBLOCK", "1", "TIMEOUT", "x"],
        &["CLIENT", "UNBLOCK", "99999"],
        &["CLIENT", "UNBLOCK", "-1"],
    ] {
        out.push(b.cmd_str(bad));
    }
    out
}

#[test]
fn client_unblock_gives_redis_replies() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let direct = unblock_script(&redis, redis.port());
    let through = unblock_script(&redis, proxy.port());
    assert_eq!(direct.len(), through.len());
    for (i, (d, t)) in direct.iter().zip(&through).enumerate() {
        assert!(
            d == t,
            "reply {i}\n  respite: {}\n  redis:   {}",
            escape(t),
            escape(d)
        );
    }
}

fn addr_of(c: &RawConn) -> String {
    c.stream().local_addr().unwrap().to_string()
}

#[test]
fn client_kill_closes_exactly_the_matching_clients() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut d = redis.conn();
    let mut k = proxy.conn();
    // Replies that do not depend on which clients exist.
    for cmd in [
        &["CLIENT", "KILL"][..],
        &["CLIENT", "KILL", "ID"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["CLIENT", "KILL", "ID", "abc"],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "ID", "99999"],
        &["CLIENT", "KILL", "FOO", "bar"],
        &["CLIENT", "KILL", "TYPE", "bad"],
        &["CLIENT", "KILL", "TYPE", "master"],
        &["CLIENT", "KILL", "SKIPME", "maybe"],
        &["CLIENT", "KILL", "USER", "nosuch"],
        &["CLIENT", "KILL", "ADDR", "1.2.3.4:5"],
        &["CLIENT", "KILL", "ID", "99999", "LADDR", "1.1.1.1:1"],
        &["CLIENT", "KILL", "ID", "1", "SKIPME"],
    ] {
        assert_reply(&k.cmd_str(cmd), &d.cmd_str(cmd));
    }
    // ID: exactly that client; the others keep working.
    let mut a = proxy.conn();
    let mut b = proxy.conn();
    let aid = id(&mut a);
    assert_reply(&k.cmd_str(&["CLIENT", "KILL", "ID", &aid]), b":1\r\n");
    a.expect_eof();
    assert_reply(&b.cmd_str(&["PING"]), b"+PONG\r\n");
    assert_reply(&k.cmd_str(&["CLIENT", "KILL", "ID", &aid]), b":0\r\n");
    // The old form: +OK, then -ERR No such client.
    let b_addr = addr_of(&b);
    assert_reply(&k.cmd_str(&["CLIENT", "KILL", &b_addr]), b"+OK\r\n");
    b.expect_eof();
    assert_reply(
        &k.cmd_str(&["CLIENT", "KILL", &b_addr]),
        b"-ERR No such client\r\n",
    );
    // ADDR and LADDR together, and a pub/sub client by TYPE.
    let mut c = proxy.conn();
    let mut s = proxy.conn();
    s.cmd_str(&["SUBSCRIBE", "x"]);
    let laddr = format!("127.0.0.1:{}", proxy.port());
    assert_reply(
        &k.cmd_str(&[
            "CLIENT",
            "KILL",
            "ADDR",
            &addr_of(&c),
            "LADDR",
            "127.0.0.1:1",
        ]),
        b":0\r\n",
    );
    assert_reply(
        &k.cmd_str(&["CLIENT", "KILL", "ADDR", &addr_of(&c), "LADDR", &laddr]),
        b":1\r\n",
    );
    c.expect_eof();
    wait_until(
        "the subscriber counted as pub/sub",
        Duration::from_secs(5),
        || k.cmd_str(&["CLIENT", "LIST", "TYPE", "pubsub"]).len() > 10,
    );
    assert_reply(&k.cmd_str(&["CLIENT", "KILL", "TYPE", "pubsub"]), b":1\r\n");
    s.expect_eof();
    // SKIPME: by default the caller survives a filter that matches it.
    let mut e = proxy.conn();
    assert_reply(
        &k.cmd_str(&["CLIENT", "KILL", "USER", "default"]),
        b":1\r\n",
    );
    e.expect_eof();
    assert_reply(&k.cmd_str(&["PING"]), b"+PONG\r\n");
    // SKIPME no: the caller gets its reply, then is closed.
    let kid = id(&mut k);
    assert_reply(
        &k.cmd_str(&["CLIENT", "KILL", "ID", &kid, "SKIPME", "no"]),
        b":1\r\n",
    );
    k.expect_eof();
    // MAXAGE (Redis 7.4's filter): a new client is younger than an hour.
    let mut f = proxy.conn();
    let mut g = proxy.conn();
    assert_reply(&g.cmd_str(&["CLIENT", "KILL", "MAXAGE", "3600"]), b":0\r\n");
    assert_reply(&f.cmd_str(&["PING"]), b"+PONG\r\n");
}

/// Acceptance 6 for `CLIENT KILL`: a client blocked in each blocking
/// command is killed, the item is pushed right after the kill's reply, and
/// it is never popped for the dead client.
#[test]
fn killing_a_blocked_client_loses_no_item() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut k = proxy.conn();
    let mut r = redis.conn();
    r.cmd_str(&["XGROUP", "CREATE", "st", "g", "$", "MKSTREAM"]);
    type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [u8]);
    let cases: &[Case] = &[
        (
            &["BRPOP", "q", "0"],
            &["LPUSH", "q", "i"],
            &["LLEN", "q"],
            b":1\r\n",
        ),
        (
            &["BLPOP", "q", "0"],
            &["LPUSH", "q", "i"],
            &["LLEN", "q"],
            b":1\r\n",
        ),
        (
            &["BLMOVE", "q", "dst", "LEFT", "RIGHT", "0"],
            &["LPUSH", "q", "i"],
            &["LLEN", "q"],
            b":1\r\n",
        ),
        (
            &["BZPOPMIN", "z", "0"],
            &["ZADD", "z", "1", "m"],
            &["ZCARD", "z"],
            b":1\r\n",
        ),
        (
            &[
                "XREADGROUP",
                "GROUP",
                "g",
                "c",
                "BLOCK",
                "0",
                "STREAMS",
                "st",
                ">",
            ],
            &["XADD", "st", "*", "f", "v"],
            &["XLEN", "st"],
            b":1\r\n",
        ),
    ];
    let reps = 100;
    for (block, push, count, want) in cases {
        for rep in 0..reps {
            let mut a = proxy.conn();
            let aid = id(&mut a);
            a.send(&encode_str(block));
            blocked(&redis, 1);
            assert_reply(&k.cmd_str(&["CLIENT", "KILL", "ID", &aid]), b":1\r\n");
            r.cmd_str(push);
            assert_reply(&r.cmd_str(count), want);
            if block[0] == "XREADGROUP" {
                // Nothing was delivered to the dead consumer.
                let pending = r.cmd_str(&["XPENDING", "st", "g"]);
                assert!(
                    pending.starts_with(b"*4\r\n:0\r\n"),
                    "{} (rep {rep})",
                    escape(&pending)
                );
                r.cmd_str(&["XTRIM", "st", "MAXLEN", "0"]);
            }
            a.expect_eof();
            blocked(&redis, 0);
            r.cmd_str(&["DEL", "q", "dst", "z"]);
        }
    }
}

fn elapsed_ms(f: impl FnOnce()) -> u128 {
    let t = Instant::now();
    f();
    t.elapsed().as_millis()
}

#[test]
fn client_pause_holds_matching_commands_of_every_worker() {
    let redis = RedisServer::start();
    let mut args = Proxy::default_args(&redis.addr());
    let w = args.iter().position(|a| a == "--workers").unwrap();
    args[w + 1] = "2".to_string();
    let proxy = Proxy::start_args(args);
    let mut d = redis.conn();
    let mut p = proxy.conn();
    for cmd in [
        &["CLIENT", "PAUSE"][..],
        &["CLIENT", "PAUSE", "100", "FOO"],
        &["CLIENT", "PAUSE", "abc"],
        &["CLIENT", "PAUSE", "abc", "foo"],
        &["CLIENT", "PAUSE", "-1"],
        &["CLIENT", "PAUSE", "1", "WRITE", "x"],
        &["CLIENT", "UNPAUSE", "x"],
        &["CLIENT", "PAUSE", "0"],
        &["CLIENT", "UNPAUSE"],
    ] {
        assert_reply(&p.cmd_str(cmd), &d.cmd_str(cmd));
    }
    // Clients spread over both workers (SO_REUSEPORT picks): enough of them
    // that each worker has some.
    let mut clients: Vec<RawConn> = (0..8).map(|_| proxy.conn()).collect();
    assert_reply(&p.cmd_str(&["CLIENT", "PAUSE", "500", "WRITE"]), b"+OK\r\n");
    let t = Instant::now();
    for c in clients.iter_mut() {
        assert!(elapsed_ms(|| assert_reply(&c.cmd_str(&["GET", "k"]), b"$-1\r\n")) < 250);
    }
    // Writes wait for the end of the pause, reads of the same batch after
    // them too (the client is blocked, as in Redis).
    let mut held = Vec::new();
    for c in clients.iter_mut() {
        c.send(&[encode_str(&["SET", "k", "v"]), encode_str(&["GET", "k"])].concat());
    }
    for c in clients.iter_mut() {
        held.push((c.read_reply(), c.read_reply(), t.elapsed()));
    }
    for (set, get, at) in held {
        assert_reply(&set, b"+OK\r\n");
        assert_reply(&get, b"$1\r\nv\r\n");
        assert!(
            at >= Duration::from_millis(450),
            "SET answered after {at:?}"
        );
        assert!(
            at < Duration::from_millis(2000),
            "SET answered after {at:?}"
        );
    }
    // EXEC is held when the transaction queued a write; the write itself
    // is held before it is queued, as in Redis 7.0.
    let c = &mut clients[0];
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"+QUEUED\r\n");
    assert_reply(&p.cmd_str(&["CLIENT", "PAUSE", "300", "WRITE"]), b"+OK\r\n");
    let ms = elapsed_ms(|| assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n$1\r\nv\r\n"));
    assert!(ms < 250, "a read-only EXEC waited {ms} ms");
    // UNPAUSE releases held commands at once.
    assert_reply(
        &p.cmd_str(&["CLIENT", "PAUSE", "60000", "WRITE"]),
        b"+OK\r\n",
    );
    let c = &mut clients[1];
    c.send(&encode_str(&["DEL", "k"]));
    assert!(c.read_reply_within(Duration::from_millis(300)).is_none());
    assert_reply(&p.cmd_str(&["CLIENT", "UNPAUSE"]), b"+OK\r\n");
    assert_reply(
        &c.read_reply_within(Duration::from_millis(1000))
            .expect("DEL after UNPAUSE"),
        b":1\r\n",
    );
    // ALL holds every command, reads and CLIENT UNPAUSE included (as Redis
    // 7.0 does), until the time is up.
    assert_reply(&p.cmd_str(&["CLIENT", "PAUSE", "400", "ALL"]), b"+OK\r\n");
    let t = Instant::now();
    let mut u = proxy.conn();
    u.send(&encode_str(&["CLIENT", "UNPAUSE"]));
    let c = &mut clients[2];
    c.send(&encode_str(&["GET", "k"]));
    assert_reply(&c.read_reply(), b"$-1\r\n");
    assert_reply(&u.read_reply(), b"+OK\r\n");
    let at = t.elapsed();
    assert!(
        at >= Duration::from_millis(350),
        "GET answered after {at:?}"
    );
}

/// Acceptance 6 for the idle timeout (`limits.idle_timeout_secs`): respite
/// never closes a client for idleness while its blocking command waits (as
/// Redis exempts blocked clients from `timeout`), so an item pushed after
/// the idle timeout reaches it; a client whose blocking command timed out
/// and that is then closed for idleness leaves the item pushed afterwards in
/// the list.
#[test]
fn idle_timeout_never_costs_an_item() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, "[limits]\nidle_timeout_secs = 1\n").unwrap();
    let mut args = Proxy::default_args(&redis.addr());
    args.extend(["--config".to_string(), path.display().to_string()]);
    let proxy = Proxy::start_args(args);
    let port = proxy.port();
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: [(&str, Case); 3] = [
        (
            "l1",
            (&["BRPOP", "l1"], &["LPUSH", "l1", "i"], &["LLEN", "l1"]),
        ),
        (
            "l2",
            (
                &["BLMOVE", "l2", "dst2", "LEFT", "RIGHT"],
                &["LPUSH", "l2", "i"],
                &["LLEN", "l2"],
            ),
        ),
        (
            "z3",
            (
                &["BZPOPMIN", "z3"],
                &["ZADD", "z3", "1", "m"],
                &["ZCARD", "z3"],
            ),
        ),
    ];
    let mut threads = Vec::new();
    for (key, (block, push, count)) in cases {
        let rport = redis.port();
        // Blocked past the idle timeout: served, not closed.
        threads.push(thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let mut r = RawConn::connect(rport);
            let cmd: Vec<&str> = block.iter().copied().chain(["0"]).collect();
            c.send(&encode_str(&cmd));
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(1800) {
                assert!(c.read_reply_within(Duration::from_millis(100)).is_none());
            }
            assert!(!r.cmd_str(push).starts_with(b"-"));
            let got = c.read_reply();
            assert!(
                got.starts_with(b"*") || got.starts_with(b"$"),
                "{key}: {}",
                escape(&got)
            );
            assert_reply(&r.cmd_str(count), b":0\r\n");
            assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n");
        }));
        // Timed out, then closed for idleness: the item pushed after stays.
        threads.push(thread::spawn(move || {
            let key2 = format!("{key}-b");
            let mut c = RawConn::connect(port);
            let mut r = RawConn::connect(rport);
            let mut cmd: Vec<String> = block.iter().map(|s| s.to_string()).collect();
            cmd[1] = key2.clone();
            if cmd[0] == "BLMOVE" {
                cmd[2] = format!("{key2}-dst");
            }
            cmd.push("0.2".to_string());
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let nil = c.cmd_str(&cmd);
            assert!(nil == b"*-1\r\n" || nil == b"$-1\r\n", "{}", escape(&nil));
            let (rest, closed) = c.drain(Duration::from_secs(5));
            assert!(rest.is_empty() && closed, "{key}: idle client not closed");
            let mut push: Vec<String> = push.iter().map(|s| s.to_string()).collect();
            push[1] = key2.clone();
            let push: Vec<&str> = push.iter().map(String::as_str).collect();
            r.cmd_str(&push);
            let count = [count[0], key2.as_str()];
            assert_reply(&r.cmd_str(&count), b":1\r\n");
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
}

/// `CLIENT TRACKING on REDIRECT id` with respite's id of a second client
/// subscribed to `__redis__:invalidate` (acceptance 8): the invalidation
/// reaches that client with Redis's bytes; `CLIENT GETREDIR` names it.
fn tracking_redirect_script(port: u16, writer: u16) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut w = RawConn::connect(writer);
    w.cmd_str(&["DEL", "tracked"]);
    let mut b = RawConn::connect(port);
    let bid = id(&mut b);
    out.push(b.cmd_str(&["SUBSCRIBE", "__redis__:invalidate"]));
    let mut a = RawConn::connect(port);
    out.push(a.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", &bid]));
    let getredir = a.cmd_str(&["CLIENT", "GETREDIR"]);
    assert_reply(&getredir, format!(":{bid}\r\n").as_bytes());
    out.push(a.cmd_str(&["GET", "tracked"]));
    out.push(w.cmd_str(&["SET", "tracked", "v"]));
    out.push(b.read_reply());
    // Tracking off again.
    out.push(a.cmd_str(&["CLIENT", "TRACKING", "off"]));
    out.push(a.cmd_str(&["CLIENT", "GETREDIR"]));
    // Ids that name no client, and not a number.
    out.push(a.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", "999999"]));
    out.push(a.cmd_str(&["CLIENT", "TRACKING", "on", "REDIRECT", "x"]));
    out
}

#[test]
fn tracking_redirect_to_a_respite_client_delivers_invalidations() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let direct = tracking_redirect_script(redis.port(), redis.port());
    let through = tracking_redirect_script(proxy.port(), redis.port());
    assert_eq!(direct.len(), through.len());
    for (i, (d, t)) in direct.iter().zip(&through).enumerate() {
        assert!(
            d == t,
            "reply {i}\n  respite: {}\n  redis:   {}",
            escape(t),
            escape(d)
        );
    }
}

mod prop {
    //! Acceptance 9: random pipelines mixing normal commands, `CLIENT
    //! REPLY` toggles, blocking commands with short timeouts and `CLIENT
    //! UNBLOCK` give the same byte stream through respite as from Redis.

    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    #[derive(Debug, Clone)]
    enum Step {
        Cmd(Vec<String>),
        Reply(&'static str),
        Multi(Vec<Vec<String>>),
    }

    #[derive(Debug, Clone)]
    struct Batch {
        steps: Vec<Step>,
        /// Ends with a command blocked until `CLIENT UNBLOCK ... reason`.
        block: Option<(usize, &'static str)>,
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    fn command() -> impl Strategy<Value = Vec<String>> {
        (0..17usize, 0..3usize, 0..100u32).prop_map(|(kind, k, n)| {
            words(&match kind {
                0 => format!("SET k{k} v{n}"),
                1 => format!("GET k{k}"),
                2 => format!("INCR n{k}"),
                3 => format!("LPUSH l{k} x{n}"),
                4 => format!("RPOP l{k}"),
                5 => format!("DEL k{k} l{k}"),
                6 => format!("HSET h{k} f v{n}"),
                7 => format!("LPUSH k{k} x"),
                8 => "NOSUCHCMD a".to_string(),
                9 => format!("BLPOP l{k} 0.01"),
                10 => format!("ZADD z{k} {n} m{n}"),
                11 => format!("BZPOPMIN z{k} 0.01"),
                12 => format!("XADD s{k} {} f v", n + 1),
                13 => format!("XREAD BLOCK 10 STREAMS s{k} $"),
                14 => format!("ECHO e{n}"),
                15 => "PING".to_string(),
                _ => format!("BLMOVE l{k} l{} LEFT RIGHT 0.01", (k + 1) % 3),
            })
        })
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => command().prop_map(Step::Cmd),
            3 => prop_oneof![Just("ON"), Just("OFF"), Just("SKIP")].prop_map(Step::Reply),
            1 => proptest::collection::vec(command(), 0..3).prop_map(Step::Multi),
        ]
    }

    fn batch() -> impl Strategy<Value = Batch> {
        (
            proptest::collection::vec(step(), 1..8),
            proptest::option::weighted(
                0.4,
                (0..4usize, prop_oneof![Just("TIMEOUT"), Just("ERROR")]),
            ),
        )
            .prop_map(|(steps, block)| Batch { steps, block })
    }

    const BLOCKING: [&str; 4] = [
        "BLPOP never 0",
        "BLMOVE never never2 LEFT RIGHT 0",
        "BZPOPMIN neverz 0",
        "XREAD BLOCK 0 STREAMS nevers $",
    ];

    /// What client A and client B receive, batch by batch.
    fn run(redis: &RedisServer, port: u16, batches: &[Batch]) -> Vec<Vec<u8>> {
        let mut r = redis.conn();
        r.cmd_str(&["FLUSHALL"]);
        let mut a = RawConn::connect(port);
        let mut b = RawConn::connect(port);
        let aid = id(&mut a);
        let mut out = Vec::new();
        for (i, batch) in batches.iter().enumerate() {
            let mut bytes = Vec::new();
            let mut push = |args: &[String]| {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                bytes.extend_from_slice(&encode_str(&args));
            };
            for s in &batch.steps {
                match s {
                    Step::Cmd(c) => push(c),
                    Step::Reply(m) => push(&words(&format!("CLIENT REPLY {m}"))),
                    Step::Multi(cmds) => {
                        push(&words("MULTI"));
                        for c in cmds {
                            push(c);
                        }
                        push(&words("EXEC"));
                    }
                }
            }
            if let Some((which, _)) = batch.block {
                push(&words(BLOCKING[which]));
            }
            let marker = format!("end{i}");
            push(&words("CLIENT REPLY ON"));
            push(&words(&format!("ECHO {marker}")));
            a.send(&bytes);
            if let Some((_, reason)) = batch.block {
                // Blocked in the last command (no timeout), not in one of
                // the short-timeout ones before it.
                wait_until("blocked without timeout", Duration::from_secs(10), || {
                    let info = r.cmd_str(&["INFO", "clients"]);
                    info_field(&info, "blocked_clients") == Some(1)
                        && info_field(&info, "clients_in_timeout_table") == Some(0)
                });
                out.push(b.cmd_str(&["CLIENT", "UNBLOCK", &aid, reason]));
            }
            let until = bulk(&marker);
            let mut got = Vec::new();
            loop {
                let f = a.read_reply();
                got.extend_from_slice(&f);
                if f == until {
                    break;
                }
            }
            out.push(got);
        }
        out
    }

    #[test]
    fn random_pipelines_with_reply_modes_and_unblock_match_redis() {
        let redis = RedisServer::start();
        let proxy = Proxy::start(&redis);
        let mut runner = TestRunner::new(Config {
            cases: 40,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = proptest::collection::vec(batch(), 1..5);
        let result = runner.run(&strategy, |batches| {
            let direct = run(&redis, redis.port(), &batches);
            let through = run(&redis, proxy.port(), &batches);
            for (i, (d, t)) in direct.iter().zip(&through).enumerate() {
                prop_assert!(
                    d == t,
                    "reply {i}\n  respite: {}\n  redis:   {}",
                    escape(t),
                    escape(d)
                );
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
