//! Helpers of the compression tests (standalone and cluster): proxies with a
//! `[compression]` section, and random operations whose replies are compared
//! byte for byte between a proxy that compresses and one that does not (or
//! Redis itself).
#![allow(dead_code)]

use super::{encode, jsongen, Proxy, RawConn};
use proptest::prelude::*;
use std::path::PathBuf;

/// The envelope's magic (../shared/DESIGN.md, "Compression").
pub const MAGIC: [u8; 3] = [0xF5, 0x52, 0x43];

/// A proxy with `[compression]` set to `toml_body` (extra `args` after the
/// defaults); the config file lives in the returned directory.
pub fn proxy_with(upstream: &str, toml_body: &str, args: &[&str]) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("proxy.toml");
    std::fs::write(&path, format!("[compression]\n{toml_body}\n")).expect("write config");
    let mut a = Proxy::default_args(upstream);
    a.extend(args.iter().map(|s| s.to_string()));
    a.push("--config".into());
    a.push(path.display().to_string());
    (Proxy::start_args(a), dir)
}

/// Compression on with this threshold.
pub fn on(min_size: usize) -> String {
    format!("enabled = true\nmin_size = {min_size}\n")
}

pub const OFF: &str = "enabled = false\n";

/// Values around `min`: random bytes, generated JSON, magic-prefixed, small.
pub fn value(min: usize) -> impl Strategy<Value = Vec<u8>> + Clone {
    prop_oneof![
        3 => (any::<u64>(), (min - min / 4)..(min * 3)).prop_map(|(seed, n)| {
            let mut v = jsongen::value(seed, n);
            v.truncate(n.max(1));
            v
        }),
        2 => proptest::collection::vec(any::<u8>(), (min - 8)..(min + 8)),
        1 => (proptest::collection::vec(any::<u8>(), 0..(min * 2)), any::<bool>()).prop_map(move |(mut v, json)| {
            if json {
                v = jsongen::value(v.len() as u64, min * 2);
            }
            let mut m = MAGIC.to_vec();
            m.append(&mut v);
            m
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..16),
        // Compressible binary: a short pattern repeated.
        1 => (proptest::collection::vec(any::<u8>(), 1..32), min..(min * 4)).prop_map(|(p, n)| p.iter().copied().cycle().take(n).collect()),
    ]
}

/// One request as arguments.
pub type Cmd = Vec<Vec<u8>>;

fn s(x: &str) -> Vec<u8> {
    x.as_bytes().to_vec()
}

/// String keys and hash keys; in cluster tests they spread over slots.
pub const KEYS: &[&str] = &["k0", "k1", "k2", "{t}a", "{t}b", "k5"];
pub const HASHES: &[&str] = &["h0", "h1", "{t}h"];
pub const FIELDS: &[&str] = &["f0", "f1", "f2", "f3"];

/// The names operations draw from.
#[derive(Debug, Clone, Copy)]
pub struct Names {
    pub keys: &'static [&'static str],
    pub hashes: &'static [&'static str],
    pub fields: &'static [&'static str],
}

pub const ALL: Names = Names {
    keys: KEYS,
    hashes: HASHES,
    fields: FIELDS,
};

/// A write or read of the commands whose values compression touches.
pub fn data_cmd(min: usize) -> impl Strategy<Value = Cmd> + Clone {
    data_cmd_on(min, ALL)
}

/// [`data_cmd`] over the given names.
pub fn data_cmd_on(min: usize, names: Names) -> impl Strategy<Value = Cmd> + Clone {
    let key = move || proptest::sample::select(names.keys).prop_map(s);
    let hash = move || proptest::sample::select(names.hashes).prop_map(s);
    let field = move || proptest::sample::select(names.fields).prop_map(s);
    let v = value(min);
    prop_oneof![
        4 => (key(), v.clone()).prop_map(|(k, v)| vec![s("SET"), k, v]),
        1 => (key(), v.clone()).prop_map(|(k, v)| vec![s("SET"), k, v, s("EX"), s("1000"), s("GET")]),
        1 => (key(), v.clone()).prop_map(|(k, v)| vec![s("SETEX"), k, s("1000"), v]),
        1 => (key(), v.clone()).prop_map(|(k, v)| vec![s("PSETEX"), k, s("1000000"), v]),
        1 => (key(), v.clone()).prop_map(|(k, v)| vec![s("SETNX"), k, v]),
        1 => (key(), v.clone()).prop_map(|(k, v)| vec![s("GETSET"), k, v]),
        1 => (key(), v.clone(), key(), v.clone()).prop_map(|(a, x, b, y)| vec![s("MSET"), a, x, b, y]),
        1 => (key(), v.clone(), key(), v.clone()).prop_map(|(a, x, b, y)| vec![s("MSETNX"), a, x, b, y]),
        2 => (hash(), field(), v.clone(), field(), v.clone()).prop_map(|(h, f, x, g, y)| vec![s("HSET"), h, f, x, g, y]),
        1 => (hash(), field(), v.clone()).prop_map(|(h, f, x)| vec![s("HMSET"), h, f, x]),
        1 => (hash(), field(), v.clone()).prop_map(|(h, f, x)| vec![s("HSETNX"), h, f, x]),
        4 => key().prop_map(|k| vec![s("GET"), k]),
        1 => key().prop_map(|k| vec![s("GETDEL"), k]),
        1 => key().prop_map(|k| vec![s("GETEX"), k, s("PERSIST")]),
        2 => (key(), key(), key()).prop_map(|(a, b, c)| vec![s("MGET"), a, b, c]),
        2 => (hash(), field()).prop_map(|(h, f)| vec![s("HGET"), h, f]),
        1 => (hash(), field(), field()).prop_map(|(h, f, g)| vec![s("HMGET"), h, f, g]),
        2 => hash().prop_map(|h| vec![s("HGETALL"), h]),
        1 => hash().prop_map(|h| vec![s("HVALS"), h]),
        1 => hash().prop_map(|h| vec![s("HRANDFIELD"), h, s("100"), s("WITHVALUES")]),
        1 => key().prop_map(|k| vec![s("DEL"), k]),
        // A type error and an arity error are Redis's to word.
        1 => hash().prop_map(|h| vec![s("GET"), h]),
        1 => Just(vec![s("GET")]),
    ]
}

