//! The session's side of statistics: every request that takes a reply slot
//! is noted with its slot; the drain applies the reply (see `crate::stats`).

use super::{Flow, Req, Session};
use crate::replies::Alloc;

impl Session {
    /// [`Session::handle`], noting the request for statistics when it took a
    /// reply slot (a request that waits behind a barrier is noted when it
    /// runs; pub/sub frames take no slot of their own). Nothing a client
    /// sends before it authenticates is noted, except the command that
    /// authenticates it: a client without the password cannot put names of
    /// its choice into `HOTKEYS`, `KEYSTATS` or `/hotkeys`.
    #[inline]
    pub(super) fn handle_counted(&mut self, req: &Req, alloc: &mut Alloc) -> Flow {
        if self.stats.is_none() {
            return self.handle(req, alloc);
        }
        let authed = self.st.authed;
        let seq = alloc.last_seq().map_or(0, |s| s + 1);
        let flow = self.handle(req, alloc);
        if (authed || self.st.authed)
            && flow != Flow::Barrier
            && alloc.last_seq().is_some_and(|s| s >= seq)
        {
            if let Some(s) = &mut self.stats {
                s.request(seq, req.cmd, req.argc(), |i| req.arg(i), req.raw.len());
            }
        }
        flow
    }
}
