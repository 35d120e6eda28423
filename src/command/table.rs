//! The command table: one entry per command name with everything the proxy
//! asks about a command, looked up once per request ([`classify`]) and
//! carried with it (`Req::cmd` in the session).
//!
//! Each aspect is written in one list below and interpreted by its consumer:
//! - [`Kind`]: how the session handles it (`server::session`);
//! - key positions for statistics ([`KeyRule`], from the built-in key table,
//!   [`KeyTable::builtin`]); routing by slot searches the key specs of the
//!   table in use, the upstream's `COMMAND` reply in cluster mode (see
//!   [`super::keys`]);
//! - [`Compress`]: the compression class (`compress::table::role`);
//! - statistics: the counter id, read/write, [`HitRule`] (`stats`);
//! - [`Cluster`]: the cluster policy and reply merge (`server::session::cluster`);
//! - [`Near`]: the near-cache class (issue 19; nothing is cached yet).
//!
//! Names not in the table get [`Info`] number 0 ([`unknown`]): forwarded as
//! they are, counted as `other`, routed by whatever keys the key table finds.

use super::keys::{AclCats, CmdFlags, KeyTable};
use super::{Kind, Local, NameMap, Oob, TagCmd, Tx};
use std::sync::OnceLock;

/// Command names this long or longer are not in the table (the longest,
/// `georadiusbymember_ro`, has 20 bytes; a test checks).
const MAX_NAME: usize = 24;

/// Everything the proxy knows about one command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Lowercase name; `other` for [`unknown`].
    pub name: &'static str,
    /// Index in the table (0: unknown).
    pub id: u16,
    pub kind: Kind,
    /// Statistics: the per-command counter this command counts in: its own
    /// id for the bounded set of names `/metrics` labels, else 0 (`other`).
    pub stat: u16,
    /// Statistics: the command reads / writes its keys.
    pub read: bool,
    pub write: bool,
    /// Statistics: where the keys are.
    pub keys: KeyRule,
    /// Statistics: how the reply tells a hit from a miss.
    pub hit: HitRule,
    pub compress: Compress,
    pub cluster: Cluster,
    pub near: Near,
}

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

/// Where a command's keys are (for statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    None,
    /// first, last (negative: from the end), step.
    Range(i32, i32, i32),
    /// Movable keys or subcommands: ask the key table.
    Search,
}

/// The compression class: which arguments carry values to compress, which
/// replies carry values to restore, which commands look at a value's bytes.
/// `compress::table::role` reads the arguments (arity, `GET`, `WITHVALUES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    None,
    /// `SET key value [... GET]`.
    Set,
    /// `SETNX key value`.
    SetNx,
    /// `GETSET key value`.
    GetSet,
    /// `SETEX`/`PSETEX key ttl value`.
    SetEx,
    /// `MSET`/`MSETNX key value [key value ...]`.
    MSet,
    /// `HSET`/`HMSET key field value [field value ...]`.
    HSet,
    /// `HSETNX key field value`.
    HSetNx,
    /// One value back: `GET`, `GETDEL`, `GETEX`, `HGET`.
    Get,
    /// `MGET`: one value per key.
    MGet,
    /// An array of one key's values: `HMGET`, `HVALS`.
    HMGet,
    /// `HGETALL`: field/value pairs.
    HGetAll,
    /// `HRANDFIELD key count WITHVALUES`: field/value pairs.
    HRandField,
    /// Byte-level reads of one string value.
    Strlen,
    GetRange,
    GetBit,
    /// `BITCOUNT`, `BITPOS`, `BITFIELD_RO`.
    BitRead,
    Lcs,
    HStrlen,
    /// Byte-level writes (read-modify-write of one string value).
    Append,
    SetRange,
    SetBit,
    BitField,
    BitOp,
}

