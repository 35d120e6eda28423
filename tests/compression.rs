//! Transparent compression against real Redis (issue 4's acceptance list):
//! replies identical with compression on and off (RESP2, RESP3, pipelines,
//! MULTI/EXEC), the stored format, magic-prefixed and foreign values, bad
//! envelopes, byte-level commands, and memory saved.

mod common;

use common::compression::{self as cmp, hello, runner, Cmd, MAGIC};
use common::{escape, jsongen, RawConn, RedisServer};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const MIN: usize = 256;
/// Hashes stay listpacks on both sides, so field order is insertion order:
/// with hashtable encoding two Redis servers order fields differently
/// (seeded hashing), compression or not.
const LISTPACK: &[&str] = &[
    "--hash-max-listpack-value",
    "1000000",
    "--hash-max-listpack-entries",
    "1000",
];

/// Acceptance 1 (standalone): random writes and reads of every listed
/// command, around the threshold, give byte-identical replies through a
/// compressing proxy and a plain one, in RESP2 and RESP3, one by one and
/// pipelined, alone and inside MULTI/EXEC.
#[test]
fn replies_are_identical_with_compression_on_and_off() {
    let (ra, rb) = (
        RedisServer::start_with(LISTPACK),
        RedisServer::start_with(LISTPACK),
    );
    let (on, _d1) = cmp::proxy_with(&ra.addr(), &cmp::on(MIN), &[]);
    let (off, _d2) = cmp::proxy_with(&rb.addr(), cmp::OFF, &[]);
    let mut redis_a = ra.conn();
    for proto in ["2", "3"] {
        let strategy = (
            proptest::collection::vec(cmp::step(MIN), 1..30),
            any::<bool>(),
        );
        runner(24)
            .run(&strategy, |(steps, pipelined)| {
                let mut a = on.conn();
                let mut b = off.conn();
                cmp::reset(&mut a, proto);
                cmp::reset(&mut b, proto);
                let cmds: Vec<Cmd> = steps.into_iter().flatten().collect();
                let ra = cmp::run(&mut a, &cmds, pipelined);
                let rb = cmp::run(&mut b, &cmds, pipelined);
                for (i, cmd) in cmds.iter().enumerate() {
                    prop_assert_eq!(
                        &ra[i],
                        &rb[i],
                        "RESP{} {} (command {} of {}, pipelined {}): on {} off {}",
                        proto,
                        cmp::show(cmd),
                        i,
                        cmds.len(),
                        pipelined,
                        escape(&ra[i]),
                        escape(&rb[i])
                    );
                }
                Ok(())
            })
            .unwrap();
    }
    // Something was stored compressed along the way.
    let stats = redis_a.cmd_str(&["DBSIZE"]);
    assert!(stats.starts_with(b":"));
}

/// Acceptance 2: read straight from Redis, a large value written through the
/// proxy starts with the magic and takes less memory.
#[test]
fn large_values_are_stored_compressed() {
    let r = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&r.addr(), &cmp::on(1024), &[]);
    let v = jsongen::value(7, 4096);
    let mut c = p.conn();
    assert_eq!(c.cmd(&[b"SET", b"doc", &v]), b"+OK\r\n");
    assert_eq!(c.cmd(&[b"HSET", b"hdoc", b"f", &v]), b":1\r\n");
    let mut raw = r.conn();
    assert_eq!(raw.cmd(&[b"SET", b"plain", &v]), b"+OK\r\n");
    let stored = raw.cmd(&[b"GET", b"doc"]);
    let body = &stored[stored.iter().position(|&b| b == b'\n').unwrap() + 1..];
    assert!(body.starts_with(&MAGIC), "{}", escape(&stored));
    assert!(
        stored.len() < v.len() / 2 + 64,
        "stored {} bytes",
        stored.len()
    );
    let field = raw.cmd(&[b"HGET", b"hdoc", b"f"]);
    assert!(field[field.iter().position(|&b| b == b'\n').unwrap() + 1..].starts_with(&MAGIC));
    let usage = |c: &mut RawConn, k: &str| -> i64 {
        let r = c.cmd_str(&["MEMORY", "USAGE", k]);
        String::from_utf8_lossy(&r[1..r.len() - 2]).parse().unwrap()
    };
    let (small, big) = (usage(&mut raw, "doc"), usage(&mut raw, "plain"));
    assert!(
        small * 2 < big,
        "MEMORY USAGE compressed {small} vs plain {big}"
    );
    // Through the proxy it reads back as written.
    let mut want = format!("${}\r\n", v.len()).into_bytes();
    want.extend_from_slice(&v);
    want.extend_from_slice(b"\r\n");
    assert_eq!(c.cmd(&[b"GET", b"doc"]), want);
    assert_eq!(c.cmd(&[b"HGET", b"hdoc", b"f"]), want);
}

