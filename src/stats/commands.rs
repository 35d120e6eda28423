//! `KEYSTATS`, `HOTKEYS`, `PROXY INFO` and `PROXY RESETSTATS`, answered by
//! the session (see `../shared/DESIGN.md`, "Statistics").

use super::{By, KeyCounters};
use crate::error::{self, NOT_INT, SYNTAX};
use crate::protocol::request::parse_int;
use crate::protocol::{encode, Proto};
use crate::server::session::{Req, State};
use crate::server::Ctx;
use bytes::BytesMut;

const DISABLED: &str = "ERR statistics are disabled (stats.enabled = false)";

/// `KEYSTATS` or `HOTKEYS` (by name).
pub fn run(ctx: &Ctx, st: &State, req: &Req, out: &mut BytesMut) {
    if req.arg(0).eq_ignore_ascii_case(b"keystats") {
        keystats(ctx, st.proto, req, out)
    } else {
        hotkeys(ctx, req, out)
    }
}

/// `KEYSTATS key [key ...]`
fn keystats(ctx: &Ctx, proto: Proto, req: &Req, out: &mut BytesMut) {
    if req.argc() < 2 {
        return arity(out, "keystats");
    }
    if !ctx.stats.enabled {
        return encode::error(out, DISABLED);
    }
    encode::array(out, req.argc() - 1);
    for i in 1..req.argc() {
        match ctx.stats.key(req.arg(i)) {
            Some(c) => key_counters(out, proto, &c),
            None => encode::null(out, proto),
        }
    }
}

fn key_counters(out: &mut BytesMut, proto: Proto, c: &KeyCounters) {
    let fields: [(&str, u64); 7] = [
        ("reads", c.reads),
        ("writes", c.writes),
        ("hits", c.hits),
        ("misses", c.misses),
        ("bytes_in", c.bytes_in),
        ("bytes_out", c.bytes_out),
        ("last_access_ms", c.last_access_ms),
    ];
    encode::map(out, proto, fields.len());
    for (k, v) in fields {
        encode::bulk(out, k.as_bytes());
        encode::int(out, v as i64);
    }
}

/// `HOTKEYS [COUNT n] [BY ops|reads|writes|misses|bytes]`
fn hotkeys(ctx: &Ctx, req: &Req, out: &mut BytesMut) {
    let mut count = 10usize;
    let mut by = By::Ops;
    let mut i = 1;
    while i < req.argc() {
        let opt = req.arg(i);
        let Some(val) = (i + 1 < req.argc()).then(|| req.arg(i + 1)) else {
            return encode::error(out, SYNTAX);
        };
        if opt.eq_ignore_ascii_case(b"count") {
            match parse_int(val) {
                Some(n) if n > 0 => count = n as usize,
                Some(_) => return encode::error(out, "ERR COUNT must be positive"),
                None => return encode::error(out, NOT_INT),
            }
        } else if opt.eq_ignore_ascii_case(b"by") {
            match By::parse(val) {
                Some(b) => by = b,
                None => return encode::error(out, SYNTAX),
            }
        } else {
            return encode::error(out, SYNTAX);
        }
        i += 2;
    }
    if !ctx.stats.enabled {
        return encode::error(out, DISABLED);
    }
    let top = ctx.stats.hotkeys(count, by);
    encode::array(out, top.len());
    for (k, n) in top {
        encode::array(out, 2);
        encode::bulk(out, &k);
        encode::int(out, n.min(i64::MAX as u64) as i64);
    }
}

/// `PROXY INFO [section]`
pub fn proxy_info(ctx: &Ctx, st: &State, req: &Req, out: &mut BytesMut) {
    if req.argc() > 3 {
        return encode::error(out, SYNTAX);
    }
    let section = (req.argc() == 3).then(|| String::from_utf8_lossy(req.arg(2)).into_owned());
    let text = super::info::render(ctx, section.as_deref());
    encode::verbatim(out, st.proto, text.as_bytes());
}

/// `PROXY RESETSTATS`
pub fn proxy_resetstats(ctx: &Ctx, req: &Req, out: &mut BytesMut) {
    if req.argc() != 2 {
        return encode::error(out, SYNTAX);
    }
    ctx.stats.reset();
    for w in ctx.workers() {
        for c in w.all_conns() {
            c.latency().reset();
        }
    }
    encode::simple(out, "OK");
}

fn arity(out: &mut BytesMut, name: &str) {
    encode::error(out, &error::arity(name));
}
