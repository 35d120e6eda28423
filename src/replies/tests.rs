//! The reply queue's unit tests.

use super::*;
use crate::router::merge::Merge;
use std::sync::Arc;

fn drain_all(q: &ReplyQueue) -> (Vec<Bytes>, Drained) {
    let mut out = Vec::new();
    let d = q.drain(std::task::Waker::noop(), |b, _| out.push(b));
    (out, d)
}

#[test]
fn redo_holds_the_slot_and_later_replies_until_its_work_delivers() {
    let q = ReplyQueue::new();
    let (first, redone, last) = {
        let mut a = q.alloc();
        let first = a.pending();
        let redone = a.pending();
        a.add_redo(
            redone,
            Redo::new(|reply| {
                (&reply[..] == b"-ERR again\r\n")
                    .then(|| -> RedoWork { Box::pin(async { Bytes::from_static(b"+OK\r\n") }) })
            }),
        );
        a.add_post(redone, Post::new(|b| b));
        (first, redone, a.pending())
    };
    q.deliver(last, WHOLE, Bytes::from_static(b":3\r\n"));
    q.deliver(redone, WHOLE, Bytes::from_static(b"-ERR again\r\n"));
    q.deliver(first, WHOLE, Bytes::from_static(b":1\r\n"));
    let (out, d) = drain_all(&q);
    assert_eq!(out, [Bytes::from_static(b":1\r\n")]);
    let r = d.redo.expect("redo asked for");
    assert_eq!((r.seq, d.remaining), (redone, 2));
    // Pending again: nothing more is written until the work delivers.
    let (out, d) = drain_all(&q);
    assert!(out.is_empty() && d.redo.is_none());
    let reply = block_on(r.work);
    q.deliver(r.seq, WHOLE, reply);
    let (out, d) = drain_all(&q);
    assert_eq!(
        out,
        [
            Bytes::from_static(b"+OK\r\n"),
            Bytes::from_static(b":3\r\n")
        ]
    );
    assert!(d.redo.is_none() && d.remaining == 0);
}

