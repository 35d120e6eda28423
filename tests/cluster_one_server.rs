//! Issue 18: respite in front of a real 3-primary/3-replica Redis Cluster
//! looks like one server for the commands that are not routed by a key.
//!
//! One cluster for the whole file (starting one is the expensive part); the
//! checks run in sequence in one test, each named after the issue's
//! acceptance item it covers. Acceptance 7 (no `MOVED`/`ASK` outside
//! `MULTI`) is checked for every test of the suite by the shared harness
//! (`tests/common`: `RawConn` and `Drop for Proxy`); the states that used to
//! let one through are exercised here.

mod common;

use common::cluster::RedisCluster;
use common::{encode_str, escape, info_field, Proxy, RawConn};
use respite::cluster::key_slot;
use std::time::{Duration, Instant};

/// respite in cluster mode, once its slot map is loaded.
fn cluster_proxy(cluster: &RedisCluster) -> Proxy {
    let mut args = Proxy::default_args(&cluster.seed_addr());
    args.extend(["--mode".to_string(), "cluster".to_string()]);
    let proxy = Proxy::start_args(args);
    common::wait_until(
        "respite loads the slot map",
        Duration::from_secs(15),
        || proxy.conn().cmd_str(&["DBSIZE"]).starts_with(b":"),
    );
    proxy
}

/// One key per primary (`k-0`, `k-1`, ... searched until each primary has
/// one), as (key, primary port), in the order of `cluster.primary_ports()`.
fn key_per_primary(cluster: &RedisCluster, prefix: &str) -> Vec<(String, u16)> {
    let primaries = cluster.primary_ports();
    let mut found: Vec<Option<String>> = vec![None; primaries.len()];
    for i in 0.. {
        let k = format!("{prefix}-{i}");
        let port = cluster.node_for_slot(key_slot(k.as_bytes()));
        if let Some(at) = primaries.iter().position(|p| *p == port) {
            found[at].get_or_insert(k);
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found
        .into_iter()
        .zip(primaries)
        .map(|(k, p)| (k.unwrap(), p))
        .collect()
}

fn hello3(c: &mut RawConn) {
    let r = c.cmd_str(&["HELLO", "3"]);
    assert!(r.starts_with(b"%"), "{}", escape(&r));
}

/// Acceptance 7, the states that let a redirect through: a client in
/// pub/sub mode (RESP2: Redis's refusal, as one server; RESP3: the command
/// runs on its key's node, after the confirmations before it), a tracking
/// client, a `WATCH`ing client's commands on keys of other nodes.
fn no_redirect_outside_multi(cluster: &RedisCluster, proxy: &Proxy) {
    let keys = key_per_primary(cluster, "nr");
    let mut a = proxy.conn();
    assert_eq!(
        a.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "KEl"]),
        b"+OK\r\n"
    );
    // The sequence: PSUBSCRIBE *, a refused CLIENT REPLY, SET.
    let mut b = proxy.conn();
    b.send(&encode_str(&["PSUBSCRIBE", "*"]));
    assert_eq!(
        b.read_reply(),
        b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
    );
    let r = b.cmd_str(&["CLIENT", "REPLY", "OFF"]);
    assert!(
        r.starts_with(b"-ERR Can't execute 'client|reply'"),
        "{}",
        escape(&r)
    );
    for (k, _) in &keys {
        let r = b.cmd_str(&["SET", k, "bar"]);
        assert_eq!(
            escape(&r),
            escape(b"-ERR Can't execute 'set': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"),
            "RESP2 subscriber, key {k}"
        );
    }
    // RESP3: commands run, by slot, in order with the confirmations.
    let mut c = proxy.conn();
    hello3(&mut c);
    let mut out = encode_str(&["SUBSCRIBE", "nr-chan"]);
    for (k, _) in &keys {
        out.extend(encode_str(&["SET", k, "v3"]));
        out.extend(encode_str(&["GET", k]));
    }
    c.send(&out);
    assert_eq!(
        c.read_reply(),
        b">3\r\n$9\r\nsubscribe\r\n$7\r\nnr-chan\r\n:1\r\n"
    );
    for (k, _) in &keys {
        assert_eq!(c.read_reply(), b"+OK\r\n", "RESP3 subscriber SET {k}");
        assert_eq!(c.read_reply(), b"$2\r\nv3\r\n", "RESP3 subscriber GET {k}");
    }
    // A tracking client (RESP3) reads keys of every node.
    let mut t = proxy.conn();
    hello3(&mut t);
    assert_eq!(t.cmd_str(&["CLIENT", "TRACKING", "ON"]), b"+OK\r\n");
    for (k, _) in &keys {
        assert_eq!(t.cmd_str(&["GET", k]), b"$2\r\nv3\r\n", "tracking GET {k}");
    }
    // WATCH pins a node; the client's other commands still go by slot.
    let mut w = proxy.conn();
    assert_eq!(w.cmd_str(&["WATCH", &keys[0].0]), b"+OK\r\n");
    for (k, _) in &keys {
        assert_eq!(w.cmd_str(&["GET", k]), b"$2\r\nv3\r\n", "watching, GET {k}");
    }
    assert_eq!(w.cmd_str(&["UNWATCH"]), b"+OK\r\n");
    // Unchanged: inside MULTI Redis Cluster's own answer (through a
    // connection that sent MULTI, which the harness allows).
    assert_eq!(
        a.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", ""]),
        b"+OK\r\n"
    );
}

