//! Byte-level commands (`STRLEN`, `GETRANGE`, `SUBSTR`, `LCS`, `HSTRLEN`,
//! `GETBIT`, `BITCOUNT`, `BITPOS`, `BITFIELD_RO`, `APPEND`, `SETRANGE`,
//! `SETBIT`, `BITFIELD`, `BITOP`) answered as Redis answers them for the
//! uncompressed value.
//!
//! Fast path, one round trip, when no value involved is compressed:
//! - readers: `MULTI`, `GETRANGE key 0 2` per key, the command, `EXEC`: the
//!   command's reply is Redis's own bytes.
//! - writers: the guard script, which runs the command only when no key holds
//!   an envelope (atomic), else answers a marker.
//!
//! Slow path, when a value is compressed: read the values (one `MULTI`),
//! restore them, run the command itself on temporary copies inside one
//! `MULTI` (copies made, command run, result read, copies deleted: no other
//! client ever sees them), so the reply is Redis's own. A writer then stores
//! the result with a compare-and-set script (the keys still hold what was
//! read; `KEEPTTL`), and starts again when another client wrote in between.
//!
//! The copies live next to the key: same hash tag, so the same cluster slot.

use super::envelope::{self, MAGIC};
use super::restore::{restore_error_text, GUARD_MARKER};
use super::table::ByteCmd;
use super::{show_key, Compressor};
use crate::metrics::Metrics;
use crate::protocol::encode;
use crate::protocol::request::parse_int;
use crate::protocol::ReplyScanner;
use crate::upstream::call::call;
use crate::upstream::conn::Conn;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs the command only when none of the first `ARGV[2]` keys holds a
/// string starting with the magic (`ARGV[1]`); the command is `ARGV[3..]`.
const GUARD: &str = "\
for i = 1, tonumber(ARGV[2]) do
  local k = KEYS[i]
  if redis.call('TYPE', k)['ok'] == 'string' and redis.call('GETRANGE', k, 0, 2) == ARGV[1] then
    return {ok='RESPITE-COMPRESSED'}
  end
end
return redis.pcall(unpack(ARGV, 3))";

/// Stores `ARGV[4]` (or deletes, when `ARGV[3]` is `0`) at the last key when
/// each of the first `ARGV[1]` keys still holds what was read: for key i,
/// `ARGV[3 + 2i]` is `1` when it existed and `ARGV[4 + 2i]` its bytes.
/// `ARGV[2]` is `keepttl` or `replace`. Answers 1 when stored, 0 on conflict.
const CAS: &str = "\
local n = tonumber(ARGV[1])
for i = 1, n do
  local cur = redis.call('GET', KEYS[i])
  if ARGV[3 + 2 * i] == '1' then
    if cur ~= ARGV[4 + 2 * i] then return 0 end
  elseif cur then return 0 end
end
local dest = KEYS[n + 1]
if ARGV[3] == '1' then
  if ARGV[2] == 'keepttl' then redis.call('SET', dest, ARGV[4], 'KEEPTTL')
  else redis.call('SET', dest, ARGV[4]) end
else redis.call('DEL', dest) end
return 1";

/// Attempts of a writer whose compare-and-set keeps losing to other clients.
const MAX_ATTEMPTS: usize = 8;

/// How a byte-level command was answered (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No compressed value involved: Redis ran the command itself.
    Native,
    /// Answered on restored values.
    Emulated,
    /// A value could not be restored, or the command could not be emulated.
    Refused,
}

/// One byte-level request.
#[derive(Debug)]
pub struct ByteOp {
    pub cmd: ByteCmd,
    /// The client's arguments, command name first.
    pub args: Vec<Bytes>,
    /// Cluster mode: temporary copies must share the key's hash slot.
    pub cluster: bool,
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::new();
    encode::command(&mut b, args);
    b.freeze()
}

fn error(msg: &str) -> Bytes {
    let mut b = BytesMut::new();
    encode::error(&mut b, msg);
    b.freeze()
}

/// The elements of an aggregate reply, or `None` when it is not one.
fn elements(reply: &Bytes) -> Option<Vec<Bytes>> {
    if !matches!(reply.first(), Some(b'*')) {
        return None;
    }
    let eol = reply.windows(2).position(|w| w == b"\r\n")?;
    let n = usize::try_from(parse_int(&reply[1..eol])?).ok()?;
    let mut pos = eol + 2;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = ReplyScanner::new().scan(reply.get(pos..)?).ok()??;
        out.push(reply.slice(pos..pos + len));
        pos += len;
    }
    Some(out)
}

