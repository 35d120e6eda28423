//! What statistics need to know about a command: a small numeric id (for
//! per-command counters), whether it reads or writes its keys, where its keys
//! are, and how its reply tells a hit from a miss.
//!
//! Built once from the built-in key table ([`KeyTable::builtin`]), so the
//! set of command names, and with it the `cmd` label of `/metrics`, is
//! bounded: names a client makes up are all counted as `other`.

use crate::command::keys::{CmdFlags, KeyTable};
use crate::command::NameHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Id of every command not in the table.
pub const OTHER: u16 = 0;

/// How a reply shows whether a read found its key(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitRule {
    /// Not a lookup: no hit or miss.
    None,
    /// Nil (or an empty array for a missing list's pop) is a miss
    /// (`GET`, `HGET`, `LINDEX`, `ZSCORE`, ...).
    Nil,
    /// One array element per key, each nil a miss (`MGET`).
    EachNil,
    /// An array whose elements are all nil is a miss (`HMGET`, `ZMSCORE`).
    AllNil,
    /// Integer 0 is a miss (`EXISTS`, `HEXISTS`, `SISMEMBER`, `STRLEN`,
    /// `LLEN`, ...). `EXISTS` with several keys counts one hit per key
    /// found; which key it was is known only when all or none are.
    Zero,
    /// An empty array, map or set is a miss (`HGETALL`, `SMEMBERS`, `LRANGE`, ...).
    Empty,
    /// Integer -2 ("no such key") is a miss (`TTL`, `PTTL`, ...).
    MinusTwo,
}

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    None,
    /// first, last (negative: from the end), step.
    Range(i32, i32, i32),
    /// Movable keys or subcommands: ask the key table.
    Search,
}

#[derive(Debug, Clone)]
pub struct CmdInfo {
    pub name: String,
    pub read: bool,
    pub write: bool,
    pub keys: KeyRule,
    pub hit: HitRule,
}

#[derive(Debug)]
pub struct CmdTable {
    ids: HashMap<Box<[u8]>, u16, BuildHasherDefault<NameHasher>>,
    pub cmds: Vec<CmdInfo>,
}

const RULES: &[(HitRule, &[&str])] = &[
    (
        HitRule::Nil,
        &[
            "get",
            "getdel",
            "getex",
            "hget",
            "lindex",
            "lpop",
            "rpop",
            "spop",
            "srandmember",
            "zscore",
            "zrank",
            "zrevrank",
            "hrandfield",
            "lpos",
            "dump",
        ],
    ),
    (HitRule::EachNil, &["mget"]),
    (HitRule::AllNil, &["hmget", "zmscore"]),
    (
        HitRule::Zero,
        &[
            "exists",
            "hexists",
            "sismember",
            "strlen",
            "hlen",
            "llen",
            "scard",
            "zcard",
            "xlen",
            "hstrlen",
            "bitcount",
            "pfcount",
        ],
    ),
    (
        HitRule::Empty,
        &[
            "hgetall",
            "hkeys",
            "hvals",
            "smembers",
            "lrange",
            "zrange",
            "zrangebyscore",
            "zrevrange",
            "zrevrangebyscore",
            "zrangebylex",
            "xrange",
            "xrevrange",
            "sinter",
            "sunion",
            "sdiff",
        ],
    ),
    (
        HitRule::MinusTwo,
        &["ttl", "pttl", "expiretime", "pexpiretime"],
    ),
];

/// Keyless commands worth a name of their own in per-command statistics
/// (the keyed ones come from the key table).
const KEYLESS: &[&str] = &[
    "ping",
    "echo",
    "quit",
    "reset",
    "auth",
    "hello",
    "select",
    "client",
    "info",
    "dbsize",
    "flushdb",
    "flushall",
    "config",
    "command",
    "time",
    "multi",
    "exec",
    "discard",
    "unwatch",
    "publish",
    "spublish",
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "monitor",
    "scan",
    "keys",
    "randomkey",
    "debug",
    "script",
    "function",
    "slowlog",
    "latency",
    "memory",
    "cluster",
    "readonly",
    "readwrite",
    "role",
    "lastsave",
    "save",
    "bgsave",
    "bgrewriteaof",
    "swapdb",
    "wait",
    "waitaof",
    "proxy",
    "keystats",
    "hotkeys",
    "lolwut",
    "acl",
];

