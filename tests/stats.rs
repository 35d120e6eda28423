//! Issue 6, statistics, against a real redis-server: exact hit and miss
//! counts (acceptance 1), hot keys of a Zipf workload in bounded memory (2),
//! `/metrics` in strict Prometheus text format with moving latency
//! histograms (3), `PROXY INFO` in INFO format agreeing with `/metrics` (4).

mod common;

use common::{encode_str, free_port, Proxy, RawConn, RedisServer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

// ---------------------------------------------------------------- helpers

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Nil,
    Int(i64),
    Str(Vec<u8>),
    Err(String),
    Arr(Vec<V>),
    Map(Vec<(V, V)>),
}

fn parse(b: &[u8]) -> V {
    let (v, used) = parse_at(b, 0);
    assert_eq!(used, b.len(), "trailing bytes after a reply");
    v
}

fn parse_at(b: &[u8], at: usize) -> (V, usize) {
    let end = at + b[at..].windows(2).position(|w| w == b"\r\n").expect("CRLF");
    let line = std::str::from_utf8(&b[at + 1..end]).expect("utf8 header");
    let next = end + 2;
    match b[at] {
        b'+' => (V::Str(line.as_bytes().to_vec()), next),
        b'-' => (V::Err(line.to_string()), next),
        b':' => (V::Int(line.parse().unwrap()), next),
        b'_' => (V::Nil, next),
        b'$' | b'=' => {
            let n: i64 = line.parse().unwrap();
            if n < 0 {
                return (V::Nil, next);
            }
            let n = n as usize;
            (V::Str(b[next..next + n].to_vec()), next + n + 2)
        }
        b'*' | b'~' | b'%' => {
            let n: i64 = line.parse().unwrap();
            if n < 0 {
                return (V::Nil, next);
            }
            let mut at = next;
            if b[at - 2 - line.len() - 1] == b'%' {
                let mut m = Vec::new();
                for _ in 0..n {
                    let (k, a) = parse_at(b, at);
                    let (v, a) = parse_at(b, a);
                    m.push((k, v));
                    at = a;
                }
                return (V::Map(m), at);
            }
            let mut items = Vec::new();
            for _ in 0..n {
                let (v, a) = parse_at(b, at);
                items.push(v);
                at = a;
            }
            (V::Arr(items), at)
        }
        t => panic!("unexpected reply type {:?}", t as char),
    }
}

fn cmd(c: &mut RawConn, args: &[&str]) -> V {
    parse(&c.cmd_str(args))
}

fn text(v: V) -> String {
    match v {
        V::Str(s) => String::from_utf8(s).unwrap(),
        other => panic!("expected a string, got {other:?}"),
    }
}

/// KEYSTATS of one key as field -> value (RESP2 flat array or RESP3 map).
fn keystats(c: &mut RawConn, key: &str) -> Option<BTreeMap<String, i64>> {
    let V::Arr(mut items) = cmd(c, &["KEYSTATS", key]) else {
        panic!("KEYSTATS is not an array");
    };
    assert_eq!(items.len(), 1);
    let pairs: Vec<(V, V)> = match items.remove(0) {
        V::Nil => return None,
        V::Map(m) => m,
        V::Arr(a) => a.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect(),
        other => panic!("KEYSTATS element {other:?}"),
    };
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| match v {
                V::Int(n) => (text(k), n),
                other => panic!("field value {other:?}"),
            })
            .collect(),
    )
}

fn info(c: &mut RawConn, section: Option<&str>) -> String {
    let mut args = vec!["PROXY", "INFO"];
    args.extend(section);
    text(cmd(c, &args))
}

