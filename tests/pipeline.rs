//! Acceptance 2: many clients pipelining at once each get exactly their own
//! replies, in order.
//!
//! Every command's value encodes its client id and sequence number, so a
//! reply delivered to the wrong client or out of order shows up as a byte
//! mismatch. Each client writes from one thread and reads from another, so
//! a full TCP buffer on either side can never deadlock the test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{client, encode_str, escape, Proxy, RawConn, RedisServer};

const CLIENTS: usize = 50;
const PER_CLIENT: usize = 10_000;

/// One client's whole pipeline: the request bytes and the exact reply bytes
/// Redis must send back, with the end offset of every reply.
struct Plan {
    id: usize,
    requests: Vec<u8>,
    expected: Vec<u8>,
    reply_ends: Vec<usize>,
    commands: Vec<String>,
    last_set: Option<String>,
    incrs: i64,
    pushes: i64,
}

fn bulk(s: &str) -> Vec<u8> {
    format!("${}\r\n{s}\r\n", s.len()).into_bytes()
}

/// Builds a deterministic mixed pipeline for client `id`, simulating Redis
/// to know every reply in advance.
fn plan(id: usize, n: usize) -> Plan {
    let k = format!("k:c{id}");
    let cnt = format!("n:c{id}");
    let list = format!("l:c{id}");
    let hash = format!("h:c{id}");
    let mut p = Plan {
        id,
        requests: Vec::with_capacity(n * 40),
        expected: Vec::with_capacity(n * 20),
        reply_ends: Vec::with_capacity(n),
        commands: Vec::with_capacity(n),
        last_set: None,
        incrs: 0,
        pushes: 0,
    };
    let mut head: Option<String> = None;
    let mut fields = [false; 16];
    for seq in 0..n {
        let val = format!("c{id}:{seq}");
        let (args, reply): (Vec<String>, Vec<u8>) = match seq % 8 {
            0 => {
                let v = format!("v:{val}");
                p.last_set = Some(v.clone());
                (vec!["SET".into(), k.clone(), v], b"+OK\r\n".to_vec())
            }
            1 => (
                vec!["GET".into(), k.clone()],
                match &p.last_set {
                    Some(v) => bulk(v),
                    None => b"$-1\r\n".to_vec(),
                },
            ),
            2 => {
                p.incrs += 1;
                (
                    vec!["INCR".into(), cnt.clone()],
                    format!(":{}\r\n", p.incrs).into_bytes(),
                )
            }
            3 => (vec!["ECHO".into(), val.clone()], bulk(&val)),
            4 => {
                p.pushes += 1;
                head = Some(val.clone());
                (
                    vec!["LPUSH".into(), list.clone(), val.clone()],
                    format!(":{}\r\n", p.pushes).into_bytes(),
                )
            }
            5 => {
                let f = seq / 8 % 16;
                let new = !fields[f];
                fields[f] = true;
                (
                    vec!["HSET".into(), hash.clone(), format!("f{f}"), val.clone()],
                    if new {
                        b":1\r\n".to_vec()
                    } else {
                        b":0\r\n".to_vec()
                    },
                )
            }
            6 => (
                vec!["LINDEX".into(), list.clone(), "0".into()],
                match &head {
                    Some(v) => bulk(v),
                    None => b"$-1\r\n".to_vec(),
                },
            ),
            _ => (vec!["PING".into()], b"+PONG\r\n".to_vec()),
        };
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        p.requests.extend_from_slice(&encode_str(&refs));
        p.expected.extend_from_slice(&reply);
        p.reply_ends.push(p.expected.len());
        p.commands.push(args.join(" "));
    }
    p
}

