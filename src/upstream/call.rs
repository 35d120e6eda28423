//! The proxy's own requests on a shared connection, awaited from a task: the
//! steps of multi-step commands (tag invalidation, read-modify-write of
//! compressed values). They travel in the same batches as client traffic.

use super::conn::{Conn, Target};
use crate::error::Error;
use crate::replies::ReplyQueue;
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;

/// Send `requests` (each one complete RESP command) on `conn` as one batch and
/// return their raw replies in order. Fails with the error reply text when the
/// node is down. Redirects (`MOVED`, `ASK`) come back as replies.
pub async fn call(conn: &Conn, requests: &[Bytes]) -> Result<Vec<Bytes>, Error> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let queue = Arc::new(ReplyQueue::new());
    let mut buf = BytesMut::with_capacity(requests.iter().map(|r| r.len()).sum());
    let mut targets = Vec::with_capacity(requests.len());
    {
        let mut alloc = queue.alloc();
        for r in requests {
            buf.extend_from_slice(r);
            targets.push(Target {
                queue: queue.clone(),
                seq: alloc.pending(),
                part: crate::replies::WHOLE,
            });
        }
    }
    conn.submit(&mut buf, &mut targets)?;
    let mut replies = Vec::with_capacity(requests.len());
    poll_fn(|cx| {
        queue.drain(cx.waker(), |b, _| replies.push(b));
        if replies.len() == requests.len() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    Ok(replies)
}

/// One request, one reply.
pub async fn call_one(conn: &Conn, request: Bytes) -> Result<Bytes, Error> {
    let mut r = call(conn, std::slice::from_ref(&request)).await?;
    Ok(r.pop().unwrap_or_default())
}
