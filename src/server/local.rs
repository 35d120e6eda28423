//! Commands the session answers itself: connection state that belongs to the
//! client, not to the shared upstream connections it rides on.
//! Replies and errors follow Redis 7 text exactly.

use super::session::{Req, State};
use super::Ctx;
use crate::command::Local;
use crate::protocol::request::parse_int;
use crate::protocol::{encode, Proto};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;

/// What the session must do beyond queueing the reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Write the reply, then close (QUIT, protocol errors).
    Close,
    /// Session state was reset (RESET): drop modes once earlier replies are in.
    Reset,
    /// Forward as a passthrough command (CLIENT TRACKING).
    Tracking,
}

pub fn run(ctx: &Ctx, st: &mut State, cmd: Local, req: &Req, out: &mut BytesMut) -> Effect {
    match cmd {
        Local::Ping => {
            match req.argc() {
                1 => encode::simple(out, "PONG"),
                2 => encode::bulk(out, req.arg(1)),
                _ => arity(out, "ping"),
            }
            Effect::None
        }
        Local::Echo => {
            if req.argc() == 2 {
                encode::bulk(out, req.arg(1));
            } else {
                arity(out, "echo");
            }
            Effect::None
        }
        Local::Quit => {
            encode::simple(out, "OK");
            Effect::Close
        }
        Local::Select => {
            select(ctx, st, req, out);
            Effect::None
        }
        Local::Auth => {
            auth(ctx, st, req, out);
            Effect::None
        }
        Local::Hello => {
            hello(ctx, st, req, out);
            Effect::None
        }
        Local::Reset => {
            if req.argc() != 1 {
                arity(out, "reset");
                return Effect::None;
            }
            st.db = 0;
            st.proto = Proto::Resp2;
            st.authed = !auth_required(ctx);
            st.user = "default".into();
            // As Redis's RESET: replies on again (a SKIP in effect stays).
            st.reply.off = false;
            st.reply.skip_next = false;
            *st.meta.name.lock() = None;
            st.meta.db.store(0, Ordering::Relaxed);
            st.meta.resp.store(2, Ordering::Relaxed);
            encode::simple(out, "RESET");
            Effect::Reset
        }
        Local::Client => client(ctx, st, req, out),
        Local::Proxy => {
            proxy(ctx, st, req, out);
            Effect::None
        }
        Local::Stats => {
            crate::stats::commands::run(ctx, st, req, out);
            Effect::None
        }
    }
}

/// Text safe inside one INFO field.
fn one_line(s: &str) -> String {
    s.replace([',', '\r', '\n'], " ")
}

