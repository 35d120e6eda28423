//! Criterion benchmarks of compression: MB/s (of original bytes) for packing
//! a value into its envelope and for restoring it, on generated JSON of 1, 4
//! and 32 KB, plus restoring a whole GET reply and rewriting a SET request.
//!
//! `cargo bench --bench compression -- --warm-up-time 1 --measurement-time 2`

#[path = "../tests/common/jsongen.rs"]
mod jsongen;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use respite::compress::envelope;
use respite::compress::restore::{self, Keys, Restorer};
use respite::compress::table::{Shape, Values};
use respite::compress::{rewrite, Compressor};
use respite::config::CompressionConfig;
use respite::metrics::Metrics;

fn compressor() -> std::sync::Arc<Compressor> {
    Compressor::new(&CompressionConfig {
        enabled: true,
        min_size: 1024,
        exclude: vec![],
        max_decompressed_bytes: 512 << 20,
        secret: Some(respite::config::Secret(
            "benchmark-secret-0123456789".into(),
        )),
        previous_secrets: vec![],
        accept_v1_envelopes: false,
    })
    .expect("enabled")
}

fn envelope_bench(c: &mut Criterion) {
    let seal = compressor().seal.clone();
    let mut g = c.benchmark_group("envelope");
    for size in [1024usize, 4096, 32 * 1024] {
        // 256 different documents, like examples/json_load.rs: with only 16 the
        // CPU's branch predictor learns lz4's match-finding branches and
        // compression measures ~1.5x faster than on the data path.
        let docs: Vec<Vec<u8>> = (0..256).map(|i| jsongen::value(i, size)).collect();
        let total: usize = docs.iter().map(|d| d.len()).sum();
        let packed: Vec<Vec<u8>> = docs
            .iter()
            .map(|d| envelope::pack(d, 1024, &seal).expect("compressible"))
            .collect();
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_function(format!("compress_{}k", size / 1024), |b| {
            b.iter(|| {
                for d in &docs {
                    black_box(envelope::pack(black_box(d), 1024, &seal));
                }
            })
        });
        g.bench_function(format!("restore_{}k", size / 1024), |b| {
            b.iter(|| {
                for p in &packed {
                    black_box(envelope::unpack(black_box(p), 512 << 20, &seal).ok());
                }
            })
        });
    }
    g.finish();
}

fn data_path(c: &mut Criterion) {
    let comp = compressor();
    let m = Metrics::default();
    let doc = jsongen::value(42, 4096);
    let packed = envelope::pack(&doc, 1024, &comp.seal).expect("compressible");
    let mut reply = format!("${}\r\n", packed.len()).into_bytes();
    reply.extend_from_slice(&packed);
    reply.extend_from_slice(b"\r\n");
    let reply = Bytes::from(reply);
    let r = Restorer {
        shape: Shape::Bulk,
        keys: Keys::One(Bytes::from_static(b"user:42")),
    };
    let mut g = c.benchmark_group("data_path");
    g.throughput(Throughput::Bytes(doc.len() as u64));
    g.bench_function("restore_get_reply_4k", |b| {
        b.iter(|| black_box(restore::restore(reply.clone(), &r, &comp, &m)))
    });
    let plain = {
        let mut p = format!("${}\r\n", doc.len()).into_bytes();
        p.extend_from_slice(&doc);
        p.extend_from_slice(b"\r\n");
        Bytes::from(p)
    };
    g.bench_function("scan_uncompressed_get_reply_4k", |b| {
        b.iter(|| black_box(restore::restore(plain.clone(), &r, &comp, &m)))
    });
    // One document rewritten again and again flatters lz4 (see envelope_bench):
    // rotate over 256.
    let docs: Vec<Vec<u8>> = (0..256).map(|i| jsongen::value(i, 4096)).collect();
    let mut next = 0usize;
    g.bench_function("rewrite_set_4k", |b| {
        b.iter(|| {
            next = (next + 1) % docs.len();
            let args: [&[u8]; 3] = [b"SET", b"user:42", &docs[next]];
            black_box(rewrite::rewrite(3, &|i| args[i], Values::At(2), &comp, &m))
        })
    });
    g.finish();
}

criterion_group!(benches, envelope_bench, data_path);
criterion_main!(benches);
