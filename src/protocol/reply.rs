//! Reply framing: finds where each RESP2/RESP3 reply from Redis ends, without
//! building it, so replies are handed on as the exact bytes Redis sent.
//!
//! Resumable like the request parser: a reply of a million elements arriving
//! over many reads is scanned once.

use super::request::parse_int;
use super::ProtocolError;

/// Nesting deeper than this is refused (Redis never sends it; a broken or
/// hostile upstream must not make us allocate without bound).
const MAX_DEPTH: usize = 128;

#[derive(Debug, Default)]
pub struct ReplyScanner {
    /// Bytes of the current reply already accepted.
    pos: usize,
    /// Elements still expected at each open aggregate level.
    stack: Vec<u64>,
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Length of the complete reply at the start of `buf`, or `None` when more
    /// bytes are needed (then call again with the same bytes plus more).
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let pos = self.pos;
            if pos >= buf.len() {
                return Ok(None);
            }
            let Some(eol) = find_crlf(buf, pos + 1) else {
                return Ok(None);
            };
            let line = &buf[pos + 1..eol];
            let after = eol + 2;
            let mut children: u64 = 0;
            match buf[pos] {
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => self.pos = after,
                b'$' | b'!' | b'=' => {
                    let n = parse_int(line)
                        .ok_or_else(|| ProtocolError::new("invalid bulk length in reply"))?;
                    if n < 0 {
                        self.pos = after;
                    } else {
                        let end = after + n as usize + 2;
                        if end > buf.len() {
                            return Ok(None);
                        }
                        self.pos = end;
                    }
                }
                t @ (b'*' | b'~' | b'>' | b'%' | b'|') => {
                    let n = parse_int(line)
                        .ok_or_else(|| ProtocolError::new("invalid aggregate length in reply"))?;
                    self.pos = after;
                    if n > 0 {
                        children = n as u64 * if matches!(t, b'%' | b'|') { 2 } else { 1 };
                        // An attribute is followed by the value it annotates.
                        if t == b'|' {
                            children += 1;
                        }
                    }
                }
                other => return Err(ProtocolError::unexpected_reply_byte(other)),
            }
            if children > 0 {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(ProtocolError::new("reply nested too deeply"));
                }
                self.stack.push(children);
                continue;
            }
            // A leaf (or empty aggregate) completed: close finished levels.
            loop {
                match self.stack.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(top) => {
                        *top -= 1;
                        if *top > 0 {
                            break;
                        }
                        self.stack.pop();
                    }
                }
            }
        }
    }
}

#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        let off = buf[i..buf.len() - 1].iter().position(|&b| b == b'\r')?;
        let at = i + off;
        if buf[at + 1] == b'\n' {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[&[u8]] = &[
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":12\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"_\r\n",
        b"$5\r\nhe\r\no\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
        b"%1\r\n+k\r\n*2\r\n,1.5\r\n#t\r\n",
        b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
        b"|1\r\n+a\r\n:1\r\n$1\r\nv\r\n",
        b"=8\r\ntxt:abcd\r\n",
        b"~1\r\n(123\r\n",
    ];

    #[test]
    fn frames_every_sample_at_every_split() {
        for s in SAMPLES {
            for cut in 0..s.len() {
                let mut sc = ReplyScanner::new();
                assert_eq!(
                    sc.scan(&s[..cut]).unwrap(),
                    None,
                    "{:?} cut {cut}",
                    String::from_utf8_lossy(s)
                );
                assert_eq!(sc.scan(s).unwrap(), Some(s.len()));
            }
            let mut joined = s.to_vec();
            joined.extend_from_slice(b"+next\r\n");
            assert_eq!(ReplyScanner::new().scan(&joined).unwrap(), Some(s.len()));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(ReplyScanner::new().scan(b"?x\r\n").is_err());
        assert!(ReplyScanner::new().scan(b"$x\r\n").is_err());
    }
}