/// Explains a mismatch at byte `pos` of the reply stream.
fn describe_mismatch(p: &Plan, got: &[u8], pos: usize) -> String {
    let idx = p.reply_ends.partition_point(|&end| end <= pos);
    let start = if idx == 0 { 0 } else { p.reply_ends[idx - 1] };
    let end = p.reply_ends.get(idx).copied().unwrap_or(p.expected.len());
    let got_end = (start + (end - start).max(64)).min(got.len());
    format!(
        "client {}: reply #{idx} to `{}` differs at byte {pos}\n  want: {}\n  got:  {}",
        p.id,
        p.commands.get(idx).map(|s| s.as_str()).unwrap_or("?"),
        escape(&p.expected[start..end]),
        escape(&got[start..got_end])
    )
}

/// Runs one client: a writer thread sends the pipeline in `chunk`-byte
/// writes (deliberately not aligned to commands) while this thread reads
/// and checks every byte as it arrives.
fn run_client(port: u16, p: &Plan, chunk: usize) -> Result<(), String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let requests = p.requests.clone();
    let id = p.id;
    let w = thread::spawn(move || -> Result<(), String> {
        for part in requests.chunks(chunk) {
            writer
                .write_all(part)
                .map_err(|e| format!("client {id}: write failed: {e}"))?;
        }
        Ok(())
    });

    let mut reader = stream;
    let mut got = Vec::with_capacity(p.expected.len());
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < p.expected.len() {
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "client {id}: connection closed after {} of {} reply bytes",
                    got.len(),
                    p.expected.len()
                ))
            }
            Ok(n) => n,
            Err(e) => {
                let done = p.reply_ends.partition_point(|&end| end <= got.len());
                return Err(format!(
                    "client {id}: read failed ({e}) after {done} of {} replies",
                    p.reply_ends.len()
                ));
            }
        };
        let start = got.len();
        got.extend_from_slice(&buf[..n]);
        let upto = got.len().min(p.expected.len());
        if got[start..upto] != p.expected[start..upto] {
            let pos = start
                + got[start..upto]
                    .iter()
                    .zip(&p.expected[start..upto])
                    .position(|(a, b)| a != b)
                    .unwrap();
            return Err(describe_mismatch(p, &got, pos));
        }
        if got.len() > p.expected.len() {
            return Err(format!(
                "client {id}: extra bytes after the last reply: {}",
                escape(&got[p.expected.len()..])
            ));
        }
    }
    w.join().unwrap()?;
    // Nothing more may arrive: exactly one reply per request.
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    match reader.read(&mut buf) {
        Ok(0) => Err(format!(
            "client {id}: connection closed after the last reply"
        )),
        Ok(n) => Err(format!(
            "client {id}: extra bytes after the last reply: {}",
            escape(&buf[..n])
        )),
        Err(_) => Ok(()),
    }
}

/// Runs `clients` concurrent pipelining clients against `port` and checks
/// the final state straight on Redis.
fn many_pipelining_clients(port: u16, redis: &RedisServer, clients: usize, per_client: usize) {
    let plans: Vec<Plan> = (0..clients).map(|id| plan(id, per_client)).collect();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                // Chunk sizes vary per client so frames split at many offsets.
                let chunk = 1 + (p.id * 7919 + 13) % 16_384;
                s.spawn(move || run_client(port, p, chunk))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        errors.is_empty(),
        "{} of {clients} clients failed:\n{}",
        errors.len(),
        errors.join("\n")
    );
    eprintln!(
        "{clients} clients x {per_client} commands in {:?}",
        started.elapsed()
    );

    // The commands really reached Redis: check each client's keys directly.
    let mut direct = redis.conn();
    for p in &plans {
        let id = p.id;
        let want = match &p.last_set {
            Some(v) => bulk(v),
            None => b"$-1\r\n".to_vec(),
        };
        common::assert_reply(&direct.cmd_str(&["GET", &format!("k:c{id}")]), &want);
        assert_eq!(
            direct.cmd_str(&["GET", &format!("n:c{id}")]),
            bulk(&p.incrs.to_string()),
            "final counter of client {id} on Redis"
        );
        assert_eq!(
            direct.cmd_str(&["LLEN", &format!("l:c{id}")]),
            format!(":{}\r\n", p.pushes).into_bytes(),
            "final list length of client {id} on Redis"
        );
    }
}

