//! Replies with their values restored: every bulk string in a value position
//! that holds an envelope respite trusts is replaced by the original bytes,
//! so the client gets exactly what Redis returns for the uncompressed value.
//! Everything else (keys, field names, nils, errors, RESP3 types, values that
//! only look like an envelope) is copied as it came.
//!
//! A trusted envelope that cannot be restored turns the reply (or, inside
//! `EXEC`, that command's element) into an error naming the key: never nil,
//! never garbage.

use super::envelope::{self, EnvelopeError};
use super::table::Shape;
use super::{show_key, Compressor};
use crate::metrics::Metrics;
use crate::protocol::encode::itoa;
use crate::protocol::request::parse_int;
use crate::protocol::ReplyScanner;
use bytes::Bytes;

/// The reply of the writer guard script when a stored value begins with the
/// magic (compressed, or looking so).
pub const GUARD_MARKER: &[u8] = b"+RESPITE-COMPRESSED\r\n";
/// The reply of the writer guard script when the command would leave a value
/// beginning with the magic that it cannot store as an envelope itself.
pub const MAGIC_MARKER: &[u8] = b"+RESPITE-MAGIC\r\n";

/// Key names, for error messages.
#[derive(Debug, Clone)]
pub enum Keys {
    /// Every value belongs to this key (`GET`, `HMGET`, `HGETALL`).
    One(Bytes),
    /// Value i belongs to key i (`MGET`).
    Each(Vec<Vec<u8>>),
}

impl Keys {
    fn get(&self, i: usize) -> &[u8] {
        match self {
            Keys::One(k) => k,
            Keys::Each(ks) => ks.get(i).or(ks.last()).map_or(&[][..], |k| k),
        }
    }
}

/// How to restore one command's reply.
#[derive(Debug, Clone)]
pub struct Restorer {
    pub shape: Shape,
    pub keys: Keys,
}

/// What a command queued inside `MULTI` needs done to its `EXEC` element.
#[derive(Debug, Clone)]
pub enum TxEntry {
    /// Nothing: the element is copied.
    Plain,
    Restore(Restorer),
    /// A byte-level writer queued as the guard script: the marker means the
    /// value was compressed and the command did not run.
    /// `key` names the value read, `dest` the one written (the marker that
    /// the result would begin with the magic names `dest`).
    Guard {
        name: String,
        key: Vec<u8>,
        dest: Vec<u8>,
    },
    /// A hidden `GETRANGE key 0 2` queued before a byte-level reader: dropped
    /// from the array; when it shows the magic, the next `Native` is an error.
    Check {
        key: Vec<u8>,
    },
    /// A byte-level reader queued as it is, after its checks.
    Native {
        name: String,
    },
}

/// A restore that failed: the key and why.
struct Failed {
    key: Vec<u8>,
    err: EnvelopeError,
}

/// True when some bulk string of the reply starts with the magic. Walks the
/// reply's tokens, jumping over bulk payloads, so a large value costs no
/// more than a small one.
#[inline]
pub fn may_hold_envelope(reply: &[u8]) -> bool {
    let mut pos = 0;
    while pos < reply.len() {
        let t = reply[pos];
        let Some(eol) = reply[pos + 1..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + 1 + i)
        else {
            return false;
        };
        let after = eol + 1;
        if matches!(t, b'$' | b'!' | b'=') {
            let n = parse_int(&reply[pos + 1..eol.saturating_sub(1).max(pos + 1)]).unwrap_or(-1);
            if n < 0 {
                pos = after;
                continue;
            }
            if t == b'$' && reply[after..].starts_with(&envelope::MAGIC) {
                return true;
            }
            pos = after + n as usize + 2;
        } else {
            pos = after;
        }
    }
    false
}

/// `reply` with its values restored (`shape` says where they are).
pub fn restore(reply: Bytes, r: &Restorer, c: &Compressor, m: &Metrics) -> Bytes {
    if !may_hold_envelope(&reply) {
        return reply;
    }
    let mut out = Vec::with_capacity(reply.len() * 4);
    match restore_shape(&reply, 0, r, c, m, &mut out) {
        Ok(_) => out.into(),
        Err(f) => error_reply(&f, m),
    }
}

