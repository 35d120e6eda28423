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
use super::restore::{restore_error_text, GUARD_MARKER, MAGIC_MARKER};
use super::table::ByteCmd;
use super::{show_key, Compressor};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::protocol::encode;
use crate::protocol::request::parse_int;
use crate::protocol::ReplyScanner;
use crate::upstream::call::call;
use crate::upstream::conn::Conn;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The SHA1 of [`GUARD`], once a server answered `SCRIPT LOAD` with it.
static GUARD_SHA: OnceLock<Bytes> = OnceLock::new();

/// Runs a byte-level writer natively, atomically, unless that would be wrong:
///
/// - one of the first `ARGV[2]` keys holds a string starting with the magic
///   (`ARGV[1]`): answers `RESPITE-COMPRESSED` and changes nothing;
/// - when `ARGV[3]` is `1`, the command would leave the last key (its
///   destination) starting with the magic, bytes that must be stored as a
///   raw envelope to read back exactly: the command runs and the result is
///   replaced by the envelope `ARGV[4]`, which respite built for the one
///   result it can know in advance (`APPEND`, `SETRANGE`: the value's length
///   before is between `ARGV[5]` and `ARGV[6]`; `ARGV[7]` is the header
///   length); otherwise it answers `RESPITE-MAGIC` and changes nothing.
///
/// Whether the first 3 bytes become the magic is computed from the first 3
/// bytes before (`APPEND`, `SETRANGE`, `SETBIT`, `BITOP`); `BITFIELD` runs,
/// and is undone when they did (its written ranges are saved before). An
/// unparsable argument predicts nothing: Redis then refuses the command.
/// The command is `ARGV[8..]`.
const GUARD: &str = r"
local magic = ARGV[1]
-- The type and first 3 bytes of each key looked at, read once.
local seen = {}
local function look(k)
  local s = seen[k]
  if not s then
    s = {t = redis.call('TYPE', k)['ok'], p = ''}
    if s.t == 'string' then s.p = redis.call('GETRANGE', k, 0, 2) end
    seen[k] = s
  end
  return s
end
for i = 1, tonumber(ARGV[2]) do
  local s = look(KEYS[i])
  if s.t == 'string' and s.p == magic then return {ok='RESPITE-COMPRESSED'} end