/// How a command goes to a Redis Cluster, and how replies merge. The
/// policy of every command not routed by its key is listed in [`CLUSTER`]
/// with the reason for it; `docs/cluster.md` carries the same list
/// ([`cluster_doc`], a test keeps the two equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    /// To the primary of its keys' slot; keys in several slots get
    /// `CROSSSLOT`; without keys, to one primary chosen per session.
    Slot,
    /// As [`Cluster::Slot`], but keys in several slots are split into one
    /// command per slot and the replies merged as `Split` says.
    Split(Split),
    /// Keyless: sent to every serving primary, replies merged.
    AllPrimaries(Merge),
    /// Keyless: sent to every node, primaries and replicas, replies merged.
    AllNodes(Merge),
    /// Keyless: sent to every serving primary on its control connection
    /// (out of band: it must reach a node busy with a script), merged.
    AllPrimariesOutOfBand(Merge),
    /// Keyless: one fixed node (the primary serving slot 0, else the first
    /// serving primary), so every client reads the same node.
    Fixed,
    /// By subcommand (the second argument, case-insensitively); the
    /// subcommands not listed follow [`Cluster::Slot`].
    Sub(&'static [(&'static str, Cluster)]),
    /// `INFO`: every primary, additive fields summed (`router::info`).
    Info,
    /// `SCAN`: the cursor names the node and that node's cursor.
    Scan,
    /// `CLUSTER INFO` and `CLUSTER KEYSLOT` answered by respite as one node.
    ClusterCmd,
    /// Answered `+OK` by respite: connection flags of cluster clients.
    Ok,
}

/// How the parts of a split command merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `MGET`: the values back in argument order.
    Scatter,
    /// `MSET`: each key is followed by its value; `+OK` if all are.
    PairsAllOk,
    /// `DEL`, `EXISTS`, ...: the counts summed.
    SumInt,
}

/// How the replies of several nodes merge (the first error wins unless
/// said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Integers summed.
    SumInt,
    /// Arrays concatenated.
    Concat,
    /// `+OK` only if every node says so, else the first error.
    AllOk,
    /// `+OK` if any node says so; else the first error other than
    /// `-NOTBUSY`; else `-NOTBUSY` (nothing was running anywhere).
    AnyOk,
    /// One of the non-nil replies, chosen at random (nil if all are).
    AnyNonNil,
    /// Arrays of name/count pairs: the counts summed position by position.
    SumPairs,
}

/// The near-cache class (issue 19). The near cache is not built: every
/// command is `None` until it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Near {
    None,
}

struct Table {
    by_name: NameMap<&'static [u8], u16>,
    infos: Vec<Info>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build)
}

/// The command `name` invokes, case-insensitively, without allocating;
/// [`unknown`] for names not in the table.
#[inline]
pub fn classify(name: &[u8]) -> &'static Info {
    let t = table();
    let mut lower = [0u8; MAX_NAME];
    if name.len() > lower.len() {
        return &t.infos[0];
    }
    for (d, s) in lower.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let id = t.by_name.get(&lower[..name.len()]).copied().unwrap_or(0);
    &t.infos[id as usize]
}

/// The entry of every name not in the table.
pub fn unknown() -> &'static Info {
    &table().infos[0]
}

/// The entry with id `id` (0 for ids out of range).
pub fn by_id(id: u16) -> &'static Info {
    let t = table();
    t.infos.get(id as usize).unwrap_or(&t.infos[0])
}

/// Number of entries, [`unknown`] included: ids are `0..len()`.
pub fn len() -> usize {
    table().infos.len()
}

/// Every entry, id order.
pub fn all() -> &'static [Info] {
    &table().infos
}