/// Acceptance 3: CONFIG SET on every node, CONFIG GET from one.
fn config_on_every_node(cluster: &RedisCluster, proxy: &Proxy) {
    let mut a = proxy.conn();
    assert_eq!(
        a.cmd_str(&["CONFIG", "SET", "list-max-listpack-size", "4"]),
        b"+OK\r\n"
    );
    let want = b"*2\r\n$22\r\nlist-max-listpack-size\r\n$1\r\n4\r\n";
    let mut b = proxy.conn();
    assert_eq!(
        escape(&b.cmd_str(&["CONFIG", "GET", "list-max-listpack-size"])),
        escape(want)
    );
    for port in cluster.live_ports() {
        let r = cluster
            .conn(port)
            .cmd_str(&["CONFIG", "GET", "list-max-listpack-size"]);
        assert_eq!(escape(&r), escape(want), "node {port}");
    }
    // Lists of 5 elements are no longer listpacks on any primary.
    for (k, port) in key_per_primary(cluster, "enc") {
        assert_eq!(a.cmd_str(&["DEL", &k]).len(), 4);
        assert_eq!(
            a.cmd_str(&["RPUSH", &k, "1", "2", "3", "4", "5"]),
            b":5\r\n"
        );
        assert_eq!(
            a.cmd_str(&["OBJECT", "ENCODING", &k]),
            b"$9\r\nquicklist\r\n",
            "key {k} on {port}"
        );
        assert_eq!(a.cmd_str(&["DEL", &k]), b":1\r\n");
    }
    // A refused value: Redis's error, from the first node that refuses.
    let r = a.cmd_str(&["CONFIG", "SET", "list-max-listpack-size", "nope"]);
    assert!(r.starts_with(b"-ERR CONFIG SET failed"), "{}", escape(&r));
    assert_eq!(
        a.cmd_str(&["CONFIG", "SET", "list-max-listpack-size", "-2"]),
        b"+OK\r\n"
    );
    // RESETSTAT on every node: the hits of earlier reads (every primary
    // had some) are gone everywhere.
    for port in cluster.primary_ports() {
        let info = cluster.conn(port).cmd_str(&["INFO", "stats"]);
        assert!(
            info_field(&info, "keyspace_hits").unwrap() > 0,
            "node {port}"
        );
    }
    assert_eq!(a.cmd_str(&["CONFIG", "RESETSTAT"]), b"+OK\r\n");
    for port in cluster.live_ports() {
        let info = cluster.conn(port).cmd_str(&["INFO", "stats"]);
        assert_eq!(info_field(&info, "keyspace_hits"), Some(0), "node {port}");
    }
}

