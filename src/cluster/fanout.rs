//! Keyless commands a cluster answers as one server by asking several
//! nodes outside the session's connections: `SCRIPT KILL` and `FUNCTION
//! KILL` on every primary's control connection (out of band, so they reach
//! a node whose shared connections wait behind the busy script).

use crate::error;
use crate::upstream::control::Control;
use bytes::Bytes;
use std::sync::Arc;

/// `request` on every control connection at once; the replies in the order
/// of `controls` (a failed call gives its error reply).
pub async fn call_all(controls: Vec<Arc<Control>>, request: Bytes) -> Vec<Bytes> {
    let calls: Vec<_> = controls
        .into_iter()
        .map(|c| {
            let r = request.clone();
            tokio::spawn(async move { c.call(r).await.unwrap_or_else(|e| e.reply_bytes()) })
        })
        .collect();
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        out.push(
            call.await
                .unwrap_or_else(|_| error::reply("ERR out-of-band call failed")),
        );
    }
    out
}