/// How the session handles a command: everything not listed is `Forward`.
/// One line per arm.
const KINDS: &[(&str, Kind)] = &[
    // Connection state the proxy keeps per client session.
    ("auth", Kind::Local(Local::Auth)),
    ("hello", Kind::Local(Local::Hello)),
    ("select", Kind::Local(Local::Select)),
    ("ping", Kind::Local(Local::Ping)),
    ("echo", Kind::Local(Local::Echo)),
    ("quit", Kind::Local(Local::Quit)),
    ("reset", Kind::Local(Local::Reset)),
    ("client", Kind::Local(Local::Client)),
    // The proxy's own admin and statistics commands.
    ("proxy", Kind::Local(Local::Proxy)),
    ("keystats", Kind::Local(Local::Stats)),
    ("hotkeys", Kind::Local(Local::Stats)),
    // The tag commands; `COMMAND` is answered for the tag names.
    ("tagset", Kind::Tag(TagCmd::Set)),
    ("tagadd", Kind::Tag(TagCmd::Add)),
    ("taginval", Kind::Tag(TagCmd::Inval)),
    ("tagkeys", Kind::Tag(TagCmd::Keys)),
    ("tagsof", Kind::Tag(TagCmd::Of)),
    ("command", Kind::Tag(TagCmd::Command)),
    // Block the connection: a connection of their own while they wait.
    ("blpop", Kind::Blocking),
    ("brpop", Kind::Blocking),
    ("brpoplpush", Kind::Blocking),
    ("blmove", Kind::Blocking),
    ("blmpop", Kind::Blocking),
    ("bzpopmin", Kind::Blocking),
    ("bzpopmax", Kind::Blocking),
    ("bzmpop", Kind::Blocking),
    ("wait", Kind::Blocking),
    ("waitaof", Kind::Blocking),
    // Block only with `BLOCK`.
    ("xread", Kind::BlockingIfArg("block")),
    ("xreadgroup", Kind::BlockingIfArg("block")),
    // Must reach a node busy with a script: its control connection.
    ("script", Kind::OutOfBand(Oob::Kill)),
    ("function", Kind::OutOfBand(Oob::Kill)),
    ("shutdown", Kind::OutOfBand(Oob::Shutdown)),
    // Transaction state lives on the connection: pinned.
    ("multi", Kind::Transaction(Tx::Multi)),
    ("exec", Kind::Transaction(Tx::Exec)),
    ("discard", Kind::Transaction(Tx::Discard)),
    ("watch", Kind::Transaction(Tx::Watch)),
    ("unwatch", Kind::Transaction(Tx::Unwatch)),
    // Turn the connection into a stream of frames without requests.
    ("subscribe", Kind::Passthrough),
    ("psubscribe", Kind::Passthrough),
    ("ssubscribe", Kind::Passthrough),
    ("unsubscribe", Kind::Passthrough),
    ("punsubscribe", Kind::Passthrough),
    ("sunsubscribe", Kind::Passthrough),
    ("monitor", Kind::Passthrough),
    // Replication would make the proxy a replica's primary: refused.
    ("sync", Kind::Refused(REPLICATION)),
    ("psync", Kind::Refused(REPLICATION)),
    ("replconf", Kind::Refused(REPLICATION)),
];

const REPLICATION: &str = "ERR replication commands are not proxied by respite";

/// Compression classes (see [`Compress`]).
const COMPRESS: &[(&str, Compress)] = &[
    // Writes whose values are compressed.
    ("set", Compress::Set),
    ("setnx", Compress::SetNx),
    ("getset", Compress::GetSet),
    ("setex", Compress::SetEx),
    ("psetex", Compress::SetEx),
    ("mset", Compress::MSet),
    ("msetnx", Compress::MSet),
    ("hset", Compress::HSet),
    ("hmset", Compress::HSet),
    ("hsetnx", Compress::HSetNx),
    // Reads whose replies are restored.
    ("get", Compress::Get),
    ("getdel", Compress::Get),
    ("getex", Compress::Get),
    ("hget", Compress::Get),
    ("mget", Compress::MGet),
    ("hmget", Compress::HMGet),
    ("hvals", Compress::HMGet),
    ("hgetall", Compress::HGetAll),
    ("hrandfield", Compress::HRandField),
    // Look at a value's bytes: answered by the byte-level emulation.
    ("strlen", Compress::Strlen),
    ("getrange", Compress::GetRange),
    ("substr", Compress::GetRange),
    ("getbit", Compress::GetBit),
    ("bitcount", Compress::BitRead),
    ("bitpos", Compress::BitRead),
    ("bitfield_ro", Compress::BitRead),
    ("lcs", Compress::Lcs),
    ("hstrlen", Compress::HStrlen),
    ("append", Compress::Append),
    ("setrange", Compress::SetRange),
    ("setbit", Compress::SetBit),
    ("bitfield", Compress::BitField),
    ("bitop", Compress::BitOp),
];

