//! Envelope integrity (issue 16, item 1 and acceptance 1): a value that
//! begins with the compression magic, whatever path wrote it, reads back
//! through respite byte-exact, and every reply (the write's, `STRLEN`,
//! `GETRANGE`, ...) is the one Redis gives without respite.
//!
//! Each property case writes one random magic-prefixed value (random bytes,
//! consistent version-1 envelopes, version-2 envelopes with a wrong tag or
//! the built-in key's tag, huge length claims) along every write path: `SET`,
//! `APPEND` (new, empty and partly written keys, inside `MULTI`),
//! `SETRANGE`, `SETBIT`, `BITFIELD`, `BITOP`, `EVAL`, `FCALL`, `RESTORE`,
//! `COPY`, `HSET` from a script and `SORT ... STORE`. The same commands go to
//! a second Redis directly; the replies must be identical byte for byte.

mod common;

use common::compression::{self as cmp, runner, Cmd, MAGIC};
use common::{escape, RawConn, RedisServer};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use respite::compress::envelope::{self, Seal};

const SECRET: &str = "integrity-test-secret-0123456789";

fn config(secret: &str, extra: &str) -> String {
    format!("{}secret = \"{secret}\"\n{extra}", cmp::on(64))
}

fn c(args: &[&[u8]]) -> Cmd {
    args.iter().map(|a| a.to_vec()).collect()
}

/// A version-1 envelope, as respite wrote before tags.
fn v1(codec: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut e = MAGIC.to_vec();
    e.extend_from_slice(&[1, codec]);
    e.extend_from_slice(&len.to_le_bytes());
    e.extend_from_slice(payload);
    e
}

/// A version-2 header with any tag.
fn v2(codec: u8, len: u32, tag: u64, payload: &[u8]) -> Vec<u8> {
    let mut e = MAGIC.to_vec();
    e.extend_from_slice(&[2, codec]);
    e.extend_from_slice(&len.to_le_bytes());
    e.extend_from_slice(&tag.to_le_bytes());
    e.extend_from_slice(payload);
    e
}

/// Values that begin with the magic, many of them valid-looking envelopes.
fn magic_value() -> impl Strategy<Value = Vec<u8>> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..300);
    // Compressible: a short pattern repeated.
    let text = (proptest::collection::vec(any::<u8>(), 1..8), 20usize..600)
        .prop_map(|(p, n)| p.iter().copied().cycle().take(n).collect::<Vec<u8>>());
    prop_oneof![
        2 => bytes.clone().prop_map(|b| [&MAGIC[..], &b].concat()),
        1 => (0usize..3).prop_map(|n| MAGIC[..3].iter().copied().chain(std::iter::repeat_n(7, n)).collect()),
        2 => bytes.clone().prop_map(|b| v1(0, b.len() as u32, &b)),
        2 => text.clone().prop_map(|t| v1(1, t.len() as u32, &lz4_flex::block::compress(&t))),
        1 => bytes.clone().prop_map(|b| v1(1, 128 << 20, &b)),
        2 => (bytes.clone(), any::<u64>()).prop_map(|(b, tag)| v2(0, b.len() as u32, tag, &b)),
        2 => (text.clone(), any::<u64>()).prop_map(|(t, tag)| v2(1, t.len() as u32, tag, &lz4_flex::block::compress(&t))),
        1 => (bytes.clone(), any::<u64>()).prop_map(|(b, tag)| v2(1, 128 << 20, tag, &b)),
        // Tagged with the built-in key: this proxy has a secret.
        2 => prop_oneof![bytes.clone(), text].prop_map(|t| envelope::pack(&[&MAGIC[..], &t].concat(), 16, &Seal::public()).expect("magic-prefixed")),
    ]
}

