//! Load generator for the compression benchmark in BENCHMARKS.md: like
//! `redis-benchmark -c 50 -P 16` for GET or SET, but with generated JSON
//! values (tests/common/jsongen.rs) instead of a repeated byte, which would
//! compress a hundredfold and flatter compression.
//!
//! `cargo run --release --example json_load -- ADDR get|set SECONDS [CLIENTS] [PIPELINE] [SIZE] [KEYS]`
//!
//! Prints one line: requests per second. Two threads, each driving half the
//! connections in lockstep (write a pipeline on each, then read its replies).

#[path = "../tests/common/jsongen.rs"]
mod jsongen;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads until `n` complete replies (simple, error, integer, bulk) arrived.
fn read_replies(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
    let mut done = 0;
    let mut pos = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        // Consume whole replies from buf[pos..].
        loop {
            if done == n {
                buf.drain(..pos);
                return Ok(());
            }
            let Some(eol) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line_end = pos + eol + 2;
            if buf[pos] == b'$' {
                let len: i64 = std::str::from_utf8(&buf[pos + 1..pos + eol])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(-1);
                let end = if len < 0 {
                    line_end
                } else {
                    line_end + len as usize + 2
                };
                if end > buf.len() {
                    break;
                }
                pos = end;
            } else {
                pos = line_end;
            }
            done += 1;
        }
        let r = s.read(&mut chunk)?;
        if r == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..r]);
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        eprintln!("usage: json_load ADDR get|set SECONDS [CLIENTS] [PIPELINE] [SIZE] [KEYS]");
        std::process::exit(2);
    }
    let addr = a[1].clone();
    let set = a[2] == "set";
    let secs: u64 = a[3].parse().expect("seconds");
    let clients: usize = a.get(4).map_or(50, |v| v.parse().expect("clients"));
    let pipeline: usize = a.get(5).map_or(16, |v| v.parse().expect("pipeline"));
    let size: usize = a.get(6).map_or(4096, |v| v.parse().expect("size"));
    let keys: usize = a.get(7).map_or(10_000, |v| v.parse().expect("keys"));
    let values: Vec<Vec<u8>> = (0..256).map(|i| jsongen::value(i, size)).collect();
    let threads = 2;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addr.clone();
            let values = values.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<(TcpStream, Vec<u8>)> = (0..clients / threads)
                    .map(|_| {
                        let s = TcpStream::connect(&addr).expect("connect");
                        s.set_nodelay(true).ok();
                        (s, Vec::new())
                    })
                    .collect();
                let mut n: u64 = 0;
                let mut k = t * 7919;
                let mut out = Vec::new();
                while Instant::now() < deadline {
                    for (s, _) in conns.iter_mut() {
                        out.clear();
                        for _ in 0..pipeline {
                            k = (k + 104_729) % keys;
                            let key = format!("json:{k}");
                            if set {
                                encode(
                                    &[b"SET", key.as_bytes(), &values[k % values.len()]],
                                    &mut out,
                                );
                            } else {
                                encode(&[b"GET", key.as_bytes()], &mut out);
                            }
                        }
                        s.write_all(&out).expect("write");
                    }
                    for (s, buf) in conns.iter_mut() {
                        read_replies(s, buf, pipeline).expect("read");
                        n += pipeline as u64;
                    }
                }
                n
            })
        })
        .collect();
    let start = Instant::now();
    let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    let elapsed = start.elapsed().as_secs_f64().max(secs as f64);
    println!("{:.0}", total as f64 / elapsed);
}