/// Cluster policies other than [`Cluster::Slot`], one line per command:
/// name, policy, and why (the reason is also the `docs/cluster.md` text).
pub const CLUSTER: &[(&str, Cluster, &str)] = &[
    ("mget", Cluster::Split(Split::Scatter), "What cluster clients split by slot: values back in argument order."),
    ("mset", Cluster::Split(Split::PairsAllOk), "What cluster clients split by slot: +OK once every part is."),
    ("del", Cluster::Split(Split::SumInt), "What cluster clients split by slot: the counts summed."),
    ("unlink", Cluster::Split(Split::SumInt), "What cluster clients split by slot: the counts summed."),
    ("exists", Cluster::Split(Split::SumInt), "What cluster clients split by slot: the counts summed."),
    ("touch", Cluster::Split(Split::SumInt), "What cluster clients split by slot: the counts summed."),
    ("dbsize", Cluster::AllPrimaries(Merge::SumInt), "Every primary holds a share of the keyspace."),
    ("keys", Cluster::AllPrimaries(Merge::Concat), "Every primary holds a share of the keyspace."),
    ("randomkey", Cluster::AllPrimaries(Merge::AnyNonNil), "Nil only when no primary holds a key."),
    ("info", Cluster::Info, "One server's counters are the sums over the primaries (fields listed below)."),
    ("cluster", Cluster::ClusterCmd, "The cluster seen as one node: CLUSTER INFO and KEYSLOT answered by respite."),
    ("flushall", Cluster::AllPrimaries(Merge::AllOk), "Writes to the whole keyspace."),
    ("flushdb", Cluster::AllPrimaries(Merge::AllOk), "Writes to the whole keyspace."),
    ("script", Cluster::Sub(&[
        ("load", Cluster::AllPrimaries(Merge::AllOk)),
        ("flush", Cluster::AllPrimaries(Merge::AllOk)),
        ("kill", Cluster::AllPrimariesOutOfBand(Merge::AnyOk)),
    ]), "Every node must know a script; a busy script may run on any primary."),
    ("function", Cluster::Sub(&[
        ("load", Cluster::AllPrimaries(Merge::AllOk)),
        ("flush", Cluster::AllPrimaries(Merge::AllOk)),
        ("delete", Cluster::AllPrimaries(Merge::AllOk)),
        ("restore", Cluster::AllPrimaries(Merge::AllOk)),
        ("kill", Cluster::AllPrimariesOutOfBand(Merge::AnyOk)),
    ]), "Every node must know a library; a busy function may run on any primary."),
    ("config", Cluster::Sub(&[
        ("set", Cluster::AllNodes(Merge::AllOk)),
        ("resetstat", Cluster::AllNodes(Merge::AllOk)),
        ("rewrite", Cluster::AllNodes(Merge::AllOk)),
        ("get", Cluster::Fixed),
    ]), "One server has one configuration: changed on every node (replicas too, for a failover), read from one."),
    ("slowlog", Cluster::Sub(&[
        ("get", Cluster::AllPrimaries(Merge::Concat)),
        ("len", Cluster::AllPrimaries(Merge::SumInt)),
        ("reset", Cluster::AllPrimaries(Merge::AllOk)),
    ]), "Slow commands run on every primary (entry ids are per node)."),
    ("publish", Cluster::Fixed, "The node respite's SUBSCRIBE/PSUBSCRIBE use: the count is of respite's subscribers, as one server's."),
    ("pubsub", Cluster::Sub(&[
        ("channels", Cluster::Fixed),
        ("numsub", Cluster::Fixed),
        ("numpat", Cluster::Fixed),
        ("shardchannels", Cluster::AllPrimaries(Merge::Concat)),
        ("shardnumsub", Cluster::AllPrimaries(Merge::SumPairs)),
    ]), "Subscriptions live on the fixed node; shard channels on the node of their slot."),
    ("time", Cluster::Fixed, "One clock for every client."),
    ("lastsave", Cluster::Fixed, "One node's save time, the same for every client."),
    ("memory", Cluster::Sub(&[("stats", Cluster::Fixed), ("doctor", Cluster::Fixed)]), "One node's allocator report, the same for every client (MEMORY USAGE goes by its key)."),
    ("latency", Cluster::Fixed, "One node's latency monitor, the same for every client."),
    ("debug", Cluster::Fixed, "A debugging aid: one fixed node."),
    ("scan", Cluster::Scan, "The cursor names the node (low 10 bits) and that node's cursor."),
    ("readonly", Cluster::Ok, "Connection flags of cluster clients: meaningless through one address."),
    ("readwrite", Cluster::Ok, "Connection flags of cluster clients: meaningless through one address."),
    ("asking", Cluster::Ok, "Connection flags of cluster clients: meaningless through one address."),
];

