//! Helpers of the tag tests (standalone and cluster).
#![allow(dead_code)]

use super::{encode_str, escape, RawConn};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Eight clients pipeline `TAGSET race:<n> v TAGS <tags>` (16 per round trip,
/// `n` below `keys`, drawn from `seed`) while one more loops `TAGINVAL
/// <inval>`, for `dur`; every reply is checked. Each write takes one of
/// `tag_sets` at random, so with several a key keeps changing tags.
/// Returns (TAGSETs, TAGINVALs).
pub fn race(
    port: u16,
    keys: u64,
    tag_sets: &[&[&str]],
    inval: &str,
    seed: u64,
    dur: Duration,
) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let sets = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (stop, sets) = (stop.clone(), sets.clone());
        let sets_of_tags: Vec<Vec<String>> = tag_sets
            .iter()
            .map(|s| s.iter().map(|t| t.to_string()).collect())
            .collect();
        writers.push(thread::spawn(move || {
            let mut c = RawConn::connect(port);
            let mut x: u64 = seed ^ (w + 1);
            while !stop.load(Ordering::Relaxed) {
                // Pipelines of 16, as a busy application would send.
                let mut buf = Vec::new();
                for _ in 0..16 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = format!("race:{}", x % keys);
                    let tags = &sets_of_tags[((x >> 32) % sets_of_tags.len() as u64) as usize];
                    let mut args = vec!["TAGSET", &k, "v", "TAGS"];
                    args.extend(tags.iter().map(|t| t.as_str()));
                    buf.extend(encode_str(&args));
                }
                c.send(&buf);
                for _ in 0..16 {
                    let r = c.read_reply();
                    assert_eq!(r, b"+OK\r\n", "{}", escape(&r));
                }
                sets.fetch_add(16, Ordering::Relaxed);
            }
        }));
    }
    let invals = Arc::new(AtomicU64::new(0));
    let invalidator = {
        let (stop, invals, inval) = (stop.clone(), invals.clone(), inval.to_string());
        thread::spawn(move || {
            let mut c = RawConn::connect(port);
            while !stop.load(Ordering::Relaxed) {
                let r = c.cmd_str(&["TAGINVAL", &inval]);
                assert!(r.starts_with(b":"), "{}", escape(&r));
                invals.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    invalidator.join().unwrap();
    (sets.load(Ordering::Relaxed), invals.load(Ordering::Relaxed))
}
