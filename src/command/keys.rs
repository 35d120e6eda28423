//! Which arguments of a command are keys, found the way Redis finds them, so
//! the proxy and the cluster always agree on a command's slot.
//!
//! The source of truth is the upstream's own `COMMAND` reply, parsed into a
//! [`KeyTable`] once per connection setup: it knows modules' commands and
//! whatever a newer Redis added. When `COMMAND` is unavailable (renamed,
//! refused by ACL, an old server) the [`KeyTable::builtin`] table of common
//! commands, taken from Redis 7.0's reply and checked against it by a test,
//! stands in.
//!
//! The search itself follows Redis 7's `getKeysFromCommandWithSpecs`: every
//! key spec (`begin_search` by index or keyword, then `find_keys` by range or
//! by a key count argument) contributes positions; if any spec fails (unknown
//! type, flagged incomplete, bad key count), Redis falls back to the
//! command's hand-written key function, of which only `SORT`, `SORT_RO` and
//! `MIGRATE` give keys where the specs cannot, so those three are written out
//! here and every other failure means "no keys" (the command will fail with
//! a syntax error on whichever node gets it). Servers without key specs
//! (Redis 6) are read through the legacy first/last/step triple.

mod builtin;

use crate::protocol::request::parse_int;
use crate::protocol::{ProtocolError, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

/// Defines a set of named flags stored as bits, parsed from the names Redis
/// prints in `COMMAND`.
macro_rules! flag_set {
    ($(#[$doc:meta])* $name:ident: $repr:ty { $($(#[$fdoc:meta])* $flag:ident = $bit:literal, $text:literal;)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub struct $name($repr);

        impl $name {
            $($(#[$fdoc])* pub const $flag: $name = $name(1 << $bit);)*
            const NAMES: &'static [($name, &'static str)] = &[$(($name::$flag, $text),)*];

            pub const fn empty() -> $name {
                $name(0)
            }

            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// The flag Redis prints as `name` (case-insensitive); `None` for
            /// names this proxy does not know.
            pub fn from_name(name: &[u8]) -> Option<$name> {
                Self::NAMES
                    .iter()
                    .find(|(_, text)| text.as_bytes().eq_ignore_ascii_case(name))
                    .map(|(flag, _)| *flag)
            }

            /// Every known flag among space-separated names; unknown ones are skipped.
            #[allow(dead_code)]
            fn from_words(words: &str) -> $name {
                words
                    .split_ascii_whitespace()
                    .filter_map(|w| Self::from_name(w.as_bytes()))
                    .fold($name::empty(), |a, b| a | b)
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, rhs: $name) -> $name {
                $name(self.0 | rhs.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let names: Vec<&str> = Self::NAMES
                    .iter()
                    .filter(|(flag, _)| self.contains(*flag))
                    .map(|(_, text)| *text)
                    .collect();
                write!(f, "{}({})", stringify!($name), names.join(" "))
            }
        }
    };
}

flag_set! {
    /// Command flags (`COMMAND` element 3), Redis 6 and 7 names.
    CmdFlags: u32 {
        WRITE = 0, "write";
        READONLY = 1, "readonly";
        DENYOOM = 2, "denyoom";
        MODULE = 3, "module";
        ADMIN = 4, "admin";
        PUBSUB = 5, "pubsub";
        NOSCRIPT = 6, "noscript";
        BLOCKING = 7, "blocking";
        LOADING = 8, "loading";
        STALE = 9, "stale";
        SKIP_MONITOR = 10, "skip_monitor";
        SKIP_SLOWLOG = 11, "skip_slowlog";
        ASKING = 12, "asking";
        FAST = 13, "fast";
        NO_AUTH = 14, "no_auth";
        MAY_REPLICATE = 15, "may_replicate";
        SENTINEL = 16, "sentinel";
        ONLY_SENTINEL = 17, "only_sentinel";
        NO_MANDATORY_KEYS = 18, "no_mandatory_keys";
        NO_ASYNC_LOADING = 19, "no_async_loading";
        NO_MULTI = 20, "no_multi";
        MOVABLEKEYS = 21, "movablekeys";
        ALLOW_BUSY = 22, "allow_busy";
        MODULE_NO_CLUSTER = 23, "module_no_cluster";
        RANDOM = 24, "random";
        SORT_FOR_SCRIPT = 25, "sort_for_script";
    }
}

flag_set! {
    /// ACL categories (`COMMAND` element 7, `ACL CAT`), without the `@`.
    AclCats: u32 {
        KEYSPACE = 0, "keyspace";
        READ = 1, "read";
        WRITE = 2, "write";
        SET = 3, "set";
        SORTEDSET = 4, "sortedset";
        LIST = 5, "list";
        HASH = 6, "hash";
        STRING = 7, "string";
        BITMAP = 8, "bitmap";
        HYPERLOGLOG = 9, "hyperloglog";
        GEO = 10, "geo";
        STREAM = 11, "stream";
        PUBSUB = 12, "pubsub";
        ADMIN = 13, "admin";
        FAST = 14, "fast";
        SLOW = 15, "slow";
        BLOCKING = 16, "blocking";
        DANGEROUS = 17, "dangerous";
        CONNECTION = 18, "connection";
        TRANSACTION = 19, "transaction";
        SCRIPTING = 20, "scripting";
    }
}

impl AclCats {
    /// Categories written as in `COMMAND` (`@read @string @fast`).
    pub fn from_at_words(words: &str) -> AclCats {
        words
            .split_ascii_whitespace()
            .filter_map(|w| Self::from_name(w.strip_prefix('@').unwrap_or(w).as_bytes()))
            .fold(AclCats::empty(), |a, b| a | b)
    }

    /// Whether any category of `other` is in `self`.
    pub const fn intersects(self, other: AclCats) -> bool {
        self.0 & other.0 != 0
    }
}

flag_set! {
    /// Key spec flags (Redis 7).
    KeyFlags: u16 {
        RO = 0, "RO";
        RW = 1, "RW";
        OW = 2, "OW";
        RM = 3, "RM";
        ACCESS = 4, "access";
        UPDATE = 5, "update";
        INSERT = 6, "insert";
        DELETE = 7, "delete";
        /// Not a key, but hashed like one: the channels of sharded pub/sub.
        NOT_KEY = 8, "not_key";
        /// The spec may miss keys or find non-keys: Redis uses the command's
        /// own key function instead.
        INCOMPLETE = 9, "incomplete";
        VARIABLE_FLAGS = 10, "variable_flags";
    }
}

/// The legacy key triple of `COMMAND` (elements 4-6): first key, last key
/// (negative counts from the end), step. All zero for keyless commands and,
/// in Redis 7, for commands whose keys only key specs can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyPos {
    pub first: i32,
    pub last: i32,
    pub step: i32,
}

/// Where a key spec starts looking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginSearch {
    /// At this argument index.
    Index(i32),
    /// Just after the first argument equal to `keyword` (case-insensitive),
    /// searched from index `startfrom` towards the end, or, when negative,
    /// from `argc + startfrom` towards the start.
    Keyword {
        keyword: Cow<'static, [u8]>,
        startfrom: i32,
    },
    /// A type this proxy does not know, or `unknown` itself.
    Unknown,
}

/// How a key spec finds keys from where it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys every `keystep` up to `lastkey` (relative to the start; negative
    /// counts from the end), or, with a `limit`, the first `1/limit` of what is left.
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// The argument `keynumidx` after the start holds the key count; keys
    /// begin `firstkey` after the start.
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    Unknown,
}