/// A bulk reply's payload; `Ok(None)` for nil; `Err` for anything else.
fn bulk(elem: &Bytes) -> Result<Option<Bytes>, ()> {
    match elem.first() {
        Some(b'_') => Ok(None),
        Some(b'$') => {
            let eol = elem.windows(2).position(|w| w == b"\r\n").ok_or(())?;
            let n = parse_int(&elem[1..eol]).ok_or(())?;
            if n < 0 {
                return Ok(None);
            }
            let start = eol + 2;
            let end = start + n as usize;
            if end > elem.len() {
                return Err(());
            }
            Ok(Some(elem.slice(start..end)))
        }
        _ => Err(()),
    }
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-' | b'!'))
}

/// The hash tag that puts a temporary key in `key`'s slot, or `None` when no
/// name can (a key with `}` and no hash tag).
fn slot_tag(key: &[u8]) -> Option<&[u8]> {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(close) = key[open + 1..].iter().position(|&b| b == b'}') {
            if close > 0 {
                return Some(&key[open + 1..open + 1 + close]);
            }
        }
    }
    (!key.contains(&b'}')).then_some(key)
}

fn tmp_name(tag: &[u8], i: usize) -> Vec<u8> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = Vec::with_capacity(tag.len() + 48);
    name.push(b'{');
    name.extend_from_slice(tag);
    name.extend_from_slice(format!("}}__respite:tmp:{}:{n}:{i}", std::process::id()).as_bytes());
    name
}

/// Answer one byte-level command.
pub async fn run(op: ByteOp, conn: Conn, c: &Compressor, m: &Metrics) -> (Bytes, Outcome) {
    match run_inner(&op, &conn, c, m).await {
        Ok(r) => r,
        Err(msg) => (error(&msg), Outcome::Refused),
    }
}

async fn run_inner(
    op: &ByteOp,
    conn: &Conn,
    c: &Compressor,
    m: &Metrics,
) -> Result<(Bytes, Outcome), String> {
    let args: Vec<&[u8]> = op.args.iter().map(|a| &a[..]).collect();
    for _ in 0..MAX_ATTEMPTS {
        let fast = if op.cmd.writer {
            if wide_bitfield(&args) {
                // The guard script's Lua numbers are doubles: integers of
                // more than 53 bits would come back rounded. Redis itself
                // answers on the copies instead.
                None
            } else {
                guarded(op, &args, conn).await?
            }
        } else {
            checked(op, &args, conn, c).await?
        };
        if let Some(reply) = fast {
            return Ok((reply, Outcome::Native));
        }
        if let Some(done) = emulate(op, &args, conn, c, m).await? {
            return Ok((done, Outcome::Emulated));
        }
    }
    Err(format!(
        "ERR respite: {} on the compressed value of key '{}' kept conflicting with concurrent writes, try again",
        String::from_utf8_lossy(args[0]).to_uppercase(),
        show_key(args[op.cmd.keys[0]])
    ))
}

/// `BITFIELD` with a field wider than 53 bits (`i54`..`i64`, `u54`..`u63`),
/// whose values a Lua number cannot hold exactly.
fn wide_bitfield(args: &[&[u8]]) -> bool {
    args[0].eq_ignore_ascii_case(b"bitfield")
        && args[1..].iter().any(|a| {
            matches!(a.first(), Some(b'i' | b'I' | b'u' | b'U'))
                && std::str::from_utf8(&a[1..])
                    .ok()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|bits| bits > 53)
        })
}

/// The guard script running `args` (see [`GUARD`]).
pub fn guard_request(cmd: &ByteCmd, args: &[&[u8]]) -> Bytes {
    let mut keys: Vec<&[u8]> = cmd.keys.iter().map(|&i| args[i]).collect();
    let checked = keys.len().to_string();
    if let Some(d) = cmd.dest {
        keys.push(args[d]);
    }
    let nkeys = keys.len().to_string();
    let mut eval: Vec<&[u8]> = vec![b"EVAL", GUARD.as_bytes(), nkeys.as_bytes()];
    eval.extend(keys);
    eval.push(&MAGIC);
    eval.push(checked.as_bytes());
    eval.extend_from_slice(args);
    command(&eval)
}

/// Writers' fast path: the guard script; `None` when a value is compressed.
async fn guarded(op: &ByteOp, args: &[&[u8]], conn: &Conn) -> Result<Option<Bytes>, String> {
    let reply = call(conn, &[guard_request(&op.cmd, args)])
        .await
        .map_err(|e| e.to_string())?
        .pop()
        .unwrap_or_default();
    Ok((reply != GUARD_MARKER).then_some(reply))
}