#[test]
fn redo_that_keeps_the_reply_changes_nothing() {
    let q = ReplyQueue::new();
    let seq = {
        let mut a = q.alloc();
        let seq = a.pending();
        a.add_redo(seq, Redo::new(|_| None));
        seq
    };
    q.deliver(seq, WHOLE, Bytes::from_static(b"+OK\r\n"));
    let (out, d) = drain_all(&q);
    assert_eq!(out, [Bytes::from_static(b"+OK\r\n")]);
    assert!(d.redo.is_none() && d.remaining == 0);
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// Two reads of two requests each, all on shared connections.
fn two_held_reads(q: &ReplyQueue) -> [u64; 4] {
    let mut a = q.alloc();
    let mut seqs = [0; 4];
    for (i, s) in seqs.iter_mut().enumerate() {
        *s = a.pending();
        a.hold(*s);
        if i % 2 == 1 {
            a.end_batch();
        }
    }
    seqs
}

#[test]
fn replies_of_a_read_wait_for_its_held_requests() {
    let q = ReplyQueue::new();
    let [s0, s1, s2, s3] = two_held_reads(&q);
    q.deliver(s0, WHOLE, b(":0\r\n"));
    assert!(!q.writable(), "the read's second reply is still out");
    let (out, d) = drain_all(&q);
    assert!(out.is_empty() && d.remaining == 4);
    q.deliver(s2, WHOLE, b(":2\r\n"));
    assert!(!q.writable());
    q.deliver(s1, WHOLE, b(":1\r\n"));
    assert!(q.writable());
    // The first read is written whole; the second waits for s3.
    let (out, d) = drain_all(&q);
    assert_eq!(out, [b(":0\r\n"), b(":1\r\n")]);
    assert_eq!(d.remaining, 2);
    assert!(!q.writable());
    q.deliver(s3, WHOLE, b(":3\r\n"));
    let (out, d) = drain_all(&q);
    assert_eq!(out, [b(":2\r\n"), b(":3\r\n")]);
    assert_eq!(d.remaining, 0);
}

#[test]
fn requests_not_held_never_delay_earlier_replies() {
    let q = ReplyQueue::new();
    let (first, blocking) = {
        let mut a = q.alloc();
        let first = a.pending();
        a.hold(first);
        // A blocking command on a pinned connection: no hold.
        let blocking = a.pending();
        a.end_batch();
        (first, blocking)
    };
    q.deliver(first, WHOLE, b(":1\r\n"));
    assert!(q.writable());
    let (out, d) = drain_all(&q);
    assert_eq!(out, [b(":1\r\n")]);
    assert_eq!(d.remaining, 1);
    q.deliver(blocking, WHOLE, b("*-1\r\n"));
    assert_eq!(drain_all(&q).0, [b("*-1\r\n")]);
}

#[test]
fn a_read_not_yet_ended_is_written_once_all_of_it_is_ready() {
    let q = ReplyQueue::new();
    let (s0, s1) = {
        let mut a = q.alloc();
        let s0 = a.pending();
        a.hold(s0);
        let s1 = a.pending();
        a.hold(s1);
        (s0, s1)
    };
    q.deliver(s1, WHOLE, b(":1\r\n"));
    assert!(!q.writable(), "the front is not ready");
    q.deliver(s0, WHOLE, b(":0\r\n"));
    assert!(q.writable(), "everything queued is ready");
    assert_eq!(drain_all(&q).0, [b(":0\r\n"), b(":1\r\n")]);
}

#[test]
fn a_redirect_at_the_front_resets_the_ready_prefix() {
    let q = ReplyQueue::new();
    let [s0, s1, s2, s3] = {
        let mut a = q.alloc();
        let s0 = a.pending_retry(b("*2\r\n$3\r\nGET\r\n$1\r\na\r\n"));
        a.hold(s0);
        let s1 = a.pending();
        a.hold(s1);
        a.end_batch();
        let s2 = a.pending();
        a.hold(s2);
        let s3 = a.pending();
        a.hold(s3);
        a.end_batch();
        [s0, s1, s2, s3]
    };
    q.deliver(s0, WHOLE, b("-MOVED 1 127.0.0.1:1\r\n"));
    q.deliver(s1, WHOLE, b(":1\r\n"));
    q.deliver(s2, WHOLE, b(":2\r\n"));
    let (out, d) = drain_all(&q);
    assert!(out.is_empty());
    let r = d.redirect.expect("the MOVED is handed over");
    assert_eq!(r.seq, s0);
    assert!(!q.writable(), "the redirected request is pending again");
    q.deliver(s0, WHOLE, b(":0\r\n"));
    let (out, d) = drain_all(&q);
    assert_eq!(out, [b(":0\r\n"), b(":1\r\n")]);
    assert_eq!(d.remaining, 2);
    q.deliver(s3, WHOLE, b(":3\r\n"));
    assert_eq!(drain_all(&q).0, [b(":2\r\n"), b(":3\r\n")]);
}

fn limit(hard: usize, soft: usize, soft_ms: u64) -> OutputBufferLimit {
    OutputBufferLimit {
        hard_bytes: hard,
        soft_bytes: soft,
        soft_period: std::time::Duration::from_millis(soft_ms),
    }
}

fn bytes(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

fn held(q: &ReplyQueue) -> usize {
    q.inner.lock().held
}

#[test]
fn over_the_hard_limit_everything_is_dropped_and_the_drain_says_so() {
    let q = ReplyQueue::new();
    q.set_limit(limit(100, 0, 0));
    let seqs: Vec<u64> = {
        let mut a = q.alloc();
        (0..3).map(|_| a.pending()).collect()
    };
    q.deliver(seqs[1], WHOLE, bytes(60));
    assert!(!q.over_limit());
    assert_eq!(held(&q), 60);
    q.deliver(seqs[0], WHOLE, bytes(40));
    assert!(q.over_limit(), "100 bytes held reach the hard limit");
    assert!(q.writable(), "a drain has news for the session");
    assert_eq!((held(&q), q.len()), (0, 0), "nothing is kept");
    q.deliver(seqs[2], WHOLE, bytes(10));
    q.push_stream(bytes(10));
    assert_eq!((held(&q), q.len()), (0, 0), "later replies are dropped");
    let (out, d) = drain_all(&q);
    assert!(out.is_empty());
    assert_eq!(d.over_limit, Some(100));
}

#[test]
fn unwritten_bytes_count_against_the_limit() {
    let q = ReplyQueue::new();
    q.set_limit(limit(100, 0, 0));
    q.push_stream(bytes(50));
    assert_eq!(drain_all(&q).0.len(), 1);
    assert_eq!(held(&q), 0);
    q.set_unwritten(50);
    q.push_stream(bytes(49));
    assert!(!q.over_limit());
    q.push_stream(bytes(1));
    assert_eq!(drain_all(&q).1.over_limit, Some(100));
}

#[test]
fn the_soft_limit_closes_only_when_exceeded_for_longer_than_its_period() {
    let q = ReplyQueue::new();
    q.set_limit(limit(0, 50, 30));
    q.push_stream(bytes(60));
    q.push_stream(bytes(1));
    assert!(!q.over_limit(), "the soft period just started");
    // Back under the soft limit: the period starts again next time.
    assert_eq!(drain_all(&q).0.len(), 2);
    q.push_stream(bytes(1));
    std::thread::sleep(std::time::Duration::from_millis(40));
    q.push_stream(bytes(60));
    assert!(!q.over_limit(), "over the soft limit again only now");
    std::thread::sleep(std::time::Duration::from_millis(40));
    q.push_stream(bytes(1));
    assert!(q.over_limit(), "over the soft limit for longer than 30 ms");
}

#[test]
fn no_limit_keeps_everything() {
    let q = ReplyQueue::new();
    q.set_unwritten(usize::MAX / 4);
    for _ in 0..10 {
        q.push_stream(bytes(1000));
    }
    assert_eq!((held(&q), q.over_limit()), (10_000, false));
}

#[test]
fn held_bytes_follow_parts_redirects_and_drains() {
    let q = ReplyQueue::new();
    let (whole, split, moved) = {
        let mut a = q.alloc();
        let whole = a.pending();
        let split = a.pending_parts(vec![b("r0"), b("r1")], Merge::SumInt);
        let moved = a.pending_retry(b("*1\r\n$4\r\nPING\r\n"));
        (whole, split, moved)
    };
    q.deliver(split, 0, b(":1\r\n"));
    q.deliver(split, 1, b(":2\r\n"));
    q.deliver(moved, WHOLE, b("-MOVED 1 127.0.0.1:1\r\n"));
    assert_eq!(held(&q), 8 + 22);
    q.deliver(whole, WHOLE, b("+OK\r\n"));
    let (out, d) = drain_all(&q);
    assert_eq!(out, [b("+OK\r\n"), b(":3\r\n")]);
    assert!(d.redirect.is_some());
    assert_eq!(held(&q), 0, "the redirect is pending again");
    q.deliver(moved, WHOLE, b("+PONG\r\n"));
    assert_eq!(held(&q), 7);
    drain_all(&q);
    assert_eq!(held(&q), 0);
}

#[test]
fn a_restored_value_over_the_limit_cuts_the_client_off() {
    let q = ReplyQueue::new();
    q.set_limit(limit(1000, 0, 0));
    let (small, big) = {
        let mut a = q.alloc();
        let small = a.pending();
        let big = a.pending();
        a.add_post(big, Post::new(|_| bytes(5000)));
        (small, big)
    };
    q.deliver(small, WHOLE, bytes(10));
    q.deliver(big, WHOLE, bytes(10));
    let (out, d) = drain_all(&q);
    assert_eq!(out.len(), 1, "the reply before it is written");
    assert_eq!(d.over_limit, Some(5010));
    assert_eq!(q.len(), 0);
}

#[test]
fn a_shut_queue_keeps_nothing() {
    let q = ReplyQueue::new();
    let seq = q.alloc().pending();
    q.push_stream(bytes(10));
    q.shut();
    q.deliver(seq, WHOLE, bytes(10));
    q.push_stream(bytes(10));
    assert_eq!((held(&q), q.len(), q.over_limit()), (0, 0, false));
}

/// Runs a future that needs no reactor to completion.
fn block_on(f: RedoWork) -> Bytes {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn posts_and_merges_run_without_the_queue_lock() {
    use std::sync::atomic::AtomicBool;
    let q = Arc::new(ReplyQueue::new());
    let saw_lock = Arc::new(AtomicBool::new(false));
    let (whole, split) = {
        let mut a = q.alloc();
        let whole = a.pending();
        let (q2, saw) = (q.clone(), saw_lock.clone());
        a.add_post(
            whole,
            Post::new(move |b| {
                saw.fetch_or(q2.inner.is_locked(), Ordering::Relaxed);
                b
            }),
        );
        let split = a.pending_parts(vec![Bytes::new(), Bytes::new()], Merge::SumInt);
        let (q3, saw) = (q.clone(), saw_lock.clone());
        a.add_post(
            split,
            Post::new(move |b| {
                saw.fetch_or(q3.inner.is_locked(), Ordering::Relaxed);
                b
            }),
        );
        (whole, split)
    };
    q.deliver(whole, WHOLE, Bytes::from_static(b"$1\r\nx\r\n"));
    q.deliver(split, 0, Bytes::from_static(b":1\r\n"));
    q.deliver(split, 1, Bytes::from_static(b":2\r\n"));
    let (out, d) = drain_all(&q);
    assert_eq!(
        out,
        vec![
            Bytes::from_static(b"$1\r\nx\r\n"),
            Bytes::from_static(b":3\r\n")
        ]
    );
    assert_eq!(d.remaining, 0);
    assert!(
        !saw_lock.load(Ordering::Relaxed),
        "a post ran under the queue's lock"
    );
}