/// One key spec of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub flags: KeyFlags,
    pub begin: BeginSearch,
    pub find: FindKeys,
}

/// What the proxy knows of one command (or subcommand, `container|sub`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandKeys {
    /// Lowercase name, `container|sub` for subcommands.
    pub name: String,
    /// Exact argument count including the name when positive, the minimum when negative.
    pub arity: i32,
    pub flags: CmdFlags,
    pub legacy: KeyPos,
    pub specs: Vec<KeySpec>,
    /// Whether the command only groups subcommands (`XINFO`, `OBJECT`, ...).
    pub container: bool,
    /// ACL categories (`COMMAND` element 7; empty in the built-in table and
    /// from Redis 6, which has them too, and for whatever a server omits).
    pub acl: AclCats,
}

/// Why a command's keys could not be determined. The messages are the ones
/// Redis would answer with (minus the `ERR ` prefix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("empty command")]
    Empty,
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    #[error("unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, sub: String },
    #[error("wrong number of arguments for '{0}' command")]
    Arity(String),
}

/// A `COMMAND` reply that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandTableError {
    #[error("COMMAND reply: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("COMMAND reply is an error: {0}")]
    ErrorReply(String),
    #[error("unexpected COMMAND reply: {0}")]
    Shape(String),
}

/// A spec that does not apply to these arguments; Redis then falls back to
/// the command's own key function.
struct InvalidSpec;