/// `compression.exclude` keys are stored as they are.
#[test]
fn excluded_keys_are_stored_as_they_are() {
    let r = RedisServer::start();
    let toml = format!("{}exclude = [\"raw:*\", \"h?sh\"]\n", cmp::on(64));
    let (p, _d) = cmp::proxy_with(&r.addr(), &toml, &[]);
    let v = jsongen::value(3, 2000);
    let mut c = p.conn();
    let mut raw = r.conn();
    c.cmd(&[b"SET", b"raw:1", &v]);
    c.cmd(&[b"HSET", b"hash", b"f", &v]);
    c.cmd(&[b"SET", b"other", &v]);
    let bulk = |v: &[u8]| {
        let mut b = format!("${}\r\n", v.len()).into_bytes();
        b.extend_from_slice(v);
        b.extend_from_slice(b"\r\n");
        b
    };
    assert_eq!(raw.cmd(&[b"GET", b"raw:1"]), bulk(&v));
    assert_eq!(raw.cmd(&[b"HGET", b"hash", b"f"]), bulk(&v));
    assert_ne!(raw.cmd(&[b"GET", b"other"]), bulk(&v));
}

/// Acceptance 3: values that begin with the magic round-trip exactly;
/// values written straight to Redis read back untouched.
#[test]
fn magic_prefixed_and_foreign_values_read_back_exactly() {
    let r = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&r.addr(), &cmp::on(64), &[]);
    let mut c = p.conn();
    let mut raw = r.conn();
    let mut cases: Vec<Vec<u8>> = vec![
        MAGIC.to_vec(),
        [&MAGIC[..], b"\x01\x01\x05\x00\x00\x00hello"].concat(),
        [&MAGIC[..], &jsongen::value(1, 3000)].concat(),
        [&MAGIC[..], &[0u8; 5]].concat(),
    ];
    cases.push(jsongen::value(9, 5000));
    cases.push((0..3000u32).map(|i| (i * 7919 % 251) as u8).collect());
    for (i, v) in cases.iter().enumerate() {
        let k = format!("m{i}");
        c.cmd(&[b"SET", k.as_bytes(), v]);
        c.cmd(&[b"HSET", b"mh", k.as_bytes(), v]);
        let mut want = format!("${}\r\n", v.len()).into_bytes();
        want.extend_from_slice(v);
        want.extend_from_slice(b"\r\n");
        assert_eq!(c.cmd(&[b"GET", k.as_bytes()]), want, "case {i}");
        assert_eq!(c.cmd(&[b"HGET", b"mh", k.as_bytes()]), want, "case {i}");
        // Foreign: written straight to Redis (without the magic), read through the proxy.
        if !v.starts_with(&MAGIC) {
            let f = format!("foreign{i}");
            raw.cmd(&[b"SET", f.as_bytes(), v]);
            assert_eq!(c.cmd(&[b"GET", f.as_bytes()]), want, "foreign case {i}");
        }
    }
}

