//! Client request framing: RESP arrays of bulk strings and inline commands,
//! parsed incrementally with the size limits applied before anything is buffered.
//!
//! The parser never copies: it records where each argument sits inside the
//! caller's buffer, so the exact bytes the client sent can be forwarded as they are.
//! Its state survives `Incomplete`, so a frame arriving over many reads is scanned
//! once, not once per read.

use super::ProtocolError;

/// Longest header line (`*N` / `$N`) and longest inline request, as in Redis
/// (`PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;

/// What [`RequestParser::parse`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete RESP array frame of `len` bytes; arguments via [`RequestParser::arg`].
    Frame { len: usize },
    /// A complete inline command of `len` bytes (line included); its arguments,
    /// unquoted, are owned because quoting rewrites them.
    Inline { len: usize, args: Vec<Vec<u8>> },
    /// `len` bytes that carry no command (`*0`, `*-1`, an empty inline line):
    /// Redis skips them without a reply.
    Empty { len: usize },
    /// More bytes are needed; `need` is a lower bound of the whole frame's size so
    /// the caller can reserve once.
    Incomplete { need: usize },
}

/// Incremental request parser. One per client connection.
#[derive(Debug)]
pub struct RequestParser {
    max_bytes: usize,
    max_args: usize,
    /// (offset, len) of each argument of the frame being parsed, relative to its start.
    args: Vec<(u32, u32)>,
    /// Resumable position: bytes of the current frame already accepted.
    pos: usize,
    /// Arguments still expected; `None` between frames.
    remaining: Option<usize>,
}

impl RequestParser {
    pub fn new(max_bytes: usize, max_args: usize) -> Self {
        RequestParser {
            max_bytes: max_bytes.min(u32::MAX as usize),
            max_args,
            args: Vec::new(),
            pos: 0,
            remaining: None,
        }
    }

    /// Number of arguments of the last complete frame.
    #[inline]
    pub fn argc(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` of the last complete frame, from the same buffer `parse` saw.
    #[inline]
    pub fn arg<'a>(&self, buf: &'a [u8], i: usize) -> &'a [u8] {
        let (off, len) = self.args[i];
        &buf[off as usize..off as usize + len as usize]
    }

    /// Argument spans of the last complete frame (offset, length).
    #[inline]
    pub fn spans(&self) -> &[(u32, u32)] {
        &self.args
    }

    /// Parse the frame at the start of `buf`. After a complete frame the caller
    /// must drop its `len` bytes from the front before the next call; after
    /// `Incomplete` it must call again with the same bytes plus more.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let mut remaining = match self.remaining {
            Some(r) => r,
            None => {
                if buf.is_empty() {
                    return Ok(Parsed::Incomplete { need: 1 });
                }
                if buf[0] != b'*' {
                    return parse_inline(buf, self.max_args);
                }
                let Some(eol) = find_crlf(buf, 1) else {
                    if buf.len() > MAX_INLINE {
                        return Err(ProtocolError::new("too big mbulk count string"));
                    }
                    return Ok(Parsed::Incomplete {
                        need: buf.len() + 1,
                    });
                };
                let n = parse_int(&buf[1..eol])
                    .ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
                if n <= 0 {
                    return Ok(Parsed::Empty { len: eol + 2 });
                }
                if n as u64 > self.max_args as u64 {
                    return Err(ProtocolError::new("invalid multibulk length"));
                }
                self.args.clear();
                self.pos = eol + 2;
                n as usize
            }
        };
        while remaining > 0 {
            let pos = self.pos;
            if pos >= buf.len() {
                self.remaining = Some(remaining);
                return Ok(Parsed::Incomplete { need: pos + 4 });
            }
            if buf[pos] != b'$' {
                return Err(ProtocolError::expected_dollar(buf[pos]));
            }
            let Some(eol) = find_crlf(buf, pos + 1) else {
                if buf.len() - pos > MAX_INLINE {
                    return Err(ProtocolError::new("too big bulk count string"));
                }
                self.remaining = Some(remaining);
                return Ok(Parsed::Incomplete {
                    need: buf.len() + 1,
                });
            };
            let len = parse_int(&buf[pos + 1..eol])
                .filter(|&l| l >= 0 && (l as u64) <= self.max_bytes as u64)
                .ok_or_else(|| ProtocolError::new("invalid bulk length"))?
                as usize;
            let start = eol + 2;
            let end = start + len + 2;
            if end > self.max_bytes {
                return Err(ProtocolError::new(
                    "request exceeds limits.max_request_bytes",
                ));
            }
            if end > buf.len() {
                // The header stays unaccepted, so the next call re-reads only this
                // one short line; the payload itself is never rescanned.
                self.remaining = Some(remaining);
                return Ok(Parsed::Incomplete { need: end });
            }
            self.args.push((start as u32, len as u32));
            self.pos = end;
            remaining -= 1;
        }
        self.remaining = None;
        let len = self.pos;
        self.pos = 0;
        Ok(Parsed::Frame { len })
    }
}

#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match memchr(b'\r', &buf[i..buf.len() - 1]) {
            Some(off) => {
                let at = i + off;
                if buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

#[inline]
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Strict decimal integer as Redis's `string2ll` accepts it.
#[inline]
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as i64)?;
    }
    Some(if neg { -v } else { v })
}

fn parse_inline(buf: &[u8], max_args: usize) -> Result<Parsed, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > MAX_INLINE {
            return Err(ProtocolError::new("too big inline request"));
        }
        return Ok(Parsed::Incomplete {
            need: buf.len() + 1,
        });
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let args =
        split_args(line).ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))?;
    if args.len() > max_args {
        return Err(ProtocolError::new("invalid multibulk length"));
    }
    if args.is_empty() {
        return Ok(Parsed::Empty { len: nl + 1 });
    }
    Ok(Parsed::Inline { len: nl + 1, args })
}

/// Split an inline command line the way Redis's `sdssplitargs` does: spaces
/// separate, `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` only `\'`,
/// and a closing quote must be followed by a space or the end.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> RequestParser {
        RequestParser::new(1 << 20, 1024)
    }