impl KeySpec {
    /// Appends the positions this spec finds in `args` (full argv, name at 0).
    fn find_in<A: AsRef<[u8]>>(&self, args: &[A], out: &mut Vec<usize>) -> Result<(), InvalidSpec> {
        let argc = args.len() as i64;
        let arg = |i: i64| args[i as usize].as_ref();
        let mut first: i64 = match &self.begin {
            BeginSearch::Index(i) => *i as i64,
            BeginSearch::Keyword { keyword, startfrom } => {
                let from = *startfrom as i64;
                let is_kw = |&i: &i64| arg(i).eq_ignore_ascii_case(keyword);
                // Bounds as in Redis: forward stops before the last argument
                // (a keyword there has no key after it), backward before index 2.
                let found = if from > 0 {
                    (from..argc - 1).find(is_kw)
                } else {
                    (2..=(argc + from).min(argc - 1)).rev().find(is_kw)
                };
                match found {
                    Some(i) => i + 1,
                    // No keyword, no keys from this spec: not an error.
                    None => return Ok(()),
                }
            }
            BeginSearch::Unknown => return Err(InvalidSpec),
        };
        if first < 1 {
            return Err(InvalidSpec);
        }
        let (last, step) = match self.find {
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let (lastkey, limit) = (lastkey as i64, limit as i64);
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else if limit > 0 {
                    first + ((argc - first) / limit + lastkey)
                } else {
                    return Err(InvalidSpec);
                };
                (last, keystep as i64)
            }
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                let at = first + keynumidx as i64;
                if keynumidx < 0 || at >= argc {
                    return Err(InvalidSpec);
                }
                let n = parse_int(arg(at)).filter(|n| *n >= 0).ok_or(InvalidSpec)?;
                first += firstkey as i64;
                (first + n - 1, keystep as i64)
            }
            FindKeys::Unknown => return Err(InvalidSpec),
        };
        // Also what a key count of 0 gives: Redis treats it as a failed spec.
        if last >= argc || last < first || first >= argc || first < 1 || step <= 0 {
            return Err(InvalidSpec);
        }
        // Checked only now, as Redis does: an incomplete spec whose keyword
        // is absent is fine (MIGRATE without KEYS).
        if self.flags.contains(KeyFlags::INCOMPLETE) {
            return Err(InvalidSpec);
        }
        out.extend((first..=last).step_by(step as usize).map(|i| i as usize));
        Ok(())
    }
}

impl CommandKeys {
    /// Whether `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = self.arity as i64;
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Indices into `args` (the full command, name at 0) of its keys, in the
    /// order Redis lists them (a key may appear twice, as in `RENAME a a`).
    pub fn keys_of<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Vec<usize>, KeyError> {
        self.search(args, false)
    }

    /// As [`CommandKeys::keys_of`], plus the arguments Redis marks "not a
    /// key" that still decide the slot: the channels of `SPUBLISH`,
    /// `SSUBSCRIBE` and `SUNSUBSCRIBE`.
    pub fn routing_args_of<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Vec<usize>, KeyError> {
        self.search(args, true)
    }

