//! Merging the replies of a request that was split across cluster nodes back
//! into the one reply Redis would have given.

use crate::protocol::{encode, ReplyScanner};
use bytes::{Bytes, BytesMut};

/// How the parts of a split request combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Integer replies summed (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
    SumInt,
    /// Every part must succeed; the first part's reply stands (MSET, FLUSHALL).
    AllOk,
    /// Array replies concatenated (KEYS).
    Concat,
    /// Array replies whose elements go back to argument positions: for each
    /// part, the index in the merged array of each of its elements (MGET).
    Scatter {
        positions: Vec<Vec<u32>>,
        total: u32,
    },
    /// One node's `SCAN` reply, its cursor rewritten to carry the node index
    /// (`node_cursor << SCAN_NODE_BITS | node`); a finished node moves on to
    /// the next one, the last one ends the iteration with 0.
    Scan { node: u32, nodes: u32 },
    /// The last part stands: the `EXEC` of a transaction the proxy built,
    /// after the queueing replies of the commands whose errors the client
    /// must see (the first error wins, as everywhere).
    Last,
    /// `INFO` from every primary: the first node's text with its `# Keyspace`
    /// section replaced by the sum over all nodes.
    InfoKeyspace,
    /// `INFO` from every primary: additive fields summed (see
    /// [`crate::router::info`]), the `# Keyspace` section summed.
    Info,
    /// `+OK` if any part is; else the first error other than `-NOTBUSY`;
    /// else the first part (`SCRIPT KILL`, `FUNCTION KILL`).
    AnyOk,
    /// One non-nil part chosen at random, nil if all are (`RANDOMKEY`).
    AnyNonNil,
    /// Arrays of name/count pairs in the same order: the first part's
    /// names, the counts summed (`PUBSUB SHARDNUMSUB`).
    SumPairs,
}

/// `SCRIPT KILL`/`FUNCTION KILL` on every primary: `+OK` if a script was
/// killed anywhere; else an error other than `-NOTBUSY` (a script that
/// cannot be killed); else `-NOTBUSY` (none was running).
fn any_ok(parts: Vec<Bytes>) -> Bytes {
    if let Some(ok) = parts.iter().find(|p| p.starts_with(b"+OK")) {
        return ok.clone();
    }
    if let Some(e) = parts
        .iter()
        .find(|p| p.first() == Some(&b'-') && !p.starts_with(b"-NOTBUSY"))
    {
        return e.clone();
    }
    parts.into_iter().next().unwrap_or_default()
}

/// A nil reply (RESP2 or RESP3).
fn is_nil(p: &[u8]) -> bool {
    p == b"$-1\r\n" || p == b"_\r\n" || p == b"*-1\r\n"
}

/// An index below `n`, different from call to call.
fn pick(n: usize) -> usize {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % n as u64) as usize
}

/// Low bits of a proxy `SCAN` cursor that name the node.
pub const SCAN_NODE_BITS: u32 = 10;

