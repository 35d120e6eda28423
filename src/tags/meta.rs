//! `COMMAND` replies for the tag commands, so client libraries and
//! `redis-cli` (which builds its hints from `COMMAND DOCS`) know them. The
//! session splices these into Redis's own reply for the other names.

use crate::protocol::{encode, Proto, Value};
use bytes::{Bytes, BytesMut};

/// One argument as `COMMAND DOCS` describes it.
struct Arg {
    name: &'static str,
    kind: &'static str,
    token: Option<&'static str>,
    optional: bool,
    multiple: bool,
    sub: &'static [Arg],
}

const fn arg(name: &'static str, kind: &'static str) -> Arg {
    Arg {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
        sub: &[],
    }
}

const fn tok(name: &'static str, kind: &'static str, token: &'static str) -> Arg {
    Arg {
        name,
        kind,
        token: Some(token),
        optional: false,
        multiple: false,
        sub: &[],
    }
}

const fn many(a: Arg) -> Arg {
    Arg {
        multiple: true,
        ..a
    }
}

const fn opt_oneof(name: &'static str, sub: &'static [Arg]) -> Arg {
    Arg {
        name,
        kind: "oneof",
        token: None,
        optional: true,
        multiple: false,
        sub,
    }
}

const EXPIRATION: [Arg; 5] = [
    tok("seconds", "integer", "EX"),
    tok("milliseconds", "integer", "PX"),
    tok("unix-time-seconds", "unix-time", "EXAT"),
    tok("unix-time-milliseconds", "unix-time", "PXAT"),
    tok("keepttl", "pure-token", "KEEPTTL"),
];
const CONDITION: [Arg; 2] = [tok("nx", "pure-token", "NX"), tok("xx", "pure-token", "XX")];
const TAGSET_ARGS: [Arg; 5] = [
    arg("key", "key"),
    arg("value", "string"),
    opt_oneof("expiration", &EXPIRATION),
    opt_oneof("condition", &CONDITION),
    many(tok("tag", "string", "TAGS")),
];
const TAGADD_ARGS: [Arg; 2] = [arg("key", "key"), many(arg("tag", "string"))];
const TAGINVAL_ARGS: [Arg; 1] = [many(arg("tag", "string"))];
const TAGKEYS_ARGS: [Arg; 1] = [arg("tag", "string")];
const TAGSOF_ARGS: [Arg; 1] = [arg("key", "key")];

struct Info {
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    /// First key, last key, step.
    keys: (i64, i64, i64),
    acl: &'static [&'static str],
    summary: &'static str,
    complexity: &'static str,
    args: &'static [Arg],
}

const INFOS: [Info; 5] = [
    Info {
        name: "tagset",
        arity: -5,
        flags: &["write", "denyoom"],
        keys: (1, 1, 1),
        acl: &["@write", "@string", "@slow"],
        summary: "Sets the string value of a key (as SET) and registers the key under tags (respite).",
        complexity: "O(N) where N is the number of tags.",
        args: &TAGSET_ARGS,
    },
    Info {
        name: "tagadd",
        arity: -3,
        flags: &["write", "denyoom"],
        keys: (1, 1, 1),
        acl: &["@write", "@slow"],
        summary: "Registers an existing key under more tags; returns how many were new (respite).",
        complexity: "O(N) where N is the number of tags.",
        args: &TAGADD_ARGS,
    },
    Info {
        name: "taginval",
        arity: -2,
        flags: &["write"],
        keys: (0, 0, 0),
        acl: &["@write", "@keyspace", "@slow"],
        summary: "Deletes every key registered under any of the tags; returns the number deleted (respite).",
        complexity: "O(N) where N is the number of keys under the tags.",
        args: &TAGINVAL_ARGS,
    },
    Info {
        name: "tagkeys",
        arity: 2,
        flags: &["readonly"],
        keys: (0, 0, 0),
        acl: &["@read", "@keyspace", "@slow"],
        summary: "Returns the live keys registered under a tag (respite).",
        complexity: "O(N) where N is the number of keys under the tag.",
        args: &TAGKEYS_ARGS,
    },
    Info {
        name: "tagsof",
        arity: 2,
        flags: &["readonly"],
        keys: (1, 1, 1),
        acl: &["@read", "@keyspace", "@fast"],
        summary: "Returns the tags a key is registered under (respite).",
        complexity: "O(N) where N is the number of tags of the key.",
        args: &TAGSOF_ARGS,
    },
];

fn find(name: &[u8]) -> Option<&'static Info> {
    INFOS
        .iter()
        .find(|i| i.name.as_bytes().eq_ignore_ascii_case(name))
}

pub fn is_tag_name(name: &[u8]) -> bool {
    find(name).is_some()
}