/// Every write path for `v` (at least 3 bytes), each on its own keys, then
/// the reads; the paths around respite's rewrite when `around`. `payload` is a `DUMP` of a string holding `v`; `bit` a bit
/// offset below 24 to build `v` with `SETBIT`.
fn commands(v: &[u8], payload: &[u8], bit: usize, split: usize, around: bool) -> Vec<Cmd> {
    let mut cmds: Vec<Cmd> = Vec::new();
    let mut strings: Vec<&str> = Vec::new();
    let mut add = |key: &'static str, cs: Vec<Cmd>, cmds: &mut Vec<Cmd>| {
        strings.push(key);
        cmds.extend(cs);
    };
    let tail_of = |n: usize| v[n.min(v.len())..].to_vec();
    add("set", vec![c(&[b"SET", b"set", v])], &mut cmds);
    add(
        "append:new",
        vec![c(&[b"APPEND", b"append:new", v])],
        &mut cmds,
    );
    add(
        "append:empty",
        vec![
            c(&[b"SET", b"append:empty", b""]),
            c(&[b"APPEND", b"append:empty", v]),
        ],
        &mut cmds,
    );
    // The magic completed by the appended bytes.
    add(
        "append:split",
        vec![
            c(&[b"SET", b"append:split", &v[..split]]),
            c(&[b"APPEND", b"append:split", &tail_of(split)]),
        ],
        &mut cmds,
    );
    add(
        "append:multi",
        vec![
            c(&[b"MULTI"]),
            c(&[b"APPEND", b"append:multi", v]),
            c(&[b"EXEC"]),
        ],
        &mut cmds,
    );
    add(
        "append:multisplit",
        vec![
            c(&[b"SET", b"append:multisplit", &v[..split]]),
            c(&[b"MULTI"]),
            c(&[b"APPEND", b"append:multisplit", &tail_of(split)]),
            c(&[b"EXEC"]),
        ],
        &mut cmds,
    );
    add(
        "setrange:new",
        vec![c(&[b"SETRANGE", b"setrange:new", b"0", v])],
        &mut cmds,
    );
    add(
        "setrange:short",
        vec![
            c(&[b"SET", b"setrange:short", b"xy"]),
            c(&[b"SETRANGE", b"setrange:short", b"0", v]),
        ],
        &mut cmds,
    );
    add(
        "setrange:offset",
        vec![
            c(&[b"SET", b"setrange:offset", &v[..split]]),
            c(&[
                b"SETRANGE",
                b"setrange:offset",
                split.to_string().as_bytes(),
                &tail_of(split),
            ]),
        ],
        &mut cmds,
    );
    // Over a longer value: the result is v followed by the old tail.
    let long = vec![b'z'; v.len() + 40];
    add(
        "setrange:long",
        vec![
            c(&[b"SET", b"setrange:long", &long]),
            c(&[b"SETRANGE", b"setrange:long", b"0", v]),
        ],
        &mut cmds,
    );
    add(
        "setrange:multi",
        vec![
            c(&[b"MULTI"]),
            c(&[b"SETRANGE", b"setrange:multi", b"0", v]),
            c(&[b"EXEC"]),
        ],
        &mut cmds,
    );
    // SETBIT restores one flipped bit of the first 3 bytes.
    let mut flipped = v.to_vec();
    flipped[bit / 8] ^= 0x80 >> (bit % 8);
    let was = (v[bit / 8] >> (7 - bit % 8)) & 1;
    add(
        "setbit",
        vec![
            c(&[b"SET", b"setbit", &flipped]),
            c(&[
                b"SETBIT",
                b"setbit",
                bit.to_string().as_bytes(),
                was.to_string().as_bytes(),
            ]),
        ],
        &mut cmds,
    );
    // BITFIELD writes the first byte, alone and together with a write past
    // the end (which an undo must take back too).
    let mut zeroed = v.to_vec();
    zeroed[0] = 0;
    let far = ((v.len() + 8) * 8).to_string();
    add(
        "bitfield",
        vec![
            c(&[b"SET", b"bitfield", &zeroed]),
            c(&[b"BITFIELD", b"bitfield", b"SET", b"u8", b"0", b"245"]),
        ],
        &mut cmds,
    );
    add(
        "bitfield:far",
        vec![
            c(&[b"SET", b"bitfield:far", &zeroed]),
            c(&[
                b"BITFIELD",
                b"bitfield:far",
                b"INCRBY",
                b"u8",
                b"#0",
                b"245",
                b"SET",
                b"u8",
                far.as_bytes(),
                b"1",
                b"GET",
                b"u16",
                b"0",
            ]),
        ],
        &mut cmds,
    );
    // BITOP OR of two values without the magic.
    let mut high = v.to_vec();
    high[0] = 0xF0;
    let mut low = vec![0u8; v.len()];
    low[0] = 0x05;
    add(
        "{b}op",
        vec![
            c(&[b"SET", b"{b}hi", &high]),
            c(&[b"SET", b"{b}lo", &low]),
            c(&[b"BITOP", b"OR", b"{b}op", b"{b}hi", b"{b}lo"]),
        ],
        &mut cmds,
    );
    // Around respite's rewrite: scripts, functions, RESTORE, COPY (not for
    // respite's own envelopes: those bytes, copied, are a compressed value).
    if around {
        add(
            "eval",
            vec![c(&[
                b"EVAL",
                b"return redis.call('SET', KEYS[1], ARGV[1])",
                b"1",
                b"eval",
                v,
            ])],
            &mut cmds,
        );
        add(
            "fcall",
            vec![c(&[b"FCALL", b"h2set", b"1", b"fcall", v])],
            &mut cmds,
        );
        add(
            "restore",
            vec![c(&[b"RESTORE", b"restore", b"0", payload])],
            &mut cmds,
        );
        add(
            "{c}dst",
            vec![
                c(&[
                    b"EVAL",
                    b"return redis.call('SET', KEYS[1], ARGV[1])",
                    b"1",
                    b"{c}src",
                    v,
                ]),
                c(&[b"COPY", b"{c}src", b"{c}dst"]),
            ],
            &mut cmds,
        );
    }
    // Reads of every string written.
    for k in strings {
        let k = k.as_bytes();
        cmds.push(c(&[b"GET", k]));
        cmds.push(c(&[b"STRLEN", k]));
        cmds.push(c(&[b"GETRANGE", k, b"0", b"-1"]));
        cmds.push(c(&[b"GETBIT", k, b"3"]));
    }
    cmds.push(c(&[b"MGET", b"set", b"append:new", b"setbit", b"none"]));
    // A hash field from a script.
    if around {
        cmds.push(c(&[
            b"EVAL",
            b"return redis.call('HSET', KEYS[1], 'f', ARGV[1])",
            b"1",
            b"hash",
            v,
        ]));
    } else {
        cmds.push(c(&[b"HSET", b"hash", b"f", v]));
    }
    cmds.push(c(&[b"HSET", b"hash", b"g", v]));
    for read in [
        &[&b"HGET"[..], b"hash", b"f"][..],
        &[b"HGET", b"hash", b"g"],
        &[b"HSTRLEN", b"hash", b"f"],
        &[b"HGETALL", b"hash"],
        &[b"HMGET", b"hash", b"f", b"g"],
    ] {
        cmds.push(c(read));
    }
    // A list sorted into another list.
    cmds.push(c(&[b"RPUSH", b"{l}src", v, b"plain"]));
    cmds.push(c(&[
        b"SORT", b"{l}src", b"BY", b"nosort", b"ALPHA", b"STORE", b"{l}dst",
    ]));
    cmds.push(c(&[b"LRANGE", b"{l}dst", b"0", b"-1"]));
    cmds
}