/// An `EXEC` reply with each element handled as its queued command needs.
pub fn restore_exec(reply: Bytes, entries: &[TxEntry], c: &Compressor, m: &Metrics) -> Bytes {
    let Some((n, mut pos)) = header(&reply, b"*") else {
        return reply;
    };
    if n != entries.len() {
        // Not the transaction we recorded (should not happen): leave it be.
        return reply;
    }
    let hidden = entries
        .iter()
        .filter(|e| matches!(e, TxEntry::Check { .. }))
        .count();
    let mut out = Vec::with_capacity(reply.len() * 2);
    out.push(b'*');
    out.extend_from_slice(itoa((n - hidden) as i64).as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut flagged: Option<Vec<u8>> = None;
    for e in entries {
        let Some(len) = element_len(&reply, pos) else {
            return reply;
        };
        let elem = &reply[pos..pos + len];
        match e {
            TxEntry::Plain => out.extend_from_slice(elem),
            TxEntry::Restore(r) => {
                let mut tmp = Vec::new();
                match restore_shape(elem, 0, r, c, m, &mut tmp) {
                    Ok(_) => out.extend_from_slice(&tmp),
                    Err(f) => out.extend_from_slice(&error_reply(&f, m)),
                }
            }
            TxEntry::Guard { name, key, dest } => {
                if elem == GUARD_MARKER {
                    out.extend_from_slice(&in_multi_error(name, key, m));
                } else if elem == MAGIC_MARKER {
                    out.extend_from_slice(&in_multi_magic_error(name, dest, m));
                } else {
                    out.extend_from_slice(elem);
                }
            }
            TxEntry::Check { key } => {
                if bulk_payload(elem).is_some_and(envelope::is_envelope) {
                    flagged.get_or_insert_with(|| key.clone());
                }
            }
            TxEntry::Native { name } => match flagged.take() {
                Some(key) => out.extend_from_slice(&in_multi_error(name, &key, m)),
                None => out.extend_from_slice(elem),
            },
        }
        pos += len;
    }
    out.into()
}

fn in_multi_error(name: &str, key: &[u8], m: &Metrics) -> Vec<u8> {
    Metrics::add(&m.compress_errors, 1);
    format!(
        "-ERR respite: {} inside MULTI cannot see the compressed value of key '{}'; \
         list the key in compression.exclude to store it uncompressed\r\n",
        name.to_uppercase(),
        show_key(key)
    )
    .into_bytes()
}

fn in_multi_magic_error(name: &str, key: &[u8], m: &Metrics) -> Vec<u8> {
    Metrics::add(&m.compress_errors, 1);
    format!(
        "-ERR respite: {} inside MULTI would leave key '{}' beginning with the compression \
         magic (F5 52 43), which only a write outside MULTI can store so that it reads back \
         exactly; the command did not run. Run it outside MULTI, or list the key in \
         compression.exclude\r\n",
        name.to_uppercase(),
        show_key(key)
    )
    .into_bytes()
}

fn error_reply(f: &Failed, m: &Metrics) -> Bytes {
    Metrics::add(&m.compress_errors, 1);
    Bytes::from(format!("-{}\r\n", restore_error_text(&f.key, &f.err)))
}

/// The error line (without `-` and CRLF) for a value that cannot be restored.
pub fn restore_error_text(key: &[u8], err: &EnvelopeError) -> String {
    format!(
        "ERR respite: the compressed value of key '{}' cannot be restored: {}",
        show_key(key),
        err
    )
}

/// Length of the element at `pos`.
fn element_len(buf: &[u8], pos: usize) -> Option<usize> {
    ReplyScanner::new().scan(buf.get(pos..)?).ok().flatten()
}

/// The count of an aggregate header of one of `types` at `pos`, and where its
/// elements start. Null and negative counts are `None`.
fn header(buf: &[u8], types: &[u8]) -> Option<(usize, usize)> {
    let t = *buf.first()?;
    if !types.contains(&t) {
        return None;
    }
    let eol = buf.windows(2).position(|w| w == b"\r\n")?;
    let n = parse_int(&buf[1..eol])?;
    usize::try_from(n).ok().map(|n| (n, eol + 2))
}

/// The payload of a bulk string element.
fn bulk_payload(elem: &[u8]) -> Option<&[u8]> {
    if elem.first() != Some(&b'$') {
        return None;
    }
    let eol = elem.windows(2).position(|w| w == b"\r\n")?;
    let n = usize::try_from(parse_int(&elem[1..eol])?).ok()?;
    elem.get(eol + 2..eol + 2 + n)
}

/// Copy the element at `pos`, restoring it when it is a bulk envelope.
fn value(
    buf: &[u8],
    pos: usize,
    key: &[u8],
    c: &Compressor,
    m: &Metrics,
    out: &mut Vec<u8>,
) -> Result<usize, Failed> {
    let len = element_len(buf, pos).unwrap_or(buf.len() - pos);
    let elem = &buf[pos..pos + len];
    match bulk_payload(elem) {
        Some(p) if envelope::is_envelope(p) => {
            let restored = c.unpack(p, m).map_err(|err| Failed {
                key: key.to_vec(),
                err,
            })?;
            let Some(v) = restored else {
                out.extend_from_slice(elem);
                return Ok(pos + len);
            };
            Metrics::add(&m.compress_restores, 1);
            out.push(b'$');
            out.extend_from_slice(itoa(v.len() as i64).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&v);
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(elem),
    }
    Ok(pos + len)
}

fn copy(buf: &[u8], pos: usize, out: &mut Vec<u8>) -> usize {
    let len = element_len(buf, pos).unwrap_or(buf.len() - pos);
    out.extend_from_slice(&buf[pos..pos + len]);
    pos + len
}

/// Restore the reply of shape `r.shape` at `pos`; returns where it ends.
fn restore_shape(
    buf: &[u8],
    pos: usize,
    r: &Restorer,
    c: &Compressor,
    m: &Metrics,
    out: &mut Vec<u8>,
) -> Result<usize, Failed> {
    let here = &buf[pos..];
    match r.shape {
        Shape::Bulk => value(buf, pos, r.keys.get(0), c, m, out),
        Shape::Array => {
            let Some((n, start)) = header(here, b"*") else {
                return Ok(copy(buf, pos, out));
            };
            out.extend_from_slice(&here[..start]);
            let mut p = pos + start;
            for i in 0..n {
                p = value(buf, p, r.keys.get(i), c, m, out)?;
            }
            Ok(p)
        }
        Shape::Pairs => {
            let key = r.keys.get(0);
            if let Some((n, start)) = header(here, b"%") {
                out.extend_from_slice(&here[..start]);
                let mut p = pos + start;
                for _ in 0..n {
                    p = copy(buf, p, out);
                    p = value(buf, p, key, c, m, out)?;
                }
                return Ok(p);
            }
            let Some((n, start)) = header(here, b"*") else {
                return Ok(copy(buf, pos, out));
            };
            out.extend_from_slice(&here[..start]);
            let mut p = pos + start;
            for i in 0..n {
                // RESP3 HRANDFIELD ... WITHVALUES: an array of [field, value].
                if let Some((2, s)) = header(&buf[p..], b"*") {
                    out.extend_from_slice(&buf[p..p + s]);
                    p = copy(buf, p + s, out);
                    p = value(buf, p, key, c, m, out)?;
                } else if i % 2 == 1 {
                    p = value(buf, p, key, c, m, out)?;
                } else {
                    p = copy(buf, p, out);
                }
            }
            Ok(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompressionConfig;

    fn comp() -> std::sync::Arc<Compressor> {
        Compressor::new(&CompressionConfig {
            enabled: true,
            min_size: 16,
            exclude: vec![],
            max_decompressed_bytes: 1 << 20,
            secret: None,
            previous_secrets: vec![],
            accept_v1_envelopes: false,
        })
        .unwrap()
    }

    fn pack(v: &[u8]) -> Vec<u8> {
        envelope::pack(v, 16, &envelope::Seal::public()).unwrap()
    }

    fn bulk(v: &[u8]) -> Vec<u8> {
        let mut b = format!("${}\r\n", v.len()).into_bytes();
        b.extend_from_slice(v);
        b.extend_from_slice(b"\r\n");
        b
    }

    fn r(shape: Shape) -> Restorer {
        Restorer {
            shape,
            keys: Keys::One(Bytes::from_static(b"k")),
        }
    }

    #[test]
    fn restores_every_shape() {
        let c = comp();
        let m = Metrics::default();
        let v = b"abcabcabcabcabcabcabcabcabcabcabcabc".to_vec();
        let e = pack(&v);
        let cases: Vec<(Shape, Vec<u8>, Vec<u8>)> = vec![
            (Shape::Bulk, bulk(&e), bulk(&v)),
            (
                Shape::Array,
                [&b"*3\r\n"[..], &bulk(&e), b"$-1\r\n", &bulk(b"x")].concat(),
                [&b"*3\r\n"[..], &bulk(&v), b"$-1\r\n", &bulk(b"x")].concat(),
            ),
            (
                Shape::Pairs,
                [&b"*4\r\n"[..], &bulk(&e), &bulk(&e), &bulk(b"f"), &bulk(&e)].concat(),
                [&b"*4\r\n"[..], &bulk(&e), &bulk(&v), &bulk(b"f"), &bulk(&v)].concat(),
            ),
            (
                Shape::Pairs,
                [&b"%1\r\n"[..], &bulk(&e), &bulk(&e)].concat(),
                [&b"%1\r\n"[..], &bulk(&e), &bulk(&v)].concat(),
            ),
            (
                Shape::Pairs,
                [&b"*1\r\n*2\r\n"[..], &bulk(&e), &bulk(&e)].concat(),
                [&b"*1\r\n*2\r\n"[..], &bulk(&e), &bulk(&v)].concat(),
            ),
        ];
        for (shape, input, want) in cases {
            let got = restore(Bytes::from(input), &r(shape), &c, &m);
            assert_eq!(&got[..], &want[..], "{shape:?}");
        }
    }

    #[test]
    fn finds_envelopes_only_at_the_start_of_bulk_strings() {
        let e = pack(&b"abc".repeat(20));
        assert!(may_hold_envelope(&bulk(&e)));
        assert!(may_hold_envelope(
            &[&b"*2\r\n$-1\r\n"[..], &bulk(b"x\r\n"), &bulk(&e)].concat()
        ));
        assert!(!may_hold_envelope(&bulk(&[b"x", &e[..]].concat())));
        assert!(!may_hold_envelope(
            &[&b"%1\r\n+k\r\n:1\r\n"[..], &bulk(b"plain")].concat()
        ));
        assert!(!may_hold_envelope(b"$5\r\nab"));
    }

    #[test]
    fn untrusted_envelopes_are_copied_as_they_came() {
        let c = comp();
        let m = Metrics::default();
        let mut planted = envelope::MAGIC.to_vec();
        planted.extend_from_slice(&[1, 1, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let mut forged = pack(&b"abc".repeat(20));
        forged[10] ^= 1;
        for v in [planted, forged] {
            let reply = [&b"*2\r\n"[..], &bulk(&v), &bulk(&pack(&b"xyz".repeat(20)))].concat();
            let got = restore(Bytes::from(reply), &r(Shape::Array), &c, &m);
            let want = [&b"*2\r\n"[..], &bulk(&v), &bulk(&b"xyz".repeat(20))].concat();
            assert_eq!(&got[..], &want[..]);
        }
        assert_eq!(crate::metrics::get(&m.compress_untrusted), 2);
        assert_eq!(crate::metrics::get(&m.compress_errors), 0);
    }

    #[test]
    fn bad_envelopes_become_one_line_errors() {
        let c = comp();
        let m = Metrics::default();
        // Trusted, but claims more than max_decompressed_bytes.
        let bad = pack(&vec![b'a'; (1 << 20) + 1]);
        let keys = Keys::One(Bytes::from_static(b"we\r\nird"));
        let got = restore(
            Bytes::from(bulk(&bad)),
            &Restorer {
                shape: Shape::Bulk,
                keys,
            },
            &c,
            &m,
        );
        assert!(got.starts_with(b"-ERR respite: "), "{got:?}");
        assert_eq!(got.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(String::from_utf8_lossy(&got).contains("we??ird"));
        assert_eq!(crate::metrics::get(&m.compress_errors), 1);
    }

    #[test]
    fn exec_elements_are_handled_per_command() {
        let c = comp();
        let m = Metrics::default();
        let v = b"xyzxyzxyzxyzxyzxyzxyzxyzxyzxyzxyz".to_vec();
        let e = pack(&v);
        let reply = [
            &b"*5\r\n+OK\r\n"[..],
            &bulk(&e),
            &bulk(&e[..3]),
            b":5\r\n",
            GUARD_MARKER,
        ]
        .concat();
        let entries = vec![
            TxEntry::Plain,
            TxEntry::Restore(r(Shape::Bulk)),
            TxEntry::Check { key: b"k".to_vec() },
            TxEntry::Native {
                name: "strlen".into(),
            },
            TxEntry::Guard {
                name: "append".into(),
                key: b"k".to_vec(),
                dest: b"k".to_vec(),
            },
        ];
        let got = restore_exec(Bytes::from(reply), &entries, &c, &m);
        let s = String::from_utf8_lossy(&got);
        assert!(s.starts_with("*4\r\n+OK\r\n"), "{s}");
        assert!(s.contains(&String::from_utf8_lossy(&bulk(&v)).to_string()));
        assert!(s.contains("-ERR respite: STRLEN inside MULTI"));
        assert!(s.contains("-ERR respite: APPEND inside MULTI"));
    }
}