    #[test]
    fn parses_array_frame() {
        let mut p = parser();
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nextra";
        assert_eq!(p.parse(buf).unwrap(), Parsed::Frame { len: 20 });
        assert_eq!(p.argc(), 2);
        assert_eq!(p.arg(buf, 0), b"GET");
        assert_eq!(p.arg(buf, 1), b"k");
    }

    #[test]
    fn resumes_at_every_split() {
        let full = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..full.len() {
            let mut p = parser();
            let r = p.parse(&full[..cut]).unwrap();
            assert!(matches!(r, Parsed::Incomplete { .. }), "cut {cut}: {r:?}");
            assert_eq!(p.parse(full).unwrap(), Parsed::Frame { len: full.len() });
            assert_eq!(p.arg(full, 2), b"value");
        }
    }

    #[test]
    fn limits_are_redis_errors() {
        let mut p = RequestParser::new(1000, 10);
        assert_eq!(
            p.parse(b"*1\r\n$600000000\r\n").unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        let mut p = RequestParser::new(1000, 10);
        assert_eq!(
            p.parse(b"*1000000000\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        let mut p = RequestParser::new(1000, 10);
        assert_eq!(
            p.parse(b"*1\r\n+x\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got '+'"
        );
    }

    #[test]
    fn inline_and_empty() {
        let mut p = parser();
        match p.parse(b"SET a \"hello world\"\r\n").unwrap() {
            Parsed::Inline { len, args } => {
                assert_eq!(len, 21);
                assert_eq!(
                    args,
                    vec![b"SET".to_vec(), b"a".to_vec(), b"hello world".to_vec()]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.parse(b"\r\n").unwrap(), Parsed::Empty { len: 2 });
        assert_eq!(p.parse(b"*0\r\n").unwrap(), Parsed::Empty { len: 4 });
        assert!(p.parse(b"GET \"a\r\n").is_err());
    }

    #[test]
    fn split_args_like_redis() {
        assert_eq!(
            split_args(br#"a "b\x41\n" 'c\'d'"#).unwrap(),
            vec![b"a".to_vec(), b"bA\n".to_vec(), b"c'd".to_vec()]
        );
        assert!(split_args(br#""a"b"#).is_none());
    }
}