fn load_function(conn: &mut RawConn) {
    let lib = "#!lua name=h2lib\nredis.register_function('h2set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)";
    let r = conn.cmd_str(&["FUNCTION", "LOAD", "REPLACE", lib]);
    assert_eq!(r, b"$5\r\nh2lib\r\n", "{}", escape(&r));
}

/// `v` must read back through respite as Redis stores it, whichever path
/// wrote it; replies identical to Redis's own (acceptance 1).
#[test]
fn magic_prefixed_values_read_back_exactly_on_every_write_path() {
    // Hashes stay listpacks on both sides, so HGETALL orders fields alike.
    let listpack = ["--hash-max-listpack-value", "1000000"];
    let r = RedisServer::start_with(&listpack);
    let reference = RedisServer::start_with(&listpack);
    let (mut p, _d) = cmp::proxy_with(&r.addr(), &config(SECRET, ""), &[]);
    load_function(&mut r.conn());
    load_function(&mut reference.conn());
    let rss_before = p.rss_kb();
    // Respite's own envelopes too (what a script or DUMP reads from a
    // compressed key): written through respite they are values like any other.
    let own = Seal::new(Some(SECRET.as_bytes()), &[], false);
    let value = prop_oneof![
        3 => magic_value().prop_map(|v| (v, true)),
        1 => proptest::collection::vec(any::<u8>(), 0..400).prop_map(move |t| {
            let t = [&t[..], &t[..]].concat();
            (envelope::pack(&t, 16, &own).unwrap_or_else(|| envelope::raw(&t, &own)), false)
        }),
    ];
    let strategy = (value, 0usize..24, 1usize..3, any::<bool>());
    runner(40)
        .run(&strategy, |((mut v, around), bit, split, resp3)| {
            // SETBIT and BITOP build at least the first 3 bytes.
            while v.len() < 3 {
                v.push(b'.');
            }
            let proto = if resp3 { "3" } else { "2" };
            let mut a = p.conn();
            let mut b = reference.conn();
            let mut plain = reference.conn();
            let mut direct = r.conn();
            cmp::reset(&mut a, proto);
            cmp::reset(&mut b, proto);
            // A DUMP of a string holding v (the same on both servers).
            plain.cmd(&[b"SET", b"dumpsrc", &v]);
            let dump = plain.cmd(&[b"DUMP", b"dumpsrc"]);
            plain.cmd(&[b"DEL", b"dumpsrc"]);
            let body = dump.iter().position(|&x| x == b'\n').expect("bulk") + 1;
            let payload = &dump[body..dump.len() - 2];
            let cmds = commands(&v, payload, bit, split, around);
            cmp::same_replies(&mut a, &mut b, &cmds, proto)?;
            // Written around respite: Redis stores exactly v, and so respite reads it.
            let mut want = format!("${}\r\n", v.len()).into_bytes();
            want.extend_from_slice(&v);
            want.extend_from_slice(b"\r\n");
            for k in ["eval", "fcall", "restore", "{c}dst"]
                .iter()
                .filter(|_| around)
            {
                prop_assert_eq!(
                    escape(&direct.cmd(&[b"GET", k.as_bytes()])),
                    escape(&want),
                    "stored bytes of {}",
                    k
                );
            }
            Ok::<(), TestCaseError>(())
        })
        .unwrap();
    // Planted length claims (128 MiB) were never allocated.
    assert!(
        p.rss_kb() < rss_before + 64 * 1024,
        "rss {} KB, was {} KB",
        p.rss_kb(),
        rss_before
    );
    p.assert_running();
}