/// `PROXY NODES`: the topology and the state of every upstream connection
/// this process holds, as INFO-style text.
fn proxy(ctx: &Ctx, st: &State, req: &Req, out: &mut BytesMut) {
    if req.argc() < 2 {
        return arity(out, "proxy");
    }
    let sub = String::from_utf8_lossy(req.arg(1)).to_ascii_lowercase();
    match sub.as_str() {
        "nodes" if req.argc() == 2 => {
            use std::fmt::Write;
            let mut text = String::new();
            let _ = write!(
                text,
                "# Topology\r\nmode:{}\r\n",
                ctx.config.upstream.mode.as_str()
            );
            if let Some(t) = ctx.deployment.cluster() {
                let map = t.map();
                let _ = write!(
                    text,
                    "slots_covered:{}\r\nmap_version:{}\r\nrefreshes:{}\r\n",
                    map.covered_slots(),
                    t.version(),
                    t.refreshes()
                );
                for (i, shard) in map.shards().iter().enumerate() {
                    let ranges: Vec<String> = map
                        .ranges()
                        .iter()
                        .filter(|r| r.shard == i)
                        .map(|r| {
                            if r.start == r.end {
                                r.start.to_string()
                            } else {
                                format!("{}-{}", r.start, r.end)
                            }
                        })
                        .collect();
                    let _ = writeln!(
                        text,
                        "shard{i}:primary={},replicas={},slots={}\r",
                        shard.primary,
                        shard.replicas.join("|"),
                        ranges.join("|")
                    );
                }
            }
            if let Some(s) = ctx.deployment.sentinel() {
                let _ = write!(
                    text,
                    "# Sentinel\r\nmaster_name:{}\r\nprimary:{}\r\ngeneration:{}\r\nswitches:{}\r\nchecks:{}\r\nlast_error:{}\r\n",
                    s.master_name(),
                    s.primary().as_deref().unwrap_or(""),
                    s.generation(),
                    s.switches(),
                    s.checks(),
                    one_line(s.last_error().as_deref().unwrap_or(""))
                );
                for (i, st) in s.sentinels().iter().enumerate() {
                    let _ = writeln!(
                        text,
                        "sentinel{i}:addr={},reachable={},subscribed={},reports={},last_error={}\r",
                        st.addr,
                        u8::from(st.reachable),
                        u8::from(st.subscribed),
                        st.reported.as_ref().map(|r| r.0.as_str()).unwrap_or(""),
                        one_line(st.last_error.as_deref().unwrap_or(""))
                    );
                }
            }
            let _ = writeln!(text, "# Connections\r");
            for w in ctx.workers() {
                for c in w.all_conns() {
                    let state = match c.state() {
                        crate::upstream::conn::ConnState::Up => "up",
                        crate::upstream::conn::ConnState::Connecting => "connecting",
                        crate::upstream::conn::ConnState::Down => "down",
                        crate::upstream::conn::ConnState::Closed => "closed",
                    };
                    let err = c
                        .last_error()
                        .map(|e| e.replace([',', '\r', '\n'], " "))
                        .unwrap_or_default();
                    let _ = writeln!(
                        text,
                        "worker{}:node={},state={},extra={},stalled={},requests={},reconnects={},last_error={}\r",
                        w.index,
                        c.addr(),
                        state,
                        u8::from(c.extra()),
                        u8::from(c.stalled()),
                        c.requests(),
                        c.reconnects(),
                        err
                    );
                }
            }
            // Liveness as the nodes' control connections last probed it.
            let _ = writeln!(text, "# Control\r");
            for (i, c) in crate::upstream::control::all(&ctx.config)
                .iter()
                .enumerate()
            {
                let last = c.last();
                let (probes, failures) = c.probes();
                let state = match (&last.error, last.seq) {
                    (_, 0) => "unprobed",
                    (None, _) => "alive",
                    (Some(_), _) => "failed",
                };
                let err = last
                    .error
                    .map(|e| e.replace([',', '\r', '\n'], " "))
                    .unwrap_or_default();
                let handshake = match c.refusal() {
                    Some(r) => format!("refused: {}", r.replace([',', '\r', '\n'], " ")),
                    None => "ok".to_string(),
                };
                let _ = writeln!(
                    text,
                    "control{i}:node={},probe={state},probes={probes},probe_failures={failures},handshake={handshake},handshake_refusals={},last_error={err}\r",
                    c.addr(),
                    c.refusals()
                );
            }
            encode::verbatim(out, st.proto, text.as_bytes());
        }
        "info" => crate::stats::commands::proxy_info(ctx, st, req, out),
        "resetstats" => crate::stats::commands::proxy_resetstats(ctx, req, out),
        _ => {
            let sub = String::from_utf8_lossy(req.arg(1));
            encode::error(
                out,
                &format!("ERR unknown subcommand '{sub}'. Try PROXY NODES."),
            );
        }
    }
}

fn arity(out: &mut BytesMut, name: &str) {
    encode::error(
        out,
        &format!("ERR wrong number of arguments for '{name}' command"),
    );
}

fn auth_required(ctx: &Ctx) -> bool {
    ctx.auth.required()
}

/// Check a user/password pair the way Redis's ACL does for the default user
/// (`nopass` when no password is configured) and named users (see
/// [`crate::auth::Users::check`]: constant time).
fn check_credentials(ctx: &Ctx, user: &[u8], pass: &[u8]) -> bool {
    ctx.auth.users().check(user, pass)
}

/// `secret == guess` in a time that depends only on the secret's length: every
/// byte of the secret is compared whatever the guess is (a guess of another
/// length compares against zeros and fails on the length), and the
/// accumulator goes through `black_box` so the compiler cannot turn the loop
/// into an early exit.
pub fn secret_eq(secret: &[u8], guess: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != guess.len());
    for (i, &s) in secret.iter().enumerate() {
        let g = guess.get(i).copied().unwrap_or(0);
        diff = std::hint::black_box(diff | (s ^ g));
    }
    diff == 0
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

fn auth(ctx: &Ctx, st: &mut State, req: &Req, out: &mut BytesMut) {
    match req.argc() {
        2 => {
            if ctx.auth.users().no_passwords {
                encode::error(
                    out,
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                );
            } else if check_credentials(ctx, b"default", req.arg(1)) {
                st.authed = true;
                st.user = "default".into();
                encode::simple(out, "OK");
            } else {
                encode::error(out, WRONGPASS);
            }
        }
        3 => {
            if check_credentials(ctx, req.arg(1), req.arg(2)) {
                st.authed = true;
                st.user = String::from_utf8_lossy(req.arg(1)).into();
                encode::simple(out, "OK");
            } else {
                encode::error(out, WRONGPASS);
            }
        }
        1 => arity(out, "auth"),
        _ => encode::error(out, "ERR syntax error"),
    }
}

