//! Owned RESP values, for the few replies the proxy must understand rather than
//! forward: topology (`CLUSTER SHARDS`, `CLUSTER SLOTS`) and the command table
//! (`COMMAND`). Not for the data path, which forwards raw bytes.
//!
//! RESP2 and RESP3 both decode; RESP3 types that RESP2 lacks fold into the
//! closest RESP2 shape (sets and pushes are arrays, doubles and big numbers
//! are their text), so callers handle one shape whatever the connection speaks.
//! Maps stay maps; [`Value::pairs`] reads a map and a RESP2 flat key/value
//! array alike.

use super::request::parse_int;
use super::ProtocolError;

/// Nesting deeper than this is refused: Redis's deepest reply (`COMMAND`) has
/// six levels, and recursion on a hostile upstream's bytes must stay bounded.
const MAX_DEPTH: usize = 32;

/// One decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+` simple string; also RESP3 doubles (`,`) and big numbers (`(`) as text.
    Simple(Vec<u8>),
    /// `-` or RESP3 `!` error, without the type byte.
    Error(Vec<u8>),
    Int(i64),
    /// `$` bulk string; also RESP3 verbatim strings without their format prefix.
    Bulk(Vec<u8>),
    /// `*` array; also RESP3 sets (`~`) and pushes (`>`).
    Array(Vec<Value>),
    /// RESP3 map (`%`), in wire order.
    Map(Vec<(Value, Value)>),
    Bool(bool),
    /// `$-1`, `*-1` or RESP3 `_`.
    Null,
}

impl Value {
    /// Decodes the value at the start of `buf`: the value and its length in
    /// bytes, or `None` when more bytes are needed.
    pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
        let mut pos = 0;
        match decode_at(buf, &mut pos, 0)? {
            Some(v) => Ok(Some((v, pos))),
            None => Ok(None),
        }
    }

    /// Decodes a buffer that must hold exactly one complete value.
    pub fn decode_exact(buf: &[u8]) -> Result<Value, ProtocolError> {
        match Value::decode(buf)? {
            Some((v, len)) if len == buf.len() => Ok(v),
            Some(_) => Err(ProtocolError::new("trailing bytes after reply")),
            None => Err(ProtocolError::new("incomplete reply")),
        }
    }

    /// The bytes of a simple or bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// An integer, or a string holding one (some fields are strings in one
    /// Redis version and integers in another).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Simple(b) | Value::Bulk(b) => parse_int(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Key/value pairs of a RESP3 map or of a RESP2 flat array of even length
    /// (how RESP2 carries maps).
    pub fn pairs(&self) -> Option<Vec<(&Value, &Value)>> {
        match self {
            Value::Map(m) => Some(m.iter().map(|(k, v)| (k, v)).collect()),
            Value::Array(a) if a.len() % 2 == 0 => {
                Some(a.chunks_exact(2).map(|p| (&p[0], &p[1])).collect())
            }
            _ => None,
        }
    }

    /// The value under string key `key` in a map-like value (see [`Value::pairs`]).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.pairs()?
            .into_iter()
            .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
            .map(|(_, v)| v)
    }
}