/// The policy of a request whose arguments are `args`: [`Cluster::Sub`]
/// resolved by its subcommand.
pub fn cluster_policy(info: &Info, args: &[&[u8]]) -> Cluster {
    match info.cluster {
        Cluster::Sub(subs) => args
            .get(1)
            .and_then(|a| {
                subs.iter()
                    .find(|(s, _)| a.eq_ignore_ascii_case(s.as_bytes()))
                    .map(|(_, p)| *p)
            })
            .unwrap_or(Cluster::Slot),
        p => p,
    }
}

/// How a policy reads in the docs.
fn describe(p: Cluster) -> String {
    let merge = |m: Merge| match m {
        Merge::SumInt => "integers summed",
        Merge::Concat => "arrays concatenated",
        Merge::AllOk => "+OK if all succeed, else the first error",
        Merge::AnyOk => "+OK if any succeeds, -NOTBUSY only if none was busy",
        Merge::AnyNonNil => "a non-nil reply at random",
        Merge::SumPairs => "counts summed per name",
    };
    match p {
        Cluster::Slot => "one primary chosen per client".into(),
        Cluster::Split(_) => "split per slot, merged".into(),
        Cluster::AllPrimaries(m) => format!("every primary; {}", merge(m)),
        Cluster::AllNodes(m) => format!("every node (primaries and replicas); {}", merge(m)),
        Cluster::AllPrimariesOutOfBand(m) => {
            format!("every primary, out of band; {}", merge(m))
        }
        Cluster::Fixed => "the fixed node (the primary of slot 0)".into(),
        Cluster::Sub(subs) => {
            let mut parts: Vec<String> = subs
                .iter()
                .map(|(s, p)| format!("{}: {}", s.to_ascii_uppercase(), describe(*p)))
                .collect();
            parts.push("other subcommands: one primary chosen per client".into());
            parts.join("<br>")
        }
        Cluster::Info => "every primary; additive fields summed".into(),
        Cluster::Scan => "every primary in turn (node in the cursor)".into(),
        Cluster::ClusterCmd => {
            "INFO, KEYSLOT answered by respite; others one primary chosen per client".into()
        }
        Cluster::Ok => "answered +OK by respite".into(),
    }
}

