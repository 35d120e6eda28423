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
use common::{encode_str, escape, Proxy, RawConn};
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

#[test]
fn keyless_commands_answer_as_one_server() {
    let t0 = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    let proxy = cluster_proxy(&cluster);
    no_redirect_outside_multi(&cluster, &proxy);
    eprintln!("done in {:?}", t0.elapsed());
}
