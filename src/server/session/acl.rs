//! The session's hook into [`crate::auth`]: a request the client's user may
//! not run is answered with Redis's `-NOPERM` error instead of being
//! forwarded; `ACL WHOAMI` is answered with the proxy-side user.

use super::{Flow, Req, Session};
use crate::auth::Verdict;
use crate::replies::{After, Alloc, Post, WHOLE};
use bytes::Bytes;

/// A request Redis refuses while queueing a transaction (wrong arity),
/// which makes the transaction's `EXEC` fail with `-EXECABORT`, as a
/// command refused by ACL inside `MULTI` does in Redis.
const ABORTS_TX: &[u8] = b"*1\r\n$3\r\nGET\r\n";

impl Session {
    /// `Some(flow)` when the request was answered here.
    pub(super) fn acl_check(&mut self, req: &Req, alloc: &mut Alloc) -> Option<Flow> {
        if !crate::auth::guard::concerns(req.arg(0)) && !self.ctx.auth.restricted() {
            return None;
        }
        let args: Vec<&[u8]> = (0..req.argc()).map(|i| req.arg(i)).collect();
        let in_multi = self.pinned.as_ref().is_some_and(|p| p.in_multi);
        match crate::auth::check(&self.ctx, &self.st.user, req.cmd, &args) {
            Verdict::Pass => None,
            // Inside MULTI Redis queues it; its reply is the upstream user's
            // name then, a known limit.
            Verdict::Answer(_) if in_multi => None,
            Verdict::Answer(reply) => {
                alloc.ready(reply, After::Nothing);
                Some(Flow::Next)
            }
            Verdict::Refuse(msg) => {
                let reply = crate::error::reply(&msg);
                match &self.pinned {
                    Some(p) if p.in_multi => {
                        let conn = p.conn.clone();
                        let seq = alloc.pending();
                        alloc.add_post(seq, Post::new(move |_: Bytes| reply));
                        self.push(&conn, ABORTS_TX, Some((seq, WHOLE)), alloc);
                    }
                    _ => alloc.ready(reply, After::Nothing),
                }
                Some(Flow::Next)
            }
        }
    }
}