/// Combine part replies; the first error reply wins, as a client talking to
/// the nodes itself would see it.
pub fn merge(how: Merge, parts: Vec<Bytes>) -> Bytes {
    if how == Merge::AnyOk {
        return any_ok(parts);
    }
    if let Some(err) = parts.iter().find(|p| p.first() == Some(&b'-')) {
        return err.clone();
    }
    let mut out = BytesMut::new();
    match how {
        Merge::AnyOk => return any_ok(parts),
        Merge::SumPairs => {
            let mut arrays = Vec::with_capacity(parts.len());
            for p in &parts {
                match elements(p) {
                    Some(e) if e.len() % 2 == 0 => arrays.push(e),
                    _ => return bad_part(p),
                }
            }
            let first = &arrays[0];
            encode::array(&mut out, first.len());
            for i in (0..first.len()).step_by(2) {
                let mut sum = 0i64;
                for a in &arrays {
                    match a.get(i + 1).and_then(|e| int_of(e)) {
                        Some(v) => sum += v,
                        None => return bad_part(&parts[0]),
                    }
                }
                out.extend_from_slice(first[i]);
                encode::int(&mut out, sum);
            }
        }
        Merge::AnyNonNil => {
            let found: Vec<&Bytes> = parts.iter().filter(|p| !is_nil(p)).collect();
            if found.is_empty() {
                return parts.into_iter().next().unwrap_or_default();
            }
            return found[pick(found.len())].clone();
        }
        Merge::Info => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in &parts {
                match info_text(p) {
                    Some(t) => texts.push(t),
                    None => return bad_part(p),
                }
            }
            let (verbatim, _) = texts[0];
            let merged = super::info::merge(&texts.iter().map(|t| t.1).collect::<Vec<_>>());
            match verbatim {
                Some(fmt) => {
                    let mut body = Vec::with_capacity(merged.len() + 4);
                    body.extend_from_slice(fmt);
                    body.push(b':');
                    body.extend_from_slice(merged.as_bytes());
                    out.extend_from_slice(format!("={}\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n");
                }
                None => encode::bulk(&mut out, merged.as_bytes()),
            }
        }
        Merge::AllOk => return parts.into_iter().next().unwrap_or_default(),
        Merge::Last => return parts.into_iter().last().unwrap_or_default(),
        Merge::SumInt => {
            let mut sum: i64 = 0;
            for p in &parts {
                match int_of(p) {
                    Some(v) => sum += v,
                    None => return bad_part(p),
                }
            }
            encode::int(&mut out, sum);
        }
        Merge::Concat => {
            let mut elems = Vec::new();
            for p in &parts {
                match elements(p) {
                    Some(e) => elems.extend(e),
                    None => return bad_part(p),
                }
            }
            encode::array(&mut out, elems.len());
            for e in elems {
                out.extend_from_slice(e);
            }
        }
        Merge::Scan { node, nodes } => {
            let p = match parts.first() {
                Some(p) => p,
                None => return Bytes::new(),
            };
            let Some(e) = elements(p) else {
                return bad_part(p);
            };
            if e.len() != 2 {
                return bad_part(p);
            }
            let cursor =
                bulk_of(e[0]).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok());
            let Some(cursor) = cursor else {
                return bad_part(p);
            };
            let next = if cursor != 0 {
                (cursor << SCAN_NODE_BITS) | node as u64
            } else if node + 1 < nodes {
                (node + 1) as u64
            } else {
                0
            };
            encode::array(&mut out, 2);
            encode::bulk(&mut out, next.to_string().as_bytes());
            out.extend_from_slice(e[1]);
        }
        Merge::InfoKeyspace => {
            let mut texts = Vec::with_capacity(parts.len());
            for p in &parts {
                match info_text(p) {
                    Some(t) => texts.push(t),
                    None => return bad_part(p),
                }
            }
            let (verbatim, base) = texts[0];
            let merged = sum_keyspace(base, texts.iter().map(|t| t.1));
            match verbatim {
                Some(fmt) => {
                    let mut body = Vec::with_capacity(merged.len() + 4);
                    body.extend_from_slice(fmt);
                    body.push(b':');
                    body.extend_from_slice(merged.as_bytes());
                    out.extend_from_slice(format!("={}\r\n", body.len()).as_bytes());
                    out.extend_from_slice(&body);
                    out.extend_from_slice(b"\r\n");
                }
                None => encode::bulk(&mut out, merged.as_bytes()),
            }
        }
        Merge::Scatter { positions, total } => {
            let mut slots: Vec<Option<&[u8]>> = vec![None; total as usize];
            for (p, pos) in parts.iter().zip(&positions) {
                let Some(e) = elements(p) else {
                    return bad_part(p);
                };
                if e.len() != pos.len() {
                    return bad_part(p);
                }
                for (elem, &at) in e.into_iter().zip(pos) {
                    if let Some(s) = slots.get_mut(at as usize) {
                        *s = Some(elem);
                    }
                }
            }
            encode::array(&mut out, slots.len());
            for s in slots {
                match s {
                    Some(e) => out.extend_from_slice(e),
                    None => out.extend_from_slice(b"$-1\r\n"),
                }
            }
        }
    }
    out.freeze()
}

/// The text of an INFO reply: a bulk string, or a RESP3 verbatim string
/// (with its 3-byte format).
fn info_text(p: &[u8]) -> Option<(Option<&[u8]>, &str)> {
    match p.first() {
        Some(b'$') => Some((None, std::str::from_utf8(bulk_of(p)?).ok()?)),
        Some(b'=') => {
            let eol = p.windows(2).position(|w| w == b"\r\n")?;
            let body = p.get(eol + 2..p.len().checked_sub(2)?)?;
            let (fmt, text) = (body.get(..3)?, body.get(4..)?);
            Some((Some(fmt), std::str::from_utf8(text).ok()?))
        }
        _ => None,
    }
}