/// Decodes one value at `*pos`, advancing it; `None` when incomplete.
fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::new("reply nested too deeply"));
    }
    let start = *pos;
    if start >= buf.len() {
        return Ok(None);
    }
    let Some(eol) = find_crlf(buf, start + 1) else {
        return Ok(None);
    };
    let line = &buf[start + 1..eol];
    let after = eol + 2;
    let int = |what: &str| parse_int(line).ok_or_else(|| ProtocolError(format!("invalid {what}")));
    let value = match buf[start] {
        b'+' | b',' | b'(' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Int(int("integer in reply")?),
        b'_' => Value::Null,
        b'#' => match line {
            b"t" => Value::Bool(true),
            b"f" => Value::Bool(false),
            _ => return Err(ProtocolError::new("invalid boolean in reply")),
        },
        t @ (b'$' | b'!' | b'=') => {
            let n = int("bulk length in reply")?;
            if n < 0 {
                *pos = after;
                return Ok(Some(Value::Null));
            }
            let Some(end) = after.checked_add(n as usize).filter(|e| e + 2 <= buf.len()) else {
                return Ok(None);
            };
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError::new("bulk string not terminated by CRLF"));
            }
            *pos = end + 2;
            let body = &buf[after..end];
            return Ok(Some(match t {
                b'!' => Value::Error(body.to_vec()),
                // `=` carries a three-letter format and a colon before the text.
                b'=' => Value::Bulk(body.get(4..).unwrap_or_default().to_vec()),
                _ => Value::Bulk(body.to_vec()),
            }));
        }
        t @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
            let n = int("aggregate length in reply")?;
            *pos = after;
            if n < 0 {
                return Ok(Some(Value::Null));
            }
            let pairs = matches!(t, b'%' | b'|');
            let count = n as usize * if pairs { 2 } else { 1 };
            // Every element takes at least 3 bytes: never reserve more than
            // the buffer could hold, whatever length the header claims.
            let mut items = Vec::with_capacity(count.min((buf.len() - after) / 3));
            for _ in 0..count {
                match decode_at(buf, pos, depth + 1)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            if t == b'|' {
                // An attribute annotates the value that follows; keep the
                // value. One level deeper, so a chain of attributes stays
                // within MAX_DEPTH like any nesting.
                return decode_at(buf, pos, depth + 1);
            }
            return Ok(Some(if pairs {
                let mut map = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    map.push((k, v));
                }
                Value::Map(map)
            } else {
                Value::Array(items)
            }));
        }
        other => {
            return Err(ProtocolError(format!(
                "unexpected reply type byte 0x{other:02x}"
            )))
        }
    };
    *pos = after;
    Ok(Some(value))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn decodes_resp2_shapes() {
        let v = Value::decode_exact(b"*5\r\n+OK\r\n:-7\r\n$3\r\nabc\r\n$-1\r\n*1\r\n-ERR x\r\n")
            .unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Simple(b"OK".to_vec()),
                Value::Int(-7),
                bulk("abc"),
                Value::Null,
                Value::Array(vec![Value::Error(b"ERR x".to_vec())]),
            ])
        );
    }

    #[test]
    fn decodes_resp3_shapes_into_resp2_ones() {
        let v = Value::decode_exact(
            b"%2\r\n+a\r\n~1\r\n,1.5\r\n+b\r\n|1\r\n+k\r\n+v\r\n=8\r\ntxt:abcd\r\n",
        )
        .unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::Array(vec![Value::Simple(b"1.5".to_vec())]))
        );
        assert_eq!(v.get("b"), Some(&bulk("abcd")));
        assert_eq!(Value::decode_exact(b"#t\r\n").unwrap(), Value::Bool(true));
        assert_eq!(Value::decode_exact(b"_\r\n").unwrap(), Value::Null);
    }

    #[test]
    fn pairs_reads_flat_arrays_and_maps_alike() {
        let flat = Value::decode_exact(b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n:2\r\n").unwrap();
        let map = Value::decode_exact(b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n:2\r\n").unwrap();
        assert_eq!(flat.pairs(), map.pairs());
        assert_eq!(flat.get("j").and_then(Value::as_int), Some(2));
        assert_eq!(flat.get("nope"), None);
        let odd = Value::decode_exact(b"*1\r\n:1\r\n").unwrap();
        assert_eq!(odd.pairs(), None);
    }

    #[test]
    fn incomplete_at_every_cut_and_exact_when_whole() {
        let whole: &[u8] = b"*2\r\n$5\r\nhello\r\n%1\r\n:1\r\n*1\r\n_\r\n";
        for cut in 0..whole.len() {
            assert_eq!(Value::decode(&whole[..cut]).unwrap(), None, "cut {cut}");
        }
        let (_, len) = Value::decode(whole).unwrap().unwrap();
        assert_eq!(len, whole.len());
        assert!(Value::decode_exact(&whole[..whole.len() - 1]).is_err());
    }

    #[test]
    fn rejects_garbage_and_bounds_resources() {
        assert!(Value::decode(b"?\r\n").is_err());
        assert!(Value::decode(b"$3\r\nabcXY").is_err());
        assert!(Value::decode(b":x\r\n").is_err());
        // A huge claimed length with no bytes behind it is just incomplete.
        assert_eq!(Value::decode(b"*2000000000\r\n").unwrap(), None);
        assert_eq!(Value::decode(b"$9000000000000000000\r\n").unwrap(), None);
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(Value::decode(deep.as_bytes()).is_err());
        // Attributes chained without end recurse too: bounded the same way
        // (this once overflowed the stack).
        let chain = "|0\r\n".repeat(1_000_000) + ":1\r\n";
        assert!(Value::decode(chain.as_bytes()).is_err());
    }
}