/// Acceptance 5: SCRIPT KILL reaches the node running the script.
fn script_kill_anywhere(cluster: &RedisCluster, proxy: &Proxy) {
    let mut idle = proxy.conn();
    assert_eq!(
        escape(&idle.cmd_str(&["SCRIPT", "KILL"])),
        escape(b"-NOTBUSY No scripts in execution right now.\r\n")
    );
    assert_eq!(
        escape(&idle.cmd_str(&["FUNCTION", "KILL"])),
        escape(b"-NOTBUSY No scripts in execution right now.\r\n")
    );
    for (k, port) in key_per_primary(cluster, "busy") {
        let mut looping = proxy.conn();
        looping.send(&encode_str(&["EVAL", "while true do end", "1", &k]));
        let mut direct = cluster.conn(port);
        common::wait_until("the script runs", Duration::from_secs(10), || {
            direct.cmd_str(&["PING"]).starts_with(b"-BUSY")
        });
        let mut killer = proxy.conn();
        assert_eq!(
            killer.cmd_str(&["SCRIPT", "KILL"]),
            b"+OK\r\n",
            "node {port}"
        );
        let r = looping.read_reply();
        assert!(
            r.starts_with(b"-ERR Script killed by user with SCRIPT KILL"),
            "{}",
            escape(&r)
        );
        assert_eq!(looping.cmd_str(&["PING"]), b"+PONG\r\n");
    }
}

/// Acceptance 4: INFO counters are sums over the primaries.
fn info_sums(cluster: &RedisCluster, proxy: &Proxy) {
    let keys = key_per_primary(cluster, "blk");
    let mut blocked: Vec<RawConn> = Vec::new();
    for (k, _) in &keys {
        let mut c = proxy.conn();
        c.send(&encode_str(&["BLPOP", k, "0"]));
        blocked.push(c);
    }
    let mut c = proxy.conn();
    common::wait_until("3 clients blocked", Duration::from_secs(10), || {
        info_field(&c.cmd_str(&["INFO", "clients"]), "blocked_clients") == Some(3)
    });
    // Direct connections, one per primary, kept open (each is one of its
    // node's connected_clients, through respite too).
    let mut direct: Vec<RawConn> = cluster
        .primary_ports()
        .iter()
        .map(|p| cluster.conn(*p))
        .collect();
    let mut sum = |field: &str| -> i64 {
        direct
            .iter_mut()
            .map(|d| info_field(&d.cmd_str(&["INFO"]), field).unwrap())
            .sum()
    };
    for field in [
        "total_commands_processed",
        "keyspace_hits",
        "connected_clients",
    ] {
        let before = sum(field);
        let via = info_field(&c.cmd_str(&["INFO"]), field).unwrap();
        let after = sum(field);
        assert!(
            before <= via && via <= after,
            "{field}: {before} <= {via} <= {after}"
        );
    }
    for (b, (k, _)) in blocked.iter_mut().zip(&keys) {
        assert_eq!(c.cmd_str(&["RPUSH", k, "x"]), b":1\r\n");
        let r = b.read_reply();
        assert!(r.starts_with(b"*2\r\n"), "{}", escape(&r));
    }
    assert_eq!(
        c.cmd_str(&["DEL", &keys[0].0, &keys[1].0, &keys[2].0]),
        b":0\r\n"
    );
}

/// Acceptance 6: RANDOMKEY finds the one key of the cluster.
fn randomkey_over_primaries(proxy: &Proxy) {
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["RANDOMKEY"]), b"$-1\r\n");
    assert_eq!(c.cmd_str(&["SET", "only", "1"]), b"+OK\r\n");
    for i in 0..100 {
        assert_eq!(c.cmd_str(&["RANDOMKEY"]), b"$4\r\nonly\r\n", "call {i}");
    }
    hello3(&mut c);
    assert_eq!(c.cmd_str(&["RANDOMKEY"]), b"$4\r\nonly\r\n");
    assert_eq!(c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
}

/// `PUBSUB NUMSUB` pairs as (channel, count).
fn numsub(c: &mut RawConn, args: &[&str]) -> Vec<u8> {
    c.cmd_str(&[&["PUBSUB"], args].concat())
}

