//! The command table: what the proxy must know about each command to route it
//! (which session mode it needs, where its keys are). Meaning, not bytes.
//!
//! Commands not in the table are forwarded as they are: Redis answers them,
//! including "unknown command", exactly as it would without the proxy.
//!
//! [`keys`] finds the key arguments of any command, from the upstream's
//! `COMMAND` reply or a built-in table, for routing by slot.

pub mod keys;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// How the session handles a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Forwarded on the session's shared connection.
    Forward,
    /// Answered by the session itself.
    Local(Local),
    /// Needs a connection of its own while the command blocks.
    Blocking,
    /// Blocking only when an argument says so (`XREAD ... BLOCK`).
    BlockingIfArg(&'static str),
    /// Transaction state on the connection (MULTI/EXEC/DISCARD/WATCH/UNWATCH).
    Transaction(Tx),
    /// Turns the connection into a stream of unsolicited frames for the rest of
    /// the session: pub/sub, MONITOR, CLIENT TRACKING.
    Passthrough,
    /// Refused: the proxy cannot offer it.
    Refused(&'static str),
    /// Sent on the node's control connection, never behind other clients'
    /// requests on a shared one (standalone and sentinel mode; cluster mode
    /// forwards it).
    OutOfBand(Oob),
    /// The tag commands, and `COMMAND` (answered for the tag names).
    Tag(crate::tags::Cmd),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Auth,
    Hello,
    Select,
    Ping,
    Echo,
    Quit,
    Reset,
    Client,
    /// The proxy's own admin commands (`PROXY NODES`, ...).
    Proxy,
    /// `KEYSTATS` and `HOTKEYS` (statistics).
    Stats,
}

/// The commands that must reach a node even while it runs a long script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oob {
    /// `SCRIPT KILL`, `FUNCTION KILL`: only the `KILL` subcommand (with no
    /// further argument); the others are forwarded.
    Kill,
    /// `SHUTDOWN`, any form.
    Shutdown,
}

impl Oob {
    /// Whether a request of this command goes out of band: `SCRIPT KILL`
    /// yes, `SCRIPT LOAD ...` no.
    pub fn applies(self, args: &[&[u8]]) -> bool {
        match self {
            Oob::Kill => args.len() == 2 && args[1].eq_ignore_ascii_case(b"kill"),
            Oob::Shutdown => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

/// Where a command's keys are: first, last (negative counts from the end), step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub first: i32,
    pub last: i32,
    pub step: i32,
}

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub kind: Kind,
    pub keys: Option<KeySpec>,
}

const FORWARD: Spec = Spec {
    kind: Kind::Forward,
    keys: None,
};

/// Hashes command names (short ASCII) for the name tables, about 3x faster
/// than the default SipHash on them. The tables are fixed, so clients cannot
/// grow them whatever names they send, and a name collision costs a probe.
#[derive(Default)]
pub struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
}

/// A map keyed by command name.
pub type NameMap<K, V> = HashMap<K, V, BuildHasherDefault<NameHasher>>;

fn table() -> &'static NameMap<&'static [u8], Spec> {
    static TABLE: OnceLock<NameMap<&'static [u8], Spec>> = OnceLock::new();
    TABLE.get_or_init(build)
}

fn build() -> NameMap<&'static [u8], Spec> {
    use Kind::*;
    let mut m: NameMap<&'static [u8], Spec> = NameMap::default();
    let mut add = |name: &'static str, kind: Kind| {
        m.insert(name.as_bytes(), Spec { kind, keys: None });
    };
    add("auth", Local(self::Local::Auth));
    add("hello", Local(self::Local::Hello));
    add("select", Local(self::Local::Select));
    add("ping", Local(self::Local::Ping));
    add("echo", Local(self::Local::Echo));
    add("quit", Local(self::Local::Quit));
    add("reset", Local(self::Local::Reset));
    add("client", Local(self::Local::Client));
    add("proxy", Local(self::Local::Proxy));
    for (name, cmd) in crate::tags::COMMANDS {
        add(name, Tag(cmd));
    }
    add("keystats", Local(self::Local::Stats));
    add("hotkeys", Local(self::Local::Stats));
    for b in [
        "blpop",
        "brpop",
        "brpoplpush",
        "blmove",
        "blmpop",
        "bzpopmin",
        "bzpopmax",
        "bzmpop",
        "wait",
        "waitaof",
    ] {
        add(b, Blocking);
    }
    add("xread", BlockingIfArg("block"));
    add("xreadgroup", BlockingIfArg("block"));
    add("script", OutOfBand(Oob::Kill));
    add("function", OutOfBand(Oob::Kill));
    add("shutdown", OutOfBand(Oob::Shutdown));
    add("multi", Transaction(Tx::Multi));
    add("exec", Transaction(Tx::Exec));
    add("discard", Transaction(Tx::Discard));
    add("watch", Transaction(Tx::Watch));
    add("unwatch", Transaction(Tx::Unwatch));
    for p in [
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "unsubscribe",
        "punsubscribe",
        "sunsubscribe",
        "monitor",
    ] {
        add(p, Passthrough);
    }
    add(
        "sync",
        Refused("ERR replication commands are not proxied by respite"),
    );
    add(
        "psync",
        Refused("ERR replication commands are not proxied by respite"),
    );
    add(
        "replconf",
        Refused("ERR replication commands are not proxied by respite"),
    );
    m
}

/// Look a command up by name, case-insensitively. Unknown names forward.
#[inline]
pub fn lookup(name: &[u8]) -> Spec {
    let mut lower = [0u8; 24];
    if name.len() > lower.len() {
        return FORWARD;
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    table()
        .get(&lower[..name.len()])
        .copied()
        .unwrap_or(FORWARD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"BLPOP").kind, Kind::Blocking);
        assert_eq!(lookup(b"MuLtI").kind, Kind::Transaction(Tx::Multi));
        assert_eq!(lookup(b"get").kind, Kind::Forward);
        assert_eq!(lookup(b"averyveryverylongcommandname").kind, Kind::Forward);
    }

    #[test]
    fn only_the_kill_subcommand_goes_out_of_band() {
        let Kind::OutOfBand(kill) = lookup(b"SCRIPT").kind else {
            panic!("SCRIPT is not out of band")
        };
        assert!(kill.applies(&[b"script", b"KILL"]));
        assert!(!kill.applies(&[b"script", b"load", b"return 1"]));
        assert!(!kill.applies(&[b"script", b"kill", b"extra"]));
        assert!(!kill.applies(&[b"script"]));
        assert_eq!(lookup(b"function").kind, Kind::OutOfBand(Oob::Kill));
        let Kind::OutOfBand(shutdown) = lookup(b"shutdown").kind else {
            panic!("SHUTDOWN is not out of band")
        };
        assert!(shutdown.applies(&[b"shutdown", b"nosave"]));
        assert!(shutdown.applies(&[b"shutdown"]));
    }
}
