//! Cost of statistics per request: the heavy-hitter update alone, and the
//! whole per-request path a session pays (note the request, apply its reply).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use respite::config::StatsConfig;
use respite::stats::topk::TopK;
use respite::stats::Stats;
use std::sync::Arc;

/// Keys drawn from a skewed distribution over 1 000 000 names: a few hot,
/// most cold (about a Zipf of exponent 1).
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            let rank = (1_000_000f64.powf(u)) as u64;
            format!("key:{rank}").into_bytes()
        })
        .collect()
}

fn topk(c: &mut Criterion) {
    let keys = keys(1 << 16);
    let mut g = c.benchmark_group("stats");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function("topk_touch_skewed_10k", |b| {
        let mut t = TopK::new(10_000);
        b.iter(|| {
            for k in &keys {
                if let Some(c) = t.touch(k) {
                    c.reads += 1;
                }
            }
            black_box(t.len())
        })
    });
    let stats = Arc::new(Stats::new(
        &StatsConfig {
            enabled: true,
            max_keys: 100_000,
            sample_rate: 1.0,
            latency_buckets_us: vec![
                50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
                1000000,
            ],
        },
        1,
    ));
    let mut rec = stats.recorder(0, 1).unwrap();
    let mut seq = 0u64;
    let get = respite::command::classify(b"GET");
    // One read batch of 16 GETs, then one drain of their replies, as a
    // session at pipeline 16 does.
    g.bench_function("session_get_pipeline16", |b| {
        b.iter(|| {
            for chunk in keys.chunks(16) {
                rec.begin_batch();
                for (i, k) in chunk.iter().enumerate() {
                    let args: [&[u8]; 2] = [b"GET", k];
                    rec.request(seq + i as u64, get, 2, |i| args[i], 30);
                }
                let mut sink = rec.sink();
                for i in 0..chunk.len() {
                    sink.reply(if i % 3 == 0 {
                        b"$-1\r\n"
                    } else {
                        b"$3\r\nabc\r\n"
                    });
                }
                seq += chunk.len() as u64;
            }
        })
    });
    g.finish();
}

criterion_group!(benches, topk);
criterion_main!(benches);
