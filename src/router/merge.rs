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
}

/// Low bits of a proxy `SCAN` cursor that name the node.
pub const SCAN_NODE_BITS: u32 = 10;

/// Combine part replies; the first error reply wins, as a client talking to
/// the nodes itself would see it.
pub fn merge(how: Merge, parts: Vec<Bytes>) -> Bytes {
    if let Some(err) = parts.iter().find(|p| p.first() == Some(&b'-')) {
        return err.clone();
    }
    let mut out = BytesMut::new();
    match how {
        Merge::AllOk => return parts.into_iter().next().unwrap_or_default(),
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
