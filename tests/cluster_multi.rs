//! MULTI/EXEC through respite in cluster mode when the first command after
//! MULTI has no key (`MULTI`, `PING`, `SET k v`, `EXEC`): the transaction
//! must run on the node of its first keyed command, with every command of it
//! (the keyless ones before that too) queued and executed there, and every
//! reply byte-identical to what one plain Redis server gives for the same
//! commands. Checked against a real Redis Cluster of three primaries and a
//! real standalone Redis, in RESP2 and RESP3, one command at a time and
//! pipelined in one write; with compression, tags and stats on (the default)
//! and off; plus a standalone-mode proxy for keyless commands inside MULTI.
//! Keys spanning slots keep Redis Cluster's own errors (CROSSSLOT, or MOVED
//! then EXECABORT when the second slot lives on another node).

mod common;

use common::cluster::RedisCluster;
use common::{encode_str, escape, Proxy, RawConn, RedisServer};
use respite::cluster::key_slot;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// The tests of this file run one at a time (each starts a cluster).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// respite in cluster mode in front of `cluster`, with the extra config
/// file text `config` (empty: defaults), once its slot map is loaded.
fn cluster_proxy(cluster: &RedisCluster, config: &str) -> (Proxy, Option<tempfile::TempDir>) {
    let mut args = Proxy::default_args(&cluster.seed_addr());
    args.extend(["--mode".to_string(), "cluster".to_string()]);
    let dir = if config.is_empty() {
        None
    } else {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("respite.toml");
        std::fs::write(&path, config).unwrap();
        args.extend(["--config".to_string(), path.display().to_string()]);
        Some(dir)
    };
    let proxy = Proxy::start_args(args);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut c = proxy.conn();
    while !c.cmd_str(&["DBSIZE"]).starts_with(b":") {
        assert!(
            Instant::now() < deadline,
            "respite in cluster mode never loaded its slot map\n{}",
            proxy.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    (proxy, dir)
}

/// One key per primary of `cluster` (`{prefix-N}` hash tags), in port order.
fn key_per_node(cluster: &RedisCluster, prefix: &str) -> Vec<String> {
    let mut ports = cluster.primary_ports();
    ports.sort_unstable();
    ports.dedup();
    let mut keys = vec![String::new(); ports.len()];
    for i in 0.. {
        let k = format!("{{{prefix}-{i}}}k");
        let port = cluster.node_for_slot(key_slot(k.as_bytes()));
        let at = ports.iter().position(|&p| p == port).unwrap();
        if keys[at].is_empty() {
            keys[at] = k;
        }
        if keys.iter().all(|k| !k.is_empty()) {
            return keys;
        }
    }
    unreachable!()
}

type Script = Vec<Vec<String>>;

fn script(cmds: &[&[&str]]) -> Script {
    cmds.iter()
        .map(|c| c.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// The transactions compared with a plain Redis, for key `k` (`big`: a
/// value large enough to be compressed).
fn scripts(k: &str, big: &str) -> Vec<Script> {
    vec![
        // The brief's case: a keyless command first.
        script(&[
            &["MULTI"],
            &["PING"],
            &["SET", k, "v"],
            &["EXEC"],
            &["GET", k],
        ]),
        // Several keyless commands, then keyed ones, then keyless again.
        script(&[
            &["MULTI"],
            &["ECHO", "x"],
            &["PING", "hello"],
            &["SET", k, "1"],
            &["INCR", k],
            &["ECHO", "y"],
            &["GET", k],
            &["PING"],
            &["EXEC"],
            &["GET", k],
        ]),
        // Keyless after the first keyed command: still queued, not answered here.
        script(&[&["MULTI"], &["SET", k, "v"], &["PING"], &["EXEC"]]),
        // No keyed command at all.
        script(&[&["MULTI"], &["PING"], &["ECHO", "e"], &["EXEC"]]),
        script(&[&["MULTI"], &["EXEC"]]),
        // DISCARD before and after the first keyed command.
        script(&[&["MULTI"], &["PING"], &["DISCARD"], &["GET", k]]),
        script(&[
            &["MULTI"],
            &["PING"],
            &["SET", k, "v"],
            &["DISCARD"],
            &["GET", k],
            &["PING"],
        ]),
        // Errors while queueing: unknown command, wrong arity (keyless and
        // keyed), before and after the first key: EXECABORT, nothing written.
        script(&[
            &["MULTI"],
            &["NOSUCHCOMMAND", "a"],
            &["SET", k, "v"],
            &["EXEC"],
            &["GET", k],
        ]),
        script(&[
            &["MULTI"],
            &["PING", "a", "b"],
            &["SET", k, "v"],
            &["EXEC"],
            &["GET", k],
        ]),
        script(&[
            &["MULTI"],
            &["ECHO"],
            &["SET", k, "v"],
            &["EXEC"],
            &["GET", k],
        ]),
        script(&[
            &["MULTI"],
            &["PING"],
            &["SET", k, "v"],
            &["NOSUCHCOMMAND"],
            &["EXEC"],
            &["GET", k],
        ]),
        script(&[&["MULTI"], &["PING"], &["SET", k], &["EXEC"], &["GET", k]]),
        // Nested MULTI and WATCH inside MULTI are errors that do not abort.
        script(&[
            &["MULTI"],
            &["MULTI"],
            &["PING"],
            &["WATCH", k],
            &["SET", k, "v"],
            &["EXEC"],
            &["GET", k],
        ]),
        // SELECT 0 and UNWATCH are queued like any command.
        script(&[
            &["MULTI"],
            &["SELECT", "0"],
            &["UNWATCH"],
            &["SET", k, "v"],
            &["EXEC"],
        ]),
        // WATCH first decides the node; keyless commands inside still queue.
        script(&[
            &["WATCH", k],
            &["MULTI"],
            &["PING"],
            &["SET", k, "w"],
            &["ECHO", "z"],
            &["EXEC"],
            &["GET", k],
        ]),
        // A compressed value written and read back inside the transaction
        // (the EXEC element of GET is restored: PING counts as an element).
        // Byte-level commands (STRLEN, ...) inside MULTI are a documented
        // compression limitation, not tried here.
        script(&[
            &["MULTI"],
            &["PING"],
            &["SET", k, big],
            &["GET", k],
            &["TYPE", k],
            &["EXEC"],
            &["GET", k],
        ]),
        // SELECT and UNWATCH queued too: EXEC's GET element still restored.
        script(&[
            &["MULTI"],
            &["SELECT", "0"],
            &["SET", k, big],
            &["UNWATCH"],
            &["GET", k],
            &["EXEC"],
        ]),
        // Two transactions in a row on one connection.
        script(&[
            &["MULTI"],
            &["PING"],
            &["INCR", k],
            &["EXEC"],
            &["MULTI"],
            &["ECHO", "again"],
            &["INCR", k],
            &["EXEC"],
        ]),
    ]
}

/// Send `script` on `c`, pipelined (one write) or one command at a time.
fn run(c: &mut RawConn, script: &Script, pipelined: bool) -> Vec<Vec<u8>> {
    let enc = |cmd: &Vec<String>| {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        encode_str(&args)
    };
    if pipelined {
        let all: Vec<u8> = script.iter().flat_map(enc).collect();
        c.send(&all);
        script.iter().map(|_| c.read_reply()).collect()
    } else {
        script
            .iter()
            .map(|cmd| {
                c.send(&enc(cmd));
                c.read_reply()
            })
            .collect()
    }
}

fn show(script: &Script, replies: &[Vec<u8>]) -> String {
    let short = |b: &[u8]| {
        if b.len() <= 120 {
            escape(b)
        } else {
            format!(
                "{} ... {} ({} bytes)",
                escape(&b[..60]),
                escape(&b[b.len() - 60..]),
                b.len()
            )
        }
    };
    script
        .iter()
        .zip(replies)
        .map(|(cmd, r)| format!("    {} -> {}\n", short(cmd.join(" ").as_bytes()), short(r)))
        .collect()
}

/// A fresh connection in RESP2 or RESP3.
fn connect(port: u16, resp3: bool) -> RawConn {
    let mut c = RawConn::connect(port);
    if resp3 {
        let r = c.cmd_str(&["HELLO", "3"]);
        assert!(r.starts_with(b"%"), "HELLO 3: {}", escape(&r));
    }
    c
}

/// Every script, for every key, in RESP2 and RESP3, one at a time and
/// pipelined: the proxy's replies equal the plain Redis server's. Returns the
/// mismatches (empty when all agree).
fn compare_all(label: &str, proxy_port: u16, redis: &RedisServer, keys: &[String]) -> Vec<String> {
    let big = "compressible ".repeat(200);
    let mut flush_proxy = RawConn::connect(proxy_port);
    let mut flush_redis = redis.conn();
    let mut bad = Vec::new();
    let mut runs = 0;
    for resp3 in [false, true] {
        for pipelined in [false, true] {
            // One connection per mode: transactions follow each other on it.
            let mut via = connect(proxy_port, resp3);
            let mut want = connect(redis.port(), resp3);
            for k in keys {
                for s in scripts(k, &big) {
                    assert_eq!(flush_proxy.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
                    assert_eq!(flush_redis.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
                    let expected = run(&mut want, &s, pipelined);
                    let got = run(&mut via, &s, pipelined);
                    runs += 1;
                    if got != expected {
                        bad.push(format!(
                            "{label} resp{} {} key {k}:\n  respite:\n{}  redis:\n{}",
                            if resp3 { 3 } else { 2 },
                            if pipelined {
                                "pipelined"
                            } else {
                                "one at a time"
                            },
                            show(&s, &got),
                            show(&s, &expected)
                        ));
                    }
                }
            }
        }
    }
    eprintln!(
        "{label}: {runs} transactions compared, {} differ",
        bad.len()
    );
    bad
}

/// The keyless-first transactions, every error case, DISCARD, WATCH and
/// compression, byte-identical to a plain Redis through a cluster, with
/// the default configuration (compression, tags, stats on) and with all
/// three off.
#[test]
fn keyless_first_transactions_match_plain_redis() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 0);
    let redis = RedisServer::start();
    let keys = key_per_node(&cluster, "tx");
    let mut bad = Vec::new();
    let (mut proxy, _d) = cluster_proxy(&cluster, "");
    bad.extend(compare_all("cluster", proxy.port(), &redis, &keys));
    let (mut plain, _d2) = cluster_proxy(
        &cluster,
        "[compression]\nenabled = false\n[tags]\nenabled = false\n[stats]\nenabled = false\n",
    );
    bad.extend(compare_all(
        "cluster (no compression/tags/stats)",
        plain.port(),
        &redis,
        &keys,
    ));
    proxy.assert_running();
    plain.assert_running();
    eprintln!(
        "keyless-first transactions took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "{} transactions differ from plain Redis:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Standalone mode: keyless commands inside MULTI are queued by Redis, not
/// answered by the proxy (PING inside MULTI is `+QUEUED`, and its `PONG`
/// is in the EXEC reply).
#[test]
fn standalone_keyless_commands_inside_multi_match_plain_redis() {
    let _serial = serial();
    let started = Instant::now();
    let upstream = RedisServer::start();
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&upstream);
    let bad = compare_all(
        "standalone",
        proxy.port(),
        &redis,
        &["k".to_string(), "{x}other".to_string()],
    );
    proxy.assert_running();
    eprintln!(
        "standalone keyless-in-multi took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        bad.is_empty(),
        "{} transactions differ from plain Redis:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// TIME first (its reply differs between servers, so its shape is
/// checked), and the `redis` crate's atomic pipeline with a keyless command
/// first, for a key on every node.
#[test]
fn time_first_and_redis_crate_atomic_pipeline() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 0);
    let (mut proxy, _d) = cluster_proxy(&cluster, "");
    let keys = key_per_node(&cluster, "t");

    for resp3 in [false, true] {
        for pipelined in [false, true] {
            let mut c = connect(proxy.port(), resp3);
            for k in &keys {
                c.cmd_str(&["DEL", k]);
                let s = script(&[&["MULTI"], &["TIME"], &["INCR", k], &["EXEC"], &["GET", k]]);
                let r = run(&mut c, &s, pipelined);
                let ok = r[0] == b"+OK\r\n"
                    && r[1] == b"+QUEUED\r\n"
                    && r[2] == b"+QUEUED\r\n"
                    && r[3].starts_with(b"*2\r\n*2\r\n$")
                    && r[3].ends_with(b":1\r\n")
                    && r[4] == b"$1\r\n1\r\n";
                assert!(
                    ok,
                    "resp{} pipelined={pipelined}:\n{}",
                    if resp3 { 3 } else { 2 },
                    show(&s, &r)
                );
            }
        }
    }

    // The redis crate's MULTI ... EXEC pipeline, keyless command first.
    let client = common::client(proxy.port());
    let mut con = client.get_connection().expect("redis crate connection");
    for k in &keys {
        let (pong, ok, v, n): (String, String, String, i64) = redis::pipe()
            .atomic()
            .cmd("PING")
            .cmd("SET")
            .arg(k)
            .arg("crate")
            .cmd("GET")
            .arg(k)
            .cmd("STRLEN")
            .arg(k)
            .query(&mut con)
            .unwrap_or_else(|e| panic!("atomic pipeline on {k}: {e}"));
        assert_eq!(
            (pong.as_str(), ok.as_str(), v.as_str(), n),
            ("PONG", "OK", "crate", 5)
        );
    }

    // WATCH decides the node before MULTI: another client's write still
    // aborts a transaction that starts with keyless commands.
    let mut other = proxy.conn();
    for k in &keys {
        let w = format!("{k}:w");
        let mut c = proxy.conn();
        assert_eq!(c.cmd_str(&["SET", &w, "start"]), b"+OK\r\n");
        assert_eq!(c.cmd_str(&["WATCH", &w]), b"+OK\r\n");
        assert_eq!(c.cmd_str(&["MULTI"]), b"+OK\r\n");
        assert_eq!(c.cmd_str(&["PING"]), b"+QUEUED\r\n");
        assert_eq!(c.cmd_str(&["SET", &w, "mine"]), b"+QUEUED\r\n");
        assert_eq!(other.cmd_str(&["SET", &w, "theirs"]), b"+OK\r\n");
        assert_eq!(c.cmd_str(&["EXEC"]), b"*-1\r\n", "WATCH abort on {w}");
        assert_eq!(c.cmd_str(&["GET", &w]), b"$6\r\ntheirs\r\n");
    }

    // Transactions moved from the provisional node give its connection
    // back to the pool: many of them, one at a time and pipelined, leave
    // the nodes' client counts where a few left them.
    let clients = || -> i64 {
        cluster
            .primary_ports()
            .iter()
            .map(|&p| {
                let info = cluster.conn(p).cmd_str(&["INFO", "clients"]);
                let info = String::from_utf8_lossy(&info).to_string();
                info.split("connected_clients:")
                    .nth(1)
                    .and_then(|r| r.split("\r\n").next())
                    .and_then(|n| n.trim().parse::<i64>().ok())
                    .unwrap_or_else(|| panic!("INFO clients: {info}"))
            })
            .sum()
    };
    let mut c = proxy.conn();
    let tx = |c: &mut RawConn, k: &str, pipelined: bool| {
        let n = format!("{k}:n");
        let s = script(&[&["MULTI"], &["PING"], &["INCR", &n], &["EXEC"]]);
        let r = run(c, &s, pipelined);
        assert!(r[3].starts_with(b"*2\r\n+PONG\r\n:"), "{}", show(&s, &r));
    };
    for k in &keys {
        tx(&mut c, k, false);
        tx(&mut c, k, true);
    }
    // Connections opened by the transactions above have registered (the
    // count reads the same twice in a row).
    let settled = || {
        let mut last = clients();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            thread::sleep(Duration::from_millis(50));
            let now = clients();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    };
    let before = settled();
    for i in 0..60 {
        tx(&mut c, &keys[i % keys.len()], i % 2 == 0);
    }
    let mut after = clients();
    let deadline = Instant::now() + Duration::from_secs(5);
    while after > before + 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        after = clients();
    }
    assert!(
        after <= before + 2,
        "60 transactions moved between nodes: {before} upstream clients before, {after} after"
    );

    proxy.assert_running();
    eprintln!(
        "TIME / redis crate took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Keys spanning slots inside a transaction, with nothing, one or two
/// keyless commands before the first key: CROSSSLOT at EXEC for two slots of
/// one node, MOVED then EXECABORT for slots of two nodes, CROSSSLOT then
/// EXECABORT for one command over two slots; nothing is written.
#[test]
fn crossslot_inside_transactions_with_or_without_keyless_first() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 0);
    let (mut proxy, _d) = cluster_proxy(&cluster, "");
    let keys = key_per_node(&cluster, "t");
    let node_of = |k: &str| cluster.node_for_slot(key_slot(k.as_bytes()));
    let crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n".to_vec();
    let execabort = b"-EXECABORT Transaction discarded because of previous errors.\r\n".to_vec();
    let leads: [&[&[&str]]; 3] = [&[], &[&["PING"]], &[&["ECHO", "x"], &["PING"]]];
    let mut bad = Vec::new();
    let mut runs = 0;
    // The first key on every node in turn (one of them is the node a
    // keyless first command goes to).
    for (i, x) in keys.iter().enumerate() {
        // Another slot of x's node, and a key of another node.
        let y = (0..)
            .map(|j| format!("{{o-{j}}}k"))
            .find(|y| node_of(y) == node_of(x) && key_slot(y.as_bytes()) != key_slot(x.as_bytes()))
            .unwrap();
        let z = &keys[(i + 1) % keys.len()];
        for lead in leads {
            for pipelined in [false, true] {
                let mut c = proxy.conn();
                let with = |body: &[&[&str]]| {
                    let mut s = vec![vec!["MULTI".to_string()]];
                    s.extend(script(lead));
                    s.extend(script(body));
                    s
                };
                let queued = |n: usize| vec![b"+QUEUED\r\n".to_vec(); n];
                let what = format!("lead {lead:?} pipelined={pipelined}");
                let mut check = |case: &str, s: &Script, r: &[Vec<u8>], ok: bool| {
                    runs += 1;
                    if !ok {
                        bad.push(format!("{case}, {what}:\n{}", show(s, r)));
                    }
                };
                // Two slots of one node: Redis Cluster refuses EXEC itself.
                let s = with(&[&["SET", x, "1"], &["SET", &y, "2"], &["EXEC"]]);
                let r = run(&mut c, &s, pipelined);
                let mut want = vec![b"+OK\r\n".to_vec()];
                want.extend(queued(lead.len() + 2));
                want.push(crossslot.clone());
                check("two slots of one node", &s, &r, r == want);
                // Two nodes: the second key is MOVED, so EXEC aborts.
                let s = with(&[&["SET", x, "1"], &["SET", z, "2"], &["EXEC"]]);
                let r = run(&mut c, &s, pipelined);
                let n = r.len();
                let ok = r[0] == b"+OK\r\n"
                    && r[1..n - 2] == queued(lead.len() + 1)[..]
                    && r[n - 2].starts_with(b"-MOVED ")
                    && r[n - 1] == execabort;
                check("two nodes", &s, &r, ok);
                // One command over two slots.
                let s = with(&[&["MSET", x, "1", &y, "2"], &["EXEC"]]);
                let r = run(&mut c, &s, pipelined);
                let mut want = vec![b"+OK\r\n".to_vec()];
                want.extend(queued(lead.len()));
                want.push(crossslot.clone());
                want.push(execabort.clone());
                check("MSET over two slots", &s, &r, r == want);
                // Nothing was written.
                let s = script(&[&["EXISTS", x, &y, z]]);
                let r = run(&mut c, &s, false);
                check("after", &s, &r, r == [b":0\r\n".to_vec()]);
            }
        }
    }
    eprintln!("CROSSSLOT: {runs} checks, {} failed", bad.len());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    proxy.assert_running();
    eprintln!(
        "CROSSSLOT in transactions took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