fn select(ctx: &Ctx, st: &mut State, req: &Req, out: &mut BytesMut) {
    if req.argc() != 2 {
        return arity(out, "select");
    }
    let Some(db) = parse_int(req.arg(1)).filter(|&v| i32::try_from(v).is_ok()) else {
        return encode::error(out, "ERR value is not an integer or out of range");
    };
    // As Redis Cluster: the number is checked first, and only database 0 exists.
    if ctx.config.upstream.mode == crate::config::Mode::Cluster && db != 0 {
        return encode::error(out, "ERR SELECT is not allowed in cluster mode");
    }
    if db < 0 || db >= ctx.config.upstream.databases as i64 {
        return encode::error(out, "ERR DB index is out of range");
    }
    st.db = db as u32;
    st.meta.db.store(st.db, Ordering::Relaxed);
    encode::simple(out, "OK");
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

fn hello(ctx: &Ctx, st: &mut State, req: &Req, out: &mut BytesMut) {
    let mut proto = st.proto;
    let mut next = 1;
    if req.argc() >= 2 {
        let Some(v) = parse_int(req.arg(1)) else {
            return encode::error(
                out,
                "ERR Protocol version is not an integer or out of range",
            );
        };
        if !(2..=3).contains(&v) {
            return encode::error(out, "NOPROTO unsupported protocol version");
        }
        proto = if v == 3 { Proto::Resp3 } else { Proto::Resp2 };
        next = 2;
    }
    // Every option is checked, in order, before anything takes effect: the
    // first bad one gets the reply Redis gives for it, and a command with any
    // bad option authenticates nobody (Redis 7.0 would already have applied
    // an AUTH before a later bad option; 7.2 checks the whole command first).
    let mut user: Option<&[u8]> = None;
    let mut setname: Option<&[u8]> = None;
    let mut j = next;
    while j < req.argc() {
        let more = req.argc() - 1 - j;
        let opt = req.arg(j);
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            if !check_credentials(ctx, req.arg(j + 1), req.arg(j + 2)) {
                return encode::error(out, WRONGPASS);
            }
            user = Some(req.arg(j + 1));
            j += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            let name = req.arg(j + 1);
            if !valid_name(name) {
                return encode::error(out, BAD_NAME);
            }
            setname = Some(name);
            j += 2;
        } else {
            let opt = String::from_utf8_lossy(opt);
            return encode::error(out, &format!("ERR Syntax error in HELLO option '{opt}'"));
        }
    }
    if let Some(user) = user {
        st.authed = true;
        st.user = String::from_utf8_lossy(user).into();
    }
    if !st.authed {
        // Redis 7.2 added `<proto>` to the text; older servers' own words
        // are given in front of them.
        let version = ctx.server_version();
        let proto_word = if version.starts_with("7.0.") || version.starts_with("6.") {
            ""
        } else {
            "<proto> "
        };
        return encode::error(
            out,
            &format!("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO {proto_word}AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"),
        );
    }
    if let Some(name) = setname {
        *st.meta.name.lock() = if name.is_empty() {
            None
        } else {
            Some(Bytes::copy_from_slice(name))
        };
    }
    st.proto = proto;
    st.meta
        .resp
        .store(if proto == Proto::Resp3 { 3 } else { 2 }, Ordering::Relaxed);
    let version = ctx.server_version();
    encode::map(out, proto, 7);
    encode::bulk(out, b"server");
    encode::bulk(out, b"redis");
    encode::bulk(out, b"version");
    encode::bulk(out, version.as_bytes());
    encode::bulk(out, b"proto");
    encode::int(out, if proto == Proto::Resp3 { 3 } else { 2 });
    encode::bulk(out, b"id");
    encode::int(out, st.id as i64);
    encode::bulk(out, b"mode");
    encode::bulk(out, b"standalone");
    encode::bulk(out, b"role");
    encode::bulk(out, b"master");
    encode::bulk(out, b"modules");
    encode::array(out, 0);
}

