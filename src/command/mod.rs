//! What the proxy knows about commands. Meaning, not bytes.
//!
//! [`table`] maps a command name to its [`Info`] (kind, compression class,
//! statistics, cluster policy), once per request: [`classify`]. Commands
//! not in the table are forwarded as they are: Redis answers them,
//! including "unknown command", exactly as it would without the proxy.
//!
//! [`keys`] finds the key arguments of any command, from the upstream's
//! `COMMAND` reply or a built-in table, for routing by slot.

pub mod keys;
pub mod table;

pub use table::{classify, Info};

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
    Tag(TagCmd),
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

/// A tag command (or `COMMAND`, answered for the tag names): see `crate::tags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagCmd {
    Set,
    Add,
    Inval,
    Keys,
    Of,
    Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
}

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