/// Acceptance 1: PUBLISH counts and PUBSUB answers are one server's for
/// respite's subscribers (channels hashing to different nodes).
fn publish_counts(cluster: &RedisCluster, proxy: &Proxy) {
    let mut p = proxy.conn();
    common::wait_until("earlier subscribers gone", Duration::from_secs(10), || {
        p.cmd_str(&["PUBSUB", "NUMPAT"]) == b":0\r\n"
            && p.cmd_str(&["PUBSUB", "CHANNELS"]) == b"*0\r\n"
    });
    let chans: Vec<String> = key_per_primary(cluster, "ch")
        .into_iter()
        .map(|c| c.0)
        .collect();
    let (c0, c1, c2) = (&chans[0], &chans[1], &chans[2]);
    assert_eq!(p.cmd_str(&["PUBLISH", c0, "m"]), b":0\r\n");
    let mut s1 = proxy.conn();
    s1.send(&encode_str(&["SUBSCRIBE", c0]));
    assert!(s1.read_reply().ends_with(b":1\r\n"));
    assert_eq!(p.cmd_str(&["PUBLISH", c0, "m1"]), b":1\r\n");
    let mut s2 = proxy.conn();
    hello3(&mut s2);
    s2.send(&encode_str(&["SUBSCRIBE", c0, c1]));
    s2.read_reply();
    s2.read_reply();
    assert_eq!(p.cmd_str(&["PUBLISH", c0, "m2"]), b":2\r\n");
    assert_eq!(p.cmd_str(&["PUBLISH", c1, "m3"]), b":1\r\n");
    let mut s3 = proxy.conn();
    s3.send(&encode_str(&["PSUBSCRIBE", "ch-*"]));
    s3.read_reply();
    assert_eq!(p.cmd_str(&["PUBLISH", c2, "m4"]), b":1\r\n");
    assert_eq!(p.cmd_str(&["PUBLISH", c0, "m5"]), b":3\r\n");
    let want = format!(
        "*6\r\n${}\r\n{c0}\r\n:2\r\n${}\r\n{c1}\r\n:1\r\n${}\r\n{c2}\r\n:0\r\n",
        c0.len(),
        c1.len(),
        c2.len()
    );
    assert_eq!(
        escape(&numsub(&mut p, &["NUMSUB", c0, c1, c2])),
        escape(want.as_bytes())
    );
    assert_eq!(p.cmd_str(&["PUBSUB", "NUMPAT"]), b":1\r\n");
    let r = p.cmd_str(&["PUBSUB", "CHANNELS"]);
    assert!(r.starts_with(b"*2\r\n"), "{}", escape(&r));
    for c in [c0, c1] {
        assert!(escape(&r).contains(c.as_str()), "{}", escape(&r));
    }
    // Shard channels live on their slot's node: summed over the primaries.
    let mut s4 = proxy.conn();
    s4.send(&encode_str(&["SSUBSCRIBE", c1]));
    s4.read_reply();
    let want = format!("*2\r\n${}\r\n{c1}\r\n:1\r\n", c1.len());
    assert_eq!(
        escape(&numsub(&mut p, &["SHARDNUMSUB", c1])),
        escape(want.as_bytes())
    );
    let want = format!("*1\r\n${}\r\n{c1}\r\n", c1.len());
    assert_eq!(
        escape(&numsub(&mut p, &["SHARDCHANNELS"])),
        escape(want.as_bytes())
    );
    // Every message arrived once.
    for (c, n) in [(&mut s1, 3), (&mut s2, 3), (&mut s3, 2)] {
        for _ in 0..n {
            let r = c.read_reply();
            assert!(escape(&r).contains("message"), "{}", escape(&r));
        }
        c.expect_silence(Duration::from_millis(100));
    }
}