/// Respites that share a Redis and a secret read each other's compressed
/// values; one with another secret reads them as stored bytes, one with the
/// old secret in `previous_secrets` still restores them.
#[test]
fn the_secret_decides_which_values_are_restored() {
    let r = RedisServer::start();
    let other = "another-secret-for-this-test-0001";
    let (a, _da) = cmp::proxy_with(&r.addr(), &config(SECRET, ""), &[]);
    let (b, _db) = cmp::proxy_with(&r.addr(), &config(SECRET, ""), &[]);
    let (x, _dx) = cmp::proxy_with(&r.addr(), &config(other, ""), &[]);
    let (y, _dy) = cmp::proxy_with(
        &r.addr(),
        &config(other, &format!("previous_secrets = [\"{SECRET}\"]\n")),
        &[],
    );
    let v = common::jsongen::value(11, 4000);
    let mut want = format!("${}\r\n", v.len()).into_bytes();
    want.extend_from_slice(&v);
    want.extend_from_slice(b"\r\n");
    assert_eq!(a.conn().cmd(&[b"SET", b"doc", &v]), b"+OK\r\n");
    let stored = r.conn().cmd(&[b"GET", b"doc"]);
    assert!(stored.len() < want.len() / 2, "stored compressed");
    assert_eq!(b.conn().cmd(&[b"GET", b"doc"]), want);
    assert_eq!(y.conn().cmd(&[b"GET", b"doc"]), want);
    assert_eq!(x.conn().cmd(&[b"GET", b"doc"]), stored);
    // The environment variable sets the secret too.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, format!("[compression]\n{}", cmp::on(64))).expect("write config");
    let mut args = common::Proxy::default_args(&r.addr());
    args.extend(["--config".to_string(), path.display().to_string()]);
    let e = common::Proxy::start_env(
        args,
        vec![("RESPITE_COMPRESSION_SECRET".into(), SECRET.into())],
    );
    assert_eq!(e.conn().cmd(&[b"GET", b"doc"]), want);
    assert!(!e.log().contains("compression.secret is not set"));
    // Without a secret, respite says so once at start.
    let (n, _dn) = cmp::proxy_with(&r.addr(), &cmp::on(64), &[]);
    assert_eq!(n.conn().cmd(&[b"GET", b"doc"]), stored);
    assert_eq!(n.log().matches("compression.secret is not set").count(), 1);
}