/// Data commands, sometimes inside MULTI/EXEC.
pub fn step(min: usize) -> impl Strategy<Value = Vec<Cmd>> {
    prop_oneof![
        6 => data_cmd(min).prop_map(|c| vec![c]),
        1 => proptest::collection::vec(data_cmd(min), 1..5).prop_map(|mut cs| {
            cs.insert(0, vec![s("MULTI")]);
            cs.push(vec![s("EXEC")]);
            cs
        }),
    ]
}

/// Send `cmds` (pipelined when asked) and return each reply.
pub fn run(c: &mut RawConn, cmds: &[Cmd], pipelined: bool) -> Vec<Vec<u8>> {
    let enc = |cmd: &Cmd| {
        let a: Vec<&[u8]> = cmd.iter().map(|x| &x[..]).collect();
        encode(&a)
    };
    if pipelined {
        let mut all = Vec::new();
        for cmd in cmds {
            all.extend(enc(cmd));
        }
        c.send(&all);
        cmds.iter().map(|_| c.read_reply()).collect()
    } else {
        cmds.iter()
            .map(|cmd| {
                c.send(&enc(cmd));
                c.read_reply()
            })
            .collect()
    }
}

/// Printable command.
pub fn show(cmd: &Cmd) -> String {
    cmd.iter()
        .map(|a| {
            if a.len() > 40 {
                format!("<{} bytes {}..>", a.len(), super::escape(&a[..12]))
            } else {
                super::escape(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Byte-level operations on keys `b0`, `b1`, `{b}x`, `{b}y` and hash `bh`.
pub fn byte_cmd() -> impl Strategy<Value = Cmd> {
    let k = proptest::sample::select(&["b0", "b1", "{b}x", "{b}y", "none"][..]).prop_map(s);
    let n = |lo: i64, hi: i64| (lo..hi).prop_map(|i| s(&i.to_string()));
    let ty = prop_oneof![
        (1u32..65).prop_map(|b| format!("i{b}")),
        (1u32..64).prop_map(|b| format!("u{b}"))
    ];
    let sub = prop_oneof![
        (ty.clone(), 0u32..3000).prop_map(|(t, o)| vec![s("GET"), s(&t), s(&o.to_string())]),
        (ty.clone(), 0u32..3000, any::<i32>()).prop_map(|(t, o, v)| vec![
            s("SET"),
            s(&t),
            s(&o.to_string()),
            s(&v.to_string())
        ]),
        (ty.clone(), 0u32..50, -100i32..100).prop_map(|(t, o, v)| vec![
            s("INCRBY"),
            s(&t),
            format!("#{o}").into_bytes(),
            s(&v.to_string())
        ]),
        proptest::sample::select(&["WRAP", "SAT", "FAIL"][..])
            .prop_map(|o| vec![s("OVERFLOW"), s(o)]),
    ];
    let text = proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        3 => k.clone().prop_map(|k| vec![s("STRLEN"), k]),
        3 => (k.clone(), n(-500, 500), n(-500, 500)).prop_map(|(k, a, b)| vec![s("GETRANGE"), k, a, b]),
        1 => (k.clone(), n(-50, 50), n(-50, 50)).prop_map(|(k, a, b)| vec![s("SUBSTR"), k, a, b]),
        2 => (k.clone(), text.clone()).prop_map(|(k, t)| vec![s("APPEND"), k, t]),
        2 => (k.clone(), n(0, 700), text.clone()).prop_map(|(k, o, t)| vec![s("SETRANGE"), k, o, t]),
        1 => k.clone().prop_map(|k| vec![s("SETRANGE"), k, s("-1"), s("x")]),
        2 => (k.clone(), n(0, 5000)).prop_map(|(k, o)| vec![s("GETBIT"), k, o]),
        2 => (k.clone(), n(0, 5000), n(0, 2)).prop_map(|(k, o, b)| vec![s("SETBIT"), k, o, b]),
        1 => k.clone().prop_map(|k| vec![s("SETBIT"), k, s("1"), s("2")]),
        1 => k.clone().prop_map(|k| vec![s("BITCOUNT"), k]),
        2 => (k.clone(), n(-300, 300), n(-300, 300), proptest::sample::select(&["BYTE", "BIT"][..]))
            .prop_map(|(k, a, b, u)| vec![s("BITCOUNT"), k, a, b, s(u)]),
        2 => (k.clone(), n(0, 2), n(-300, 300), n(-300, 300), proptest::sample::select(&["BYTE", "BIT"][..]))
            .prop_map(|(k, bit, a, b, u)| vec![s("BITPOS"), k, bit, a, b, s(u)]),
        1 => (k.clone(), n(0, 2)).prop_map(|(k, bit)| vec![s("BITPOS"), k, bit]),
        2 => (k.clone(), proptest::collection::vec(sub.clone(), 1..4)).prop_map(|(k, subs)| {
            let mut c = vec![s("BITFIELD"), k];
            c.extend(subs.into_iter().flatten());
            c
        }),
        1 => (k.clone(), ty.clone(), 0u32..3000).prop_map(|(k, t, o)| vec![s("BITFIELD_RO"), k, s("GET"), s(&t), s(&o.to_string())]),
        1 => proptest::sample::select(&["AND", "OR", "XOR"][..]).prop_map(|op| vec![s("BITOP"), s(op), s("{b}d"), s("{b}x"), s("{b}y")]),
        1 => Just(vec![s("BITOP"), s("NOT"), s("{b}x"), s("{b}x")]),
        1 => Just(vec![s("GET"), s("{b}d")]),
        1 => Just(vec![s("LCS"), s("{b}x"), s("{b}y"), s("LEN")]),
        1 => Just(vec![s("LCS"), s("{b}x"), s("{b}y"), s("IDX"), s("MINMATCHLEN"), s("4"), s("WITHMATCHLEN")]),
        1 => proptest::sample::select(&["f0", "f1"][..]).prop_map(|f| vec![s("HSTRLEN"), s("bh"), s(f)]),
        2 => k.clone().prop_map(|k| vec![s("GET"), k]),
        1 => (k.clone(), value(200)).prop_map(|(k, v)| vec![s("SET"), k, v, s("KEEPTTL")]),
    ]
}

/// A property-test runner of `cases` cases that writes no regression files.
pub fn runner(cases: u32) -> proptest::test_runner::TestRunner {
    proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })
}

/// `HELLO proto` on `c`, which must succeed.
pub fn hello(c: &mut RawConn, proto: &str) {
    let r = c.cmd_str(&["HELLO", proto]);
    assert!(!r.starts_with(b"-"), "HELLO {proto}: {}", super::escape(&r));
}

/// The keys [`byte_cmd`] works on: JSON values of 500-900 bytes (compressed
/// above a 256-byte threshold) in `b0`, `b1`, `{b}x`, `{b}y` (with `EX 1000`
/// when `ttl`), and a 300-byte one in field `f0` of hash `bh`.
pub fn byte_setup(seeds: &[u64], ttl: bool) -> Vec<Cmd> {
    let mut setup: Vec<Cmd> = Vec::new();
    for (k, seed) in ["b0", "b1", "{b}x", "{b}y"].iter().zip(seeds) {
        let v = jsongen::value(*seed, 500 + (*seed % 400) as usize);
        let mut set = vec![b"SET".to_vec(), k.as_bytes().to_vec(), v];
        if ttl {
            set.extend([b"EX".to_vec(), b"1000".to_vec()]);
        }
        setup.push(set);
    }
    setup.push(vec![
        b"HSET".to_vec(),
        b"bh".to_vec(),
        b"f0".to_vec(),
        jsongen::value(seeds[0], 300),
    ]);
    setup
}

/// Send `cmds` one by one to both connections; every reply must be the same.
pub fn same_replies(
    a: &mut RawConn,
    b: &mut RawConn,
    cmds: &[Cmd],
    proto: &str,
) -> Result<(), TestCaseError> {
    let ra = run(a, cmds, false);
    let rb = run(b, cmds, false);
    for (i, cmd) in cmds.iter().enumerate() {
        prop_assert_eq!(
            &ra[i],
            &rb[i],
            "RESP{} {}: respite {} redis {}",
            proto,
            show(cmd),
            super::escape(&ra[i]),
            super::escape(&rb[i])
        );
    }
    Ok(())
}

/// [`hello`] and `FLUSHALL`: a connection at the start of a property case.
pub fn reset(c: &mut RawConn, proto: &str) {
    hello(c, proto);
    c.cmd_str(&["FLUSHALL"]);
}