#[test]
fn pipeline_50_clients_10k_commands_each_through_proxy() {
    let redis = RedisServer::start();
    let mut proxy = Proxy::start(&redis);
    many_pipelining_clients(proxy.port(), &redis, CLIENTS, PER_CLIENT);
    proxy.assert_running();
}

/// The same machinery straight against Redis: proves the plans (and the
/// expected replies simulated for them) are right.
#[test]
fn pipeline_machinery_against_redis() {
    let redis = RedisServer::start();
    many_pipelining_clients(redis.port(), &redis, CLIENTS, PER_CLIENT);
}

/// One big pipeline sent in a single write, replies read only after the
/// whole request is written: the proxy must keep reading while replies pile
/// up, within its bounds.
#[test]
fn single_write_pipeline_through_proxy() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut conn = RawConn::connect(proxy.port());
    let n = 2_000;
    let mut req = Vec::new();
    for i in 0..n {
        req.extend_from_slice(&encode_str(&["ECHO", &format!("one-write:{i}")]));
    }
    conn.send(&req);
    for i in 0..n {
        let r = conn.read_reply();
        common::assert_reply(&r, &bulk(&format!("one-write:{i}")));
    }
}

#[test]
fn redis_rs_sync_pipelines_through_proxy() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let mut con = client(proxy.port())
        .get_connection()
        .expect("redis-rs connect to respite");

    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET")
            .arg(format!("rs:{i}"))
            .arg(format!("val:{i}"));
        pipe.cmd("GET").arg(format!("rs:{i}"));
        pipe.cmd("INCR").arg("rs:counter");
    }
    let values: Vec<redis::Value> = pipe.query(&mut con).expect("pipeline");
    assert_eq!(values.len(), 1500);
    for i in 0..500 {
        assert_eq!(values[3 * i], redis::Value::Okay, "SET #{i}");
        assert_eq!(
            values[3 * i + 1],
            redis::Value::BulkString(format!("val:{i}").into_bytes()),
            "GET #{i}"
        );
        assert_eq!(
            values[3 * i + 2],
            redis::Value::Int(i as i64 + 1),
            "INCR #{i}"
        );
    }

    // A transaction pipeline (MULTI ... EXEC) through the proxy.
    let (a, b, len): (String, i64, i64) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("rs:tx")
        .arg("in-tx")
        .ignore()
        .cmd("GET")
        .arg("rs:tx")
        .cmd("INCRBY")
        .arg("rs:counter")
        .arg(10)
        .cmd("RPUSH")
        .arg("rs:list")
        .arg(&["a", "b", "c"])
        .query(&mut con)
        .expect("atomic pipeline");
    assert_eq!((a.as_str(), b, len), ("in-tx", 510, 3));

    let list: Vec<String> = redis::cmd("LRANGE")
        .arg("rs:list")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!(list, vec!["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_multiplexed_async_pipelines_through_proxy() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis);
    let con = client(proxy.port())
        .get_multiplexed_async_connection()
        .await
        .expect("redis-rs async connect to respite");

    let mut tasks = Vec::new();
    for t in 0..20usize {
        let mut con = con.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..20usize {
                let mut pipe = redis::pipe();
                for i in 0..50usize {
                    let v = format!("t{t}:r{round}:i{i}");
                    pipe.cmd("ECHO").arg(&v);
                    pipe.cmd("SET").arg(format!("async:{t}")).arg(&v).ignore();
                    pipe.cmd("GET").arg(format!("async:{t}"));
                }
                let got: Vec<String> = pipe.query_async(&mut con).await.expect("async pipeline");
                assert_eq!(got.len(), 100, "task {t} round {round}");
                for i in 0..50usize {
                    let v = format!("t{t}:r{round}:i{i}");
                    assert_eq!(got[2 * i], v, "ECHO, task {t} round {round} item {i}");
                    assert_eq!(got[2 * i + 1], v, "GET, task {t} round {round} item {i}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task panicked");
    }
}