/// Data written by a respite before tags (format version 1) reads back with
/// `accept_v1_envelopes`, and as stored bytes without it.
#[test]
fn version_1_envelopes_are_read_only_when_accepted() {
    let r = RedisServer::start();
    let (old, _d1) = cmp::proxy_with(
        &r.addr(),
        &config(SECRET, "accept_v1_envelopes = true\n"),
        &[],
    );
    let (new, _d2) = cmp::proxy_with(&r.addr(), &config(SECRET, ""), &[]);
    let text = b"version one ".repeat(40);
    let e = v1(1, text.len() as u32, &lz4_flex::block::compress(&text));
    r.conn().cmd(&[b"SET", b"old", &e]);
    let mut want = format!("${}\r\n", text.len()).into_bytes();
    want.extend_from_slice(&text);
    want.extend_from_slice(b"\r\n");
    assert_eq!(old.conn().cmd(&[b"GET", b"old"]), want);
    assert_eq!(
        old.conn().cmd(&[b"STRLEN", b"old"]),
        format!(":{}\r\n", text.len()).into_bytes()
    );
    let mut stored = format!("${}\r\n", e.len()).into_bytes();
    stored.extend_from_slice(&e);
    stored.extend_from_slice(b"\r\n");
    assert_eq!(new.conn().cmd(&[b"GET", b"old"]), stored);
}