fn client(ctx: &Ctx, st: &mut State, req: &Req, out: &mut BytesMut) -> Effect {
    if req.argc() < 2 {
        arity(out, "client");
        return Effect::None;
    }
    let sub = String::from_utf8_lossy(req.arg(1)).to_ascii_lowercase();
    let argc = req.argc();
    match sub.as_str() {
        "id" if argc == 2 => encode::int(out, st.id as i64),
        "getname" if argc == 2 => match &*st.meta.name.lock() {
            Some(n) => encode::bulk(out, n),
            None => encode::null(out, st.proto),
        },
        "setname" if argc == 3 => {
            let name = req.arg(2);
            if !valid_name(name) {
                encode::error(out, BAD_NAME);
            } else {
                *st.meta.name.lock() = if name.is_empty() {
                    None
                } else {
                    Some(Bytes::copy_from_slice(name))
                };
                encode::simple(out, "OK");
            }
        }
        "info" if argc == 2 => {
            let line = st.meta.info_line();
            encode::verbatim(out, st.proto, line.as_bytes());
        }
        "list" => super::clients::list(&ctx.clients, req, st.proto, out),
        // A client with tracking on holds a pinned connection, which answers
        // these two (see `Session::handle_passthrough`); here tracking is off.
        "getredir" if argc == 2 => encode::int(out, -1),
        "trackinginfo" if argc == 2 => super::clients::tracking_off(st.proto, out),
        "help" if argc == 2 => super::clients::help(out),
        "no-evict" | "no-touch" if argc == 3 => {
            let v = req.arg(2);
            if v.eq_ignore_ascii_case(b"on") || v.eq_ignore_ascii_case(b"off") {
                encode::simple(out, "OK");
            } else {
                encode::error(out, "ERR syntax error");
            }
        }
        "setinfo" if argc == 4 => encode::simple(out, "OK"),
        "tracking" => return Effect::Tracking,
        // CLIENT REPLY: OFF and SKIP have no reply; the session drops the
        // replies the mode says (see `session/client_ctl.rs`).
        "reply" if argc == 3 => {
            let mode = req.arg(2);
            let r = &mut st.reply;
            if mode.eq_ignore_ascii_case(b"on") {
                *r = Default::default();
                encode::simple(out, "OK");
            } else if mode.eq_ignore_ascii_case(b"off") {
                r.off = true;
            } else if mode.eq_ignore_ascii_case(b"skip") {
                if !r.off {
                    r.skip_next = true;
                }
            } else {
                encode::error(out, "ERR syntax error");
            }
        }
        "pause" if argc == 3 || argc == 4 => client_pause(ctx, req, out),
        "unpause" if argc == 2 => {
            ctx.pause.unpause();
            encode::simple(out, "OK");
        }
        "pause" if argc > 4 => {
            let sub = String::from_utf8_lossy(req.arg(1));
            encode::error(
                out,
                &format!("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLIENT HELP."),
            );
        }
        "id" | "getname" | "setname" | "info" | "no-evict" | "no-touch" | "setinfo"
        | "getredir" | "trackinginfo" | "help" | "reply" | "pause" | "unpause" | "kill"
        | "unblock" => arity(out, &format!("client|{sub}")),
        _ => {
            let sub = String::from_utf8_lossy(req.arg(1));
            encode::error(
                out,
                &format!("ERR unknown subcommand '{sub}'. Try CLIENT HELP."),
            );
        }
    }
    Effect::None
}

/// `CLIENT PAUSE timeout [WRITE|ALL]`, Redis 7.0's checks in its order.
fn client_pause(ctx: &Ctx, req: &Req, out: &mut BytesMut) {
    let mut all = true;
    if req.argc() == 4 {
        let mode = req.arg(3);
        if mode.eq_ignore_ascii_case(b"write") {
            all = false;
        } else if !mode.eq_ignore_ascii_case(b"all") {
            return encode::error(out, "ERR CLIENT PAUSE mode must be WRITE or ALL");
        }
    }
    let Some(ms) = parse_int(req.arg(2)) else {
        return encode::error(out, "ERR timeout is not an integer or out of range");
    };
    if ms < 0 {
        return encode::error(out, "ERR timeout is negative");
    }
    ctx.pause.pause(ms as u64, all);
    encode::simple(out, "OK");
}

#[cfg(test)]
mod tests {
    use super::secret_eq;

    #[test]
    fn secret_eq_is_equality() {
        assert!(secret_eq(b"pw", b"pw"));
        assert!(secret_eq(b"", b""));
        for guess in [&b""[..], b"p", b"pW", b"pw\0", b"pwx", b"xw", b"\0\0"] {
            assert!(!secret_eq(b"pw", guess), "{guess:?}");
        }
        assert!(!secret_eq(b"", b"\0"));
    }
}
