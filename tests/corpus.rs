//! Acceptance 1: a generated corpus of commands gives byte-identical replies
//! through respite and from Redis directly, in RESP2 and in RESP3.
//!
//! The corpus is deterministic: fixed keys and values, explicit stream IDs,
//! nothing that depends on time, randomness or connection identity. Both runs
//! use the same `redis-server` process (so hash-seeded orders such as SMEMBERS
//! agree) after `FLUSHALL`, `SCRIPT FLUSH` and `FUNCTION FLUSH`.
//! `corpus_is_deterministic_against_redis` proves the corpus itself is
//! comparable by running it twice straight against Redis.

mod common;

use common::corpus::{build_corpus, sha1_hex, show_cmd, Corpus};
use common::{encode, escape, Proxy, RawConn, RedisServer};

/// Empties the server the way each corpus run expects it: no keys, no
/// cached scripts, no functions. Always straight to Redis.
fn reset(redis: &RedisServer) {
    let mut c = redis.conn();
    for cmd in [
        &["FLUSHALL"][..],
        &["SCRIPT", "FLUSH"][..],
        &["FUNCTION", "FLUSH"][..],
    ] {
        let r = c.cmd_str(cmd);
        assert_eq!(r, b"+OK\r\n", "{cmd:?} failed: {}", escape(&r));
    }
}

/// Runs the corpus on a fresh connection to `port`; one raw reply per command.
fn run_corpus(port: u16, resp3: bool, corpus: &Corpus) -> Result<Vec<Vec<u8>>, String> {
    let mut conn = RawConn::connect(port);
    if resp3 {
        let hello = conn.cmd_str(&["HELLO", "3"]);
        assert!(
            hello.starts_with(b"%"),
            "HELLO 3 on port {port} did not answer a map: {}",
            escape(&hello)
        );
    }
    let mut replies = Vec::with_capacity(corpus.entries.len());
    for (i, e) in corpus.entries.iter().enumerate() {
        let args: Vec<&[u8]> = e.args.iter().map(|a| a.as_slice()).collect();
        let r = conn
            .try_send(&encode(&args))
            .and_then(|_| conn.try_read_reply());
        match r {
            Ok(r) => replies.push(r),
            Err(err) => {
                return Err(format!(
                    "#{i} [{}] {}: no reply from port {port}: {err}",
                    e.section,
                    show_cmd(&e.args)
                ))
            }
        }
    }
    Ok(replies)
}

/// Panics listing every command whose replies differ.
fn assert_same(corpus: &Corpus, want: &[Vec<u8>], got: &[Vec<u8>], label: &str) {
    assert_eq!(want.len(), got.len());
    let mut diffs = Vec::new();
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if w != g {
            let e = &corpus.entries[i];
            diffs.push(format!(
                "#{i} [{}] {}\n    redis:   {}\n    {label}: {}",
                e.section,
                show_cmd(&e.args),
                escape(w),
                escape(g)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} of {} replies differ ({label}):\n{}",
        diffs.len(),
        want.len(),
        diffs.join("\n")
    );
}

fn direct_then_proxy(resp3: bool) {
    let corpus = build_corpus();
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);

    reset(&redis);
    let direct = run_corpus(redis.port(), resp3, &corpus).unwrap();
    reset(&redis);
    let through = run_corpus(proxy.port(), resp3, &corpus)
        .unwrap_or_else(|e| panic!("{e}\n--- respite log ---\n{}", proxy.log()));
    proxy.assert_running();
    assert_same(
        &corpus,
        &direct,
        &through,
        if resp3 {
            "respite (RESP3)"
        } else {
            "respite (RESP2)"
        },
    );
}

#[test]
fn corpus_resp2_identical_through_proxy() {
    direct_then_proxy(false);
}

#[test]
fn corpus_resp3_identical_through_proxy() {
    direct_then_proxy(true);
}

/// The corpus itself must be comparable: run twice straight against Redis
/// it gives the same bytes; every command errors exactly when the corpus says
/// it should; it is large and varied enough; and RESP3 really changes replies.
#[test]
fn corpus_is_deterministic_against_redis() {
    let corpus = build_corpus();
    assert!(
        corpus.entries.len() >= 200,
        "corpus has only {} commands",
        corpus.entries.len()
    );
    for section in [
        "strings",
        "hashes",
        "lists",
        "sets",
        "sorted-sets",
        "streams",
        "expiry",
        "keyspace",
        "scripting",
        "errors",
        "server",
    ] {
        let n = corpus
            .entries
            .iter()
            .filter(|e| e.section == section)
            .count();
        assert!(n >= 8, "section {section} has only {n} commands");
    }

    let redis = RedisServer::start();
    let mut by_proto = Vec::new();
    for resp3 in [false, true] {
        reset(&redis);
        let first = run_corpus(redis.port(), resp3, &corpus).unwrap();
        reset(&redis);
        let second = run_corpus(redis.port(), resp3, &corpus).unwrap();
        assert_same(&corpus, &first, &second, "second direct run");

        let mut wrong = Vec::new();
        for (i, (e, r)) in corpus.entries.iter().zip(&first).enumerate() {
            if r.starts_with(b"-") != e.expect_err {
                wrong.push(format!(
                    "#{i} [{}] {} -> {} (expected {})",
                    e.section,
                    show_cmd(&e.args),
                    escape(r),
                    if e.expect_err { "an error" } else { "success" }
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "corpus expectations wrong (resp3={resp3}):\n{}",
            wrong.join("\n")
        );
        if std::env::var_os("RESPITE_CORPUS_DUMP").is_some() {
            for (i, (e, r)) in corpus.entries.iter().zip(&first).enumerate() {
                eprintln!("resp3={resp3} #{i} {} -> {}", show_cmd(&e.args), escape(r));
            }
        }
        by_proto.push(first);
    }

    // RESP3 must change a good number of replies (doubles, maps, sets, nulls).
    let differing = by_proto[0]
        .iter()
        .zip(&by_proto[1])
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        differing >= 20,
        "only {differing} replies differ between RESP2 and RESP3"
    );
    for marker in [b',', b'%', b'~', b'_'] {
        assert!(
            by_proto[1].iter().any(|r| r.first() == Some(&marker)),
            "no RESP3 {:?} frame in the RESP3 run",
            marker as char
        );
    }
}

#[test]
fn sha1_matches_known_vector() {
    assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}