    /// As [`CommandKeys::keys_of`], into `out` (cleared first), so the data
    /// path reuses one vector instead of allocating per request.
    pub fn keys_into<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        out: &mut Vec<usize>,
    ) -> Result<(), KeyError> {
        self.search_into(args, false, out)
    }

    fn search<A: AsRef<[u8]>>(&self, args: &[A], not_keys: bool) -> Result<Vec<usize>, KeyError> {
        let mut out = Vec::new();
        self.search_into(args, not_keys, &mut out)?;
        Ok(out)
    }

    fn search_into<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        not_keys: bool,
        out: &mut Vec<usize>,
    ) -> Result<(), KeyError> {
        out.clear();
        if !self.arity_ok(args.len()) {
            return Err(KeyError::Arity(self.name.clone()));
        }
        if self.specs.is_empty() {
            self.legacy_keys(args.len(), out);
            return Ok(());
        }
        for spec in &self.specs {
            if spec.flags.contains(KeyFlags::NOT_KEY) && !not_keys {
                continue;
            }
            if spec.find_in(args, out).is_err() {
                out.clear();
                out.extend(self.key_function(args));
                return Ok(());
            }
        }
        Ok(())
    }

    /// Redis 6's reading of the legacy triple (`getKeysUsingCommandTable`),
    /// into `out` (empty).
    fn legacy_keys(&self, argc: usize, out: &mut Vec<usize>) {
        let KeyPos { first, last, step } = self.legacy;
        let argc = argc as i64;
        let (first, step) = (first as i64, step as i64);
        if first <= 0 || step <= 0 {
            return;
        }
        let last = if last < 0 {
            argc + last as i64
        } else {
            last as i64
        };
        let mut i = first;
        while i <= last {
            if i >= argc {
                out.clear();
                return;
            }
            out.push(i as usize);
            i += step;
        }
    }

    /// The hand-written key functions Redis falls back to when a spec fails,
    /// for the commands where they find keys the specs cannot.
    fn key_function<A: AsRef<[u8]>>(&self, args: &[A]) -> Vec<usize> {
        // Redis's arities guarantee these; a table from elsewhere might not.
        if (args.len() < 4 && self.name == "migrate") || args.len() < 2 {
            return Vec::new();
        }
        match self.name.as_str() {
            "sort" => sort_keys(args),
            "sort_ro" => vec![1],
            "migrate" => migrate_keys(args),
            _ => Vec::new(),
        }
    }
}

/// `sortGetKeys`: the sorted key, and the destination of the last `STORE`,
/// skipping the arguments of `LIMIT`, `GET` and `BY`.
fn sort_keys<A: AsRef<[u8]>>(args: &[A]) -> Vec<usize> {
    let mut keys = vec![1];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let a = args[i].as_ref();
        if a.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"get") || a.eq_ignore_ascii_case(b"by") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"store") && i + 1 < args.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    keys.extend(store);
    keys
}

/// `migrateGetKeys`: the key at 3, or with `KEYS` (which needs an empty key
/// at 3) everything after it; `AUTH` and `AUTH2` arguments are skipped while
/// looking, since a password may well read "KEYS".
fn migrate_keys<A: AsRef<[u8]>>(args: &[A]) -> Vec<usize> {
    let mut first = 3;
    let mut num = 1;
    let mut i = 6;
    while i < args.len() {
        let a = args[i].as_ref();
        if a.eq_ignore_ascii_case(b"keys") {
            if !args[3].as_ref().is_empty() {
                return Vec::new();
            }
            first = i + 1;
            num = args.len() - first;
            break;
        } else if a.eq_ignore_ascii_case(b"auth") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"auth2") {
            i += 2;
        }
        i += 1;
    }
    (first..first + num).collect()
}

/// Command names are short; longer ones are not in any table.
const MAX_NAME: usize = 64;

/// Every command the proxy knows the keys of, by lowercase name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyTable {
    commands: super::NameMap<Vec<u8>, CommandKeys>,
}

impl KeyTable {
    /// Parses the reply of `COMMAND` (or `COMMAND INFO ...`), RESP2 or RESP3.
    /// Subcommands are included as `container|sub`. Key specs of shapes
    /// this proxy does not know become [`BeginSearch::Unknown`] /
    /// [`FindKeys::Unknown`] rather than errors, so a newer server still
    /// yields a table (those commands then follow Redis's fallback rules).
    /// Commands with movable keys but no key specs (Redis 6) take their
    /// specs from the built-in table, which has them.
    pub fn from_command_reply(reply: &[u8]) -> Result<KeyTable, CommandTableError> {
        let value = Value::decode_exact(reply)?;
        if let Value::Error(e) = &value {
            return Err(CommandTableError::ErrorReply(
                String::from_utf8_lossy(e).into_owned(),
            ));
        }
        let list = value
            .as_array()
            .ok_or_else(|| CommandTableError::Shape("not an array".into()))?;
        let mut table = KeyTable::default();
        for entry in list {
            table.add_entry(entry)?;
        }
        let builtin = KeyTable::builtin();
        for cmd in table.commands.values_mut() {
            if cmd.specs.is_empty() && cmd.flags.contains(CmdFlags::MOVABLEKEYS) {
                if let Some(b) = builtin.get(cmd.name.as_bytes()) {
                    cmd.specs = b.specs.clone();
                }
            }
        }
        table.mark_containers();
        Ok(table)
    }