end
local function run() return redis.pcall(unpack(ARGV, 8)) end
if ARGV[3] ~= '1' then return run() end
local dest = KEYS[#KEYS]
-- The first 3 bytes of a string (or missing: '') key; nil for other types.
local function str(k)
  local s = look(k)
  if s.t == 'string' or s.t == 'none' then return s.p end
end
-- The length of a string key whose first 3 bytes are p.
local function len(k, p)
  if #p < 3 then return #p end
  return redis.call('STRLEN', k)
end
local function int(a)
  local n = tonumber(a)
  if n and n == math.floor(n) then return n end
end
local cmd = string.lower(ARGV[8])
local hit = false
if cmd == 'append' then
  local p = str(dest)
  hit = p ~= nil and #p < 3 and string.sub(p .. string.sub(ARGV[10], 1, 3), 1, 3) == magic
elseif cmd == 'setrange' then
  local p = str(dest)
  local off, v = int(ARGV[10]), ARGV[11]
  if p and off and off >= 0 and off < 3 and #v > 0 then
    if #p < off then p = p .. string.rep('\0', off - #p) end
    local r = string.sub(p, 1, off) .. string.sub(v, 1, 3) .. string.sub(p, off + #v + 1)
    hit = string.sub(r, 1, 3) == magic
  end
elseif cmd == 'setbit' then
  local p = str(dest)
  local off, b = int(ARGV[10]), ARGV[11]
  if p and off and off >= 0 and off < 24 and (b == '0' or b == '1') then
    local at = math.floor(off / 8)
    if #p == 3 or at == 2 then
      p = p .. string.rep('\0', 3 - #p)
      local c = string.byte(p, at + 1)
      local mask = 2 ^ (7 - off % 8)
      local set = math.floor(c / mask) % 2 == 1
      if b == '1' and not set then c = c + mask elseif b == '0' and set then c = c - mask end
      hit = string.sub(p, 1, at) .. string.char(c) .. string.sub(p, at + 2) == magic
    end
  end
elseif cmd == 'bitop' then
  local op = string.lower(ARGV[9])
  local srcs, long, ok = {}, false, true
  for i = 11, #ARGV do
    local p = str(ARGV[i])
    if not p then ok = false break end
    srcs[#srcs + 1] = p
    if #p == 3 then long = true end
  end
  if ok and long then
    if op == 'and' or op == 'or' or op == 'xor' or (op == 'not' and #srcs == 1) then
      local r = ''
      for j = 1, 3 do
        local acc = nil
        for s = 1, #srcs do
          local c = string.byte(srcs[s], j) or 0
          if acc == nil then acc = c
          elseif op == 'and' then acc = bit.band(acc, c)
          elseif op == 'or' then acc = bit.bor(acc, c)
          else acc = bit.bxor(acc, c) end
        end
        if op == 'not' then acc = bit.band(bit.bnot(acc), 255) end
        r = r .. string.char(acc)
      end
      hit = r == magic
    elseif op == 'diff' or op == 'diff1' or op == 'andor' or op == 'one' then
      hit = true
    end
  end
elseif cmd == 'bitfield' then
  local p = str(dest)
  if p then
    -- Byte ranges the writes touch; does one of them reach the first 3 bytes?
    local ranges, low, i = {}, false, 10
    while i <= #ARGV do
      local sub = string.lower(ARGV[i])
      if sub == 'get' then i = i + 3
      elseif sub == 'overflow' then i = i + 2
      elseif (sub == 'set' or sub == 'incrby') and ARGV[i + 2] then
        local bits = int(string.sub(ARGV[i + 1], 2))
        local off, o = ARGV[i + 2], nil
        if string.sub(off, 1, 1) == '#' then
          local k = int(string.sub(off, 2))
          if k and bits then o = k * bits end
        else o = int(off) end
        if bits and o and o >= 0 and bits > 0 then
          ranges[#ranges + 1] = {math.floor(o / 8), math.floor((o + bits - 1) / 8)}
          if o < 24 then low = true end
        end
        i = i + 4
      else break end
    end
    if low then
      local existed = look(dest).t ~= 'none'
      local n = len(dest, p)
      for _, rg in ipairs(ranges) do rg[3] = redis.call('GETRANGE', dest, rg[1], rg[2]) end
      local r = run()
      if type(r) == 'table' and r.err then return r end
      if redis.call('GETRANGE', dest, 0, 2) ~= magic then return r end
      -- Undo: the written ranges as they were, nothing past the old length.
      if not existed then
        redis.call('DEL', dest)
      else
        for _, rg in ipairs(ranges) do
          if #rg[3] > 0 then redis.call('SETRANGE', dest, rg[1], rg[3]) end
        end
        if redis.call('STRLEN', dest) > n then
          local keep = ''
          if n > 0 then keep = redis.call('GETRANGE', dest, 0, n - 1) end
          redis.call('SET', dest, keep, 'KEEPTTL')
        end
      end
      return {ok='RESPITE-MAGIC'}
    end
  end
end
if not hit then return run() end
local cand = ARGV[4]
if cand ~= '' then
  local n = len(dest, str(dest))
  if n >= tonumber(ARGV[5]) and n <= tonumber(ARGV[6]) then
    local r = run()
    if type(r) == 'table' and r.err then return r end
    if redis.call('GET', dest) ~= string.sub(cand, tonumber(ARGV[7]) + 1) then
      return redis.error_reply('ERR respite: the value of ' .. dest .. ' does not match its envelope')
    end
    redis.call('SET', dest, cand, 'KEEPTTL')
    return r
  end
end
return {ok='RESPITE-MAGIC'}
";

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

const UNEXPECTED_GET: &str = "ERR respite: unexpected reply to GET";

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
        Err(e) => (e.reply_bytes(), Outcome::Refused),
    }
}

async fn run_inner(
    op: &ByteOp,
    conn: &Conn,
    c: &Compressor,
    m: &Metrics,
) -> Result<(Bytes, Outcome), Error> {
    let args: Vec<&[u8]> = op.args.iter().map(|a| &a[..]).collect();
    for _ in 0..MAX_ATTEMPTS {
        let fast = if op.cmd.writer {
            if wide_bitfield(&args) {
                // The guard script's Lua numbers are doubles: integers of
                // more than 53 bits would come back rounded. Redis itself
                // answers on the copies instead.
                None
            } else {
                guarded(op, &args, conn, c).await?
            }
        } else {
            checked(op, &args, conn, c, m).await?
        };
        if let Some(reply) = fast {
            return Ok((reply, Outcome::Native));
        }
        if let Some(done) = emulate(op, &args, conn, c, m).await? {
            return Ok((done, Outcome::Emulated));
        }
    }
    Err(Error::contention(format!(
        "ERR respite: {} on the compressed value of key '{}' kept conflicting with concurrent writes, try again",
        String::from_utf8_lossy(args[0]).to_uppercase(),
        show_key(args[op.cmd.keys[0]])
    )))
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
///
/// With `sha` (the script's SHA1 as `SCRIPT LOAD` answered it) the request is
/// an `EVALSHA`: the script is ~5 KB, which `EVAL` would send and Redis hash
/// on every call.
pub fn guard_request(cmd: &ByteCmd, args: &[&[u8]], c: &Compressor, sha: Option<&[u8]>) -> Bytes {
    let mut keys: Vec<&[u8]> = cmd.keys.iter().map(|&i| args[i]).collect();
    let checked = keys.len().to_string();
    // An excluded destination keeps whatever bytes the command leaves.
    let escape = cmd.dest.is_some_and(|d| !c.excluded(args[d]));
    if let Some(d) = cmd.dest {
        keys.push(args[d]);
    }
    let nkeys = keys.len().to_string();
    let cand = if escape { candidate(args, c) } else { None };
    let (lo, hi) = cand
        .as_ref()
        .map_or((String::new(), String::new()), |(_, lo, hi)| {
            (lo.to_string(), hi.to_string())
        });
    let header = envelope::HEADER_LEN.to_string();
    let mut eval: Vec<&[u8]> = match sha {
        Some(sha) => vec![b"EVALSHA", sha, nkeys.as_bytes()],
        None => vec![b"EVAL", GUARD.as_bytes(), nkeys.as_bytes()],
    };
    eval.extend(keys);
    eval.push(&MAGIC);
    eval.push(checked.as_bytes());
    eval.push(if escape { b"1" } else { b"0" });
    eval.push(cand.as_ref().map_or(&[][..], |(e, _, _)| e));
    eval.push(lo.as_bytes());
    eval.push(hi.as_bytes());
    eval.push(header.as_bytes());
    eval.extend_from_slice(args);
    command(&eval)
}

/// For `APPEND` and `SETRANGE` whose result may begin with the magic: the
/// raw envelope of that result, and the range of the value's length before
/// the command for which it is the result (see [`GUARD`]).
///
/// `APPEND k v` gives `MAGIC[..l] ++ v` when the value before is the first
/// `l` bytes of the magic and `v` the rest of it; `SETRANGE k off v`
/// (`off` < 3) gives `MAGIC[..off] ++ v` when the value before was at most
/// `off + len(v)` long.
fn candidate(args: &[&[u8]], c: &Compressor) -> Option<(Vec<u8>, usize, usize)> {
    let (before, v, lo, hi) = if args[0].eq_ignore_ascii_case(b"append") {
        let v = *args.get(2)?;
        let l = (0..3).find(|&l| v.starts_with(&MAGIC[l..]))?;
        (l, v, l, l)
    } else if args[0].eq_ignore_ascii_case(b"setrange") {
        let off = usize::try_from(parse_int(args.get(2)?)?).ok()?;
        let v = *args.get(3)?;
        if off >= 3 || !v.starts_with(&MAGIC[off..]) {
            return None;
        }
        (off, v, off, off + v.len())
    } else {
        return None;
    };
    let mut value = Vec::with_capacity(before + v.len());
    value.extend_from_slice(&MAGIC[..before]);
    value.extend_from_slice(v);
    Some((envelope::raw(&value, &c.seal), lo, hi))
}

/// Writers' fast path: the guard script; `None` when a value begins with the
/// magic, or the result would and must be computed on a copy.
async fn guarded(
    op: &ByteOp,
    args: &[&[u8]],
    conn: &Conn,
    c: &Compressor,
) -> Result<Option<Bytes>, Error> {
    let reply = match GUARD_SHA.get() {
        Some(sha) => {
            let r = call(conn, &[guard_request(&op.cmd, args, c, Some(sha))])
                .await?
                .pop()
                .unwrap_or_default();
            if r.starts_with(b"-NOSCRIPT") {
                // A restarted or flushed server, or another cluster node:
                // EVAL loads it there.
                call(conn, &[guard_request(&op.cmd, args, c, None)])
                    .await?
                    .pop()
                    .unwrap_or_default()
            } else {
                r
            }
        }
        None => {
            let load = command(&[b"SCRIPT", b"LOAD", GUARD.as_bytes()]);
            let mut rs = call(conn, &[load, guard_request(&op.cmd, args, c, None)]).await?;
            let reply = rs.pop().unwrap_or_default();
            // Not when SCRIPT is denied (ACL): EVAL every time then.
            if let Some(Ok(Some(sha))) = rs.first().map(bulk) {
                let _ = GUARD_SHA.set(sha);
            }
            reply
        }
    };
    Ok((reply != GUARD_MARKER && reply != MAGIC_MARKER).then_some(reply))
}

/// Readers' fast path: prefixes and the command in one transaction; `None`
/// when a value is compressed.
async fn checked(
    op: &ByteOp,
    args: &[&[u8]],
    conn: &Conn,
    c: &Compressor,
    m: &Metrics,
) -> Result<Option<Bytes>, Error> {
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
    let replies = call(conn, &reqs).await?;
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
                    let len = match c
                        .unpack(&v, m)
                        .map_err(|e| Error::bad_reply(restore_error_text(key, &e)))?
                    {
                        Some(restored) => restored.len(),
                        None => v.len(),
                    };
                    let mut b = BytesMut::new();
                    encode::int(&mut b, len as i64);
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
) -> Result<Option<Bytes>, Error> {
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
    let replies = call(conn, &reqs).await?;
    if let Some(e) = replies.iter().find(|r| is_error(r)) {
        return Ok(Some(e.clone()));
    }
    let exec = replies.last().cloned().unwrap_or_default();
    let elems = elements(&exec)
        .ok_or_else(|| Error::bad_reply(String::from_utf8_lossy(&exec).trim().to_string()))?;
    let mut stored: Vec<Option<Bytes>> = Vec::with_capacity(keys.len());
    for e in &elems {
        if is_error(e) {
            return Ok(Some(e.clone()));
        }
        stored.push(bulk(e).map_err(|_| Error::bad_reply(UNEXPECTED_GET))?);
    }
    // 2. Restore them.
    let mut values: Vec<Option<Bytes>> = Vec::with_capacity(keys.len());
    for (k, s) in keys.iter().zip(&stored) {
        values.push(match s {
            Some(s) => Some(
                match c
                    .unpack(s, m)
                    .map_err(|e| Error::bad_reply(restore_error_text(k, &e)))?
                {
                    Some(v) => Bytes::from(v.into_owned()),
                    None => s.clone(),
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
            Error::internal(format!(
                "ERR respite: {name} cannot be emulated on the compressed value of key '{}' (no hash tag to place a copy next to it); list the key in compression.exclude to store it uncompressed",
                show_key(first)
            ))
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
    let replies = call(conn, &reqs).await?;
    if let Some(e) = replies[1..replies.len() - 1].iter().find(|r| is_error(r)) {
        return Ok(Some(e.clone()));
    }
    let exec = replies.last().cloned().unwrap_or_default();
    let elems = elements(&exec)
        .ok_or_else(|| Error::bad_reply(String::from_utf8_lossy(&exec).trim().to_string()))?;
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
        .map_err(|_| Error::bad_reply(UNEXPECTED_GET))?
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
        .await?
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
