//! What `CLIENT LIST` and `CLIENT INFO` show of respite's own clients, and
//! the `CLIENT` subcommands that only read it (`LIST` with its filters,
//! `GETREDIR`, `TRACKINGINFO`, `HELP`), answered as Redis 7.0 answers them.
//!
//! A session records, as cheaply as it can, what Redis would know of the
//! client: the last command (its full name, `client|list`), when it last
//! sent something, its subscriptions (read from the confirmations Redis
//! sends it) and its user. Fields that describe Redis's own buffers and
//! file descriptors have no proxy equivalent and stay 0.

use super::command_names::NAMES;
use super::session::Req;
use super::ClientMeta;
use crate::protocol::request::parse_int;
use crate::protocol::{encode, Proto};
use crate::upstream::conn::{Conn, ConnState, WeakConn};
use bytes::BytesMut;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Shown as `cmd=` before the first command and for names Redis does not
/// know (as Redis shows a NULL `lastcmd`).
const NO_COMMAND: &str = "NULL";

/// The part of a client's line that changes as it works. Written by its
/// session only; read by any session's `CLIENT LIST`.
#[derive(Debug)]
pub struct Activity {
    /// Full name of the last command (`get`, `client|list`).
    cmd: Mutex<&'static str>,
    /// Milliseconds from the connection's creation to its last read.
    last_ms: AtomicU64,
    sub: AtomicU32,
    psub: AtomicU32,
    ssub: AtomicU32,
    user: Mutex<Arc<str>>,
    /// `multi=`: commands queued in the open transaction, -1 outside one.
    multi: AtomicI64,
    /// `CLIENT TRACKING`: 0 off, 1 on, 2 on in BCAST mode.
    tracking: AtomicU8,
    /// `redir=`: respite's id of the client invalidations go to, -1 none.
    redir: AtomicI64,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            cmd: Mutex::new(NO_COMMAND),
            last_ms: AtomicU64::new(0),
            sub: AtomicU32::new(0),
            psub: AtomicU32::new(0),
            ssub: AtomicU32::new(0),
            user: Mutex::new("default".into()),
            multi: AtomicI64::new(-1),
            tracking: AtomicU8::new(0),
            redir: AtomicI64::new(-1),
        }
    }
}