/// Readers' fast path: prefixes and the command in one transaction; `None`
/// when a value is compressed.
async fn checked(
    op: &ByteOp,
    args: &[&[u8]],
    conn: &Conn,
    c: &Compressor,
) -> Result<Option<Bytes>, String> {
    let mut reqs = vec![command(&[b"MULTI"])];
    for &k in &op.cmd.keys {
        reqs.push(if op.cmd.hash_field {
            command(&[b"HGET", args[k], args[k + 1]])
        } else {
            command(&[b"GETRANGE", args[k], b"0", b"2"])
        });
    }
    reqs.push(command(args));
    reqs.push(command(&[b"EXEC"]));
    let replies = call(conn, &reqs).await.map_err(|e| e.to_string())?;
    let n = op.cmd.keys.len();
    // Queued-time errors (arity, syntax, CROSSSLOT, MOVED) are Redis's answer.
    for r in &replies[1..replies.len() - 1] {
        if is_error(r) {
            return Ok(Some(r.clone()));
        }
    }
    let exec = replies.last().cloned().unwrap_or_default();
    let Some(elems) = elements(&exec) else {
        return Ok(Some(exec));
    };
    let Some(native) = elems.get(n).cloned() else {
        return Ok(Some(exec));
    };
    let mut compressed = false;
    for (i, e) in elems[..n].iter().enumerate() {
        if let Ok(Some(v)) = bulk(e) {
            if envelope::is_envelope(&v) {
                compressed = true;
                if op.cmd.hash_field {
                    // HSTRLEN: the whole field came back; its length is the answer.
                    let key = args[op.cmd.keys[i]];
                    let restored = envelope::unpack(&v, c.max_decompressed)
                        .map_err(|e| restore_error_text(key, &e))?;
                    let mut b = BytesMut::new();
                    encode::int(&mut b, restored.len() as i64);
                    return Ok(Some(b.freeze()));
                }
            }
        }
    }
    Ok((!compressed || is_error(&native)).then_some(native))
}

