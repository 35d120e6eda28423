//! The tag commands in cluster mode against a real Redis Cluster: keys over
//! every slot under one tag, TAGINVAL removes them all (directory included);
//! after a reshard of slots holding tagged keys, TAGINVAL still finds every
//! key; TAGSET racing TAGINVAL (with directory pruning) loses nothing.

mod common;

use common::cluster::RedisCluster;
use common::*;
use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

fn cluster_proxy(cluster: &RedisCluster) -> Proxy {
    let mut args = Proxy::default_args(&cluster.seed_addr());
    args.extend(["--mode".to_string(), "cluster".to_string()]);
    let proxy = Proxy::start_args(args);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut c = proxy.conn();
    while !c.cmd_str(&["DBSIZE"]).starts_with(b":") {
        assert!(Instant::now() < deadline, "no slot map\n{}", proxy.log());
        thread::sleep(Duration::from_millis(50));
    }
    proxy
}

/// One key name per slot.
fn key_per_slot(prefix: &str) -> Vec<String> {
    (0..16384u16)
        .map(|s| format!("{prefix}{{{}}}", respite::tags::layout::hashtag(s)))
        .collect()
}

fn tagset_all(c: &mut RawConn, keys: &[String], tags: &[&str]) {
    for chunk in keys.chunks(1000) {
        let mut buf = Vec::new();
        for k in chunk {
            let mut args = vec!["TAGSET", k.as_str(), "v", "TAGS"];
            args.extend(tags);
            buf.extend(encode_str(&args));
        }
        c.send(&buf);
        for _ in chunk {
            let r = c.read_reply();
            assert_eq!(r, b"+OK\r\n", "{}", escape(&r));
        }
    }
}

fn int(r: &[u8]) -> i64 {
    std::str::from_utf8(&r[1..r.len() - 2])
        .unwrap()
        .parse()
        .unwrap()
}