impl Activity {
    /// The client sent something now (called once per read, not per request).
    pub fn touch(&self, created: Instant) {
        self.last_ms
            .store(created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_user(&self, user: &Arc<str>) {
        let mut u = self.user.lock();
        if !Arc::ptr_eq(&u, user) {
            *u = user.clone();
        }
    }

    fn user(&self) -> Arc<str> {
        self.user.lock().clone()
    }

    /// The user the client authenticated as (`CLIENT KILL USER`).
    pub fn user_name(&self) -> Arc<str> {
        self.user()
    }

    /// In pub/sub mode (`TYPE pubsub`).
    pub fn is_pubsub(&self) -> bool {
        self.pubsub()
    }

    /// Counts from a frame Redis sent the client while it is in pub/sub
    /// mode: every (un)subscribe confirmation carries the client's count
    /// after it. Redis counts channels and patterns together (shard
    /// channels apart), and one confirmation changes one kind only, so the
    /// other kind's count gives this one's exactly.
    pub fn pubsub_frame(&self, proto: Proto, frame: &[u8]) {
        let head: &[u8] = if proto == Proto::Resp3 {
            b">3\r\n"
        } else {
            b"*3\r\n"
        };
        let Some(rest) = frame.strip_prefix(head) else {
            return;
        };
        let Some((kind, rest)) = bulk(rest) else {
            return;
        };
        let which = match kind {
            b"subscribe" | b"unsubscribe" => &self.sub,
            b"psubscribe" | b"punsubscribe" => &self.psub,
            b"ssubscribe" | b"sunsubscribe" => &self.ssub,
            _ => return,
        };
        // The channel: a bulk string, or a nil when there was none to leave.
        let rest = if let Some(r) = rest
            .strip_prefix(b"$-1\r\n")
            .or_else(|| rest.strip_prefix(b"_\r\n"))
        {
            r
        } else {
            match bulk(rest) {
                Some((_, r)) => r,
                None => return,
            }
        };
        let Some(count) = rest
            .strip_prefix(b":")
            .and_then(|r| r.strip_suffix(b"\r\n"))
            .and_then(parse_int)
        else {
            return;
        };
        let count = u32::try_from(count).unwrap_or(0);
        let other = if std::ptr::eq(which, &self.sub) {
            self.psub.load(Ordering::Relaxed)
        } else if std::ptr::eq(which, &self.psub) {
            self.sub.load(Ordering::Relaxed)
        } else {
            0
        };
        which.store(count.saturating_sub(other), Ordering::Relaxed);
    }

    /// The session's transaction state: `None` outside MULTI, else the
    /// number of commands queued (stored only when it changed).
    pub fn set_multi(&self, queued: Option<u32>) {
        let v = queued.map_or(-1, i64::from);
        if self.multi.load(Ordering::Relaxed) != v {
            self.multi.store(v, Ordering::Relaxed);
        }
    }

    pub fn multi(&self) -> Option<u32> {
        u32::try_from(self.multi.load(Ordering::Relaxed)).ok()
    }

    /// `CLIENT TRACKING` turned on (`bcast`: in BCAST mode; `redir`:
    /// respite's id of the client it redirects to) or off (`on` false).
    pub fn set_tracking(&self, on: bool, bcast: bool, redir: Option<u64>) {
        self.tracking
            .store(u8::from(on) * (1 + u8::from(bcast)), Ordering::Relaxed);
        self.redir.store(
            redir.filter(|_| on).map_or(-1, |r| r as i64),
            Ordering::Relaxed,
        );
    }

    pub fn reset_pubsub(&self) {
        for c in [&self.sub, &self.psub, &self.ssub] {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn pubsub(&self) -> bool {
        self.sub.load(Ordering::Relaxed) > 0
            || self.psub.load(Ordering::Relaxed) > 0
            || self.ssub.load(Ordering::Relaxed) > 0
    }
}

/// `CLIENT REPLY` as Redis keeps it: its flags `REPLY_OFF`, `REPLY_SKIP`
/// (this request's reply is dropped) and `REPLY_SKIP_NEXT` (set by `SKIP`,
/// turned into `REPLY_SKIP` once that request is done).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplyMode {
    pub off: bool,
    pub skip: bool,
    pub skip_next: bool,
}

impl ReplyMode {
    /// Anything but `ON` (one test per request on the data path).
    #[inline]
    pub fn active(&self) -> bool {
        self.off || self.skip || self.skip_next
    }

    /// The reply of the request being handled is dropped.
    pub fn silent(&self) -> bool {
        self.off || self.skip
    }

    /// A request was handled (Redis's `resetClient`).
    pub fn end_request(&mut self) {
        self.skip = std::mem::take(&mut self.skip_next);
    }
}

/// What other sessions may do to a client: close it (`CLIENT KILL`), and
/// reach the upstream connection pinned to it (`CLIENT UNBLOCK`, and the
/// out-of-band kill of a blocked command when it is closed).
#[derive(Debug, Default)]
pub struct Control {
    killed: AtomicBool,
    kill: tokio::sync::Notify,
    pinned: Mutex<PinnedRef>,
}

#[derive(Debug, Default)]
struct PinnedRef {
    conn: Option<WeakConn>,
    /// Out-of-band commands naming the connection's upstream id are in
    /// progress: it must not go back to the pool (another client could get
    /// it and be unblocked or killed instead).
    busy: u32,
}

impl Control {
    /// The session pinned `conn`.
    pub fn set_pinned(&self, conn: &Conn) {
        self.pinned.lock().conn = Some(conn.downgrade());
    }

    /// The session wants to give its pinned connection back to the pool:
    /// false when it must close it instead (the client was killed, or an
    /// out-of-band command names it).
    pub fn may_release(&self, conn: &Conn) -> bool {
        let mut p = self.pinned.lock();
        let named = p.conn.as_ref().is_some_and(|w| w.is(conn));
        if (named && p.busy > 0) || self.killed.load(Ordering::Acquire) {
            return false;
        }
        if named {
            p.conn = None;
        }
        true
    }

    /// The pinned connection, if the client holds one with a request in
    /// flight (a blocking command, while it blocks), kept out of the pool
    /// until the returned guard is dropped.
    pub fn busy_conn(self: &Arc<Self>) -> Option<(Conn, BusyGuard)> {
        let mut p = self.pinned.lock();
        let conn = p.conn.as_ref()?.upgrade()?;
        if conn.inflight() == 0 || conn.state() == ConnState::Closed {
            return None;
        }
        p.busy += 1;
        Some((conn, BusyGuard(self.clone())))
    }

    /// The client's pinned connection, while it is open (`CLIENT TRACKING
    /// ... REDIRECT` to this client).
    pub fn pinned_conn(&self) -> Option<Conn> {
        let p = self.pinned.lock();
        let conn = p.conn.as_ref()?.upgrade()?;
        (conn.state() != ConnState::Closed).then_some(conn)
    }

    /// Close the client (`CLIENT KILL`): its session stops at once, writes
    /// nothing more and closes the connection.
    pub fn kill(&self) {
        {
            let _p = self.pinned.lock();
            self.killed.store(true, Ordering::Release);
        }
        self.kill.notify_one();
    }

    #[inline]
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Completes once [`Control::kill`] was called (after or before).
    pub async fn wait_killed(&self) {
        self.kill.notified().await;
    }
}

/// Keeps a pinned connection out of the pool while an out-of-band command
/// names its upstream id.
#[derive(Debug)]
pub struct BusyGuard(Arc<Control>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut p = self.0.pinned.lock();
        p.busy = p.busy.saturating_sub(1);
    }
}

/// `CLIENT PAUSE`: held by this process for all its clients (every worker).
#[derive(Debug)]
pub struct Pause {
    /// Milliseconds since `epoch` (plus one) when the pause ends; 0: none.
    until: AtomicU64,
    /// `ALL` rather than `WRITE`.
    all: AtomicBool,
    epoch: Instant,
    changed: tokio::sync::Notify,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            until: AtomicU64::new(0),
            all: AtomicBool::new(false),
            epoch: Instant::now(),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl Pause {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// `Some(all)` while a pause holds commands (one relaxed load when none).
    #[inline]
    pub fn holds(&self) -> Option<bool> {
        let until = self.until.load(Ordering::Relaxed);
        if until == 0 {
            return None;
        }
        self.holds_slow(until)
    }

    #[cold]
    fn holds_slow(&self, until: u64) -> Option<bool> {
        (self.now_ms() < until).then(|| self.all.load(Ordering::Relaxed))
    }

    /// `CLIENT PAUSE ms [WRITE|ALL]`: as Redis, a pause already running
    /// keeps the later end and the stricter mode.
    pub fn pause(&self, ms: u64, all: bool) {
        let end = self.now_ms().saturating_add(ms);
        match self.holds() {
            Some(was_all) => {
                self.all.store(all || was_all, Ordering::Relaxed);
                self.until.fetch_max(end, Ordering::AcqRel);
            }
            None => {
                self.all.store(all, Ordering::Relaxed);
                self.until.store(end, Ordering::Release);
            }
        }
        self.changed.notify_waiters();
    }

    /// `CLIENT UNPAUSE`.
    pub fn unpause(&self) {
        self.until.store(0, Ordering::Release);
        self.all.store(false, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Completes when no pause holds commands any more (its time ran out,
    /// or `CLIENT UNPAUSE`); a session whose next command is held waits here.
    pub async fn wait_end(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let until = self.until.load(Ordering::Acquire);
            let now = self.now_ms();
            if until == 0 || now >= until {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(until - now)) => {}
            }
        }
    }
}

/// Commands `CLIENT PAUSE WRITE` holds besides those Redis flags `write`:
/// Redis 7.0's `may-replicate` commands (scripts and functions may write;
/// `PUBLISH` and `PFCOUNT` propagate), and the write commands respite's
/// built-in table does not list.
const MAY_WRITE: &[&str] = &[
    "eval",
    "evalsha",
    "fcall",
    "publish",
    "spublish",
    "pfcount",
    "flushall",
    "flushdb",
    "move",
    "swapdb",
    "restore-asking",
    "pfdebug",
    "function|delete",
    "function|flush",
    "function|load",
    "function|restore",
    "script|flush",
    "script|load",
];

/// Whether `CLIENT PAUSE WRITE` holds this request (`EXEC` is decided by
/// the session, from what the transaction queued).
pub fn is_write(req: &Req) -> bool {
    use crate::command::keys::{CmdFlags, KeyTable};
    let name = req.arg(0);
    let sub = if req.argc() > 1 { req.arg(1) } else { b"" };
    let Some(full) = full_name(name, b"").and_then(|n| {
        if is_container(n) && !sub.is_empty() {
            full_name(name, sub)
        } else {
            Some(n)
        }
    }) else {
        return false;
    };
    if MAY_WRITE.contains(&full) {
        return true;
    }
    KeyTable::builtin()
        .get(full.as_bytes())
        .is_some_and(|c| c.flags.contains(CmdFlags::WRITE))
}

/// A bulk string at the start of `b`, and what follows it.
fn bulk(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let b = b.strip_prefix(b"$")?;
    let eol = b.iter().position(|&c| c == b'\r')?;
    let n = usize::try_from(parse_int(&b[..eol])?).ok()?;
    let body = b.get(eol + 2..eol + 2 + n)?;
    let rest = b.get(eol + 2 + n..)?.strip_prefix(b"\r\n")?;
    Some((body, rest))
}

/// The session's copy of the last command name it published, so a client
/// repeating one command (the usual case) costs a comparison per request
/// and nothing shared.
#[derive(Debug, Default)]
pub struct LastCmd {
    raw: [u8; 24],
    /// Length of `raw`; 0 before the first command and for longer names.
    len: u8,
    /// A container (`CLIENT`, `CONFIG`): its name depends on the subcommand.
    container: bool,
    published: &'static str,
}

impl LastCmd {
    /// Record `req` as the client's last command.
    #[inline]
    pub fn note(&mut self, meta: &ClientMeta, req: &Req) {
        let name = req.arg(0);
        if !self.container && self.len as usize == name.len() && self.raw[..name.len()] == *name {
            return;
        }
        self.note_slow(meta, req);
    }

    #[cold]
    fn note_slow(&mut self, meta: &ClientMeta, req: &Req) {
        let name = req.arg(0);
        self.container = false;
        let full = match full_name(name, &[]) {
            None => NO_COMMAND,
            Some(n) => {
                // A container's name is "name|sub" (Redis shows the bare
                // name when the subcommand is missing).
                self.container = is_container(n);
                if self.container && req.argc() >= 2 {
                    full_name(name, req.arg(1)).unwrap_or(NO_COMMAND)
                } else {
                    n
                }
            }
        };
        if name.len() <= self.raw.len() {
            self.raw[..name.len()].copy_from_slice(name);
            self.len = name.len() as u8;
        } else {
            self.len = 0;
        }
        if !std::ptr::eq(self.published, full) {
            self.published = full;
            *meta.activity.cmd.lock() = full;
        }
    }
}

/// Redis's name for command `name` (subcommand `sub` when not empty), if
/// Redis 7.0 has such a command.
fn full_name(name: &[u8], sub: &[u8]) -> Option<&'static str> {
    let mut buf = [0u8; 48];
    let len = name.len() + if sub.is_empty() { 0 } else { 1 + sub.len() };
    if len > buf.len() {
        return None;
    }
    buf[..name.len()].copy_from_slice(name);
    if !sub.is_empty() {
        buf[name.len()] = b'|';
        buf[name.len() + 1..len].copy_from_slice(sub);
    }
    let key = &mut buf[..len];
    key.make_ascii_lowercase();
    NAMES
        .binary_search_by(|n| n.as_bytes().cmp(key))
        .ok()
        .map(|i| NAMES[i])
}

fn is_container(name: &str) -> bool {
    let at = NAMES.partition_point(|n| *n <= name);
    NAMES
        .get(at)
        .is_some_and(|n| n.strip_prefix(name).is_some_and(|r| r.starts_with('|')))
}

impl ClientMeta {
    /// One line in Redis's `CLIENT LIST` / `CLIENT INFO` format, LF-terminated.
    pub fn info_line(&self) -> String {
        let name = self
            .name
            .lock()
            .as_ref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let a = &self.activity;
        let age_ms = self.created.elapsed().as_millis() as u64;
        let idle = age_ms.saturating_sub(a.last_ms.load(Ordering::Relaxed)) / 1000;
        // Redis's letters in Redis's order: P pub/sub, x in MULTI, b
        // blocked (a command of its own outstanding on its pinned
        // connection), t tracking, B tracking in BCAST mode; N for none.
        let multi = a.multi();
        let tracking = a.tracking.load(Ordering::Relaxed);
        let pubsub = a.pubsub();
        let blocked = multi.is_none()
            && !pubsub
            && tracking == 0
            && self
                .ctl
                .pinned_conn()
                .is_some_and(|c| !c.pooled() && c.inflight() > 0);
        let mut flags = String::new();
        for (on, letter) in [
            (pubsub, 'P'),
            (multi.is_some(), 'x'),
            (blocked, 'b'),
            (tracking > 0, 't'),
            (tracking == 2, 'B'),
        ] {
            if on {
                flags.push(letter);
            }
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let cmd = *a.cmd.lock();
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir={} resp={}\n",
            self.id,
            self.addr,
            self.laddr,
            name,
            age_ms / 1000,
            idle,
            flags,
            self.db.load(Ordering::Relaxed),
            a.sub.load(Ordering::Relaxed),
            a.psub.load(Ordering::Relaxed),
            a.ssub.load(Ordering::Relaxed),
            multi.map_or(-1, i64::from),
            cmd,
            a.user(),
            a.redir.load(Ordering::Relaxed),
            self.resp.load(Ordering::Relaxed),
        )
    }
}

/// Redis's client classes (`CLIENT LIST TYPE`). respite's clients are
/// normal or pub/sub: replication links do not pass through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientType {
    Normal,
    Pubsub,
    Master,
    Replica,
}

impl ClientType {
    fn from_name(name: &[u8]) -> Option<ClientType> {
        let lower = name.to_ascii_lowercase();
        Some(match lower.as_slice() {
            b"normal" => ClientType::Normal,
            b"pubsub" => ClientType::Pubsub,
            b"master" => ClientType::Master,
            b"replica" | b"slave" => ClientType::Replica,
            _ => return None,
        })
    }

    fn of(c: &ClientMeta) -> ClientType {
        if c.activity.pubsub() {
            ClientType::Pubsub
        } else {
            ClientType::Normal
        }
    }
}

/// `CLIENT LIST [TYPE type | ID id... | USER name]`.
///
/// Redis 7.0's grammar: one filter. `TYPE` takes one class; `ID` one or
/// more integers, listed in argument order (a repeated id is listed again,
/// as Redis does); anything else is a syntax error. `USER` is an addition
/// (later Redis-compatible servers have it; Redis 7.0 answers a syntax
/// error): the clients authenticated as that user.
pub fn list(
    clients: &dashmap::DashMap<u64, Arc<ClientMeta>>,
    req: &Req,
    proto: Proto,
    out: &mut BytesMut,
) {
    let argc = req.argc();
    let filter = |i: usize, word: &[u8]| argc > i && req.arg(i).eq_ignore_ascii_case(word);
    let mut text = String::new();
    if argc == 2 {
        let mut all: Vec<Arc<ClientMeta>> = clients.iter().map(|c| c.value().clone()).collect();
        all.sort_by_key(|c| c.id);
        for c in all {
            text.push_str(&c.info_line());
        }
    } else if argc == 4 && filter(2, b"type") {
        let Some(t) = ClientType::from_name(req.arg(3)) else {
            let name = String::from_utf8_lossy(req.arg(3));
            return encode::error(out, &format!("ERR Unknown client type '{name}'"));
        };
        let mut all: Vec<Arc<ClientMeta>> = clients
            .iter()
            .filter(|c| ClientType::of(c.value()) == t)
            .map(|c| c.value().clone())
            .collect();
        all.sort_by_key(|c| c.id);
        for c in all {
            text.push_str(&c.info_line());
        }
    } else if argc > 3 && filter(2, b"id") {
        let mut ids = Vec::with_capacity(argc - 3);
        for i in 3..argc {
            match parse_int(req.arg(i)) {
                Some(id) => ids.push(id),
                None => return encode::error(out, "ERR Invalid client ID"),
            }
        }
        for id in ids {
            let Ok(id) = u64::try_from(id) else { continue };
            if let Some(c) = clients.get(&id) {
                text.push_str(&c.value().info_line());
            }
        }
    } else if argc == 4 && filter(2, b"user") {
        let user = req.arg(3);
        let mut all: Vec<Arc<ClientMeta>> = clients
            .iter()
            .filter(|c| c.value().activity.user().as_bytes() == user)
            .map(|c| c.value().clone())
            .collect();
        all.sort_by_key(|c| c.id);
        for c in all {
            text.push_str(&c.info_line());
        }
    } else {
        return encode::error(out, crate::error::SYNTAX);
    }
    encode::verbatim(out, proto, text.as_bytes());
}

/// `CLIENT TRACKINGINFO` for a client without tracking (a client with
/// tracking holds a pinned connection, which answers it).
pub fn tracking_off(proto: Proto, out: &mut BytesMut) {
    encode::map(out, proto, 3);
    encode::bulk(out, b"flags");
    encode::set(out, proto, 1);
    encode::bulk(out, b"off");
    encode::bulk(out, b"redirect");
    encode::int(out, -1);
    encode::bulk(out, b"prefixes");
    encode::array(out, 0);
}

/// `CLIENT HELP`, Redis 7.0's text line for line.
pub const HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
];

pub fn help(out: &mut BytesMut) {
    encode::array(out, HELP.len());
    for line in HELP {
        encode::simple(out, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_confirmations() {
        let a = Activity::default();
        let frame = |kind: &str, ch: Option<&str>, n: i64| {
            let ch = ch.map_or("$-1\r\n".to_string(), |c| {
                format!("${}\r\n{c}\r\n", c.len())
            });
            format!("*3\r\n${}\r\n{kind}\r\n{ch}:{n}\r\n", kind.len()).into_bytes()
        };
        let counts = |a: &Activity| {
            (
                a.sub.load(Ordering::Relaxed),
                a.psub.load(Ordering::Relaxed),
                a.ssub.load(Ordering::Relaxed),
            )
        };
        a.pubsub_frame(Proto::Resp2, &frame("subscribe", Some("a"), 1));
        a.pubsub_frame(Proto::Resp2, &frame("subscribe", Some("b"), 2));
        a.pubsub_frame(Proto::Resp2, &frame("psubscribe", Some("p*"), 3));
        assert_eq!(counts(&a), (2, 1, 0));
        assert!(a.pubsub());
        // Subscribing again to a channel confirms the same count.
        a.pubsub_frame(Proto::Resp2, &frame("subscribe", Some("a"), 3));
        a.pubsub_frame(Proto::Resp2, &frame("ssubscribe", Some("s"), 1));
        assert_eq!(counts(&a), (2, 1, 1));
        // Messages and RESP3-framed confirmations on a RESP2 client change nothing.
        a.pubsub_frame(
            Proto::Resp2,
            b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nx\r\n",
        );
        a.pubsub_frame(Proto::Resp2, b">3\r\n$9\r\nsubscribe\r\n$1\r\nz\r\n:9\r\n");
        assert_eq!(counts(&a), (2, 1, 1));
        a.pubsub_frame(Proto::Resp2, &frame("unsubscribe", Some("a"), 2));
        a.pubsub_frame(Proto::Resp2, &frame("unsubscribe", Some("b"), 1));
        a.pubsub_frame(Proto::Resp2, &frame("punsubscribe", Some("p*"), 0));
        a.pubsub_frame(Proto::Resp2, &frame("sunsubscribe", Some("s"), 0));
        assert_eq!(counts(&a), (0, 0, 0));
        assert!(!a.pubsub());
        a.pubsub_frame(Proto::Resp2, &frame("unsubscribe", None, 0));
        assert_eq!(counts(&a), (0, 0, 0));
        a.pubsub_frame(
            Proto::Resp3,
            b">3\r\n$10\r\npsubscribe\r\n$1\r\nq\r\n:1\r\n",
        );
        assert_eq!(counts(&a), (0, 1, 0));
    }

    #[test]
    fn names_are_sorted_and_found() {
        assert!(NAMES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(full_name(b"GET", b""), Some("get"));
        assert_eq!(full_name(b"Client", b"LIST"), Some("client|list"));
        assert_eq!(full_name(b"client", b"nosuch"), None);
        assert_eq!(full_name(b"nosuch", b""), None);
        assert!(is_container("client") && is_container("xinfo"));
        assert!(!is_container("get") && !is_container("acl|cat"));
    }

    #[test]
    fn help_is_redis_7_0s() {
        let mut out = BytesMut::new();
        help(&mut out);
        assert!(out.starts_with(b"*48\r\n+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+CACHING (YES|NO)\r\n"));
        assert!(out.ends_with(b"+HELP\r\n+    Prints this help.\r\n"));
    }
}