/// The markdown table of every keyless command's cluster policy (every
/// command of the table without keys), as `docs/cluster.md` carries it
/// between its table markers.
pub fn cluster_doc() -> String {
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for info in all().iter().skip(1) {
        if info.keys != KeyRule::None {
            continue;
        }
        let listed = CLUSTER.iter().find(|c| c.0 == info.name);
        let (policy, why) = match (listed, info.kind) {
            (Some(&(_, p, why)), _) => (describe(p), why.to_string()),
            (None, Kind::Local(_)) => (
                "answered by respite".into(),
                "Connection state and respite's own commands, kept per client.".into(),
            ),
            (None, Kind::Tag(TagCmd::Command)) => (
                "one primary chosen per client; respite adds its tag commands".into(),
                "Every node has the same command table.".into(),
            ),
            (None, Kind::Passthrough) if info.name == "monitor" => (
                "a pinned connection to the fixed node".into(),
                "Shows that node's commands only: a documented limitation.".into(),
            ),
            (None, Kind::Tag(_)) => (
                "respite's tag commands (docs/tags.md)".into(),
                "Tags are respite's own.".into(),
            ),
            (None, Kind::Passthrough) => (
                "a pinned connection to the fixed node (the primary of slot 0)".into(),
                "Where PUBLISH and PUBSUB go, so counts are one server's (SSUBSCRIBE goes by its channel's slot).".into(),
            ),
            (None, Kind::Blocking | Kind::BlockingIfArg(_)) => (
                "a pinned connection to the fixed node".into(),
                "It blocks its connection (see WAIT below).".into(),
            ),
            (None, Kind::Transaction(_)) => (
                "the transaction's node (its first key's)".into(),
                "A transaction runs on one node, as in Redis Cluster.".into(),
            ),
            (None, Kind::Refused(_)) => (
                "refused".into(),
                "Replication would make respite a replica's primary.".into(),
            ),
            (None, _) => (
                "one primary chosen per client".into(),
                "No cluster-wide meaning defined: one node's answer.".into(),
            ),
        };
        rows.push((info.name.to_ascii_uppercase(), policy, why));
    }
    rows.sort();
    let mut out = String::from("| Command | Policy | Why |\n|---|---|---|\n");
    for (name, policy, why) in rows {
        out.push_str(&format!("| `{name}` | {policy} | {why} |\n"));
    }
    out
}