/// Keys (through the proxy's KEYS, which asks every primary).
fn keys(c: &mut RawConn, pattern: &str) -> HashSet<String> {
    let r = c.cmd_str(&["KEYS", pattern]);
    let (frames, _) = split_frames(&r).unwrap();
    let mut out = HashSet::new();
    // An array reply: parse the bulk strings after the header.
    let text = &frames[0];
    let mut pos = text.iter().position(|&b| b == b'\n').unwrap() + 1;
    while pos < text.len() {
        let end = pos + text[pos..].iter().position(|&b| b == b'\r').unwrap();
        let n: usize = std::str::from_utf8(&text[pos + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        out.insert(String::from_utf8_lossy(&text[end + 2..end + 2 + n]).into_owned());
        pos = end + 2 + n + 2;
    }
    out
}

fn index_keys(c: &mut RawConn) -> HashSet<String> {
    let mut k = keys(c, "__respite:*");
    k.remove("__respite:sweep");
    k
}

#[test]
fn every_slot_under_one_tag_then_reshard_then_taginval() {
    let mut cluster = RedisCluster::start(3, 0);
    let proxy = cluster_proxy(&cluster);
    let mut c = proxy.conn();
    let all = key_per_slot("k:");
    tagset_all(&mut c, &all, &["all", "other"]);
    let listed = c.cmd_str(&["TAGKEYS", "all"]);
    assert!(
        listed.starts_with(b"*16384\r\n"),
        "{}",
        escape(&listed[..40])
    );
    let t = Instant::now();
    let n = c.cmd_str(&["TAGINVAL", "all"]);
    eprintln!(
        "TAGINVAL over 16384 slots: {} in {:?}",
        escape(&n),
        t.elapsed()
    );
    assert_eq!(int(&n), 16384);
    assert!(keys(&mut c, "k:*").is_empty());
    // The other tag's entries went with the keys; the index is empty.
    assert_eq!(c.cmd_str(&["TAGKEYS", "other"]), b"*0\r\n");
    assert_eq!(index_keys(&mut c), HashSet::new());

    // Tag again, move 1000 slots holding tagged keys, invalidate.
    tagset_all(&mut c, &all, &["all"]);
    let view = cluster.view();
    let primaries = view.primaries();
    cluster.reshard(primaries[0], primaries[1], 1000);
    let t = Instant::now();
    let n = c.cmd_str(&["TAGINVAL", "all"]);
    eprintln!(
        "TAGINVAL after reshard: {} in {:?}",
        escape(&n),
        t.elapsed()
    );
    assert_eq!(int(&n), 16384);
    assert!(keys(&mut c, "k:*").is_empty());
    assert_eq!(index_keys(&mut c), HashSet::new());

    // TAGADD / TAGSOF in cluster mode.
    assert_eq!(c.cmd_str(&["SET", "plain", "1"]), b"+OK\r\n");
    assert_eq!(c.cmd_str(&["TAGADD", "plain", "x", "y"]), b":2\r\n");
    assert_eq!(
        escape(&c.cmd_str(&["TAGSOF", "plain"])),
        escape(b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n")
    );
    assert_eq!(c.cmd_str(&["TAGINVAL", "y"]), b":1\r\n");
    // x's entry went with the key; its directory slot goes when x is next
    // listed (or swept).
    assert_eq!(c.cmd_str(&["TAGKEYS", "x"]), b"*0\r\n");
    assert_eq!(index_keys(&mut c), HashSet::new());
}

#[test]
fn cluster_race_tagset_against_taginval_loses_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let proxy = cluster_proxy(&cluster);
    let (s, i) = tags::race(
        proxy.port(),
        3000,
        &[&["t"]],
        "t",
        0x2545_F491_4F6C_DD1D,
        Duration::from_secs(4),
    );
    let mut c = proxy.conn();
    let live = keys(&mut c, "race:*");
    let listed = c.cmd_str(&["TAGKEYS", "t"]);
    let missing: Vec<&String> = live
        .iter()
        .filter(|k| {
            let needle = format!("${}\r\n{}\r\n", k.len(), k);
            !listed.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect();
    eprintln!(
        "cluster race: {s} TAGSETs, {i} TAGINVALs, {} live, {} lost",
        live.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "{missing:?}");
    assert!(int(&c.cmd_str(&["TAGINVAL", "t"])) >= 0);
    assert!(keys(&mut c, "race:*").is_empty());
    assert!(s > 2000 && i > 10, "too few iterations: {s} / {i}");
}

/// Sorted bulk strings of a flat array reply.
fn sorted_items(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply).into_owned();
    assert!(text.starts_with('*'), "not an array: {text:?}");
    let mut items: Vec<String> = text
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with('$'))
        .map(str::to_string)
        .collect();
    items.sort();
    items
}

/// `FUNCTION FLUSH` on every primary behind the proxy's back (see the
/// standalone test in tests/tags.rs): the first tag command after it, each
/// of the five in turn (TAGSET as a pipeline over keys on every node), gets
/// its normal reply, the library is loaded again where the command ran,
/// and the index is right. The background sweep is off (one hour).
#[test]
fn function_flush_on_every_primary_is_invisible_to_tag_commands() {
    let cluster = RedisCluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("proxy.toml");
    std::fs::write(&conf, "[tags]\nsweep_interval_ms = 3600000\n").unwrap();
    let mut args = Proxy::default_args(&cluster.seed_addr());
    args.extend(["--mode", "cluster", "--config"].map(String::from));
    args.push(conf.display().to_string());
    let proxy = Proxy::start_args(args);
    let mut c = proxy.conn();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c.cmd_str(&["DBSIZE"]).starts_with(b":") {
        assert!(Instant::now() < deadline, "no slot map\n{}", proxy.log());
        thread::sleep(Duration::from_millis(50));
    }
    let primaries = cluster.primary_ports();
    assert_eq!(primaries.len(), 3);
    let lib_loaded = |port: u16| {
        String::from_utf8_lossy(&cluster.conn(port).cmd_str(&["FUNCTION", "LIST"]))
            .contains("respite_tags_v1")
    };
    let flush_all = || {
        for &port in &primaries {
            assert_eq!(
                cluster.conn(port).cmd_str(&["FUNCTION", "FLUSH"]),
                b"+OK\r\n"
            );
            assert!(!lib_loaded(port));
        }
    };
    // 24 keys spread over the slots, so every primary holds some.
    let all = key_per_slot("ff:");
    let tagged: Vec<String> = (0..24).map(|i| all[i * 16384 / 24 + 7].clone()).collect();
    for &port in &primaries {
        assert!(
            tagged
                .iter()
                .any(|k| cluster.node_for_slot(respite::cluster::key_slot(k.as_bytes())) == port),
            "no test key on {port}"
        );
    }
    tagset_all(&mut c, &tagged, &["a"]);
    assert!(primaries.iter().all(|&p| lib_loaded(p)));

    // TAGSET first after the flush, pipelined over every node.
    flush_all();
    tagset_all(&mut c, &tagged, &["a", "b"]);
    for &port in &primaries {
        assert!(
            lib_loaded(port),
            "TAGSET did not reload the library on {port}"
        );
    }

    let owner = |k: &str| cluster.node_for_slot(respite::cluster::key_slot(k.as_bytes()));
    flush_all();
    assert_eq!(
        sorted_items(&c.cmd_str(&["TAGSOF", &tagged[0]])),
        ["a", "b"]
    );
    assert!(
        lib_loaded(owner(&tagged[0])),
        "TAGSOF did not reload the library"
    );

    flush_all();
    let r = c.cmd_str(&["TAGADD", &tagged[1], "c", "a"]);
    assert_eq!(r, b":1\r\n", "TAGADD: {}", escape(&r));
    assert!(
        lib_loaded(owner(&tagged[1])),
        "TAGADD did not reload the library"
    );
    assert_eq!(
        sorted_items(&c.cmd_str(&["TAGSOF", &tagged[1]])),
        ["a", "b", "c"]
    );

    flush_all();
    let mut expected = tagged.clone();
    expected.sort();
    assert_eq!(sorted_items(&c.cmd_str(&["TAGKEYS", "b"])), expected);
    for &port in &primaries {
        assert!(
            lib_loaded(port),
            "TAGKEYS did not reload the library on {port}"
        );
    }

    flush_all();
    let r = c.cmd_str(&["TAGINVAL", "a"]);
    assert_eq!(r, b":24\r\n", "TAGINVAL: {}", escape(&r));
    for &port in &primaries {
        assert!(
            lib_loaded(port),
            "TAGINVAL did not reload the library on {port}"
        );
    }
    assert!(keys(&mut c, "ff:*").is_empty());
    assert_eq!(c.cmd_str(&["TAGKEYS", "c"]), b"*0\r\n");
}
