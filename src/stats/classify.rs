//! Reading a request and its reply for statistics: the keys of the request
//! ([`for_each_key`]) and what the reply says about them ([`outcome`]).
//!
//! What a command is (its counter id, whether it reads or writes, where its
//! keys are, its [`HitRule`]) is the command table's
//! ([`crate::command::table`]): names there are bounded, so the `cmd` label
//! of `/metrics` is; names a client makes up all count as `other`.

use crate::command::keys::KeyTable;

pub use crate::command::table::{HitRule, KeyRule};

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