/// Statistics hit rules (see [`HitRule`]).
const HITS: &[(HitRule, &[&str])] = &[
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
/// (every command of the built-in key table has one too). Other names count
/// as `other`, so the `cmd` label of `/metrics` stays bounded whatever
/// names clients send.
const STAT_KEYLESS: &[&str] = &[
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

fn blank(name: &'static str, id: u16) -> Info {
    Info {
        name,
        id,
        kind: Kind::Forward,
        stat: 0,
        read: false,
        write: false,
        keys: KeyRule::None,
        hit: HitRule::None,
        compress: Compress::None,
        cluster: Cluster::Slot,
        near: Near::None,
    }
}

/// The entry of `name`, added blank if new.
fn entry<'t>(t: &'t mut Table, name: &'static str) -> &'t mut Info {
    let id = match t.by_name.get(name.as_bytes()) {
        Some(&id) => id,
        None => {
            let id = u16::try_from(t.infos.len()).expect("fewer than 65536 commands");
            t.by_name.insert(name.as_bytes(), id);
            t.infos.push(blank(name, id));
            id
        }
    };
    &mut t.infos[id as usize]
}

fn build() -> Table {
    let mut t = Table {
        by_name: NameMap::default(),
        infos: vec![blank("other", 0)],
    };
    for &(name, kind) in KINDS {
        entry(&mut t, name).kind = kind;
    }
    for &(name, class) in COMPRESS {
        entry(&mut t, name).compress = class;
    }
    for &(name, policy, _) in CLUSTER {
        entry(&mut t, name).cluster = policy;
    }
    // Statistics: every top-level command of the built-in key table, with
    // its flags and key positions, then the keyless names.
    for c in KeyTable::builtin().iter().filter(|c| !c.name.contains('|')) {
        let hit = HITS
            .iter()
            .find(|(_, names)| names.contains(&c.name.as_str()))
            .map_or(HitRule::None, |(r, _)| *r);
        let info = entry(&mut t, c.name.as_str());
        info.stat = info.id;
        info.hit = hit;
        // A lookup that also writes (GETDEL, GETEX) is both; SET's
        // optional GET does not make every SET a read.
        info.read = c.flags.contains(CmdFlags::READONLY) || hit != HitRule::None;
        info.write = c.flags.contains(CmdFlags::WRITE);
        info.keys = if c.container || c.flags.contains(CmdFlags::MOVABLEKEYS) {
            KeyRule::Search
        } else if c.legacy.first > 0 {
            KeyRule::Range(c.legacy.first, c.legacy.last, c.legacy.step.max(1))
        } else if !c.specs.is_empty() {
            KeyRule::Search
        } else {
            KeyRule::None
        };
    }
    for &name in STAT_KEYLESS {
        let info = entry(&mut t, name);
        info.stat = info.id;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_is_case_insensitive() {
        assert_eq!(classify(b"BLPOP").kind, Kind::Blocking);
        assert_eq!(classify(b"MuLtI").kind, Kind::Transaction(Tx::Multi));
        assert_eq!(classify(b"get").kind, Kind::Forward);
        assert_eq!(classify(b"GeT").name, "get");
        assert_eq!(classify(b"averyveryverylongcommandname").id, 0);
        assert_eq!(classify(b"nosuchcommand"), unknown());
        assert_eq!(classify(b"").id, 0);
    }

    #[test]
    fn only_the_kill_subcommand_goes_out_of_band() {
        let Kind::OutOfBand(kill) = classify(b"SCRIPT").kind else {
            panic!("SCRIPT is not out of band")
        };
        assert!(kill.applies(&[b"script", b"KILL"]));
        assert!(!kill.applies(&[b"script", b"load", b"return 1"]));
        assert!(!kill.applies(&[b"script", b"kill", b"extra"]));
        assert!(!kill.applies(&[b"script"]));
        assert_eq!(classify(b"function").kind, Kind::OutOfBand(Oob::Kill));
        let Kind::OutOfBand(shutdown) = classify(b"shutdown").kind else {
            panic!("SHUTDOWN is not out of band")
        };
        assert!(shutdown.applies(&[b"shutdown", b"nosave"]));
        assert!(shutdown.applies(&[b"shutdown"]));
    }

    #[test]
    fn every_name_fits_the_lookup_buffer() {
        for info in all() {
            assert!(info.name.len() <= MAX_NAME, "{}", info.name);
            assert_eq!(info.name, info.name.to_ascii_lowercase());
            assert_eq!(by_id(info.id), info);
            assert_eq!(classify(info.name.as_bytes()).id, info.id, "{}", info.name);
        }
        // Every name of the built-in key table is reachable.
        for c in KeyTable::builtin().iter().filter(|c| !c.name.contains('|')) {
            assert_ne!(classify(c.name.as_bytes()).id, 0, "{}", c.name);
        }
    }

    /// `docs/cluster.md` carries [`cluster_doc`] between its markers, and
    /// every field `INFO` sums.
    #[test]
    fn cluster_doc_is_the_table() {
        let doc = include_str!("../../docs/cluster.md");
        let start = "<!-- keyless-policies:start (generated by command::table::cluster_doc; a test checks) -->\n";
        let end = "<!-- keyless-policies:end -->";
        let a = doc.find(start).expect("start marker") + start.len();
        let b = doc.find(end).expect("end marker");
        let generated = cluster_doc();
        assert!(
            doc[a..b] == generated,
            "docs/cluster.md is out of date; put this between the markers:\n{generated}"
        );
        for f in crate::router::info::ADDITIVE {
            assert!(
                doc.contains(&format!("`{f}`")),
                "docs/cluster.md lacks INFO field {f}"
            );
        }
    }

    #[test]
    fn aspects() {
        let get = classify(b"GET");
        assert_eq!((get.read, get.write, get.hit), (true, false, HitRule::Nil));
        assert_eq!(get.keys, KeyRule::Range(1, 1, 1));
        assert_eq!(get.compress, Compress::Get);
        assert_eq!(get.stat, get.id);
        let set = classify(b"set");
        assert!(set.write && !set.read);
        assert_eq!(classify(b"mset").keys, KeyRule::Range(1, -1, 2));
        assert_eq!(classify(b"mset").cluster, Cluster::Split(Split::PairsAllOk));
        assert_eq!(classify(b"eval").keys, KeyRule::Search);
        assert_ne!(classify(b"ping").stat, 0);
        // In the table for its kind, but counted as `other`.
        assert_eq!(classify(b"tagset").kind, Kind::Tag(TagCmd::Set));
        assert_eq!(classify(b"tagset").stat, 0);
        assert_eq!(unknown().name, "other");
        assert_eq!(unknown().stat, 0);
    }
}

// ---- ACL categories ----

/// ACL categories of the proxy's own commands, which Redis does not know;
/// every other command's come from the upstream's `COMMAND` reply
/// ([`learn_upstream`]). A user with `+@read` may look tags up but not set
/// or invalidate them.
const OWN_ACL: &[(&str, &str)] = &[
    ("tagset", "@write @string @slow"),
    ("tagadd", "@write @slow"),
    ("taginval", "@keyspace @write @slow"),
    ("tagkeys", "@read @slow"),
    ("tagsof", "@read @slow"),
    ("keystats", "@read @slow"),
    ("hotkeys", "@admin @slow @dangerous"),
    ("proxy", "@admin @slow @dangerous"),
];

/// Key positions of the proxy's own commands for ACL key patterns: the
/// first key index, and whether every later argument is a key too.
const OWN_KEYS: &[(&str, usize, bool)] = &[
    ("tagset", 1, false),
    ("tagadd", 1, false),
    ("tagsof", 1, false),
    ("keystats", 1, true),
];

/// The upstream's own command table (`COMMAND`), once known.
static UPSTREAM: parking_lot::RwLock<Option<std::sync::Arc<KeyTable>>> =
    parking_lot::RwLock::new(None);

/// Keep the table parsed from the upstream's `COMMAND` reply: ACL
/// categories, arities and key positions for the proxy's user rules.
pub fn learn_upstream(table: std::sync::Arc<KeyTable>) {
    *UPSTREAM.write() = Some(table);
}

/// The upstream's command table, if it was learned.
pub fn upstream() -> Option<std::sync::Arc<KeyTable>> {
    UPSTREAM.read().clone()
}

/// What the ACL check needs of one request.
#[derive(Debug)]
pub enum AclLookup {
    /// One of the proxy's own commands.
    Own {
        name: &'static str,
        cats: AclCats,
        keys: Vec<usize>,
    },
    /// A Redis command: its full name (`config|set`), categories and keys.
    Redis {
        name: String,
        cats: AclCats,
        keys: Vec<usize>,
    },
    /// Redis answers it with an error before any ACL check (unknown
    /// command or subcommand, wrong arity): forwarded as it is.
    RedisRejects,
    /// The upstream's command table is not known yet.
    NotYetKnown,
}

/// The ACL view of the command `args` invokes.
pub fn acl_lookup(info: &Info, args: &[&[u8]]) -> AclLookup {
    if let Some((name, words)) = OWN_ACL.iter().find(|(n, _)| *n == info.name) {
        let keys = match OWN_KEYS.iter().find(|(n, _, _)| n == name) {
            Some(&(_, first, rest)) if args.len() > first => {
                if rest {
                    (first..args.len()).collect()
                } else {
                    vec![first]
                }
            }
            _ => Vec::new(),
        };
        return AclLookup::Own {
            name,
            cats: AclCats::from_at_words(words),
            keys,
        };
    }
    let Some(table) = upstream() else {
        return AclLookup::NotYetKnown;
    };
    let Ok(cmd) = table.resolve(args) else {
        return AclLookup::RedisRejects;
    };
    if !cmd.arity_ok(args.len()) {
        return AclLookup::RedisRejects;
    }
    let keys = cmd.keys_of(args).unwrap_or_default();
    AclLookup::Redis {
        name: cmd.name.clone(),
        cats: cmd.acl,
        keys,
    }
}
