//! Criterion benchmarks of the per-request hot path: request framing, command
//! classification, reply framing and the session's batch path without sockets.
//!
//! Run briefly (the machine is shared):
//! `cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 2`
//!
//! `decode/redis_protocol_*` measure `redis-protocol`'s RESP2 decoder on the very
//! buffer `decode/get_pipeline16` uses: the number that justifies framing
//! requests ourselves instead of building frames with it. Keep them.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use respite::command::classify as classify_name;
use respite::protocol::{encode, Parsed, ReplyScanner, RequestParser};
use respite::replies::{ReplyQueue, WHOLE};
use std::task::Waker;

/// The session's defaults are larger; the limits only need to admit the inputs.
const MAX_BYTES: usize = 512 * 1024 * 1024;
const MAX_ARGS: usize = 1024 * 1024;
const PIPELINE: usize = 16;

fn get_pipeline() -> Vec<u8> {
    let mut out = BytesMut::new();
    for _ in 0..PIPELINE {
        encode::command(&mut out, &[&b"GET"[..], b"key:000000012345"]);
    }
    out.to_vec()
}

fn set_4k() -> Vec<u8> {
    let value = vec![b'v'; 4096];
    let mut out = BytesMut::new();
    encode::command(&mut out, &[&b"SET"[..], b"key:000000012345", &value]);
    out.to_vec()
}

/// What `GET` returns for a 100-byte value.
fn bulk_replies(n: usize, size: usize) -> Vec<u8> {
    let value = vec![b'x'; size];
    let mut out = BytesMut::new();
    for _ in 0..n {
        encode::bulk(&mut out, &value);
    }
    out.to_vec()
}

/// Parse every frame of `buf`, touching each argument as a caller would.
/// Returns the number of frames so the work cannot be optimised away.
#[inline]
fn parse_all(parser: &mut RequestParser, buf: &[u8]) -> usize {
    let mut rest = buf;
    let mut frames = 0;
    loop {
        match parser.parse(rest) {
            Ok(Parsed::Frame { len }) => {
                black_box(parser.arg(rest, parser.argc() - 1));
                rest = &rest[len..];
                frames += 1;
            }
            Ok(Parsed::Inline { len, args }) => {
                black_box(&args);
                rest = &rest[len..];
                frames += 1;
            }
            Ok(Parsed::Empty { len }) => rest = &rest[len..],
            Ok(Parsed::Incomplete { .. }) => return frames,
            Err(e) => panic!("benchmark input rejected: {e}"),
        }
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");

    let pipeline = get_pipeline();
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("get_pipeline16", |b| {
        let mut parser = RequestParser::new(MAX_BYTES, MAX_ARGS);
        b.iter(|| {
            let n = parse_all(&mut parser, black_box(&pipeline));
            assert_eq!(n, PIPELINE);
        })
    });

    // The same buffer through redis-protocol. `decode_range` is its zero-copy
    // scan (closest to what RequestParser does); `decode_bytes_mut` also builds
    // the frame, as a codec built on it would. Its buffer copy is set-up, not timed.
    g.bench_function("redis_protocol_range_get_pipeline16", |b| {
        b.iter(|| {
            let mut rest = &black_box(&pipeline)[..];
            let mut n = 0;
            while let Some((frame, amt)) =
                redis_protocol::resp2::decode::decode_range(rest).expect("valid input")
            {
                black_box(&frame);
                rest = &rest[amt..];
                n += 1;
            }
            assert_eq!(n, PIPELINE);
        })
    });
    g.bench_function("redis_protocol_get_pipeline16", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&pipeline[..]),
            |buf| {
                let mut n = 0;
                while let Some((frame, _amt, raw)) =
                    redis_protocol::resp2::decode::decode_bytes_mut(buf).expect("valid input")
                {
                    black_box((&frame, &raw));
                    n += 1;
                }
                assert_eq!(n, PIPELINE);
            },
            BatchSize::SmallInput,
        )
    });

    let set = set_4k();
    g.throughput(Throughput::Bytes(set.len() as u64));
    g.bench_function("set_4k", |b| {
        let mut parser = RequestParser::new(MAX_BYTES, MAX_ARGS);
        b.iter(|| assert_eq!(parse_all(&mut parser, black_box(&set)), 1))
    });

    let inline = b"SET a \"hello world\"\r\n".repeat(PIPELINE);
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("inline", |b| {
        let mut parser = RequestParser::new(MAX_BYTES, MAX_ARGS);
        b.iter(|| assert_eq!(parse_all(&mut parser, black_box(&inline)), PIPELINE))
    });
    g.finish();
}