/// Slow path: run the command on restored copies. `None` when a writer's
/// compare-and-set lost to another client (start again).
async fn emulate(
    op: &ByteOp,
    args: &[&[u8]],
    conn: &Conn,
    c: &Compressor,
    m: &Metrics,
) -> Result<Option<Bytes>, String> {
    let name = String::from_utf8_lossy(args[0]).to_uppercase();
    let first = args[op.cmd.keys[0]];
    // Distinct keys read, in order.
    let mut keys: Vec<&[u8]> = Vec::new();
    for &i in &op.cmd.keys {
        if !keys.contains(&args[i]) {
            keys.push(args[i]);
        }
    }
    // 1. Read the stored values, all at one instant.
    let mut reqs = vec![command(&[b"MULTI"])];
    reqs.extend(keys.iter().map(|k| command(&[b"GET", k])));
    reqs.push(command(&[b"EXEC"]));
    let replies = call(conn, &reqs).await.map_err(|e| e.to_string())?;
    if let Some(e) = replies.iter().find(|r| is_error(r)) {
        return Ok(Some(e.clone()));
    }
    let exec = replies.last().cloned().unwrap_or_default();
    let elems = elements(&exec).ok_or_else(|| String::from_utf8_lossy(&exec).trim().to_string())?;
    let mut stored: Vec<Option<Bytes>> = Vec::with_capacity(keys.len());
    for e in &elems {
        if is_error(e) {
            return Ok(Some(e.clone()));
        }
        stored.push(bulk(e).map_err(|_| "ERR respite: unexpected reply to GET".to_string())?);
    }
    // 2. Restore them.
    let mut values: Vec<Option<Bytes>> = Vec::with_capacity(keys.len());
    for (k, s) in keys.iter().zip(&stored) {
        values.push(match s {
            Some(s) => Some(
                match envelope::unpack(s, c.max_decompressed)
                    .map_err(|e| restore_error_text(k, &e))?
                {
                    std::borrow::Cow::Borrowed(_) if !envelope::is_envelope(s) => s.clone(),
                    v => Bytes::from(v.into_owned()),
                },
            ),
            None => None,
        });
    }
    // 3. Run the command on copies, in one transaction.
    // In cluster mode every key shares the first one's slot (Redis refused
    // the command on the fast path otherwise).
    let tag: &[u8] = if op.cluster {
        slot_tag(first).ok_or_else(|| {
            format!(
                "ERR respite: {name} cannot be emulated on the compressed value of key '{}' (no hash tag to place a copy next to it); list the key in compression.exclude to store it uncompressed",
                show_key(first)
            )
        })?
    } else {
        b"respite"
    };
    let tmps: Vec<Vec<u8>> = (0..keys.len()).map(|i| tmp_name(tag, i)).collect();
    let dest_key = op.cmd.dest.map(|d| args[d]);
    let dest_tmp = match dest_key {
        Some(d) => match keys.iter().position(|k| *k == d) {
            Some(i) => Some(tmps[i].clone()),
            None => Some(tmp_name(tag, keys.len())),
        },
        None => None,
    };
    let mut reqs = vec![command(&[b"MULTI"])];
    for (t, v) in tmps.iter().zip(&values) {
        if let Some(v) = v {
            reqs.push(command(&[b"SET", t, v]));
        }
    }
    let native_at = reqs.len() - 1;
    let mut native: Vec<&[u8]> = args.to_vec();
    for (i, a) in native.iter_mut().enumerate() {
        if op.cmd.keys.contains(&i) || op.cmd.dest == Some(i) {
            if let Some(j) = keys.iter().position(|k| k == a) {
                *a = &tmps[j];
            } else if let Some(t) = &dest_tmp {
                *a = t;
            }
        }
    }
    reqs.push(command(&native));
    if let Some(t) = &dest_tmp {
        reqs.push(command(&[b"GET", t]));
    }
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(tmps.iter().map(|t| &t[..]));
    if let Some(t) = &dest_tmp {
        del.push(t);
    }
    reqs.push(command(&del));
    reqs.push(command(&[b"EXEC"]));
    let replies = call(conn, &reqs).await.map_err(|e| e.to_string())?;
    if let Some(e) = replies[1..replies.len() - 1].iter().find(|r| is_error(r)) {
        return Ok(Some(e.clone()));
    }
    let exec = replies.last().cloned().unwrap_or_default();
    let elems = elements(&exec).ok_or_else(|| String::from_utf8_lossy(&exec).trim().to_string())?;
    let reply = elems.get(native_at).cloned().unwrap_or_default();
    Metrics::add(&m.compress_byte_ops, 1);
    if !op.cmd.writer || is_error(&reply) {
        return Ok(Some(reply));
    }
    // 4. A writer stores the result if nobody wrote in between.
    let new = elems
        .get(native_at + 1)
        .map(bulk)
        .transpose()
        .map_err(|_| "ERR respite: unexpected reply to GET".to_string())?
        .flatten();
    let dest = dest_key.unwrap_or(first);
    let packed = new.as_ref().map(|v| match c.pack(dest, v, m) {
        Some(p) => Bytes::from(p),
        None => v.clone(),
    });
    let n = keys.len().to_string();
    let mut cas: Vec<&[u8]> = vec![b"EVAL", CAS.as_bytes()];
    let nkeys = (keys.len() + 1).to_string();
    cas.push(nkeys.as_bytes());
    cas.extend(keys.iter().copied());
    cas.push(dest);
    cas.push(n.as_bytes());
    cas.push(if op.cmd.keep_ttl {
        b"keepttl"
    } else {
        b"replace"
    });
    cas.push(if packed.is_some() { b"1" } else { b"0" });
    cas.push(packed.as_deref().unwrap_or_default());
    for s in &stored {
        cas.push(if s.is_some() { b"1" } else { b"0" });
        cas.push(s.as_deref().unwrap_or_default());
    }
    let r = call(conn, &[command(&cas)])
        .await
        .map_err(|e| e.to_string())?
        .pop()
        .unwrap_or_default();
    match &r[..] {
        b":1\r\n" => Ok(Some(reply)),
        b":0\r\n" => Ok(None),
        _ => Ok(Some(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_keys_share_the_slot() {
        use crate::cluster::key_slot;
        for key in [&b"plain"[..], b"a{tag}b", b"{x", b"we{ird", b"{}x"] {
            if let Some(tag) = slot_tag(key) {
                assert_eq!(key_slot(&tmp_name(tag, 0)), key_slot(key), "{key:?}");
            }
        }
        assert_eq!(slot_tag(b"a}b"), None);
        assert_eq!(slot_tag(b"{}x}"), None);
    }

    #[test]
    fn splits_arrays() {
        let r = Bytes::from_static(b"*3\r\n:1\r\n$-1\r\n$2\r\nab\r\n");
        let e = elements(&r).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(bulk(&e[1]), Ok(None));
        assert_eq!(bulk(&e[2]), Ok(Some(Bytes::from_static(b"ab"))));
        assert!(bulk(&e[0]).is_err());
    }
}