impl CmdTable {
    pub fn build() -> CmdTable {
        let mut t = CmdTable {
            ids: HashMap::default(),
            cmds: vec![CmdInfo {
                name: "other".into(),
                read: false,
                write: false,
                keys: KeyRule::None,
                hit: HitRule::None,
            }],
        };
        let builtin = KeyTable::builtin();
        let mut keyed: Vec<_> = builtin.iter().filter(|c| !c.name.contains('|')).collect();
        keyed.sort_by(|a, b| a.name.cmp(&b.name));
        for c in keyed {
            let hit = RULES
                .iter()
                .find(|(_, names)| names.contains(&c.name.as_str()))
                .map_or(HitRule::None, |(r, _)| *r);
            // A lookup that also writes (GETDEL, GETEX) is both; SET's
            // optional GET does not make every SET a read.
            let read = c.flags.contains(CmdFlags::READONLY) || hit != HitRule::None;
            let write = c.flags.contains(CmdFlags::WRITE);
            let keys = if c.container || c.flags.contains(CmdFlags::MOVABLEKEYS) {
                KeyRule::Search
            } else if c.legacy.first > 0 {
                KeyRule::Range(c.legacy.first, c.legacy.last, c.legacy.step.max(1))
            } else if !c.specs.is_empty() {
                KeyRule::Search
            } else {
                KeyRule::None
            };
            t.add(CmdInfo {
                name: c.name.clone(),
                read,
                write,
                keys,
                hit,
            });
        }
        for name in KEYLESS {
            if t.get(name.as_bytes()) == OTHER {
                t.add(CmdInfo {
                    name: name.to_string(),
                    read: false,
                    write: false,
                    keys: KeyRule::None,
                    hit: HitRule::None,
                });
            }
        }
        t
    }

    fn add(&mut self, info: CmdInfo) {
        let id = self.cmds.len() as u16;
        self.ids.insert(info.name.as_bytes().into(), id);
        self.cmds.push(info);
    }

    /// The id of a command name, case-insensitively; [`OTHER`] when unknown.
    #[inline]
    pub fn get(&self, name: &[u8]) -> u16 {
        let mut lower = [0u8; 24];
        if name.len() > lower.len() {
            return OTHER;
        }
        for (d, s) in lower.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        self.ids.get(&lower[..name.len()]).copied().unwrap_or(OTHER)
    }

    pub fn info(&self, id: u16) -> &CmdInfo {
        &self.cmds[id as usize]
    }

    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }
}

/// Calls `f` with each key of a request (`args(i)` is argument `i`, `argc`
/// of them, name included).
#[inline]
pub fn for_each_key<'a>(
    rule: KeyRule,
    argc: usize,
    args: impl Fn(usize) -> &'a [u8],
    mut f: impl FnMut(&'a [u8]),
) {
    match rule {
        KeyRule::None => {}
        KeyRule::Range(first, last, step) => {
            let argc = argc as i64;
            let first = first as i64;
            let last = if last < 0 {
                argc + last as i64
            } else {
                (last as i64).min(argc - 1)
            };
            let mut i = first;
            while i <= last && i < argc {
                f(args(i as usize));
                i += step as i64;
            }
        }
        KeyRule::Search => {
            let all: Vec<&[u8]> = (0..argc).map(&args).collect();
            if let Ok(keys) = KeyTable::builtin().keys_of(&all) {
                for k in keys {
                    f(all[k]);
                }
            }
        }
    }
}

/// What a reply says about the keys of its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not a lookup, an error, or a reply of an unexpected shape.
    Unknown,
    /// Every key found (true) or none (false).
    All(bool),
    /// `n` keys found, which ones unknown (multi-key `EXISTS`).
    Count(u64),
    /// Per array element (`MGET`): see [`each_nil`].
    PerElement,
}

/// Reads the reply's verdict under `rule`.
pub fn outcome(rule: HitRule, nkeys: usize, reply: &[u8]) -> Outcome {
    let Some(&t) = reply.first() else {
        return Outcome::Unknown;
    };
    if t == b'-' || t == b'!' {
        return Outcome::Unknown;
    }
    let nil = is_nil(reply);
    match rule {
        HitRule::None => Outcome::Unknown,
        HitRule::Nil => Outcome::All(!nil && !is_empty_aggregate(reply)),
        HitRule::EachNil => Outcome::PerElement,
        HitRule::AllNil => {
            let mut any = false;
            let ok = elements(reply, |e| any |= !is_nil(e));
            if ok {
                Outcome::All(any)
            } else {
                Outcome::Unknown
            }
        }
        HitRule::Zero => match int(reply) {
            Some(n) if nkeys <= 1 => Outcome::All(n != 0),
            Some(n) if n <= 0 => Outcome::All(false),
            Some(n) if n as usize == nkeys => Outcome::All(true),
            Some(n) => Outcome::Count(n as u64),
            None => Outcome::Unknown,
        },
        HitRule::Empty => Outcome::All(!nil && !is_empty_aggregate(reply)),
        HitRule::MinusTwo => match int(reply) {
            Some(n) => Outcome::All(n != -2),
            None => Outcome::Unknown,
        },
    }
}

/// Calls `f(hit)` for each element of an array of bulk strings and nils
/// (`MGET`); false when the reply is not one.
pub fn each_nil(reply: &[u8], mut f: impl FnMut(bool)) -> bool {
    elements(reply, |e| f(!is_nil(e)))
}