/// `field -> value` of an INFO text, checking its format on the way: only
/// `# Section` headers, `field:value` lines and blank lines between sections.
fn parse_info(text: &str) -> (Vec<String>, HashMap<String, String>) {
    assert!(text.ends_with("\r\n"), "INFO text ends with CRLF");
    let mut sections = Vec::new();
    let mut fields = HashMap::new();
    for line in text.split("\r\n").take(text.split("\r\n").count() - 1) {
        assert!(!line.contains('\n') && !line.contains('\r'));
        if line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix("# ") {
            sections.push(s.to_string());
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a field line: {line:?}"));
        assert!(
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad field name {k:?}"
        );
        assert!(!sections.is_empty(), "field before any section");
        assert!(
            fields.insert(k.to_string(), v.to_string()).is_none(),
            "{k} twice"
        );
    }
    (sections, fields)
}

/// A proxy with an admin port and `toml` as its config file (the returned
/// directory holds the file; keep it alive with the proxy).
fn start_proxy(redis: &RedisServer, extra: &[&str], toml: &str) -> (Proxy, u16, tempfile::TempDir) {
    let admin = free_port();
    let mut args = Proxy::default_args(&redis.addr());
    let i = args.iter().position(|a| a == "--admin").unwrap();
    args[i + 1] = format!("127.0.0.1:{admin}");
    for pair in extra.chunks(2) {
        match args.iter().position(|a| a == pair[0]) {
            Some(i) => args[i + 1] = pair[1].to_string(),
            None => args.extend(pair.iter().map(|s| s.to_string())),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, toml).unwrap();
    args.push("--config".into());
    args.push(path.to_string_lossy().into_owned());
    (Proxy::start_args(args), admin, dir)
}

fn http_get(port: u16, path: &str) -> String {
    // The admin listener starts next to the proxy's: retry briefly.
    let mut tries = 0;
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("admin port {port}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("HTTP head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

// ------------------------------------------------------- Prometheus parser

/// A series' labels other than `le`, sorted.
type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Family {
    kind: String,
    /// (full sample name, labels, value)
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// A strict reader of the Prometheus text format 0.0.4: every line is a
/// `# HELP`, a `# TYPE` (before the family's samples, once per family) or a
/// sample of a declared family; label values are quoted and escaped; values
/// are floats; histograms have cumulative buckets ending in `+Inf` equal to
/// `_count`.
fn parse_prometheus(text: &str) -> BTreeMap<String, Family> {
    assert!(text.ends_with('\n'));
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped = HashSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name), "bad name in {line:?}");
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().expect("type"));
            assert!(it.next().is_none(), "{line:?}");
            assert!(is_name(name));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            assert!(!fams.contains_key(name), "TYPE twice for {name}");
            fams.insert(
                name.to_string(),
                Family {
                    kind: kind.into(),
                    ..Default::default()
                },
            );
            current = Some(name.to_string());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        // name{labels} value
        let (name_end, labels, rest) = match line.find('{') {
            Some(b) => {
                let mut labels = BTreeMap::new();
                let mut s = &line[b + 1..];
                loop {
                    if let Some(r) = s.strip_prefix('}') {
                        s = r;
                        break;
                    }
                    let eq = s.find("=\"").expect("label =\"");
                    let key = &s[..eq];
                    assert!(is_name(key) && !key.starts_with("__"), "label {key:?}");
                    let mut val = String::new();
                    let mut chars = s[eq + 2..].char_indices();
                    let end = loop {
                        match chars.next().expect("unterminated label value") {
                            (i, '"') => break i,
                            (_, '\\') => match chars.next().unwrap().1 {
                                'n' => val.push('\n'),
                                '\\' => val.push('\\'),
                                '"' => val.push('"'),
                                c => panic!("bad escape \\{c}"),
                            },
                            (_, c) => val.push(c),
                        }
                    };
                    assert!(labels.insert(key.to_string(), val).is_none());
                    s = &s[eq + 2 + end + 1..];
                    s = s.strip_prefix(',').unwrap_or(s);
                }
                (b, labels, s)
            }
            None => {
                let sp = line.find(' ').expect("value");
                (sp, BTreeMap::new(), &line[sp..])
            }
        };
        let name = &line[..name_end];
        assert!(is_name(name), "{line:?}");
        let value = rest.strip_prefix(' ').expect("space before value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let fam_name = current.clone().expect("sample before any TYPE");
        let fam = fams.get_mut(&fam_name).unwrap();
        let ok = if fam.kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suf| name == format!("{fam_name}{suf}"))
        } else {
            name == fam_name
        };
        assert!(ok, "sample {name} outside its family {fam_name}");
        fam.samples.push((name.to_string(), labels, value));
    }
    for (name, f) in &fams {
        if f.kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts = HashMap::new();
        for (n, l, v) in &f.samples {
            let mut key: Labels = l
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            key.sort();
            if n.ends_with("_bucket") {
                let le = l.get("le").expect("bucket without le");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                series.entry(key).or_default().push((le, *v));
            } else if n.ends_with("_count") {
                counts.insert(key, *v);
            }
        }
        for (key, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{name}"
            );
            let last = buckets.last().unwrap();
            assert_eq!(last.0, f64::INFINITY, "{name} has no +Inf bucket");
            assert_eq!(Some(&last.1), counts.get(&key), "{name}: +Inf != _count");
        }
    }
    fams
}