pub fn names() -> impl Iterator<Item = &'static str> {
    INFOS.iter().map(|i| i.name)
}

pub fn count() -> usize {
    INFOS.len()
}

/// `COMMAND INFO` entry for a tag command (None for other names).
pub fn info(name: &[u8], out: &mut BytesMut) -> bool {
    let Some(i) = find(name) else {
        return false;
    };
    encode::array(out, 10);
    encode::bulk(out, i.name.as_bytes());
    encode::int(out, i.arity);
    encode::array(out, i.flags.len());
    for f in i.flags {
        encode::simple(out, f);
    }
    encode::int(out, i.keys.0);
    encode::int(out, i.keys.1);
    encode::int(out, i.keys.2);
    encode::array(out, i.acl.len());
    for a in i.acl {
        encode::simple(out, a);
    }
    encode::array(out, 0); // tips
    encode::array(out, 0); // key specs
    encode::array(out, 0); // subcommands
    true
}

/// `COMMAND DOCS` pair (name, doc map) for a tag command.
pub fn docs(name: &[u8], proto: Proto, out: &mut BytesMut) -> bool {
    let Some(i) = find(name) else {
        return false;
    };
    encode::bulk(out, i.name.as_bytes());
    encode::map(out, proto, 5);
    encode::bulk(out, b"summary");
    encode::bulk(out, i.summary.as_bytes());
    encode::bulk(out, b"since");
    encode::bulk(out, b"1.0.0");
    encode::bulk(out, b"group");
    encode::bulk(out, b"generic");
    encode::bulk(out, b"complexity");
    encode::bulk(out, i.complexity.as_bytes());
    encode::bulk(out, b"arguments");
    args(i.args, proto, out);
    true
}

fn args(list: &[Arg], proto: Proto, out: &mut BytesMut) {
    encode::array(out, list.len());
    for a in list {
        let mut n = 2;
        n += a.token.is_some() as usize;
        let flags: Vec<&str> = [(a.optional, "optional"), (a.multiple, "multiple")]
            .iter()
            .filter(|f| f.0)
            .map(|f| f.1)
            .collect();
        n += !flags.is_empty() as usize;
        n += !a.sub.is_empty() as usize;
        n += (a.kind == "key") as usize;
        encode::map(out, proto, n);
        encode::bulk(out, b"name");
        encode::bulk(out, a.name.as_bytes());
        encode::bulk(out, b"type");
        encode::bulk(out, a.kind.as_bytes());
        if a.kind == "key" {
            encode::bulk(out, b"key_spec_index");
            encode::int(out, 0);
        }
        if let Some(t) = a.token {
            encode::bulk(out, b"token");
            encode::bulk(out, t.as_bytes());
        }
        if !flags.is_empty() {
            encode::bulk(out, b"flags");
            encode::array(out, flags.len());
            for f in flags {
                encode::simple(out, f);
            }
        }
        if !a.sub.is_empty() {
            encode::bulk(out, b"arguments");
            args(a.sub, proto, out);
        }
    }
}

/// The elements of an aggregate reply: (header count, raw elements). A RESP3
/// map counts pairs and yields 2 elements per pair.
pub fn elements(reply: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let kind = *reply.first()?;
    let end = reply.windows(2).position(|w| w == b"\r\n")?;
    let n: i64 = std::str::from_utf8(&reply[1..end]).ok()?.parse().ok()?;
    let n = if kind == b'%' { n * 2 } else { n.max(0) };
    let mut pos = end + 2;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let (_, len) = Value::decode(&reply[pos..]).ok()??;
        out.push(&reply[pos..pos + len]);
        pos += len;
    }
    Some((kind, out))
}

/// Rebuild an aggregate of `kind` from raw elements.
pub fn aggregate(kind: u8, items: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    let n = if kind == b'%' {
        items.len() / 2
    } else {
        items.len()
    };
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for i in items {
        out.extend_from_slice(i);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_and_info_decode_as_resp() {
        for proto in [Proto::Resp2, Proto::Resp3] {
            for name in names() {
                let mut b = BytesMut::new();
                assert!(docs(name.as_bytes(), proto, &mut b));
                let (_, n) = Value::decode(&b).unwrap().unwrap();
                let (_, m) = Value::decode(&b[n..]).unwrap().unwrap();
                assert_eq!(n + m, b.len());
                let mut b = BytesMut::new();
                assert!(info(name.as_bytes(), &mut b));
                Value::decode_exact(&b).unwrap();
            }
        }
        let whole = aggregate(b'*', &[b"$1\r\na\r\n", b":1\r\n"]);
        let (k, items) = elements(&whole).unwrap();
        assert_eq!((k, items.len()), (b'*', 2));
    }
}