fn is_nil(r: &[u8]) -> bool {
    r.starts_with(b"$-1\r\n") || r.starts_with(b"*-1\r\n") || r.starts_with(b"_\r\n")
}

fn is_empty_aggregate(r: &[u8]) -> bool {
    matches!(r, [b'*' | b'%' | b'~', b'0', b'\r', b'\n'])
}

fn int(r: &[u8]) -> Option<i64> {
    let body = r.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    crate::protocol::request::parse_int(body)
}

/// Reads a decimal line starting at `at` up to CRLF: (value, index after CRLF).
fn line_num(r: &[u8], at: usize) -> Option<(i64, usize)> {
    let end = at + r.get(at..)?.iter().position(|&b| b == b'\r')?;
    let n = crate::protocol::request::parse_int(&r[at..end])?;
    Some((n, end + 2))
}

/// Walks a flat array whose elements are bulk strings, simple strings or
/// nils, giving each element's bytes to `f`.
fn elements(r: &[u8], mut f: impl FnMut(&[u8])) -> bool {
    if r.first() != Some(&b'*') {
        return false;
    }
    let Some((n, mut at)) = line_num(r, 1) else {
        return false;
    };
    for _ in 0..n.max(0) {
        let start = at;
        match r.get(at) {
            Some(b'$') => match line_num(r, at + 1) {
                Some((-1, next)) => at = next,
                Some((len, next)) if len >= 0 => at = next + len as usize + 2,
                _ => return false,
            },
            Some(b'_') => at += 3,
            Some(b'+' | b':' | b',') => match r[at..].iter().position(|&b| b == b'\n') {
                Some(p) => at += p + 1,
                None => return false,
            },
            _ => return false,
        }
        match r.get(start..at) {
            Some(e) => f(e),
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_knows_common_commands() {
        let t = CmdTable::build();
        let get = t.info(t.get(b"GET"));
        assert_eq!((get.read, get.write, get.hit), (true, false, HitRule::Nil));
        assert_eq!(get.keys, KeyRule::Range(1, 1, 1));
        let set = t.info(t.get(b"set"));
        assert!(set.write && !set.read);
        assert_eq!(t.get(b"nosuchcommand"), OTHER);
        assert_ne!(t.get(b"ping"), OTHER);
        assert_eq!(t.info(t.get(b"mset")).keys, KeyRule::Range(1, -1, 2));
    }

    #[test]
    fn keys_by_rule() {
        let args: Vec<&[u8]> = vec![b"mset", b"a", b"1", b"b", b"2"];
        let mut keys = Vec::new();
        for_each_key(
            KeyRule::Range(1, -1, 2),
            args.len(),
            |i| args[i],
            |k| keys.push(k),
        );
        assert_eq!(keys, vec![b"a".as_slice(), b"b"]);
        let args: Vec<&[u8]> = vec![b"eval", b"return 1", b"2", b"x", b"y", b"z"];
        let mut keys = Vec::new();
        for_each_key(KeyRule::Search, args.len(), |i| args[i], |k| keys.push(k));
        assert_eq!(keys, vec![b"x".as_slice(), b"y"]);
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome(HitRule::Nil, 1, b"$-1\r\n"), Outcome::All(false));
        assert_eq!(outcome(HitRule::Nil, 1, b"_\r\n"), Outcome::All(false));
        assert_eq!(outcome(HitRule::Nil, 1, b"$1\r\nx\r\n"), Outcome::All(true));
        assert_eq!(outcome(HitRule::Nil, 1, b"-ERR x\r\n"), Outcome::Unknown);
        assert_eq!(outcome(HitRule::Zero, 1, b":0\r\n"), Outcome::All(false));
        assert_eq!(outcome(HitRule::Zero, 3, b":3\r\n"), Outcome::All(true));
        assert_eq!(outcome(HitRule::Zero, 3, b":2\r\n"), Outcome::Count(2));
        assert_eq!(outcome(HitRule::Empty, 1, b"*0\r\n"), Outcome::All(false));
        assert_eq!(outcome(HitRule::Empty, 1, b"%0\r\n"), Outcome::All(false));
        assert_eq!(
            outcome(HitRule::MinusTwo, 1, b":-2\r\n"),
            Outcome::All(false)
        );
        assert_eq!(
            outcome(HitRule::AllNil, 1, b"*2\r\n$-1\r\n$1\r\nv\r\n"),
            Outcome::All(true)
        );
        assert_eq!(
            outcome(HitRule::AllNil, 1, b"*2\r\n$-1\r\n_\r\n"),
            Outcome::All(false)
        );
        let mut seen = Vec::new();
        assert!(each_nil(b"*3\r\n$1\r\na\r\n$-1\r\n$0\r\n\r\n", |h| seen.push(h)));
        assert_eq!(seen, vec![true, false, true]);
        assert!(!each_nil(b"$1\r\na\r\n", |_| {}));
    }
}