fn classify(c: &mut Criterion) {
    let names: [&[u8]; 6] = [b"GET", b"set", b"HSET", b"BLPOP", b"MULTI", b"unknowncmd"];
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("lookup", |b| {
        b.iter(|| {
            for name in black_box(&names) {
                black_box(classify_name(name).kind);
            }
        })
    });
    g.finish();
}

fn scan_all(scanner: &mut ReplyScanner, buf: &[u8]) -> usize {
    let mut rest = buf;
    let mut n = 0;
    while let Some(len) = scanner.scan(rest).expect("valid replies") {
        rest = &rest[len..];
        n += 1;
    }
    n
}

fn reply(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");

    let gets = bulk_replies(PIPELINE, 100);
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("scan_get_replies", |b| {
        let mut sc = ReplyScanner::new();
        b.iter(|| assert_eq!(scan_all(&mut sc, black_box(&gets)), PIPELINE))
    });

    // LRANGE-sized: one reply, 1000 elements; throughput counts elements.
    let mut array = BytesMut::new();
    encode::array(&mut array, 1000);
    array.extend_from_slice(&bulk_replies(1000, 10));
    g.throughput(Throughput::Elements(1000));
    g.bench_function("scan_array_1000", |b| {
        let mut sc = ReplyScanner::new();
        b.iter(|| assert_eq!(scan_all(&mut sc, black_box(&array)), 1))
    });
    g.finish();
}

/// One batch as a session and a shared upstream connection handle it, minus
/// the sockets: frame the client's requests, classify them, allocate reply
/// slots and append the raw requests to the upstream batch; then frame Redis's
/// replies, deliver them to their slots and drain them into the write buffer.
fn batch(c: &mut Criterion) {
    let requests = get_pipeline();
    let replies = bulk_replies(PIPELINE, 100);
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(PIPELINE as u64));
    g.bench_function("session_path", |b| {
        let waker = Waker::noop();
        let queue = ReplyQueue::new();
        let mut parser = RequestParser::new(MAX_BYTES, MAX_ARGS);
        let mut scanner = ReplyScanner::new();
        let mut out = BytesMut::with_capacity(4096);
        let mut upstream_rbuf = BytesMut::with_capacity(4096);
        let mut wbuf = BytesMut::with_capacity(4096);
        let mut seqs = Vec::with_capacity(PIPELINE);
        b.iter(|| {
            // Session: process_input.
            let mut rest = black_box(&requests[..]);
            {
                let mut alloc = queue.alloc();
                while let Ok(Parsed::Frame { len }) = parser.parse(rest) {
                    black_box(classify_name(parser.arg(rest, 0)).kind);
                    seqs.push(alloc.pending());
                    out.extend_from_slice(&rest[..len]);
                    rest = &rest[len..];
                }
            }
            assert_eq!(seqs.len(), PIPELINE);
            // The upstream connection writes the batch...
            black_box(&out);
            out.clear();
            // ...and reads Redis's answers in one go.
            upstream_rbuf.extend_from_slice(black_box(&replies));
            let mut targets = seqs.drain(..);
            while let Some(len) = scanner.scan(&upstream_rbuf).expect("valid replies") {
                let frame: Bytes = upstream_rbuf.split_to(len).freeze();
                queue.deliver(targets.next().expect("one slot per reply"), WHOLE, frame);
            }
            drop(targets);
            // Session: write what is ready.
            let drained = queue.drain(waker, |b, _after| wbuf.extend_from_slice(&b));
            let (pending, close) = (drained.remaining, drained.close);
            assert!(pending == 0 && !close);
            black_box(&wbuf);
            wbuf.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, decode, classify, reply, batch);
criterion_main!(benches);