    /// The table of common commands compiled into the proxy, for when the
    /// upstream's `COMMAND` is unavailable.
    pub fn builtin() -> &'static KeyTable {
        static TABLE: OnceLock<KeyTable> = OnceLock::new();
        TABLE.get_or_init(|| {
            let mut table = KeyTable::default();
            for b in builtin::COMMANDS {
                let cmd = CommandKeys {
                    name: b.name.to_string(),
                    arity: b.arity,
                    flags: CmdFlags::from_words(b.flags),
                    legacy: KeyPos {
                        first: b.legacy.0,
                        last: b.legacy.1,
                        step: b.legacy.2,
                    },
                    specs: b
                        .specs
                        .iter()
                        .map(|(flags, begin, find)| KeySpec {
                            flags: KeyFlags::from_words(flags),
                            begin: match *begin {
                                builtin::Begin::Index(i) => BeginSearch::Index(i),
                                builtin::Begin::Keyword(k, startfrom) => BeginSearch::Keyword {
                                    keyword: Cow::Borrowed(k.as_bytes()),
                                    startfrom,
                                },
                                builtin::Begin::Unknown => BeginSearch::Unknown,
                            },
                            find: *find,
                        })
                        .collect(),
                    container: false,
                    acl: AclCats::empty(),
                };
                table.commands.insert(b.name.as_bytes().to_vec(), cmd);
            }
            table.mark_containers();
            table
        })
    }

    pub fn len(&self) -> usize {
        self.commands.len()
    }

    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CommandKeys> {
        self.commands.values()
    }

    /// A command by name (`get`, `xinfo|stream`), case-insensitively.
    pub fn get(&self, name: &[u8]) -> Option<&CommandKeys> {
        let mut buf = [0u8; MAX_NAME];
        self.commands.get(lowercase(&mut buf, &[name])?)
    }

    /// The command (or, for a container, the subcommand) that `args` invokes.
    pub fn resolve<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<&CommandKeys, KeyError> {
        let name = args.first().ok_or(KeyError::Empty)?.as_ref();
        let cmd = self
            .get(name)
            .ok_or_else(|| KeyError::UnknownCommand(String::from_utf8_lossy(name).into_owned()))?;
        if !cmd.container {
            return Ok(cmd);
        }
        let Some(sub) = args.get(1).map(AsRef::as_ref) else {
            return Err(KeyError::Arity(cmd.name.clone()));
        };
        let mut buf = [0u8; MAX_NAME];
        lowercase(&mut buf, &[name, b"|", sub])
            .and_then(|full| self.commands.get(full))
            .ok_or_else(|| KeyError::UnknownSubcommand {
                command: cmd.name.to_ascii_uppercase(),
                sub: String::from_utf8_lossy(sub).into_owned(),
            })
    }

    /// Indices into `args` of the keys of the command `args` invokes
    /// (see [`CommandKeys::keys_of`]).
    pub fn keys_of<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Vec<usize>, KeyError> {
        self.resolve(args)?.keys_of(args)
    }

    fn add_entry(&mut self, entry: &Value) -> Result<(), CommandTableError> {
        // `COMMAND INFO` answers a nil for a name it does not know.
        if *entry == Value::Null {
            return Ok(());
        }
        let shape = |what: &str| CommandTableError::Shape(what.to_string());
        let items = entry
            .as_array()
            .filter(|a| a.len() >= 6)
            .ok_or_else(|| shape("command entry is not an array of at least 6"))?;
        let name = items[0]
            .as_bytes()
            .ok_or_else(|| shape("command name is not a string"))?
            .to_ascii_lowercase();
        let int = |v: &Value| v.as_int().and_then(|i| i32::try_from(i).ok());
        let int_field =
            |i: usize| int(&items[i]).ok_or_else(|| shape("command entry field is not an integer"));
        let flags = items[2]
            .as_array()
            .ok_or_else(|| shape("command flags are not an array"))?
            .iter()
            .filter_map(|f| CmdFlags::from_name(f.as_bytes()?))
            .fold(CmdFlags::empty(), |a, b| a | b);
        let specs = match items.get(8) {
            Some(v) => v
                .as_array()
                .ok_or_else(|| shape("key specs are not an array"))?
                .iter()
                .map(parse_key_spec)
                .collect(),
            None => Vec::new(),
        };
        let acl = match items.get(6).and_then(Value::as_array) {
            Some(cats) => cats
                .iter()
                .filter_map(|c| {
                    let c = c.as_bytes()?;
                    AclCats::from_name(c.strip_prefix(b"@").unwrap_or(c))
                })
                .fold(AclCats::empty(), |a, b| a | b),
            None => AclCats::empty(),
        };
        let cmd = CommandKeys {
            acl,
            name: String::from_utf8_lossy(&name).into_owned(),
            arity: int_field(1)?,
            flags,
            legacy: KeyPos {
                first: int_field(3)?,
                last: int_field(4)?,
                step: int_field(5)?,
            },
            specs,
            container: false,
        };
        self.commands.insert(name, cmd);
        if let Some(subs) = items.get(9) {
            for sub in subs
                .as_array()
                .ok_or_else(|| shape("subcommands are not an array"))?
            {
                self.add_entry(sub)?;
            }
        }
        Ok(())
    }

    /// A command is a container when some `name|sub` entry exists.
    fn mark_containers(&mut self) {
        let containers: Vec<Vec<u8>> = self
            .commands
            .keys()
            .filter_map(|k| k.iter().position(|&b| b == b'|').map(|i| k[..i].to_vec()))
            .collect();
        for c in containers {
            if let Some(cmd) = self.commands.get_mut(&c) {
                cmd.container = true;
            }
        }
    }
}