/// Reads pub/sub frames from `sub` until every key of `want` had its
/// keyspace and keyevent `set` message, failing on a duplicate; other
/// events (a reshard's `del`/`restore`) are ignored.
fn expect_set_events(sub: &mut RawConn, want: &[String]) {
    use std::collections::HashMap;
    let mut space: HashMap<String, u32> = want.iter().map(|k| (k.clone(), 0)).collect();
    let mut event = space.clone();
    let mut missing = 2 * want.len();
    while missing > 0 {
        let frame = sub
            .read_reply_within(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{missing} notifications missing"));
        let text = String::from_utf8_lossy(&frame).to_string();
        let parts: Vec<&str> = text.split("\r\n").collect();
        // *4 $8 pmessage $n pattern $n channel $n payload
        assert!(
            parts.len() >= 9 && parts[2] == "pmessage",
            "{}",
            escape(&frame)
        );
        let (channel, payload) = (parts[6], parts[8]);
        let (map, key) = if let Some(k) = channel.strip_prefix("__keyspace@0__:") {
            if payload != "set" {
                continue;
            }
            (&mut space, k.to_string())
        } else if channel == "__keyevent@0__:set" {
            (&mut event, payload.to_string())
        } else {
            continue;
        };
        let Some(n) = map.get_mut(&key) else {
            continue;
        };
        *n += 1;
        assert_eq!(*n, 1, "duplicate notification {}", escape(&frame));
        missing -= 1;
    }
}

/// Writes `n` keys spread over every slot, through respite (pipelined);
/// returns them.
fn write_keys(c: &mut RawConn, tag: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("ev-{tag}-{i}")).collect();
    let mut out = Vec::new();
    for k in &keys {
        out.extend(encode_str(&["SET", k, "v"]));
    }
    c.send(&out);
    for k in &keys {
        assert_eq!(c.read_reply(), b"+OK\r\n", "SET {k}");
    }
    keys
}

/// Every primary has `PSUBSCRIBE`d respite's pattern.
fn wait_subscribed_everywhere(cluster: &RedisCluster) {
    common::wait_until(
        "the pattern on every primary",
        Duration::from_secs(15),
        || {
            cluster
                .primary_ports()
                .iter()
                .all(|p| cluster.conn(*p).cmd_str(&["PUBSUB", "NUMPAT"]) == b":1\r\n")
        },
    );
}

/// Acceptance 2: keyspace notifications from the whole cluster, each once,
/// also after a reshard of 100 slots and after a replica takeover.
fn keyspace_notifications(cluster: &mut RedisCluster, proxy: &mut Proxy) {
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
    assert_eq!(
        c.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]),
        b"+OK\r\n"
    );
    let mut sub = proxy.conn();
    sub.send(&encode_str(&["PSUBSCRIBE", "__key*__:*"]));
    assert_eq!(
        sub.read_reply(),
        b"*3\r\n$10\r\npsubscribe\r\n$10\r\n__key*__:*\r\n:1\r\n"
    );
    wait_subscribed_everywhere(cluster);
    let keys = write_keys(&mut c, "a", 1000);
    expect_set_events(&mut sub, &keys);

    // A reshard of 100 slots.
    let primaries = cluster.primary_ports();
    cluster.reshard(primaries[1], primaries[2], 100);
    let keys = write_keys(&mut c, "b", 1000);
    expect_set_events(&mut sub, &keys);

    // A replica takes over a primary other than the pinned connection's
    // (the primary of slot 0), whose loss would close the subscriber as
    // a direct client's.
    proxy.allow_log("upstream connection failed");
    proxy.allow_log("unavailable");
    let fixed = cluster.node_for_slot(0);
    let victim = *cluster
        .primary_ports()
        .iter()
        .find(|p| **p != fixed)
        .unwrap();
    cluster.kill(victim);
    let heir = cluster.wait_failover(victim);
    common::wait_until(
        "respite writes to the new primary",
        Duration::from_secs(20),
        || {
            let k = key_per_primary(cluster, "probe")
                .into_iter()
                .find(|(_, p)| *p == heir)
                .unwrap()
                .0;
            c.cmd_str(&["SET", &k, "v"]) == b"+OK\r\n"
        },
    );
    wait_subscribed_everywhere(cluster);
    // The probe writes' own notifications may be in the stream: drained
    // by waiting for this run's keys only.
    let keys = write_keys(&mut c, "c", 1000);
    expect_set_events(&mut sub, &keys);
}

#[test]
fn keyless_commands_answer_as_one_server() {
    let t0 = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    no_redirect_outside_multi(&cluster, &proxy);
    config_on_every_node(&cluster, &proxy);
    script_kill_anywhere(&cluster, &proxy);
    info_sums(&cluster, &proxy);
    randomkey_over_primaries(&proxy);
    publish_counts(&cluster, &proxy);
    // Last: it kills a primary.
    keyspace_notifications(&mut cluster, &mut proxy);
    eprintln!("done in {:?}", t0.elapsed());
}