fn sample(fams: &BTreeMap<String, Family>, name: &str, label: Option<(&str, &str)>) -> f64 {
    let fam_name = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s).filter(|f| fams.contains_key(*f)))
        .unwrap_or(name);
    let fam = fams
        .get(fam_name)
        .unwrap_or_else(|| panic!("no family {fam_name}"));
    fam.samples
        .iter()
        .filter(|(n, l, _)| {
            n == name && label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v))
        })
        .map(|s| s.2)
        .next()
        .unwrap_or_else(|| panic!("no sample {name} {label:?}"))
}

// ------------------------------------------------------------------ tests

/// Acceptance 1: per key and in total, hits and misses equal a model's.
#[test]
fn hit_and_miss_counts_are_exact() {
    let redis = RedisServer::start();
    let (proxy, _, _dir) = start_proxy(&redis, &["--workers", "2"], "");
    // Two connections: with two workers they may land on different shards.
    let mut conns = [proxy.conn(), proxy.conn()];
    let mut hello = proxy.conn();
    assert!(matches!(cmd(&mut hello, &["HELLO", "3"]), V::Map(_)));

    #[derive(Default, Debug, PartialEq)]
    struct Truth {
        reads: i64,
        writes: i64,
        hits: i64,
        misses: i64,
    }
    let mut truth: BTreeMap<String, Truth> = BTreeMap::new();
    let (mut hits, mut misses) = (0i64, 0i64);
    let mut strings: HashSet<String> = HashSet::new();
    let mut hashes: HashMap<String, HashSet<String>> = HashMap::new();
    let keys: Vec<String> = (0..8).map(|i| format!("s:{i}")).collect();
    let mut x = 7u64;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..600 {
        let c = &mut conns[step % 2];
        let k = keys[rnd(keys.len() as u64) as usize].clone();
        let mut look = |t: &mut BTreeMap<String, Truth>, key: &str, found: bool| {
            let e = t.entry(key.to_string()).or_default();
            e.reads += 1;
            if found {
                e.hits += 1;
                hits += 1;
            } else {
                e.misses += 1;
                misses += 1;
            }
        };
        match rnd(7) {
            0 => {
                if hashes.contains_key(&k) {
                    continue; // WRONGTYPE: neither hit nor miss
                }
                let found = strings.contains(&k);
                let r = cmd(c, &["GET", &k]);
                assert_eq!(r != V::Nil, found);
                look(&mut truth, &k, found);
            }
            1 => {
                let ks: Vec<String> = (0..1 + rnd(4))
                    .map(|_| keys[rnd(keys.len() as u64) as usize].clone())
                    .collect();
                let mut args = vec!["MGET"];
                args.extend(ks.iter().map(String::as_str));
                let V::Arr(items) = cmd(c, &args) else {
                    panic!()
                };
                for (key, item) in ks.iter().zip(items) {
                    let found = strings.contains(key);
                    assert_eq!(item != V::Nil, found);
                    look(&mut truth, key, found);
                }
            }
            2 => {
                let f = format!("f{}", rnd(3));
                let found = hashes.get(&k).is_some_and(|h| h.contains(&f));
                if strings.contains(&k) {
                    continue;
                }
                let r = cmd(c, &["HGET", &k, &f]);
                assert_eq!(r != V::Nil, found);
                look(&mut truth, &k, found);
            }
            3 => {
                let found = strings.contains(&k) || hashes.contains_key(&k);
                assert_eq!(cmd(c, &["EXISTS", &k]), V::Int(found as i64));
                look(&mut truth, &k, found);
            }
            4 => {
                if hashes.contains_key(&k) {
                    continue;
                }
                cmd(c, &["SET", &k, "v"]);
                strings.insert(k.clone());
                truth.entry(k).or_default().writes += 1;
            }
            5 => {
                if strings.contains(&k) {
                    continue;
                }
                let f = format!("f{}", rnd(3));
                cmd(c, &["HSET", &k, &f, "v"]);
                hashes.entry(k.clone()).or_default().insert(f);
                truth.entry(k).or_default().writes += 1;
            }
            _ => {
                let n = cmd(c, &["DEL", &k]);
                let existed = strings.remove(&k) | hashes.remove(&k).is_some();
                assert_eq!(n, V::Int(existed as i64));
                truth.entry(k).or_default().writes += 1;
            }
        }
    }
    assert!(
        hits > 50 && misses > 50,
        "workload too one-sided: {hits} {misses}"
    );
    for (key, t) in &truth {
        for c in [&mut conns[0], &mut hello] {
            let s = keystats(c, key).unwrap_or_else(|| panic!("{key} not tracked"));
            let got = Truth {
                reads: s["reads"],
                writes: s["writes"],
                hits: s["hits"],
                misses: s["misses"],
            };
            assert_eq!(&got, t, "{key}");
            assert_eq!(s.len(), 7);
            assert!(s["bytes_in"] > 0 && s["bytes_out"] > 0 && s["last_access_ms"] > 1.6e12 as i64);
        }
    }
    assert_eq!(keystats(&mut conns[0], "never-touched"), None);
    // RESP3 KEYSTATS is a map; nil is `_`.
    let raw = hello.cmd_str(&["KEYSTATS", "s:0", "nope"]);
    assert!(
        raw.starts_with(b"*2\r\n%7\r\n"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(raw.ends_with(b"_\r\n"));
    let (_, f) = parse_info(&info(&mut conns[1], None));
    assert_eq!(f["keyspace_hits"], hits.to_string());
    assert_eq!(f["keyspace_misses"], misses.to_string());

    // HOTKEYS: ordering, BY, and errors like Redis's.
    let V::Arr(top) = cmd(&mut conns[0], &["HOTKEYS", "COUNT", "3", "BY", "misses"]) else {
        panic!()
    };
    let mut want: Vec<(i64, &String)> = truth.iter().map(|(k, t)| (t.misses, k)).collect();
    want.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let got: Vec<(i64, String)> = top
        .into_iter()
        .map(|p| match p {
            V::Arr(mut p) => {
                let n = match p.pop() {
                    Some(V::Int(n)) => n,
                    o => panic!("{o:?}"),
                };
                (n, text(p.pop().unwrap()))
            }
            o => panic!("{o:?}"),
        })
        .collect();
    let want: Vec<(i64, String)> = want
        .into_iter()
        .take(3)
        .map(|(n, k)| (n, k.clone()))
        .collect();
    assert_eq!(got, want);
    let V::Arr(top) = cmd(&mut conns[0], &["HOTKEYS"]) else {
        panic!()
    };
    assert_eq!(top.len(), 8);
    for (args, err) in [
        (vec!["HOTKEYS", "COUNT"], "ERR syntax error"),
        (
            vec!["HOTKEYS", "COUNT", "x"],
            "ERR value is not an integer or out of range",
        ),
        (vec!["HOTKEYS", "BY", "nothing"], "ERR syntax error"),
        (vec!["HOTKEYS", "WHAT", "1"], "ERR syntax error"),
        (
            vec!["KEYSTATS"],
            "ERR wrong number of arguments for 'keystats' command",
        ),
    ] {
        assert_eq!(cmd(&mut conns[0], &args), V::Err(err.into()), "{args:?}");
    }
    // RESETSTATS forgets everything.
    assert_eq!(
        cmd(&mut conns[0], &["PROXY", "RESETSTATS"]),
        V::Str(b"OK".to_vec())
    );
    assert_eq!(keystats(&mut conns[0], "s:0"), None);
    let (_, f) = parse_info(&info(&mut conns[1], Some("keyspace_hits")));
    assert_eq!(
        (f["keyspace_hits"].as_str(), f["keyspace_misses"].as_str()),
        ("0", "0")
    );
    drop(proxy);
}

/// Zipf(s) sampler over ranks 1..=n by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            cdf.push(acc);
        }
        for c in cdf.iter_mut() {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// Rank - 1 for a uniform `u` in [0, 1).
    fn sample(&self, u: f64) -> usize {
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Acceptance 2: 2 000 000 Zipf(1.1) requests over 1 000 000 keys,
/// `max_keys = 10 000`: the top 20 are found with counts within 5%, and the
/// proxy's memory grows by less than 32 MB.
#[test]
fn zipf_hot_keys_in_bounded_memory() {
    const KEYS: usize = 1_000_000;
    const REQUESTS: usize = 2_000_000;
    const CONNS: usize = 4;
    const PIPELINE: usize = 2000;
    let redis = RedisServer::start();
    let (proxy, _, _dir) = start_proxy(&redis, &["--workers", "2"], "[stats]\nmax_keys = 10000\n");
    let mut c = proxy.conn();
    assert_eq!(cmd(&mut c, &["PING"]), V::Str(b"PONG".to_vec()));
    let rss_before = proxy.rss_kb();

    let zipf = Zipf::new(KEYS, 1.1);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let ranks: Vec<u32> = (0..REQUESTS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            zipf.sample((x >> 11) as f64 / (1u64 << 53) as f64) as u32
        })
        .collect();
    let mut truth = vec![0u32; KEYS];
    for &r in &ranks {
        truth[r as usize] += 1;
    }
    let port = proxy.port();
    std::thread::scope(|s| {
        for part in ranks.chunks(REQUESTS / CONNS) {
            s.spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.set_nodelay(true).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut buf = Vec::new();
                let mut rbuf = vec![0u8; 64 * 1024];
                for batch in part.chunks(PIPELINE) {
                    buf.clear();
                    for r in batch {
                        let key = format!("key:{r}");
                        write!(buf, "*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).unwrap();
                    }
                    stream.write_all(&buf).unwrap();
                    // Every reply is a nil: `$-1\r\n`.
                    let mut want = batch.len() * 5;
                    while want > 0 {
                        let n = stream.read(&mut rbuf).unwrap();
                        assert!(n > 0, "proxy closed");
                        want = want.checked_sub(n).expect("unexpected reply bytes");
                    }
                }
            });
        }
    });
    let rss_after = proxy.rss_kb();

    let mut true_top: Vec<(u32, usize)> = truth.iter().enumerate().map(|(k, &n)| (n, k)).collect();
    true_top.sort_by(|a, b| b.cmp(a));
    let true_top: HashMap<String, u32> = true_top[..20]
        .iter()
        .map(|&(n, k)| (format!("key:{k}"), n))
        .collect();
    let V::Arr(top) = cmd(&mut c, &["HOTKEYS", "COUNT", "20"]) else {
        panic!()
    };
    assert_eq!(top.len(), 20);
    let mut shared = 0;
    for p in top {
        let V::Arr(p) = p else { panic!() };
        let (key, V::Int(n)) = (text(p[0].clone()), p[1].clone()) else {
            panic!()
        };
        if let Some(&t) = true_top.get(&key) {
            shared += 1;
            let err = (n as f64 - t as f64).abs() / t as f64;
            assert!(err <= 0.05, "{key}: counted {n}, true {t}");
        }
    }
    assert!(shared >= 18, "only {shared} of the true top 20");
    let grown_kb = rss_after.saturating_sub(rss_before);
    eprintln!("zipf: rss {rss_before} kB -> {rss_after} kB (+{grown_kb} kB), {shared}/20 shared");
    assert!(grown_kb < 32 * 1024, "proxy grew by {grown_kb} kB");
    let (_, f) = parse_info(&info(&mut c, Some("keystats")));
    // 5 000 keys per worker; the kernel spreads connections over the two
    // workers' SO_REUSEPORT listeners by a hash, so all four may land on one.
    let tracked: u64 = f["tracked_keys"].parse().unwrap();
    assert!(
        tracked == 5000 || tracked == 10000,
        "tracked_keys {tracked}: each worker that saw traffic should be full"
    );
    assert!(f["tracking_memory_bytes"].parse::<u64>().unwrap() < 32 << 20);
    let (_, f) = parse_info(&info(&mut c, Some("keyspace hits")));
    assert_eq!(f["keyspace_misses"], REQUESTS.to_string());
}

const FAMILIES: &[(&str, &str)] = &[
    ("respite_connections_accepted_total", "counter"),
    ("respite_clients_connected", "gauge"),
    ("respite_commands_total", "counter"),
    ("respite_error_replies_total", "counter"),
    ("respite_upstream_up", "gauge"),
    ("respite_upstream_requests_total", "counter"),
    ("respite_upstream_reconnects_total", "counter"),
    ("respite_upstream_connections", "gauge"),
    ("respite_upstream_inflight_requests", "gauge"),
    ("respite_upstream_batch_duration_seconds", "histogram"),
    ("respite_command_calls_total", "counter"),
    ("respite_command_errors_total", "counter"),
    ("respite_command_duration_seconds", "histogram"),
    ("respite_keyspace_hits_total", "counter"),
    ("respite_keyspace_misses_total", "counter"),
    ("respite_key_reads_total", "counter"),
    ("respite_key_writes_total", "counter"),
    ("respite_stats_tracked_keys", "gauge"),
    ("respite_stats_evicted_keys_total", "counter"),
    ("respite_stats_memory_bytes", "gauge"),
    ("respite_uptime_seconds", "gauge"),
];

/// Acceptance 3 and 4: `/metrics` parses strictly and has the documented
/// families; latency histograms move with `DEBUG SLEEP`; `PROXY INFO` is
/// INFO-formatted and agrees with `/metrics`.
#[test]
fn metrics_and_proxy_info_agree() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    let (proxy, admin, _dir) = start_proxy(&redis, &["--workers", "2"], "");
    let mut c = proxy.conn();
    for i in 0..20 {
        c.send(&encode_str(&["SET", &format!("m:{i}"), "v"]));
    }
    for i in 0..30 {
        c.send(&encode_str(&["GET", &format!("m:{i}")]));
    }
    c.send(&encode_str(&["NOSUCHCOMMAND"]));
    // A value large enough to be compressed, and a tag command.
    let big = "{\"field\":\"value\"}".repeat(100);
    c.send(&encode_str(&["SET", "m:big", &big]));
    c.send(&encode_str(&["TAGSET", "m:tagged", &big, "TAGS", "t"]));
    for _ in 0..53 {
        c.read_reply();
    }
    let fams = parse_prometheus(&http_get(admin, "/metrics"));
    for (name, kind) in FAMILIES {
        let f = fams
            .get(*name)
            .unwrap_or_else(|| panic!("missing family {name}"));
        assert_eq!(f.kind, *kind, "{name}");
    }
    // Every metric name is documented in docs/ (operations.md lists the
    // families; compression.md and tags.md their own).
    let docs_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/docs");
    let docs: String = std::fs::read_dir(docs_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for name in fams.keys() {
        assert!(
            docs.contains(name.as_str()),
            "{name} not documented in docs/"
        );
    }
    // The Grafana dashboard only queries families that exist.
    let dash = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docker/grafana-dashboard.json"
    ))
    .unwrap();
    for (i, _) in dash.match_indices("respite_") {
        let name: String = dash[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let fam = name.strip_suffix("_bucket").unwrap_or(&name);
        assert!(fams.contains_key(fam), "dashboard queries unknown {name}");
    }
    assert_eq!(sample(&fams, "respite_keyspace_hits_total", None), 20.0);
    assert_eq!(sample(&fams, "respite_keyspace_misses_total", None), 10.0);
    assert_eq!(
        sample(&fams, "respite_command_calls_total", Some(("cmd", "get"))),
        30.0
    );
    assert_eq!(
        sample(
            &fams,
            "respite_command_errors_total",
            Some(("cmd", "other"))
        ),
        1.0
    );

    // Latency: DEBUG SLEEP 0.2 lands above 0.1 s in both histograms.
    let slow_before = |f: &BTreeMap<String, Family>, fam: &str| -> (f64, f64) {
        let fam = &f[fam];
        let mut le_01 = 0.0;
        let mut inf = 0.0;
        for (n, l, v) in &fam.samples {
            if n.ends_with("_bucket") {
                match l["le"].as_str() {
                    "0.1" => le_01 += v,
                    "+Inf" => inf += v,
                    _ => {}
                }
            }
        }
        (le_01, inf)
    };
    let cmd_before = slow_before(&fams, "respite_command_duration_seconds");
    let up_before = slow_before(&fams, "respite_upstream_batch_duration_seconds");
    assert_eq!(
        cmd(&mut c, &["DEBUG", "SLEEP", "0.2"]),
        V::Str(b"OK".to_vec())
    );
    let fams = parse_prometheus(&http_get(admin, "/metrics"));
    let cmd_after = slow_before(&fams, "respite_command_duration_seconds");
    let up_after = slow_before(&fams, "respite_upstream_batch_duration_seconds");
    // One more observation, not at or below 0.1 s.
    assert_eq!(cmd_after.1 - cmd_before.1, 1.0);
    assert_eq!(cmd_after.0, cmd_before.0);
    assert_eq!(up_after.1 - up_before.1, 1.0);
    assert_eq!(up_after.0, up_before.0);
    assert!(
        sample(
            &fams,
            "respite_command_duration_seconds_sum",
            Some(("cmd", "debug"))
        ) >= 0.2
    );

    // PROXY INFO: every section, INFO format, numbers as in /metrics.
    let (sections, f) = parse_info(&info(&mut c, None));
    assert_eq!(
        sections,
        [
            "Server",
            "Clients",
            "Stats",
            "Upstreams",
            "Commandstats",
            "Keyspace hits",
            "Compression",
            "Tags",
            "Keystats"
        ]
    );
    let fams = parse_prometheus(&http_get(admin, "/metrics"));
    let num = |k: &str| -> f64 { f[k].parse().unwrap_or_else(|_| panic!("{k}: {}", f[k])) };
    assert_eq!(
        num("keyspace_hits"),
        sample(&fams, "respite_keyspace_hits_total", None)
    );
    assert_eq!(
        num("keyspace_misses"),
        sample(&fams, "respite_keyspace_misses_total", None)
    );
    assert_eq!(
        num("key_reads"),
        sample(&fams, "respite_key_reads_total", None)
    );
    assert_eq!(
        num("key_writes"),
        sample(&fams, "respite_key_writes_total", None)
    );
    assert_eq!(
        num("connected_clients"),
        sample(&fams, "respite_clients_connected", None)
    );
    assert_eq!(
        num("total_connections_received"),
        sample(&fams, "respite_connections_accepted_total", None)
    );
    assert_eq!(
        num("tracked_keys"),
        sample(&fams, "respite_stats_tracked_keys", None)
    );
    for (info_field, family) in [
        (
            "values_compressed",
            "respite_compression_values_compressed_total",
        ),
        ("bytes_before", "respite_compression_bytes_before_total"),
        ("bytes_after", "respite_compression_bytes_after_total"),
        ("tag_commands", "respite_tag_commands_total"),
    ] {
        assert_eq!(num(info_field), sample(&fams, family, None), "{info_field}");
    }
    assert_eq!(
        num("values_compressed"),
        2.0,
        "SET and TAGSET of a large value"
    );
    assert_eq!(num("tag_commands"), 1.0);
    // The INFO request itself is counted once its reply is written.
    assert_eq!(
        num("total_commands_processed") + 1.0,
        sample(&fams, "respite_commands_total", None)
    );
    for name in ["get", "set", "debug"] {
        let stat = &f[&format!("cmdstat_{name}")];
        let fields: HashMap<&str, f64> = stat
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let l = Some(("cmd", name));
        assert_eq!(
            fields["calls"],
            sample(&fams, "respite_command_calls_total", l)
        );
        assert_eq!(
            fields["failed_calls"],
            sample(&fams, "respite_command_errors_total", l)
        );
        let sum_us = sample(&fams, "respite_command_duration_seconds_sum", l) * 1e6;
        assert!(
            (fields["usec"] - sum_us).abs() < 1.0,
            "{name}: {stat} vs {sum_us}"
        );
    }
    let node = &f["node0"];
    assert!(node.contains(&format!("addr={}", redis.addr())), "{node}");
    let field = |k: &str| -> f64 {
        node.split(',')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let l = Some(("node", redis.addr()));
    let l = l.as_ref().map(|(k, v)| (*k, v.as_str()));
    assert_eq!(
        field("requests"),
        sample(&fams, "respite_upstream_requests_total", l)
    );
    assert_eq!(
        field("connected"),
        sample(&fams, "respite_upstream_connections", l)
    );
    assert_eq!(field("inflight"), 0.0);
    assert_eq!(
        field("batches"),
        sample(&fams, "respite_upstream_batch_duration_seconds_count", l)
    );
    // The admin JSON of hot keys.
    let json = http_get(admin, "/hotkeys");
    assert!(json.starts_with("{\"keys\":[{\"key\":\"m:"), "{json}");
    // One section by name; unknown names give nothing, as in Redis.
    let (sections, _) = parse_info(&info(&mut c, Some("CLIENTS")));
    assert_eq!(sections, ["Clients"]);
    assert_eq!(info(&mut c, Some("nosuch")), "");
    // RESP3: a verbatim string.
    let mut c3 = proxy.conn();
    cmd(&mut c3, &["HELLO", "3"]);
    assert!(c3.cmd_str(&["PROXY", "INFO", "server"]).starts_with(b"="));
}

/// `stats.enabled = false`: nothing is tracked and the commands say why.
#[test]
fn disabled_statistics() {
    let redis = RedisServer::start();
    let (proxy, admin, _dir) = start_proxy(&redis, &[], "[stats]\nenabled = false\n");
    let mut c = proxy.conn();
    assert_eq!(cmd(&mut c, &["GET", "x"]), V::Nil);
    let disabled = V::Err("ERR statistics are disabled (stats.enabled = false)".into());
    assert_eq!(cmd(&mut c, &["KEYSTATS", "x"]), disabled);
    assert_eq!(cmd(&mut c, &["HOTKEYS"]), disabled);
    let (_, f) = parse_info(&info(&mut c, None));
    assert_eq!(f["stats_enabled"], "0");
    assert_eq!(f["keyspace_misses"], "0");
    parse_prometheus(&http_get(admin, "/metrics"));
}