/// One key spec from its `COMMAND` map; parts that do not parse become `Unknown`.
fn parse_key_spec(v: &Value) -> KeySpec {
    let int = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_int)
            .and_then(|i| i32::try_from(i).ok())
    };
    let flags = v
        .get("flags")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| KeyFlags::from_name(f.as_bytes()?))
        .fold(KeyFlags::empty(), |a, b| a | b);
    let kind = |part: &Value| {
        part.get("type")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec)
    };
    let begin = v.get("begin_search").and_then(|b| {
        let spec = b.get("spec")?;
        match kind(b)?.as_slice() {
            b"index" => Some(BeginSearch::Index(int(spec, "index")?)),
            b"keyword" => Some(BeginSearch::Keyword {
                keyword: Cow::Owned(spec.get("keyword")?.as_bytes()?.to_vec()),
                startfrom: int(spec, "startfrom")?,
            }),
            _ => None,
        }
    });
    let find = v.get("find_keys").and_then(|f| {
        let spec = f.get("spec")?;
        match kind(f)?.as_slice() {
            b"range" => Some(FindKeys::Range {
                lastkey: int(spec, "lastkey")?,
                keystep: int(spec, "keystep")?,
                limit: int(spec, "limit")?,
            }),
            b"keynum" => Some(FindKeys::Keynum {
                keynumidx: int(spec, "keynumidx")?,
                firstkey: int(spec, "firstkey")?,
                keystep: int(spec, "keystep")?,
            }),
            _ => None,
        }
    });
    KeySpec {
        flags,
        begin: begin.unwrap_or(BeginSearch::Unknown),
        find: find.unwrap_or(FindKeys::Unknown),
    }
}

/// `parts` concatenated and lowercased into `buf`; `None` if too long.
fn lowercase<'b>(buf: &'b mut [u8; MAX_NAME], parts: &[&[u8]]) -> Option<&'b [u8]> {
    let mut len = 0;
    for p in parts {
        let dst = buf.get_mut(len..len + p.len())?;
        for (d, s) in dst.iter_mut().zip(p.iter()) {
            *d = s.to_ascii_lowercase();
        }
        len += p.len();
    }
    Some(&buf[..len])
}

#[cfg(test)]
mod tests;
