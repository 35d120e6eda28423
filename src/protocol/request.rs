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

/// Most arguments in a request from a client that has not authenticated yet
/// (Redis: `unauthenticated multibulk length` beyond 10).
pub const UNAUTH_MAX_ARGS: usize = 10;
/// Longest argument from a client that has not authenticated yet (Redis:
/// `unauthenticated bulk length` beyond 16384), so a client without the
/// password can make the proxy buffer at most about 10 x 16 KiB.
pub const UNAUTH_MAX_BULK: usize = 16 * 1024;

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
    /// The client has not authenticated: Redis's smaller limits apply.
    unauthenticated: bool,
}

impl RequestParser {
    pub fn new(max_bytes: usize, max_args: usize) -> Self {
        RequestParser {
            max_bytes: max_bytes.min(u32::MAX as usize),
            max_args,
            args: Vec::new(),
            pos: 0,
            remaining: None,
            unauthenticated: false,
        }
    }

    /// Apply (or stop applying) the limits of a client that has not
    /// authenticated: at most [`UNAUTH_MAX_ARGS`] arguments of at most
    /// [`UNAUTH_MAX_BULK`] bytes, refused with Redis's own errors. Set before
    /// each frame; a frame already begun keeps the limits it started with
    /// only in that nothing executes in between.
    #[inline]
    pub fn set_unauthenticated(&mut self, yes: bool) {
        self.unauthenticated = yes;
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
                if self.unauthenticated && n > UNAUTH_MAX_ARGS as i64 {
                    // Redis checks the range (a C int) first.
                    return Err(ProtocolError::new(if n > i32::MAX as i64 {
                        "invalid multibulk length"
                    } else {
                        "unauthenticated multibulk length"
                    }));
                }
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
            if self.unauthenticated && len > UNAUTH_MAX_BULK {
                return Err(ProtocolError::new("unauthenticated bulk length"));
            }
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

/// Position of the first CRLF at or after `from`.
#[inline]
pub(super) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
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
    fn unauthenticated_limits_are_redis_errors() {
        let unauth = || {
            let mut p = RequestParser::new(1 << 30, 1 << 20);
            p.set_unauthenticated(true);
            p
        };
        for (input, err) in [
            (&b"*11\r\n"[..], "unauthenticated multibulk length"),
            (b"*100\r\n", "unauthenticated multibulk length"),
            (b"*3000000000\r\n", "invalid multibulk length"),
            (b"*1\r\n$16385\r\n", "unauthenticated bulk length"),
            (b"*1\r\n$400000000\r\n", "unauthenticated bulk length"),
            (b"*1\r\n$2000000000\r\n", "invalid bulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
        ] {
            let got = unauth().parse(input).unwrap_err().to_string();
            assert_eq!(got, format!("Protocol error: {err}"), "{input:?}");
        }
        // At the limits: waits for the rest, as Redis does.
        assert!(matches!(
            unauth().parse(b"*10\r\n$16384\r\n"),
            Ok(Parsed::Incomplete { .. })
        ));
        assert_eq!(unauth().parse(b"*0\r\n").unwrap(), Parsed::Empty { len: 4 });
        // Authenticated again (AUTH ran), the configured limits apply.
        let mut p = unauth();
        p.set_unauthenticated(false);
        assert!(matches!(
            p.parse(b"*100\r\n$400000000\r\n"),
            Ok(Parsed::Incomplete { .. })
        ));
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

    #[test]
    fn buffered_bytes_are_bounded() {
        // Without a line end, a header or an inline request may only grow to
        // MAX_INLINE; a declared length only to max_bytes.
        let long = |head: &[u8], fill: u8| {
            let mut b = head.to_vec();
            b.resize(head.len() + MAX_INLINE + 2, fill);
            b
        };
        for (buf, err) in [
            (long(b"*", b'1'), "too big mbulk count string"),
            (long(b"*1\r\n$", b'1'), "too big bulk count string"),
            (long(b"GET ", b'a'), "too big inline request"),
        ] {
            let mut p = RequestParser::new(4096, 16);
            let short = &buf[..MAX_INLINE - 8];
            assert!(matches!(p.parse(short), Ok(Parsed::Incomplete { .. })));
            let got = p.parse(&buf).unwrap_err().to_string();
            assert_eq!(got, format!("Protocol error: {err}"));
        }
        let mut p = RequestParser::new(4096, 16);
        assert_eq!(
            p.parse(b"*1\r\n$4090\r\n").unwrap_err().to_string(),
            "Protocol error: request exceeds limits.max_request_bytes"
        );
        let mut p = RequestParser::new(4096, 16);
        assert_eq!(
            p.parse(b"*1\r\n$4080\r\n").unwrap(),
            Parsed::Incomplete { need: 4080 + 13 }
        );
    }
}

/// Property tests: framing must not depend on how the bytes are split into
/// reads, must agree with redis-protocol, and must hold its limits on garbage.
#[cfg(test)]
mod props {
    use super::*;
    use crate::protocol::encode;
    use bytes::BytesMut;
    use proptest::prelude::*;
    use redis_protocol::resp2::decode::decode as rp_decode;
    use redis_protocol::resp2::types::OwnedFrame;

    type Args = Vec<Vec<u8>>;

    const MAX_BYTES: usize = 4096;

    /// Everything parsing `data` produced, in order, and how it stopped.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        frames: Vec<Args>,
        /// Bytes left over (an incomplete frame) when no error stopped it.
        left: usize,
        error: Option<ProtocolError>,
    }

    /// Feed `data` to a fresh parser the way a session reads a socket: bytes
    /// arrive up to each of `cuts` (then the rest) into a growing buffer that
    /// loses each frame from its front once handled. Checks the `Incomplete`
    /// contract on the way: `need` asks for more than is buffered, and past
    /// `max_bytes` only for the next few header bytes (a declared length never
    /// makes the caller reserve more than `max_bytes`).
    fn feed(p: &mut RequestParser, max_bytes: usize, data: &[u8], cuts: &[usize]) -> Outcome {
        let mut out = Outcome {
            frames: Vec::new(),
            left: 0,
            error: None,
        };
        let mut buf = Vec::new();
        let mut received = 0;
        for end in cuts.iter().copied().chain([data.len()]) {
            let end = end.clamp(received, data.len());
            buf.extend_from_slice(&data[received..end]);
            received = end;
            loop {
                match p.parse(&buf) {
                    Ok(Parsed::Frame { len }) => {
                        assert!(len > 0 && len <= buf.len());
                        let args = (0..p.argc()).map(|i| p.arg(&buf, i).to_vec()).collect();
                        out.frames.push(args);
                        buf.drain(..len);
                    }
                    Ok(Parsed::Inline { len, args }) => {
                        assert!(len > 0 && len <= buf.len());
                        out.frames.push(args);
                        buf.drain(..len);
                    }
                    Ok(Parsed::Empty { len }) => {
                        assert!(len > 0 && len <= buf.len());
                        buf.drain(..len);
                    }
                    Ok(Parsed::Incomplete { need }) => {
                        assert!(need > buf.len(), "need {need} with {} buffered", buf.len());
                        assert!(
                            need <= (buf.len() + 4).max(max_bytes),
                            "need {need} with {} buffered, max_bytes {max_bytes}",
                            buf.len()
                        );
                        break;
                    }
                    Err(e) => {
                        out.error = Some(e);
                        return out;
                    }
                }
            }
        }
        out.left = buf.len();
        out
    }

    /// Argument bytes with CR and LF far more often than chance would give.
    fn arg() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => any::<u8>(),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => Just(b'$'),
        ];
        prop::collection::vec(byte, 0..300)
    }