/// `base` with the lines of its `# Keyspace` section replaced by the sums of
/// every text's `dbN:keys=..,expires=..,avg_ttl=..` lines. Counts add up;
/// `avg_ttl` is averaged weighted by each node's `expires`.
pub(crate) fn sum_keyspace<'a>(base: &str, texts: impl Iterator<Item = &'a str>) -> String {
    // Per database: its fields summed in first-seen order, and the
    // numerator of the weighted avg_ttl.
    type Db = (u32, Vec<(String, i64)>, i128);
    let mut dbs: Vec<Db> = Vec::new();
    for text in texts {
        for line in keyspace_lines(text) {
            let Some((db, fields)) = line.split_once(':') else {
                continue;
            };
            let Some(n) = db.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let at = match dbs.iter().position(|d| d.0 == n) {
                Some(i) => i,
                None => {
                    dbs.push((n, Vec::new(), 0));
                    dbs.len() - 1
                }
            };
            let entry = &mut dbs[at];
            let pairs: Vec<(&str, i64)> = fields
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k, v.parse::<i64>().ok()?)))
                .collect();
            let expires = pairs.iter().find(|p| p.0 == "expires").map_or(0, |p| p.1);
            for (k, v) in pairs {
                if k == "avg_ttl" {
                    entry.2 += v as i128 * expires as i128;
                }
                match entry.1.iter_mut().find(|f| f.0 == k) {
                    Some(f) => f.1 += v,
                    None => entry.1.push((k.to_string(), v)),
                }
            }
        }
    }
    dbs.sort_by_key(|d| d.0);
    let mut section = String::new();
    for (n, fields, ttl_weighted) in &dbs {
        let expires = fields.iter().find(|f| f.0 == "expires").map_or(0, |f| f.1);
        let shown: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                let v = if k == "avg_ttl" {
                    if expires > 0 {
                        (*ttl_weighted / expires as i128) as i64
                    } else {
                        0
                    }
                } else {
                    *v
                };
                format!("{k}={v}")
            })
            .collect();
        section.push_str(&format!("db{n}:{}\r\n", shown.join(",")));
    }
    // Rebuild: everything of `base`, the keyspace lines swapped.
    let mut out = String::with_capacity(base.len() + section.len());
    let mut in_keyspace = false;
    let mut placed = false;
    for line in base.split_inclusive("\r\n") {
        let bare = line.trim_end_matches("\r\n");
        if bare.starts_with('#') {
            in_keyspace = bare
                .trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("keyspace");
            out.push_str(line);
            if in_keyspace {
                out.push_str(&section);
                placed = true;
            }
            continue;
        }
        if in_keyspace && bare.starts_with("db") {
            continue;
        }
        out.push_str(line);
    }
    if !placed && !section.is_empty() {
        out.push_str("# Keyspace\r\n");
        out.push_str(&section);
    }
    out
}

fn keyspace_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut in_keyspace = false;
    text.split("\r\n").filter(move |line| {
        if line.starts_with('#') {
            in_keyspace = line
                .trim_start_matches('#')
                .trim()
                .eq_ignore_ascii_case("keyspace");
            return false;
        }
        in_keyspace && line.starts_with("db")
    })
}

fn bad_part(p: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    let shown: String = String::from_utf8_lossy(&p[..p.len().min(40)])
        .escape_debug()
        .collect();
    encode::error(
        &mut out,
        &format!("ERR respite: unexpected reply from a cluster node while merging: {shown}"),
    );
    out.freeze()
}

fn bulk_of(p: &[u8]) -> Option<&[u8]> {
    let eol = p.windows(2).position(|w| w == b"\r\n")?;
    if p.first() != Some(&b'$') {
        return None;
    }
    p.get(eol + 2..p.len().checked_sub(2)?)
}

fn int_of(p: &[u8]) -> Option<i64> {
    let line = p.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    crate::protocol::request::parse_int(line)
}

/// The element frames of an array (or set) reply.
fn elements(p: &[u8]) -> Option<Vec<&[u8]>> {
    if !matches!(p.first(), Some(b'*' | b'~')) {
        return None;
    }
    let eol = p.windows(2).position(|w| w == b"\r\n")?;
    let n = crate::protocol::request::parse_int(&p[1..eol])?;
    let mut at = eol + 2;
    let mut out = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n.max(0) {
        let len = ReplyScanner::new().scan(&p[at..]).ok()??;
        out.push(&p[at..at + len]);
        at += len;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn info_keyspace_sums() {
        let a = "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\n";
        let b2 = "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=2,expires=3,avg_ttl=300\r\ndb1:keys=1,expires=0,avg_ttl=0\r\n";
        let c = "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\n";
        let bulk = |s: &str| b(&format!("${}\r\n{}\r\n", s.len(), s));
        let want = "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=5,expires=4,avg_ttl=250\r\ndb1:keys=1,expires=0,avg_ttl=0\r\n";
        assert_eq!(
            merge(Merge::InfoKeyspace, vec![bulk(a), bulk(b2), bulk(c)]),
            bulk(want)
        );
        // RESP3 verbatim strings keep their format.
        let verb = |s: &str| b(&format!("={}\r\ntxt:{}\r\n", s.len() + 4, s));
        assert_eq!(
            merge(Merge::InfoKeyspace, vec![verb(c), verb(a)]),
            verb("# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=100\r\n")
        );
    }

    #[test]
    fn merges() {
        assert_eq!(
            merge(Merge::SumInt, vec![b(":2\r\n"), b(":3\r\n")]),
            b(":5\r\n")
        );
        assert_eq!(
            merge(Merge::SumInt, vec![b(":2\r\n"), b("-ERR x\r\n")]),
            b("-ERR x\r\n")
        );
        assert_eq!(
            merge(
                Merge::Concat,
                vec![b("*1\r\n$1\r\na\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nb\r\n")]
            ),
            b("*2\r\n$1\r\na\r\n$1\r\nb\r\n")
        );
        let scatter = Merge::Scatter {
            positions: vec![vec![0, 2], vec![1]],
            total: 3,
        };
        assert_eq!(
            merge(
                scatter,
                vec![b("*2\r\n$1\r\na\r\n$-1\r\n"), b("*1\r\n$1\r\nb\r\n")]
            ),
            b("*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n")
        );
    }
}