/// Issue 16: bytes that look like an envelope (corrupt, claiming 4 GB, an
/// unknown codec, consistent but untagged), written straight to Redis, read
/// back through the proxy exactly as Redis stores them; nothing large is
/// allocated.
#[test]
fn planted_envelopes_read_back_as_stored() {
    let r = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&r.addr(), &cmp::on(64), &[]);
    let mut raw = r.conn();
    let corrupt = [&MAGIC[..], &[1, 1, 100, 0, 0, 0], &[0xff; 40]].concat();
    let huge = [&MAGIC[..], &[1, 1, 0xff, 0xff, 0xff, 0xff], b"tiny payload"].concat();
    let bad_codec = [&MAGIC[..], &[1, 9, 1, 0, 0, 0, b'x']].concat();
    let consistent = [&MAGIC[..], &[1, 0, 5, 0, 0, 0], b"hello"].concat();
    let forged = [&MAGIC[..], &[2, 1, 0, 0, 0, 8], &[7; 8], b"tiny payload"].concat();
    for (k, v) in [
        ("bad:corrupt", &corrupt),
        ("bad:huge", &huge),
        ("bad:codec", &bad_codec),
        ("bad:consistent", &consistent),
        ("bad:forged", &forged),
    ] {
        raw.cmd(&[b"SET", k.as_bytes(), v]);
        raw.cmd(&[b"HSET", b"bad:hash", k.as_bytes(), v]);
    }
    raw.cmd(&[b"SET", b"good", b"fine"]);
    let rss_before = p.rss_kb();
    for proto in ["2", "3"] {
        let mut c = p.conn();
        hello(&mut c, proto);
        hello(&mut raw, proto);
        for k in [
            "bad:corrupt",
            "bad:huge",
            "bad:codec",
            "bad:consistent",
            "bad:forged",
        ] {
            for cmd in [
                &["GET", k][..],
                &["MGET", "good", k],
                &["HGET", "bad:hash", k],
                &["STRLEN", k],
                &["GETRANGE", k, "2", "9"],
            ] {
                assert_eq!(
                    escape(&c.cmd_str(cmd)),
                    escape(&raw.cmd_str(cmd)),
                    "RESP{proto} {cmd:?}"
                );
            }
        }
        assert_eq!(
            escape(&c.cmd_str(&["HGETALL", "bad:hash"])),
            escape(&raw.cmd_str(&["HGETALL", "bad:hash"]))
        );
        c.cmd_str(&["MULTI"]);
        c.cmd_str(&["GET", "bad:huge"]);
        c.cmd_str(&["GET", "good"]);
        let exec = c.cmd_str(&["EXEC"]);
        let mut want = b"*2\r\n".to_vec();
        want.extend(raw.cmd_str(&["GET", "bad:huge"]));
        want.extend(raw.cmd_str(&["GET", "good"]));
        assert_eq!(escape(&exec), escape(&want));
    }
    // A byte-level write on one: Redis's answer, and the result reads back.
    let mut c = p.conn();
    assert_eq!(
        c.cmd(&[b"APPEND", b"bad:corrupt", b"x"]),
        format!(":{}\r\n", corrupt.len() + 1).into_bytes()
    );
    let appended = [&corrupt[..], b"x"].concat();
    let mut want = format!("${}\r\n", appended.len()).into_bytes();
    want.extend_from_slice(&appended);
    want.extend_from_slice(b"\r\n");
    assert_eq!(c.cmd(&[b"GET", b"bad:corrupt"]), want);
    // The 4 GB claim was never allocated (the stored value is unchanged).
    assert!(
        p.rss_kb() < rss_before + 100 * 1024,
        "rss grew to {} KB",
        p.rss_kb()
    );
    assert_eq!(raw.cmd(&[b"GET", b"bad:huge"]).len(), huge.len() + 7);
}

/// Acceptance 4 (of issue 4), for the envelopes respite trusts: one that
/// claims more than `max_decompressed_bytes` (written by a respite with a
/// higher limit) is an error reply naming the key, one line, and inside a
/// transaction only that command's element; the connection stays usable.
#[test]
fn trusted_envelopes_over_the_limit_are_errors_naming_the_key() {
    let r = RedisServer::start();
    let secret = "secret = \"limit-test-secret-0123456789\"\n";
    let (big, _d1) = cmp::proxy_with(&r.addr(), &format!("{}{secret}", cmp::on(64)), &[]);
    let (small, _d2) = cmp::proxy_with(
        &r.addr(),
        &format!(
            "{}{secret}max_decompressed_bytes = 1048576\n[limits]\nmax_request_bytes = 1048576\n",
            cmp::on(64)
        ),
        &[],
    );
    let v = jsongen::value(4, 60_000).repeat(20);
    assert!(v.len() > 1 << 20);
    let mut w = big.conn();
    assert_eq!(w.cmd(&[b"SET", b"we\r\nird", &v]), b"+OK\r\n");
    assert_eq!(w.cmd(&[b"HSET", b"bh", b"f", &v]), b":1\r\n");
    w.cmd_str(&["SET", "good", "fine"]);
    for proto in ["2", "3"] {
        let mut c = small.conn();
        hello(&mut c, proto);
        for (cmd, key) in [
            (vec![&b"GET"[..], b"we\r\nird"], "we??ird"),
            (vec![&b"MGET"[..], b"good", b"we\r\nird"], "we??ird"),
            (vec![&b"HGET"[..], b"bh", b"f"], "bh"),
            (vec![&b"HGETALL"[..], b"bh"], "bh"),
            (vec![&b"STRLEN"[..], b"we\r\nird"], "we??ird"),
            (vec![&b"APPEND"[..], b"we\r\nird", b"x"], "we??ird"),
        ] {
            let reply = c.cmd(&cmd);
            let text = String::from_utf8_lossy(&reply);
            assert!(reply.starts_with(b"-ERR respite: "), "{cmd:?}: {text}");
            assert!(text.contains(&format!("'{key}'")), "{text}");
            assert!(text.contains("max_decompressed_bytes"), "{text}");
            assert_eq!(
                reply.iter().filter(|&&b| b == b'\r' || b == b'\n').count(),
                2,
                "one line: {text}"
            );
            assert_eq!(c.cmd_str(&["GET", "good"]), b"$4\r\nfine\r\n");
        }
        c.cmd_str(&["MULTI"]);
        c.cmd(&[b"GET", b"we\r\nird"]);
        c.cmd_str(&["GET", "good"]);
        let exec = c.cmd_str(&["EXEC"]);
        let text = String::from_utf8_lossy(&exec);
        assert!(text.starts_with("*2\r\n-ERR respite: "), "{text}");
        assert!(text.ends_with("$4\r\nfine\r\n"), "{text}");
    }
    // The value is intact for a respite that may restore it.
    let mut want = format!("${}\r\n", v.len()).into_bytes();
    want.extend_from_slice(&v);
    want.extend_from_slice(b"\r\n");
    assert_eq!(w.cmd(&[b"GET", b"we\r\nird"]), want);
}