/// Inside `MULTI` a writer cannot wait for respite to compute its result:
/// `APPEND` and `SETRANGE` whose result respite knows in advance store it as
/// an envelope; `SETBIT`, `BITFIELD`, `BITOP` and `SETRANGE` over a longer
/// value that would leave the magic in front are an error naming the key
/// and the value is left as it was. The rest of the transaction runs.
#[test]
fn writers_inside_multi_that_would_plant_the_magic() {
    let r = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&r.addr(), &config(SECRET, ""), &[]);
    let mut a = p.conn();
    let v = [&MAGIC[..], b"\x01\x00\x05\x00\x00\x00hello"].concat();
    let mut zeroed = v.clone();
    zeroed[0] = 0;
    let mut flipped = v.clone();
    flipped[2] ^= 1;
    // Shorter than min_size: stored as it is.
    let long = vec![b'z'; 40];
    let mut high = v.clone();
    high[0] = 0xF0;
    let mut low = vec![0u8; v.len()];
    low[0] = 5;
    for (k, init) in [
        (&b"bf"[..], &zeroed[..]),
        (b"sb", &flipped),
        (b"sr", &long),
        (b"{b}hi", &high),
        (b"{b}lo", &low),
    ] {
        assert_eq!(a.cmd(&[b"SET", k, init]), b"+OK\r\n");
    }
    a.cmd(&[b"SET", b"{b}op", b"before"]);
    assert_eq!(a.cmd(&[b"MULTI"]), b"+OK\r\n");
    for cmd in [
        &[&b"APPEND"[..], b"ap", &v][..],
        &[b"SETRANGE", b"sn", b"0", &v],
        &[b"BITFIELD", b"bf", b"SET", b"u8", b"0", b"245"],
        &[b"SETBIT", b"sb", b"23", b"1"],
        &[b"SETRANGE", b"sr", b"0", &v],
        &[b"BITOP", b"OR", b"{b}op", b"{b}hi", b"{b}lo"],
        &[b"SET", b"after", b"ran"],
    ] {
        assert_eq!(a.cmd(cmd), b"+QUEUED\r\n");
    }
    let exec = String::from_utf8_lossy(&a.cmd(&[b"EXEC"])).to_string();
    let n = v.len();
    assert!(exec.starts_with(&format!("*7\r\n:{n}\r\n:{n}\r\n-ERR respite: BITFIELD inside MULTI would leave key 'bf' beginning with the compression magic")), "{exec}");
    for (name, key) in [("SETBIT", "sb"), ("SETRANGE", "sr"), ("BITOP", "{b}op")] {
        assert!(
            exec.contains(&format!(
                "-ERR respite: {name} inside MULTI would leave key '{key}'"
            )),
            "{exec}"
        );
    }
    assert!(exec.ends_with("+OK\r\n"), "{exec}");
    let bulk = |v: &[u8]| [format!("${}\r\n", v.len()).as_bytes(), v, b"\r\n"].concat();
    assert_eq!(a.cmd(&[b"GET", b"ap"]), bulk(&v));
    assert_eq!(a.cmd(&[b"GET", b"sn"]), bulk(&v));
    assert_eq!(a.cmd(&[b"GET", b"bf"]), bulk(&zeroed));
    assert_eq!(a.cmd(&[b"GET", b"sb"]), bulk(&flipped));
    assert_eq!(a.cmd(&[b"GET", b"sr"]), bulk(&long));
    assert_eq!(a.cmd(&[b"GET", b"{b}op"]), bulk(b"before"));
    assert_eq!(a.cmd(&[b"GET", b"after"]), bulk(b"ran"));
    // Outside MULTI the same commands store their results.
    assert_eq!(
        a.cmd(&[b"BITFIELD", b"bf", b"SET", b"u8", b"0", b"245"]),
        b"*1\r\n:0\r\n"
    );
    assert_eq!(a.cmd(&[b"GET", b"bf"]), bulk(&v));
    assert_eq!(a.cmd(&[b"STRLEN", b"bf"]), format!(":{n}\r\n").into_bytes());
    // The guard script runs by its SHA1; after SCRIPT FLUSH it is sent again.
    assert_eq!(r.conn().cmd_str(&["SCRIPT", "FLUSH"]), b"+OK\r\n");
    assert_eq!(a.cmd(&[b"APPEND", b"after", b"!"]), b":4\r\n");
    assert_eq!(a.cmd(&[b"APPEND", b"after", b"!"]), b":5\r\n");
    assert_eq!(a.cmd(&[b"GET", b"after"]), bulk(b"ran!!"));
}
