//! respite in cluster mode (`--mode cluster`) in front of a real Redis
//! Cluster of three primaries with one replica each:
//!
//! 1. the command corpus of acceptance 1 gives the replies of a standalone
//!    Redis, except commands whose keys span slots, which reply exactly
//!    Redis Cluster's CROSSSLOT error (RESP2 and RESP3);
//! 2. MGET/MSET/EXISTS/TOUCH/DEL/UNLINK over 1 000 keys on every primary,
//!    split and merged like a standalone Redis answers them;
//! 3. SCAN, KEYS and DBSIZE over 10 000 keys on every primary;
//! 4. transactions, WATCH, a blocking pop, pub/sub and CROSSSLOT refusals;
//! 5. resharding 1 000 slots under load from 20 clients (acceptance 4);
//! 6. a primary killed under load (acceptance 5).
//!
//! Each test starts its own cluster, and the tests run one at a time (see
//! [`serial`]): six-node clusters, and the resharding and failover timings,
//! on two shared cores.

mod common;

use common::cluster::RedisCluster;
use common::corpus::{build_corpus, show_cmd, Corpus, Entry};
use common::{encode, encode_str, escape, scan_frame, Proxy, RawConn, RedisServer};
use respite::cluster::key_slot;
use respite::command::keys::KeyTable;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Redis Cluster's own reply to a request whose keys span slots.
const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/// The multi-key commands a cluster client (and respite) splits by slot;
/// every other command whose keys span slots must reply CROSSSLOT.
const SPLIT: &[&str] = &["MGET", "MSET", "DEL", "UNLINK", "EXISTS", "TOUCH"];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Tests of this file run one at a time (held for the whole test; a
/// panicking test poisons it, which the next one ignores).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// respite in cluster mode seeded with one node of `cluster`, once its slot
/// map is loaded (DBSIZE, which needs every primary, answers an integer).
fn cluster_proxy(cluster: &RedisCluster) -> Proxy {
    let mut args = Proxy::default_args(&cluster.seed_addr());
    args.extend(["--mode".to_string(), "cluster".to_string()]);
    let proxy = Proxy::start_args(args);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut c = proxy.conn();
    loop {
        let r = c.cmd_str(&["DBSIZE"]);
        if r.starts_with(b":") {
            return proxy;
        }
        if Instant::now() > deadline {
            panic!(
                "respite in cluster mode never answered DBSIZE with an integer; last: {}\n{}",
                escape(&r),
                proxy.log()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One request; an I/O failure (timeout, EOF) becomes an error text.
fn request(c: &mut RawConn, args: &[&[u8]]) -> Result<Vec<u8>, String> {
    c.try_send(&encode(args))
        .and_then(|_| c.try_read_reply())
        .map_err(|e| format!("no reply: {e}"))
}

/// A RESP2/RESP3 reply parsed far enough for the checks here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum V {
    Str(Vec<u8>),
    Err(Vec<u8>),
    Int(i64),
    Nil,
    Arr(Vec<V>),
    Other(Vec<u8>),
}

#[track_caller]
fn parse(frame: &[u8]) -> V {
    let (v, end) = parse_at(frame, 0);
    assert_eq!(end, frame.len(), "trailing bytes in {}", escape(frame));
    v
}

fn parse_at(b: &[u8], pos: usize) -> (V, usize) {
    let eol = pos
        + b[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or_else(|| panic!("no CRLF in {}", escape(b)));
    let line = &b[pos + 1..eol];
    let next = eol + 2;
    let num = || -> i64 {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad number in {}", escape(b)))
    };
    match b[pos] {
        b'+' => (V::Str(line.to_vec()), next),
        b'-' => (V::Err(line.to_vec()), next),
        b':' => (V::Int(num()), next),
        b'_' => (V::Nil, next),
        b'$' => match num() {
            n if n < 0 => (V::Nil, next),
            n => (
                V::Str(b[next..next + n as usize].to_vec()),
                next + n as usize + 2,
            ),
        },
        t @ (b'*' | b'~' | b'%' | b'>') => match num() {
            n if n < 0 => (V::Nil, next),
            n => {
                let count = if t == b'%' { 2 * n } else { n };
                let mut p = next;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let (v, e) = parse_at(b, p);
                    items.push(v);
                    p = e;
                }
                (V::Arr(items), p)
            }
        },
        _ => {
            let end = scan_frame(b, pos)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("bad frame {}", escape(b)));
            (V::Other(b[pos..end].to_vec()), end)
        }
    }
}

fn int_of(reply: &[u8]) -> Result<i64, String> {
    match parse(reply) {
        V::Int(n) => Ok(n),
        _ => Err(format!("expected an integer, got {}", escape(reply))),
    }
}

/// `(CURSOR, [keys])` of a SCAN reply.
fn scan_page(reply: &[u8]) -> Result<(String, Vec<Vec<u8>>), String> {
    let bad = || format!("not a SCAN reply: {}", escape(reply));
    match parse(reply) {
        V::Arr(items) if items.len() == 2 => {
            let cursor = match &items[0] {
                V::Str(c) => String::from_utf8_lossy(c).into_owned(),
                _ => return Err(bad()),
            };
            let keys = match &items[1] {
                V::Arr(ks) => ks
                    .iter()
                    .map(|k| match k {
                        V::Str(k) => Ok(k.clone()),
                        _ => Err(bad()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err(bad()),
            };
            Ok((cursor, keys))
        }
        _ => Err(bad()),
    }
}

/// A whole SCAN iteration: `args` is a SCAN command whose cursor (args[1])
/// is replaced at each step. Every key returned, in order, with repeats.
fn scan_all(c: &mut RawConn, args: &[Vec<u8>]) -> Result<(Vec<Vec<u8>>, usize), String> {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    for calls in 1..=100_000 {
        let mut a: Vec<&[u8]> = args.iter().map(|x| x.as_slice()).collect();
        a[1] = cursor.as_bytes();
        let reply = request(c, &a)?;
        let (next, page) = scan_page(&reply)?;
        keys.extend(page);
        if next == "0" {
            return Ok((keys, calls));
        }
        cursor = next;
    }
    Err("SCAN did not finish in 100 000 calls".into())
}

/// The slots of a command's keys (respite's built-in key table), each once.
fn slots_of(args: &[Vec<u8>]) -> Result<BTreeSet<u16>, String> {
    let keys = KeyTable::builtin()
        .keys_of(args)
        .map_err(|e| format!("key positions unknown: {e:?}"))?;
    Ok(keys.iter().map(|&i| key_slot(&args[i])).collect())
}

fn upper(a: &[u8]) -> String {
    String::from_utf8_lossy(a).to_ascii_uppercase()
}

fn hello3(c: &mut RawConn) {
    let r = c.cmd_str(&["HELLO", "3"]);
    assert!(r.starts_with(b"%"), "HELLO 3: {}", escape(&r));
}

// ---------------------------------------------------------------------------
// 1. The corpus
// ---------------------------------------------------------------------------

/// Commands whose reply order is a hash table's order: the table's hash
/// seed is random per `redis-server` process, and the standalone reference
/// is another process than the cluster nodes, so these compare as
/// multisets (of elements, or of field/value pairs). KEYS through respite
/// also concatenates the nodes' answers in node order.
const UNORDERED: &[&str] = &[
    "KEYS",
    "SMEMBERS",
    "SUNION",
    "SINTER",
    "SDIFF",
    "SRANDMEMBER",
    "HGETALL",
    "HKEYS",
    "HVALS",
    "HRANDFIELD",
];

/// Commands Redis Cluster itself answers differently from a standalone
/// Redis even within one slot: `SELECT` of another database ("SELECT is
/// not allowed in cluster mode"), `SORT ... BY pattern` / `GET pattern`
/// ("... denied in Cluster mode"). For these the reply through respite
/// must be an error byte-identical to what the cluster node serving the
/// key (any node when keyless) answers directly.
const CLUSTER_NATIVE: &[&str] = &["SELECT", "SORT"];

/// Header line and sorted units of an array/set/map reply; `pairs` groups
/// a flat array in field/value pairs (a map's entries always are).
fn unordered_units(reply: &[u8], pairs: bool) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let t = *reply.first()?;
    if !matches!(t, b'*' | b'~' | b'%') {
        return None;
    }
    let eol = reply.windows(2).position(|w| w == b"\r\n")?;
    let n: usize = std::str::from_utf8(&reply[1..eol]).ok()?.parse().ok()?;
    let count = if t == b'%' { 2 * n } else { n };
    let mut elems = Vec::with_capacity(count);
    let mut p = eol + 2;
    for _ in 0..count {
        let e = scan_frame(reply, p).ok()??;
        elems.push(reply[p..e].to_vec());
        p = e;
    }
    if p != reply.len() {
        return None;
    }
    let flat_pairs = pairs && elems.first().is_some_and(|e| e.first() != Some(&b'*'));
    let group = if t == b'%' || flat_pairs { 2 } else { 1 };
    let mut units: Vec<Vec<u8>> = elems.chunks(group).map(|c| c.concat()).collect();
    units.sort();
    Some((reply[..eol].to_vec(), units))
}

fn same_unordered(e: &Entry, a: &[u8], b: &[u8]) -> bool {
    let name = upper(&e.args[0]);
    if !UNORDERED.contains(&name.as_str()) {
        return false;
    }
    let pairs = name == "HGETALL"
        || (name == "HRANDFIELD" && e.args.iter().any(|x| upper(x) == "WITHVALUES"));
    match (unordered_units(a, pairs), unordered_units(b, pairs)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[derive(Debug, Default)]
struct Tally {
    identical: usize,
    unordered: usize,
    scan_iterations: usize,
    crossslot: usize,
    cluster_native: usize,
    excluded: usize,
}

/// Empties the standalone reference and, through respite, the cluster.
fn reset_both(redis: &RedisServer, proxy: &Proxy, cluster: &RedisCluster) {
    for port in [redis.port(), proxy.port()] {
        let mut c = RawConn::connect(port);
        for cmd in [
            &["FLUSHALL"][..],
            &["SCRIPT", "FLUSH"][..],
            &["FUNCTION", "FLUSH"][..],
        ] {
            let r = c.cmd_str(cmd);
            assert_eq!(r, b"+OK\r\n", "{cmd:?} on {port}: {}", escape(&r));
        }
    }
    for port in cluster.primary_ports() {
        let r = cluster.conn(port).cmd_str(&["DBSIZE"]);
        assert_eq!(r, b":0\r\n", "primary {port} not empty after FLUSHALL");
    }
}

/// Runs the corpus in lockstep: each command through respite, then (unless
/// respite rightly refused it with CROSSSLOT, which leaves the cluster
/// untouched) on the standalone Redis, so both hold the same data all along.
fn corpus_lockstep(
    corpus: &Corpus,
    redis: &RedisServer,
    proxy: &Proxy,
    cluster: &RedisCluster,
    resp3: bool,
) -> (Tally, Vec<String>) {
    reset_both(redis, proxy, cluster);
    let mut via = proxy.conn();
    let mut want = redis.conn();
    if resp3 {
        hello3(&mut via);
        hello3(&mut want);
    }
    let mut t = Tally::default();
    let mut fails = Vec::new();
    // RESPITE_CORPUS_DUMP=1 lists each command and how it was judged.
    let dump = std::env::var_os("RESPITE_CORPUS_DUMP").is_some();
    for (i, e) in corpus.entries.iter().enumerate() {
        let args: Vec<&[u8]> = e.args.iter().map(|a| a.as_slice()).collect();
        let name = upper(&e.args[0]);
        let what = format!("#{i} [{}] {}", e.section, show_cmd(&e.args));
        if dump {
            eprintln!("{what}");
        }

        if name == "SCAN" && e.args.len() > 1 {
            match std::str::from_utf8(&e.args[1]).map(|c| c.parse::<u64>()) {
                // A cursor other than 0 is a position in one server's table;
                // respite's cursors name the node too, so "SCAN 2" means
                // something else. Full iterations are compared instead (the
                // cursor-0 entries) and in `scan_dbsize_keys_over_10000_keys`.
                Ok(Ok(c)) if c != 0 => {
                    t.excluded += 1;
                    if dump {
                        eprintln!("    => excluded");
                    }
                    continue;
                }
                Ok(Ok(_)) => {
                    let got = scan_all(&mut via, &e.args);
                    let exp = scan_all(&mut want, &e.args);
                    match (got, exp) {
                        (Ok((mut g, _)), Ok((mut w, _))) => {
                            g.sort();
                            w.sort();
                            if g == w {
                                t.scan_iterations += 1;
                                if dump {
                                    eprintln!("    => scan_iterations");
                                }
                            } else {
                                fails.push(format!(
                                    "{what}: full SCAN iteration differs\n    redis:   {:?}\n    respite: {:?}",
                                    w.iter().map(|k| escape(k)).collect::<Vec<_>>(),
                                    g.iter().map(|k| escape(k)).collect::<Vec<_>>()
                                ));
                            }
                        }
                        (g, w) => fails.push(format!(
                            "{what}: SCAN iteration failed: respite {:?}, redis {:?}",
                            g.err(),
                            w.err()
                        )),
                    }
                    continue;
                }
                _ => {}
            }
        }

        let got = match request(&mut via, &args) {
            Ok(r) => r,
            Err(err) => {
                fails.push(format!("{what}: respite: {err}"));
                return (t, fails);
            }
        };
        let slots = slots_of(&e.args);
        let cross = slots.as_ref().is_ok_and(|s| s.len() >= 2);
        if got == CROSSSLOT {
            if cross && !SPLIT.contains(&name.as_str()) {
                t.crossslot += 1;
                if dump {
                    eprintln!("    => crossslot");
                }
            } else {
                fails.push(format!(
                    "{what}: respite replied CROSSSLOT, but the keys are in slots {slots:?}{}",
                    if cross {
                        " (a command respite must split)"
                    } else {
                        ""
                    }
                ));
            }
            // Redis Cluster refuses it without effect: the reference skips it.
            continue;
        }
        if cross && !SPLIT.contains(&name.as_str()) {
            fails.push(format!(
                "{what}: keys in slots {slots:?}: Redis Cluster replies CROSSSLOT, respite replied {}",
                escape(&got)
            ));
        }
        let exp = match request(&mut want, &args) {
            Ok(r) => r,
            Err(err) => panic!("{what}: standalone redis: {err}"),
        };
        if got == exp {
            t.identical += 1;
            if dump {
                eprintln!("    => identical");
            }
        } else if same_unordered(e, &got, &exp) {
            t.unordered += 1;
            if dump {
                eprintln!("    => unordered");
            }
        } else if CLUSTER_NATIVE.contains(&name.as_str()) && got.starts_with(b"-") {
            // What the node serving the key says straight to a client.
            let port = match slots.as_ref().ok().and_then(|s| s.iter().next()) {
                Some(&slot) => cluster.node_for_slot(slot),
                None => cluster.primary_ports()[0],
            };
            let mut direct = cluster.conn(port);
            if resp3 {
                hello3(&mut direct);
            }
            let native = direct.cmd(&args);
            if native == got {
                t.cluster_native += 1;
                if dump {
                    eprintln!("    => cluster_native");
                }
            } else {
                fails.push(format!(
                    "{what}\n    redis:           {}\n    cluster node:    {}\n    respite:         {}",
                    escape(&exp),
                    escape(&native),
                    escape(&got)
                ));
            }
        } else {
            fails.push(format!(
                "{what} (slots {slots:?})\n    redis:   {}\n    respite: {}",
                escape(&exp),
                escape(&got)
            ));
        }
    }
    (t, fails)
}

/// Acceptance: the corpus through respite in cluster mode gives the replies
/// of a standalone Redis, except commands whose keys span slots, which
/// reply exactly Redis Cluster's CROSSSLOT error; RESP2 and RESP3.
#[test]
fn corpus_in_cluster_mode_matches_standalone_except_crossslot() {
    let _serial = serial();
    let started = Instant::now();
    let corpus = build_corpus();
    let cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    let redis = RedisServer::start();
    let mut report = Vec::new();
    let mut all_fails = Vec::new();
    for resp3 in [false, true] {
        let label = if resp3 { "RESP3" } else { "RESP2" };
        let (t, fails) = corpus_lockstep(&corpus, &redis, &proxy, &cluster, resp3);
        let line = format!(
            "{label}: {} commands: {} identical, {} identical as multisets (hash order), \
             {} full SCAN iterations identical, {} CROSSSLOT (verified cross-slot), \
             {} cluster-native errors identical to a node's, {} excluded (SCAN with a \
             nonzero cursor), {} failing",
            corpus.entries.len(),
            t.identical,
            t.unordered,
            t.scan_iterations,
            t.crossslot,
            t.cluster_native,
            t.excluded,
            fails.len()
        );
        eprintln!("{line}");
        // Every command accounted for; and the comparison is not vacuous.
        let accounted = t.identical
            + t.unordered
            + t.scan_iterations
            + t.crossslot
            + t.cluster_native
            + t.excluded
            + fails.len();
        if fails.is_empty() {
            assert_eq!(accounted, corpus.entries.len(), "{label}: {t:?}");
            assert!(t.crossslot >= 10, "{label}: too few CROSSSLOT: {t:?}");
            // 434 commands: 388 identical, the rest accounted for above.
            assert!(t.identical >= 380, "{label}: too few identical: {t:?}");
        }
        report.push(line);
        all_fails.extend(fails.into_iter().map(|f| format!("[{label}] {f}")));
    }
    proxy.assert_running();
    eprintln!(
        "corpus in cluster mode took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        all_fails.is_empty(),
        "{}\n{} commands fail:\n{}",
        report.join("\n"),
        all_fails.len(),
        all_fails.join("\n")
    );
}

// ---------------------------------------------------------------------------
// 2. Multi-key commands over 1 000 keys
// ---------------------------------------------------------------------------

/// Sends the same command to respite and the standalone reference; panics
/// unless the replies are byte-identical. Returns the reply.
#[track_caller]
fn both(via: &mut RawConn, want: &mut RawConn, args: &[Vec<u8>], what: &str) -> Vec<u8> {
    let a: Vec<&[u8]> = args.iter().map(|x| x.as_slice()).collect();
    let got = via.cmd(&a);
    let exp = want.cmd(&a);
    assert!(
        got == exp,
        "{what} ({} arguments): respite and standalone Redis differ\n  redis:   {}\n  respite: {}",
        args.len(),
        escape(&exp),
        escape(&got)
    );
    got
}

fn cmd_with(name: &str, items: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    std::iter::once(name.as_bytes().to_vec())
        .chain(items)
        .collect()
}

/// MSET/MGET/EXISTS/TOUCH/DEL/UNLINK over 1 000 keys on every primary,
/// with repeated and missing keys: byte-identical to a standalone Redis
/// (RESP2 and RESP3), values in argument order, counts as Redis counts.
#[test]
fn multikey_over_1000_keys_split_and_merged_like_standalone() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    let redis = RedisServer::start();
    let view = cluster.view();

    let n = 1000;
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("mk:{i}").into_bytes()).collect();
    let val = |i: usize| format!("value-{i}").into_bytes();
    let mut per_primary: HashMap<u16, usize> = HashMap::new();
    for k in &keys {
        *per_primary
            .entry(view.owner(key_slot(k)).unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_primary.len(),
        3,
        "keys not on every primary: {per_primary:?}"
    );
    let slots: BTreeSet<u16> = keys.iter().map(|k| key_slot(k)).collect();
    assert!(slots.len() > 900, "only {} slots", slots.len());

    for resp3 in [false, true] {
        let label = if resp3 { "RESP3" } else { "RESP2" };
        let mut via = proxy.conn();
        let mut want = redis.conn();
        if resp3 {
            hello3(&mut via);
            hello3(&mut want);
        }
        assert_eq!(via.cmd_str(&["FLUSHALL"]), b"+OK\r\n");
        assert_eq!(want.cmd_str(&["FLUSHALL"]), b"+OK\r\n");

        // MSET of 1 000 keys, with one key repeated: the last value wins.
        let mut mset = cmd_with(
            "MSET",
            keys.iter()
                .enumerate()
                .flat_map(|(i, k)| [k.clone(), val(i)]),
        );
        mset.extend([b"mk:7".to_vec(), b"seven-again".to_vec()]);
        assert_eq!(both(&mut via, &mut want, &mset, "MSET"), b"+OK\r\n");
        // Really in the cluster, each on its own primary.
        let total: i64 = cluster
            .primary_ports()
            .iter()
            .map(|&p| int_of(&cluster.conn(p).cmd_str(&["DBSIZE"])).unwrap())
            .sum();
        assert_eq!(total, n as i64, "{label}: keys on the primaries after MSET");
        let seven_owner = view.owner(key_slot(b"mk:7")).unwrap();
        assert_eq!(
            cluster.conn(seven_owner).cmd_str(&["GET", "mk:7"]),
            b"$11\r\nseven-again\r\n"
        );

        // MGET: argument order kept, missing keys and repeats interleaved.
        let mut mget_keys = Vec::new();
        let mut expected: Vec<Option<Vec<u8>>> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            mget_keys.push(k.clone());
            expected.push(Some(if i == 7 {
                b"seven-again".to_vec()
            } else {
                val(i)
            }));
            if i % 5 == 0 {
                mget_keys.push(format!("missing:{i}").into_bytes());
                expected.push(None);
            }
            if i % 97 == 0 {
                mget_keys.push(keys[n - 1 - i].clone());
                expected.push(Some(val(n - 1 - i)));
            }
        }
        let mget = cmd_with("MGET", mget_keys.iter().cloned());
        let reply = both(&mut via, &mut want, &mget, "MGET");
        let got: Vec<Option<Vec<u8>>> = match parse(&reply) {
            V::Arr(items) => items
                .into_iter()
                .map(|v| match v {
                    V::Str(s) => Some(s),
                    V::Nil => None,
                    other => panic!("{label}: MGET element {other:?}"),
                })
                .collect(),
            other => panic!("{label}: MGET reply {other:?}"),
        };
        assert!(got == expected, "{label}: MGET values out of place");

        // EXISTS and TOUCH count every argument, repeats included.
        let mut counted = Vec::new();
        let mut present = 0;
        for (i, k) in keys.iter().enumerate() {
            counted.push(k.clone());
            present += 1;
            if i % 10 == 0 {
                counted.push(k.clone());
                present += 1;
            }
            if i % 3 == 0 {
                counted.push(format!("missing:{i}").into_bytes());
            }
        }
        let exists = both(
            &mut via,
            &mut want,
            &cmd_with("EXISTS", counted.iter().cloned()),
            "EXISTS",
        );
        assert_eq!(int_of(&exists), Ok(present), "{label}: EXISTS");
        let touch = both(
            &mut via,
            &mut want,
            &cmd_with("TOUCH", counted.iter().cloned()),
            "TOUCH",
        );
        assert_eq!(int_of(&touch), Ok(present), "{label}: TOUCH");

        // DEL of the even keys (repeats and missing keys among them), then
        // UNLINK of everything: each key counts once, when it existed.
        let mut del = Vec::new();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            del.push(k.clone());
            if i % 10 == 0 {
                del.push(k.clone());
                del.push(format!("missing:{i}").into_bytes());
            }
        }
        let r = both(&mut via, &mut want, &cmd_with("DEL", del), "DEL");
        assert_eq!(int_of(&r), Ok(n as i64 / 2), "{label}: DEL");
        let r = both(
            &mut via,
            &mut want,
            &cmd_with("UNLINK", keys.iter().cloned()),
            "UNLINK",
        );
        assert_eq!(int_of(&r), Ok(n as i64 / 2), "{label}: UNLINK");
        let r = both(&mut via, &mut want, &[b"DBSIZE".to_vec()], "DBSIZE");
        assert_eq!(r, b":0\r\n", "{label}: DBSIZE after DEL and UNLINK");
    }
    proxy.assert_running();
    eprintln!(
        "multi-key over {n} keys ({per_primary:?} per primary) took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 3. SCAN, KEYS, DBSIZE
// ---------------------------------------------------------------------------

/// 10 000 keys through respite: a full SCAN (COUNT 100; with MATCH; with
/// TYPE) returns each exactly once; DBSIZE is the primaries' sum; KEYS *
/// returns all of them.
#[test]
fn scan_dbsize_keys_over_10000_keys() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    let mut c = proxy.conn();
    assert_eq!(c.cmd_str(&["FLUSHALL"]), b"+OK\r\n");

    let n = 10_000;
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("sc:{i}").into_bytes()).collect();
    for chunk in keys.chunks(500) {
        let mset = cmd_with("MSET", chunk.iter().flat_map(|k| [k.clone(), k.clone()]));
        let a: Vec<&[u8]> = mset.iter().map(|x| x.as_slice()).collect();
        assert_eq!(c.cmd(&a), b"+OK\r\n");
    }
    let all: BTreeSet<Vec<u8>> = keys.iter().cloned().collect();

    // DBSIZE: the sum over the primaries, which hold everything.
    let per_primary: Vec<(u16, i64)> = cluster
        .primary_ports()
        .iter()
        .map(|&p| (p, int_of(&cluster.conn(p).cmd_str(&["DBSIZE"])).unwrap()))
        .collect();
    let sum: i64 = per_primary.iter().map(|(_, n)| n).sum();
    let dbsize = int_of(&c.cmd_str(&["DBSIZE"])).unwrap();
    assert_eq!(sum, n as i64, "primaries hold {per_primary:?}");
    assert_eq!(
        dbsize, sum,
        "DBSIZE through respite; primaries {per_primary:?}"
    );
    assert!(per_primary.iter().all(|(_, k)| *k > 0), "{per_primary:?}");

    // INFO's keyspace section is the cluster's, summed over the primaries;
    // with RESP3 too (a verbatim string).
    let info = String::from_utf8_lossy(&c.cmd_str(&["INFO", "keyspace"])).to_string();
    assert!(
        info.contains(&format!("db0:keys={n},expires=0,")),
        "INFO keyspace through respite: {info:?}"
    );
    let info = String::from_utf8_lossy(&c.cmd_str(&["INFO"])).to_string();
    assert!(
        info.contains("# Server") && info.contains(&format!("db0:keys={n},")),
        "INFO through respite lacks the summed keyspace: {info:?}"
    );
    let mut c3 = proxy.conn();
    hello3(&mut c3);
    let info = String::from_utf8_lossy(&c3.cmd_str(&["INFO", "keyspace"])).to_string();
    assert!(
        info.starts_with('=') && info.contains(&format!("db0:keys={n},")),
        "RESP3 INFO keyspace through respite: {info:?}"
    );
    // CLUSTER INFO: one node holding every slot; CLUSTER KEYSLOT as Redis.
    let ci = String::from_utf8_lossy(&c.cmd_str(&["CLUSTER", "INFO"])).to_string();
    assert!(
        ci.contains("cluster_state:ok\r\n")
            && ci.contains("cluster_slots_assigned:16384\r\n")
            && ci.contains("cluster_known_nodes:1\r\n"),
        "CLUSTER INFO through respite: {ci:?}"
    );
    let direct =
        cluster
            .conn(cluster.primary_ports()[0])
            .cmd_str(&["CLUSTER", "KEYSLOT", "user:{42}:x"]);
    assert_eq!(c.cmd_str(&["CLUSTER", "KEYSLOT", "user:{42}:x"]), direct);

    // read_from = "replica_preferred": single-key reads go to the replicas
    // (READONLY connections) and return the same values; writes still work.
    for &p in &cluster.primary_ports() {
        let r = cluster.conn(p).cmd_str(&["WAIT", "1", "5000"]);
        assert_eq!(r, b":1\r\n", "WAIT on primary {p}");
    }
    let replicas: Vec<u16> = cluster
        .ports()
        .into_iter()
        .filter(|p| !cluster.primary_ports().contains(p))
        .collect();
    let gets_on = |ports: &[u16]| -> i64 {
        ports
            .iter()
            .map(|&p| {
                let info =
                    String::from_utf8_lossy(&cluster.conn(p).cmd_str(&["INFO", "commandstats"]))
                        .to_string();
                info.split("cmdstat_get:calls=")
                    .nth(1)
                    .and_then(|r| r.split(',').next())
                    .and_then(|n| n.parse::<i64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let before = gets_on(&replicas);
    let file = std::env::temp_dir().join(format!("respite-replica-{}.toml", std::process::id()));
    std::fs::write(&file, "[upstream]\nread_from = \"replica_preferred\"\n").unwrap();
    let mut args = Proxy::default_args(&cluster.seed_addr());
    args.extend([
        "--mode".to_string(),
        "cluster".to_string(),
        "--config".to_string(),
        file.display().to_string(),
    ]);
    let mut rproxy = Proxy::start_args(args);
    let mut rc = rproxy.conn();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !rc.cmd_str(&["DBSIZE"]).starts_with(b":") {
        assert!(
            Instant::now() < deadline,
            "replica-reading proxy never ready\n{}",
            rproxy.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    for k in keys.iter().take(300) {
        let want = format!("${}\r\n{}\r\n", k.len(), String::from_utf8_lossy(k));
        assert_eq!(
            rc.cmd(&[b"GET", k]),
            want.as_bytes(),
            "GET {} from a replica",
            escape(k)
        );
    }
    let served = gets_on(&replicas) - before;
    assert!(served >= 300, "replicas served {served} of 300 GETs");
    assert_eq!(rc.cmd_str(&["SET", "sc:0", "new"]), b"+OK\r\n");
    let owner = cluster.node_for_slot(1951); // CLUSTER KEYSLOT sc:0
    assert_eq!(
        cluster.conn(owner).cmd_str(&["GET", "sc:0"]),
        b"$3\r\nnew\r\n"
    );
    assert_eq!(c.cmd_str(&["SET", "sc:0", "sc:0"]), b"+OK\r\n");
    rproxy.assert_running();
    drop(rproxy);
    let _ = std::fs::remove_file(&file);

    // A full SCAN returns every key exactly once.
    let check = |label: &str, got: Vec<Vec<u8>>, want: &BTreeSet<Vec<u8>>| {
        let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
        for k in got {
            *seen.entry(k).or_default() += 1;
        }
        let repeated: Vec<String> = seen
            .iter()
            .filter(|(_, &n)| n > 1)
            .take(10)
            .map(|(k, n)| format!("{} x{n}", escape(k)))
            .collect();
        let missing: Vec<String> = want
            .iter()
            .filter(|k| !seen.contains_key(*k))
            .take(10)
            .map(|k| escape(k))
            .collect();
        let extra: Vec<String> = seen
            .keys()
            .filter(|k| !want.contains(*k))
            .take(10)
            .map(|k| escape(k))
            .collect();
        assert!(
            repeated.is_empty() && missing.is_empty() && extra.is_empty(),
            "{label}: {} distinct keys, want {}; repeated {repeated:?}; missing {missing:?}; extra {extra:?}",
            seen.len(),
            want.len()
        );
    };
    let scan = |c: &mut RawConn, extra: &[&str]| {
        let mut args = vec![b"SCAN".to_vec(), b"0".to_vec()];
        args.extend(extra.iter().map(|a| a.as_bytes().to_vec()));
        scan_all(c, &args).unwrap_or_else(|e| panic!("SCAN {extra:?}: {e}"))
    };
    let (got, calls) = scan(&mut c, &["COUNT", "100"]);
    assert!(
        calls >= 30,
        "SCAN COUNT 100 over {n} keys took only {calls} calls"
    );
    check("SCAN 0 COUNT 100", got, &all);
    let matching: BTreeSet<Vec<u8>> = all
        .iter()
        .filter(|k| k.starts_with(b"sc:1"))
        .cloned()
        .collect();
    assert_eq!(matching.len(), 1111);
    let (got, _) = scan(&mut c, &["MATCH", "sc:1*", "COUNT", "100"]);
    check("SCAN 0 MATCH sc:1* COUNT 100", got, &matching);
    let (got, _) = scan(&mut c, &["COUNT", "100", "TYPE", "string"]);
    check("SCAN 0 COUNT 100 TYPE string", got, &all);

    // KEYS: everything, once.
    let r = c.cmd_str(&["KEYS", "*"]);
    let got: Vec<Vec<u8>> = match parse(&r) {
        V::Arr(items) => items
            .into_iter()
            .map(|v| match v {
                V::Str(s) => s,
                other => panic!("KEYS element {other:?}"),
            })
            .collect(),
        other => panic!("KEYS reply {other:?}"),
    };
    assert_eq!(got.len(), n, "KEYS * returned {} keys", got.len());
    check("KEYS *", got, &all);
    proxy.assert_running();
    eprintln!(
        "SCAN/KEYS/DBSIZE over {n} keys ({per_primary:?}) took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 4. Transactions, WATCH, blocking, pub/sub, CROSSSLOT
// ---------------------------------------------------------------------------

/// MULTI/EXEC on one key, a WATCH abort, BLPOP woken by another client's
/// LPUSH, SUBSCRIBE/PUBLISH, and CROSSSLOT for MSETNX and RENAME over two
/// slots (and success within one).
#[test]
fn transactions_watch_blocking_pubsub_and_crossslot() {
    let _serial = serial();
    let started = Instant::now();
    let cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    let mut a = proxy.conn();
    let mut b = proxy.conn();

    // MULTI / SET / INCR / EXEC on one key.
    assert_eq!(a.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_eq!(
        a.cmd_str(&["SET", "tx:k", "10"]),
        b"+QUEUED\r\n",
        "SET in MULTI"
    );
    assert_eq!(
        a.cmd_str(&["INCR", "tx:k"]),
        b"+QUEUED\r\n",
        "INCR in MULTI"
    );
    let exec = a.cmd_str(&["EXEC"]);
    assert_eq!(exec, b"*2\r\n+OK\r\n:11\r\n", "EXEC: {}", escape(&exec));
    let owner = cluster.node_for_slot(key_slot(b"tx:k"));
    assert_eq!(
        cluster.conn(owner).cmd_str(&["GET", "tx:k"]),
        b"$2\r\n11\r\n"
    );
    assert_eq!(b.cmd_str(&["GET", "tx:k"]), b"$2\r\n11\r\n");

    // WATCH: another client's write aborts the transaction.
    assert_eq!(a.cmd_str(&["SET", "w:k", "start"]), b"+OK\r\n");
    assert_eq!(a.cmd_str(&["WATCH", "w:k"]), b"+OK\r\n", "WATCH");
    assert_eq!(a.cmd_str(&["GET", "w:k"]), b"$5\r\nstart\r\n");
    assert_eq!(b.cmd_str(&["SET", "w:k", "theirs"]), b"+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", "w:k", "mine"]), b"+QUEUED\r\n");
    let exec = a.cmd_str(&["EXEC"]);
    assert_eq!(
        exec,
        b"*-1\r\n",
        "EXEC after a watched key changed: {}",
        escape(&exec)
    );
    assert_eq!(a.cmd_str(&["GET", "w:k"]), b"$6\r\ntheirs\r\n");
    // And without interference the same transaction runs.
    assert_eq!(a.cmd_str(&["WATCH", "w:k"]), b"+OK\r\n");
    assert_eq!(a.cmd_str(&["MULTI"]), b"+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", "w:k", "mine"]), b"+QUEUED\r\n");
    assert_eq!(a.cmd_str(&["EXEC"]), b"*1\r\n+OK\r\n");
    assert_eq!(b.cmd_str(&["GET", "w:k"]), b"$4\r\nmine\r\n");

    // BLPOP blocks until another client's LPUSH.
    a.send(&encode_str(&["BLPOP", "bl:k", "5"]));
    a.expect_silence(Duration::from_millis(300));
    assert_eq!(b.cmd_str(&["LPUSH", "bl:k", "woken"]), b":1\r\n");
    let r = a
        .read_reply_within(Duration::from_secs(3))
        .expect("BLPOP not woken by LPUSH within 3 s");
    assert_eq!(
        r,
        b"*2\r\n$4\r\nbl:k\r\n$5\r\nwoken\r\n",
        "BLPOP: {}",
        escape(&r)
    );
    assert_eq!(a.cmd_str(&["LLEN", "bl:k"]), b":0\r\n");

    // One pipeline: a transaction, then commands for keys on every node;
    // they are routed by slot once the transaction is over (no MOVED).
    let keys: Vec<String> = (0..30).map(|i| format!("after-exec:{i}")).collect();
    let mut pipe = encode_str(&["MULTI"]);
    pipe.extend(encode_str(&["SET", "tx:{k}", "1"]));
    pipe.extend(encode_str(&["EXEC"]));
    for k in &keys {
        pipe.extend(encode_str(&["SET", k, k]));
        pipe.extend(encode_str(&["GET", k]));
    }
    a.send(&pipe);
    assert_eq!(a.read_reply(), b"+OK\r\n");
    assert_eq!(a.read_reply(), b"+QUEUED\r\n");
    assert_eq!(a.read_reply(), b"*1\r\n+OK\r\n");
    for k in &keys {
        assert_eq!(a.read_reply(), b"+OK\r\n", "SET {k} after EXEC");
        let want = format!("${}\r\n{k}\r\n", k.len());
        assert_eq!(
            String::from_utf8_lossy(&a.read_reply()),
            want,
            "GET {k} after EXEC"
        );
    }

    // SUBSCRIBE on one connection, PUBLISH on another (Redis Cluster
    // forwards messages between nodes; PUBLISH counts local receivers only,
    // so its count is not checked).
    let mut sub = proxy.conn();
    let r = sub.cmd_str(&["SUBSCRIBE", "news"]);
    assert_eq!(
        r,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
        "SUBSCRIBE: {}",
        escape(&r)
    );
    for i in 0..3 {
        let msg = format!("hello-{i}");
        let r = b.cmd_str(&["PUBLISH", "news", &msg]);
        assert!(matches!(parse(&r), V::Int(_)), "PUBLISH: {}", escape(&r));
        let m = sub
            .read_reply_within(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("message {msg} not delivered within 3 s"));
        assert_eq!(
            m,
            encode_str(&["message", "news", &msg]),
            "message: {}",
            escape(&m)
        );
    }

    // CROSSSLOT: MSETNX over two slots, RENAME across slots; nothing changes.
    assert_ne!(key_slot(b"{a}1"), key_slot(b"{b}1"));
    let r = b.cmd_str(&["MSETNX", "{a}1", "x", "{b}1", "y"]);
    assert_eq!(r, CROSSSLOT, "MSETNX over two slots: {}", escape(&r));
    assert_eq!(b.cmd_str(&["EXISTS", "{a}1", "{b}1"]), b":0\r\n");
    let r = b.cmd_str(&["MSETNX", "{a}1", "x", "{a}2", "y"]);
    assert_eq!(r, b":1\r\n", "MSETNX within one slot: {}", escape(&r));
    assert_eq!(b.cmd_str(&["SET", "{a}src", "v"]), b"+OK\r\n");
    let r = b.cmd_str(&["RENAME", "{a}src", "{b}dst"]);
    assert_eq!(r, CROSSSLOT, "RENAME across slots: {}", escape(&r));
    assert_eq!(b.cmd_str(&["GET", "{a}src"]), b"$1\r\nv\r\n");
    assert_eq!(b.cmd_str(&["EXISTS", "{b}dst"]), b":0\r\n");
    let r = b.cmd_str(&["RENAME", "{a}src", "{a}dst"]);
    assert_eq!(r, b"+OK\r\n", "RENAME within one slot: {}", escape(&r));
    assert_eq!(b.cmd_str(&["GET", "{a}dst"]), b"$1\r\nv\r\n");

    proxy.assert_running();
    eprintln!(
        "transactions/blocking/pubsub/crossslot took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------
// 5. Resharding under load (acceptance 4)
// ---------------------------------------------------------------------------

/// An unexpected reply seen by a load client.
#[derive(Debug)]
struct Bad {
    at: Duration,
    client: usize,
    cmd: String,
    key: String,
    slot: u16,
    reply: String,
}

/// Acceptance 4: 20 clients SET and GET their own keys (spread over all
/// slots) while `redis-cli --cluster reshard` moves 1 000 slots; no client
/// sees an error or a wrong value, and every value written reads back.
#[test]
fn reshard_1000_slots_under_load_no_errors() {
    const CLIENTS: usize = 20;
    const KEYS_PER_CLIENT: usize = 300;
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    let before = cluster.view();
    let primaries = before.primaries();
    let (from, to) = (primaries[0], primaries[1]);
    let to_slots_before = before.slots_of(to);

    let keys: Vec<Vec<String>> = (0..CLIENTS)
        .map(|t| {
            (0..KEYS_PER_CLIENT)
                .map(|i| format!("rs:{t}:{i}"))
                .collect()
        })
        .collect();
    {
        let mut c = proxy.conn();
        for ks in &keys {
            let mset = cmd_with(
                "MSET",
                ks.iter()
                    .flat_map(|k| [k.clone().into_bytes(), b"init".to_vec()]),
            );
            let a: Vec<&[u8]> = mset.iter().map(|x| x.as_slice()).collect();
            assert_eq!(c.cmd(&a), b"+OK\r\n");
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let bad: Arc<Mutex<Vec<Bad>>> = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let ops = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (stop, bad, errors, ops) = (stop.clone(), bad.clone(), errors.clone(), ops.clone());
            let keys = keys[t].clone();
            let port = proxy.port();
            thread::spawn(move || {
                let mut c = RawConn::connect(port);
                let mut last: HashMap<String, Option<String>> = keys
                    .iter()
                    .map(|k| (k.clone(), Some("init".into())))
                    .collect();
                let record = |cmd: &str, key: &str, reply: String| {
                    errors.fetch_add(1, Ordering::Relaxed);
                    let mut b = bad.lock().unwrap();
                    if b.len() < 50 {
                        b.push(Bad {
                            at: t0.elapsed(),
                            client: t,
                            cmd: cmd.to_string(),
                            key: key.to_string(),
                            slot: key_slot(key.as_bytes()),
                            reply,
                        });
                    }
                };
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[n % keys.len()];
                    let value = format!("{t}:{n}");
                    match request(&mut c, &[b"SET", key.as_bytes(), value.as_bytes()]) {
                        Ok(r) if r == b"+OK\r\n" => {
                            last.insert(key.clone(), Some(value.clone()));
                        }
                        Ok(r) => {
                            last.insert(key.clone(), None);
                            record("SET", key, escape(&r));
                        }
                        Err(e) => {
                            record("SET", key, e);
                            return last;
                        }
                    }
                    let want = last[key].clone();
                    match request(&mut c, &[b"GET", key.as_bytes()]) {
                        Ok(r) => {
                            let ok = match (&want, parse(&r)) {
                                (Some(w), V::Str(s)) => s == w.as_bytes(),
                                (None, V::Str(_)) => true,
                                _ => false,
                            };
                            if !ok {
                                record("GET", key, format!("{} (want {want:?})", escape(&r)));
                            }
                        }
                        Err(e) => {
                            record("GET", key, e);
                            return last;
                        }
                    }
                    ops.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                }
                last
            })
        })
        .collect();

    common::wait_until("load before the reshard", Duration::from_secs(10), || {
        ops.load(Ordering::Relaxed) >= 400
    });
    let ops_before = ops.load(Ordering::Relaxed);
    let reshard_start = t0.elapsed();
    cluster.reshard(from, to, 1000);
    let reshard_end = t0.elapsed();
    let ops_during = ops.load(Ordering::Relaxed) - ops_before;
    let ops_after = ops.load(Ordering::Relaxed);
    common::wait_until("load after the reshard", Duration::from_secs(10), || {
        ops.load(Ordering::Relaxed) >= ops_after + 400
    });
    stop.store(true, Ordering::Relaxed);
    let finals: Vec<HashMap<String, Option<String>>> =
        workers.into_iter().map(|w| w.join().unwrap()).collect();

    let after = cluster.view();
    assert_eq!(
        after.slots_of(to),
        to_slots_before + 1000,
        "the reshard did not move 1000 slots"
    );
    let moved: Vec<&String> = keys
        .iter()
        .flatten()
        .filter(|k| {
            let s = key_slot(k.as_bytes());
            before.owner(s) == Some(from) && after.owner(s) == Some(to)
        })
        .collect();

    let n_errors = errors.load(Ordering::Relaxed);
    let summary = format!(
        "reshard of 1000 slots {from} -> {to} ran {:.1}s..{:.1}s; {} ops in total, {ops_during} \
         during the reshard; {} of {} keys were in moved slots; {n_errors} unexpected replies",
        reshard_start.as_secs_f64(),
        reshard_end.as_secs_f64(),
        ops.load(Ordering::Relaxed),
        moved.len(),
        CLIENTS * KEYS_PER_CLIENT
    );
    eprintln!("{summary}");
    if n_errors > 0 {
        let b = bad.lock().unwrap();
        let lines: Vec<String> = b
            .iter()
            .map(|e| {
                format!(
                    "  {:>6.3}s client {:>2} {} {} (slot {}, {} -> {}): {}",
                    e.at.as_secs_f64(),
                    e.client,
                    e.cmd,
                    e.key,
                    e.slot,
                    before.owner(e.slot).unwrap_or(0),
                    after.owner(e.slot).unwrap_or(0),
                    e.reply
                )
            })
            .collect();
        panic!(
            "{summary}\nfirst {} unexpected replies:\n{}",
            lines.len(),
            lines.join("\n")
        );
    }
    assert!(moved.len() > 100, "{summary}: too few keys in moved slots");
    assert!(
        ops_during > 1000,
        "{summary}: too little load during the reshard"
    );

    // Every value written is read back, through respite and from the node
    // that serves the key now.
    let mut c = proxy.conn();
    let mut wrong = Vec::new();
    for last in &finals {
        for (k, v) in last {
            let Some(v) = v else { continue };
            let r = c.cmd_str(&["GET", k]);
            let owner = after.owner(key_slot(k.as_bytes())).unwrap();
            let direct = cluster.conn(owner).cmd_str(&["GET", k]);
            let want = encode_bulk(v);
            if r != want || direct != want {
                wrong.push(format!(
                    "{k}: want {v}, respite {}, node {owner} {}",
                    escape(&r),
                    escape(&direct)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{summary}\n{} values not read back:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
    proxy.assert_running();
    eprintln!(
        "resharding test took {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn encode_bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

// ---------------------------------------------------------------------------
// 6. Failover under load (acceptance 5)
// ---------------------------------------------------------------------------

/// One failed request of a failover client.
#[derive(Debug, Clone)]
struct Failure {
    at: Duration,
    client: usize,
    key: String,
    slot: u16,
    on_dead: bool,
    reply: String,
}

/// Acceptance 5: a primary is SIGKILLed under load from 4 clients. Only
/// requests for keys in its slots may fail, and only until its replica is
/// promoted (as seen by `wait_failover`) plus a 2 s grace; afterwards every
/// key is served again on the same client connections.
#[test]
fn failover_only_dead_primary_keys_fail_until_promotion() {
    const CLIENTS: usize = 4;
    const KEYS_PER_CLIENT: usize = 200;
    // After promotion, respite may take this long to serve the dead
    // primary's slots again.
    const GRACE: Duration = Duration::from_secs(2);
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    proxy.allow_log("upstream connection failed");
    let before = cluster.view();
    let dead = before.primaries()[1];
    let on_dead = move |key: &str| before.owner(key_slot(key.as_bytes())) == Some(dead);

    let keys: Vec<Vec<String>> = (0..CLIENTS)
        .map(|t| {
            (0..KEYS_PER_CLIENT)
                .map(|i| format!("fo:{t}:{i}"))
                .collect()
        })
        .collect();
    let dead_keys = keys.iter().flatten().filter(|k| on_dead(k)).count();
    assert!(
        dead_keys > 50,
        "only {dead_keys} keys on the primary to kill"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (stop, ops, on_dead) = (stop.clone(), ops.clone(), on_dead.clone());
            let keys = keys[t].clone();
            let port = proxy.port();
            thread::spawn(move || {
                let mut c = RawConn::connect(port);
                let mut fails: Vec<Failure> = Vec::new();
                let mut fail = |key: &str, reply: String| {
                    fails.push(Failure {
                        at: t0.elapsed(),
                        client: t,
                        key: key.to_string(),
                        slot: key_slot(key.as_bytes()),
                        on_dead: on_dead(key),
                        reply,
                    })
                };
                let mut n = 0usize;
                let mut broken = false;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[n % keys.len()];
                    let value = format!("{t}:{n}");
                    let set_ok = match request(&mut c, &[b"SET", key.as_bytes(), value.as_bytes()])
                    {
                        Ok(r) if r == b"+OK\r\n" => true,
                        Ok(r) => {
                            fail(key, format!("SET -> {}", escape(&r)));
                            false
                        }
                        Err(e) => {
                            fail(key, format!("SET -> {e}"));
                            broken = true;
                            break;
                        }
                    };
                    match request(&mut c, &[b"GET", key.as_bytes()]) {
                        Ok(r) if r == encode_bulk(&value) => {}
                        // After a failed SET the key keeps its earlier value.
                        Ok(r) if !set_ok && matches!(r.first(), Some(b'$' | b'_')) => {}
                        Ok(r) => fail(key, format!("GET -> {} (want {value})", escape(&r))),
                        Err(e) => {
                            fail(key, format!("GET -> {e}"));
                            broken = true;
                            break;
                        }
                    }
                    ops.fetch_add(2, Ordering::Relaxed);
                    n += 1;
                }
                // Finally every key, on this same connection.
                let mut sweep = Vec::new();
                if !broken {
                    for key in &keys {
                        let value = format!("final:{t}");
                        let set = request(&mut c, &[b"SET", key.as_bytes(), value.as_bytes()]);
                        let get = request(&mut c, &[b"GET", key.as_bytes()]);
                        let ok = matches!(&set, Ok(r) if r == b"+OK\r\n")
                            && matches!(&get, Ok(r) if *r == encode_bulk(&value));
                        if !ok {
                            sweep.push(format!(
                                "client {t} {key}: SET {:?} GET {:?}",
                                set.map(|r| escape(&r)),
                                get.map(|r| escape(&r))
                            ));
                        }
                    }
                }
                (fails, sweep, broken)
            })
        })
        .collect();

    common::wait_until("load before the kill", Duration::from_secs(10), || {
        ops.load(Ordering::Relaxed) >= 400
    });
    let killed_at = t0.elapsed();
    cluster.kill(dead);
    let heir = cluster.wait_failover(dead);
    let promoted_at = t0.elapsed();
    // Load goes on for the grace period and 3 s more.
    thread::sleep(GRACE + Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let deadline = promoted_at + GRACE;

    let mut all: Vec<Failure> = results.iter().flat_map(|r| r.0.clone()).collect();
    all.sort_by_key(|f| f.at);
    let on_dead_fails = all.iter().filter(|f| f.on_dead).count();
    let wrong_node: Vec<&Failure> = all.iter().filter(|f| !f.on_dead).collect();
    let too_late: Vec<&Failure> = all
        .iter()
        .filter(|f| f.on_dead && f.at > deadline)
        .collect();
    let sweep: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    let broken = results.iter().filter(|r| r.2).count();
    let show = |fs: &[&Failure]| -> String {
        fs.iter()
            .take(15)
            .map(|f| {
                format!(
                    "  {:>6.3}s client {} {} (slot {}{}): {}",
                    f.at.as_secs_f64(),
                    f.client,
                    f.key,
                    f.slot,
                    if f.on_dead { ", killed primary's" } else { "" },
                    f.reply
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let summary = format!(
        "killed primary {dead} at {:.3}s, replica {heir} promoted (seen) at {:.3}s; \
         {} ops; {on_dead_fails} failed requests on the killed primary's keys \
         (first {:?}, last {:?}); {} on other keys; {} after promotion + {GRACE:?}; \
         {broken} connections broken; {} keys not served in the final sweep",
        killed_at.as_secs_f64(),
        promoted_at.as_secs_f64(),
        ops.load(Ordering::Relaxed),
        all.iter()
            .find(|f| f.on_dead)
            .map(|f| format!("{:.3}s", f.at.as_secs_f64())),
        all.iter()
            .rev()
            .find(|f| f.on_dead)
            .map(|f| format!("{:.3}s", f.at.as_secs_f64())),
        wrong_node.len(),
        too_late.len(),
        sweep.len()
    );
    eprintln!("{summary}");
    // Failures by kind of key and reply: how many, first and last time.
    let mut kinds: std::collections::BTreeMap<(bool, String), (usize, Duration, Duration)> =
        std::collections::BTreeMap::new();
    for f in &all {
        let reply = f.reply.split(" (want").next().unwrap_or(&f.reply);
        let reply = reply.split_once(" -> ").map_or(reply, |x| x.1);
        let e = kinds
            .entry((f.on_dead, reply.to_string()))
            .or_insert((0, f.at, f.at));
        e.0 += 1;
        e.2 = f.at;
    }
    let kinds: Vec<String> = kinds
        .iter()
        .map(|((dead_key, reply), (n, first, last))| {
            format!(
                "  {n:>6} on {} keys, {:.3}s..{:.3}s: {reply}",
                if *dead_key {
                    "killed primary's"
                } else {
                    "live primaries'"
                },
                first.as_secs_f64(),
                last.as_secs_f64()
            )
        })
        .collect();
    eprintln!("failures by kind:\n{}", kinds.join("\n"));
    let all_refs: Vec<&Failure> = all.iter().collect();
    assert!(
        wrong_node.is_empty() && too_late.is_empty() && sweep.is_empty() && broken == 0,
        "{summary}\nfailures by kind:\n{}\nfailures on keys of live primaries:\n{}\n\
         failures after promotion + grace ({:.3}s):\n{}\nfinal sweep:\n{}\nall failures (first 15):\n{}",
        kinds.join("\n"),
        show(&wrong_node),
        deadline.as_secs_f64(),
        show(&too_late),
        sweep
            .iter()
            .take(15)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        show(&all_refs)
    );
    proxy.assert_running();
    eprintln!("failover test took {:.1}s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// Sharded pub/sub follows its slot
// ---------------------------------------------------------------------------

/// A client subscribed with SSUBSCRIBE keeps receiving the channel's messages
/// after the channel's slot moves to another node (respite subscribes again
/// on the new owner and hides Redis's `sunsubscribe`); channels on two nodes
/// work on one client connection.
#[test]
fn ssubscribe_follows_a_resharded_slot() {
    let _serial = serial();
    let mut cluster = RedisCluster::start(3, 1);
    let mut proxy = cluster_proxy(&cluster);
    let from = cluster.node_for_slot(0);
    let to = cluster
        .primary_ports()
        .into_iter()
        .find(|&p| p != from)
        .unwrap();
    let third = cluster
        .primary_ports()
        .into_iter()
        .find(|&p| p != from && p != to)
        .unwrap();
    // A channel among the first 50 slots (the ones the reshard moves) and
    // one served by the third primary for good.
    let moving = (0..100_000)
        .map(|i| format!("ch:{i}"))
        .find(|n| key_slot(n.as_bytes()) < 50)
        .unwrap();
    let third_view = cluster.view();
    let staying = (0..100_000)
        .map(|i| format!("st:{i}"))
        .find(|n| third_view.owner(key_slot(n.as_bytes())) == Some(third))
        .unwrap();

    let mut sub = proxy.conn();
    let frame = |kind: &str, ch: &str, tail: &str| {
        format!(
            "*3\r\n${}\r\n{kind}\r\n${}\r\n{ch}\r\n{tail}",
            kind.len(),
            ch.len()
        )
    };
    sub.send(&encode_str(&["SSUBSCRIBE", &moving]));
    assert_eq!(
        String::from_utf8_lossy(&sub.read_reply()),
        frame("ssubscribe", &moving, ":1\r\n")
    );
    sub.send(&encode_str(&["SSUBSCRIBE", &staying]));
    let r = sub.read_reply();
    assert!(
        r.starts_with(frame("ssubscribe", &staying, "").as_bytes()),
        "second SSUBSCRIBE: {}",
        escape(&r)
    );
    let mut publ = proxy.conn();
    let expect_message = |sub: &mut RawConn, publ: &mut RawConn, ch: &str, msg: &str| {
        // SPUBLISH until the message arrives: after a move, the subscription
        // on the new owner may take a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = publ.cmd_str(&["SPUBLISH", ch, msg]);
            assert!(r.starts_with(b":"), "SPUBLISH {ch}: {}", escape(&r));
            if let Some(m) = sub.read_reply_within(Duration::from_millis(300)) {
                let want = format!(
                    "*3\r\n$8\r\nsmessage\r\n${}\r\n{ch}\r\n${}\r\n{msg}\r\n",
                    ch.len(),
                    msg.len()
                );
                assert_eq!(String::from_utf8_lossy(&m), want, "message on {ch}");
                // Drain duplicates of retried publishes.
                while let Some(m) = sub.read_reply_within(Duration::from_millis(100)) {
                    assert!(m.starts_with(b"*3\r\n$8\r\nsmessage"), "{}", escape(&m));
                }
                return;
            }
            assert!(Instant::now() < deadline, "no message on {ch}");
        }
    };
    expect_message(&mut sub, &mut publ, &moving, "before");
    expect_message(&mut sub, &mut publ, &staying, "other-node");

    cluster.reshard(from, to, 50);
    assert_eq!(cluster.node_for_slot(key_slot(moving.as_bytes())), to);
    expect_message(&mut sub, &mut publ, &moving, "after");
    expect_message(&mut sub, &mut publ, &staying, "still");

    sub.send(&encode_str(&["SUNSUBSCRIBE", &moving]));
    let r = sub.read_reply();
    assert_eq!(
        String::from_utf8_lossy(&r),
        frame("sunsubscribe", &moving, ":0\r\n"),
        "SUNSUBSCRIBE after the move"
    );
    proxy.assert_running();
}