/// Acceptance 5: byte-level commands on compressed values answer as Redis
/// does on the uncompressed ones, over random operation sequences; writes
/// keep the TTL and leave the same value behind.
#[test]
fn byte_level_commands_match_redis() {
    let ra = RedisServer::start();
    let rb = RedisServer::start();
    let (on, _d) = cmp::proxy_with(&ra.addr(), &cmp::on(64), &[]);
    let raw = std::cell::RefCell::new(ra.conn());
    for proto in ["2", "3"] {
        let strategy = (
            proptest::collection::vec(any::<u64>(), 4),
            proptest::collection::vec(cmp::byte_cmd(), 1..25),
        );
        runner(24)
            .run(&strategy, |(seeds, cmds)| {
                let mut a = on.conn();
                let mut b = rb.conn();
                cmp::reset(&mut a, proto);
                cmp::reset(&mut b, proto);
                let setup = cmp::byte_setup(&seeds, true);
                cmp::run(&mut a, &setup, true);
                cmp::run(&mut b, &setup, true);
                // The keys under test really are compressed.
                let stored = raw.borrow_mut().cmd_str(&["GET", "b0"]);
                prop_assert!(stored.windows(4).any(|w| w == [b'\n', 0xF5, 0x52, 0x43]));
                let mut all = cmds.clone();
                for k in ["b0", "b1", "{b}x", "{b}y", "{b}d"] {
                    all.push(vec![b"GET".to_vec(), k.as_bytes().to_vec()]);
                }
                cmp::same_replies(&mut a, &mut b, &all, proto)?;
                for k in ["b0", "b1", "{b}x", "{b}y"] {
                    let ttl = |c: &mut RawConn| {
                        let r = c.cmd_str(&["TTL", k]);
                        String::from_utf8_lossy(&r[1..r.len() - 2])
                            .parse::<i64>()
                            .unwrap()
                            > 0
                    };
                    prop_assert_eq!(ttl(&mut a), ttl(&mut b), "TTL of {}", k);
                }
                Ok::<(), TestCaseError>(())
            })
            .unwrap();
    }
}

/// Byte-level commands inside MULTI: Redis's answer for plain values, an
/// error naming the key for compressed ones (the value is never corrupted).
/// BITFIELD on fields wider than 53 bits answers exactly (a Lua number,
/// a double, could not hold these values), on plain and compressed values.
#[test]
fn wide_bitfield_values_are_exact() {
    let r = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&r.addr(), &cmp::on(1024), &[]);
    let mut c = p.conn();
    let mut direct = r.conn();
    let big = jsongen::value(3, 4096);
    for (key, init) in [("absent", None), ("doc", Some(&big))] {
        if let Some(v) = init {
            assert_eq!(c.cmd(&[b"SET", key.as_bytes(), v]), b"+OK\r\n");
            assert_eq!(direct.cmd(&[b"SET", b"ref", v]), b"+OK\r\n");
        } else {
            direct.cmd_str(&["DEL", "ref"]);
        }
        let ops = [
            "INCRBY",
            "u61",
            "#16",
            "-81",
            "GET",
            "i64",
            "0",
            "SET",
            "i63",
            "#1",
            "-4611686018427387905",
        ];
        let mut via: Vec<&str> = vec!["BITFIELD", key];
        via.extend(ops);
        let mut want: Vec<&str> = vec!["BITFIELD", "ref"];
        want.extend(ops);
        assert_eq!(
            String::from_utf8_lossy(&c.cmd_str(&via)),
            String::from_utf8_lossy(&direct.cmd_str(&want)),
            "BITFIELD on {key}"
        );
    }
}