    fn command() -> impl Strategy<Value = Args> {
        prop::collection::vec(arg(), 1..8)
    }

    fn pipeline() -> impl Strategy<Value = (Vec<Args>, Vec<u8>)> {
        prop::collection::vec(command(), 1..5).prop_map(|cmds| {
            let mut buf = BytesMut::new();
            for c in &cmds {
                encode::command(&mut buf, c);
            }
            (cmds, buf.to_vec())
        })
    }

    /// Bytes that are mostly RESP-ish tokens, so garbage reaches deep states.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(b"*2\r\n".to_vec()),
            Just(b"*1\r\n".to_vec()),
            Just(b"*-1\r\n".to_vec()),
            Just(b"$3\r\n".to_vec()),
            Just(b"$0\r\n".to_vec()),
            (0u32..9000).prop_map(|n| format!("${n}\r\n").into_bytes()),
            (0u32..100).prop_map(|n| format!("*{n}\r\n").into_bytes()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"GET \"a\\x4".to_vec()),
            Just(b"'b\\' ".to_vec()),
            prop::collection::vec(any::<u8>(), 0..16),
        ];
        prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
    }

    fn chunks() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..64, 0..64).prop_map(|sizes| {
            sizes
                .iter()
                .scan(0, |at, s| {
                    *at += s;
                    Some(*at)
                })
                .collect()
        })
    }

    fn new_parser() -> RequestParser {
        RequestParser::new(1 << 20, 64)
    }

    proptest! {
        #[test]
        fn pipeline_split_at_every_position((cmds, data) in pipeline()) {
            let whole = Outcome { frames: cmds, left: 0, error: None };
            prop_assert_eq!(&feed(&mut new_parser(), 1 << 20, &data, &[]), &whole);
            for cut in 0..=data.len() {
                let got = feed(&mut new_parser(), 1 << 20, &data, &[cut]);
                prop_assert_eq!(&got, &whole, "cut at {}", cut);
            }
        }

        #[test]
        fn pipeline_in_random_reads((cmds, data) in pipeline(), cuts in chunks()) {
            let got = feed(&mut new_parser(), 1 << 20, &data, &cuts);
            prop_assert_eq!(got, Outcome { frames: cmds, left: 0, error: None });
        }

        #[test]
        fn agrees_with_redis_protocol((cmds, data) in pipeline(), cut in any::<prop::sample::Index>()) {
            let mut rest = &data[..];
            let mut p = new_parser();
            for args in &cmds {
                let Ok(Parsed::Frame { len }) = p.parse(rest) else {
                    return Err(TestCaseError::fail("not a frame"));
                };
                let (frame, amt) = rp_decode(rest).unwrap().unwrap();
                prop_assert_eq!(len, amt);
                let expected =
                    OwnedFrame::Array(args.iter().cloned().map(OwnedFrame::BulkString).collect());
                prop_assert_eq!(frame, expected);
                // Both wait on any strict prefix of the frame.
                let short = &rest[..cut.index(len)];
                prop_assert!(rp_decode(short).unwrap().is_none());
                let ours = new_parser().parse(short);
                prop_assert!(matches!(ours, Ok(Parsed::Incomplete { .. })), "{:?}", ours);
                rest = &rest[len..];
            }
        }

        #[test]
        fn garbage_never_panics_and_reads_do_not_matter(data in garbage(), cuts in chunks()) {
            let whole = feed(&mut RequestParser::new(MAX_BYTES, 64), MAX_BYTES, &data, &[]);
            let split = feed(&mut RequestParser::new(MAX_BYTES, 64), MAX_BYTES, &data, &cuts);
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000), cuts in chunks()) {
            let whole = feed(&mut RequestParser::new(MAX_BYTES, 64), MAX_BYTES, &data, &[]);
            let split = feed(&mut RequestParser::new(MAX_BYTES, 64), MAX_BYTES, &data, &cuts);
            prop_assert_eq!(whole, split);
        }
    }
}