#[test]
fn byte_level_commands_inside_multi() {
    let r = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&r.addr(), &cmp::on(64), &[]);
    let mut c = p.conn();
    let big = jsongen::value(5, 1000);
    c.cmd(&[b"SET", b"big", &big]);
    c.cmd_str(&["SET", "small", "abc"]);
    for cmd in [
        &["MULTI"][..],
        &["STRLEN", "small"],
        &["APPEND", "small", "d"],
        &["STRLEN", "big"],
        &["APPEND", "big", "x"],
        &["GET", "small"],
    ] {
        c.cmd_str(cmd);
    }
    let exec = String::from_utf8_lossy(&c.cmd_str(&["EXEC"])).to_string();
    assert!(
        exec.starts_with("*5\r\n:3\r\n:4\r\n-ERR respite: STRLEN inside MULTI"),
        "{exec}"
    );
    assert!(
        exec.contains("'big'") && exec.contains("compression.exclude"),
        "{exec}"
    );
    assert!(exec.ends_with("$4\r\nabcd\r\n"), "{exec}");
    let mut want = format!("${}\r\n", big.len()).into_bytes();
    want.extend_from_slice(&big);
    want.extend_from_slice(b"\r\n");
    assert_eq!(c.cmd_str(&["GET", "big"]), want);
}

/// Acceptance 6: 100 000 generated JSON values of about 4 KB take at most
/// 40% of the `used_memory` they take uncompressed.
#[test]
fn json_values_use_at_most_40_percent_of_the_memory() {
    const N: usize = 100_000;
    const BATCH: usize = 500;
    let ra = RedisServer::start();
    let rb = RedisServer::start();
    let (p, _d) = cmp::proxy_with(&ra.addr(), &cmp::on(1024), &[]);
    let used = |c: &mut RawConn| -> u64 {
        let info = String::from_utf8_lossy(&c.cmd_str(&["INFO", "memory"])).to_string();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let mut a = p.conn();
    let mut b = rb.conn();
    let (a0, b0) = (used(&mut ra.conn()), used(&mut b));
    let mut raw_bytes = 0usize;
    for start in (0..N).step_by(BATCH) {
        let mut buf = Vec::new();
        for i in start..start + BATCH {
            let v = jsongen::value(i as u64, 4096);
            raw_bytes += v.len();
            let k = format!("doc:{i}");
            buf.extend(common::encode(&[b"SET", k.as_bytes(), &v]));
        }
        a.send(&buf);
        b.send(&buf);
        for _ in 0..BATCH {
            assert_eq!(a.read_reply(), b"+OK\r\n");
            assert_eq!(b.read_reply(), b"+OK\r\n");
        }
    }
    let with = used(&mut ra.conn()) - a0;
    let without = used(&mut b) - b0;
    let ratio = with as f64 / without as f64;
    println!(
        "{N} JSON values, {} bytes in all: used_memory {with} compressed vs {without} uncompressed: {:.1}%",
        raw_bytes,
        ratio * 100.0
    );
    assert!(
        ratio <= 0.40,
        "compressed used_memory is {:.1}% of uncompressed",
        ratio * 100.0
    );
}

/// The generator: deterministic, within 200 B to 64 KB, not trivially repetitive.
#[test]
fn json_generator_is_deterministic_and_varied() {
    for (seed, size) in [
        (1u64, 200usize),
        (2, 1000),
        (3, 4096),
        (4, 20_000),
        (5, 64 * 1024),
    ] {
        let v = jsongen::value(seed, size);
        assert_eq!(v, jsongen::value(seed, size));
        assert!(
            v.len() >= size.min(60 * 1024) && v.len() <= 64 * 1024,
            "{size}: {}",
            v.len()
        );
        let c = lz4_flex::block::compress(&v);
        // Compressible like JSON, not like a repeated byte.
        assert!(c.len() * 10 > v.len(), "{size}: {} -> {}", v.len(), c.len());
    }
    assert_ne!(jsongen::value(1, 4096), jsongen::value(2, 4096));
}
