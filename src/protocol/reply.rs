//! Reply framing: finds where each RESP2/RESP3 reply from Redis ends, without
//! building it, so replies are handed on as the exact bytes Redis sent.
//!
//! Resumable like the request parser: a reply of a million elements arriving
//! over many reads is scanned once.
//!
//! Any nesting depth is accepted: Redis itself sends replies thousands of
//! levels deep (a Lua script returning a self-referencing table is converted
//! until Lua's stack runs out, about 8 000 levels of `*1`). The scan is
//! iterative; its only state is one counter per open aggregate, and every
//! level costs at least four bytes of reply (`*1\r\n`), so the memory it
//! holds is bounded by the size of the reply, never by a depth limit.

use super::request::{find_crlf, parse_int};
use super::ProtocolError;

/// Above this many levels, the stack's memory is released once the reply
/// is framed, so one deep reply does not pin it for the connection's life.
const KEEP_LEVELS: usize = 64;

#[derive(Debug, Default)]
pub struct ReplyScanner {
    /// Bytes of the current reply already accepted.
    pos: usize,
    /// Elements still expected at each open aggregate level.
    stack: Vec<u64>,
    /// After `scan` returned `None`: the buffer length the reply needs at
    /// least, when a bulk string's header told (0: not known).
    need: usize,
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// After [`ReplyScanner::scan`] returned `None`: how long the buffer must
    /// be at least for the reply to make progress (the end of the bulk string
    /// being received), or 0 when that is not known yet.
    pub fn need(&self) -> usize {
        self.need
    }

    /// Length of the complete reply at the start of `buf`, or `None` when more
    /// bytes are needed (then call again with the same bytes plus more).
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        self.need = 0;
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
                            self.need = end;
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
                    }
                    // An attribute, even an empty one, is followed by the
                    // value it annotates: both are one reply.
                    if t == b'|' && n >= 0 {
                        children += 1;
                    }
                }
                other => return Err(ProtocolError::unexpected_reply_byte(other)),
            }
            if children > 0 {
                self.stack.push(children);
                continue;
            }
            // A leaf (or empty aggregate) completed: close finished levels.
            loop {
                match self.stack.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        if self.stack.capacity() > KEEP_LEVELS {
                            self.stack = Vec::new();
                        }
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
    fn need_is_the_end_of_the_bulk_being_received() {
        let mut sc = ReplyScanner::new();
        assert_eq!(sc.scan(b"*2\r\n$3\r\nab").unwrap(), None);
        assert_eq!(sc.need(), 13);
        assert_eq!(sc.scan(b"*2\r\n$3\r\nabc\r\n$100").unwrap(), None);
        assert_eq!(sc.need(), 0, "the second header is not complete");
        assert_eq!(sc.scan(b"*2\r\n$3\r\nabc\r\n$100\r\n").unwrap(), None);
        assert_eq!(sc.need(), 13 + 6 + 102);
    }

    #[test]
    fn rejects_garbage() {
        assert!(ReplyScanner::new().scan(b"?x\r\n").is_err());
        assert!(ReplyScanner::new().scan(b"$x\r\n").is_err());
    }

    /// `|0` is an empty attribute map: valid RESP3 grammar, and like any
    /// attribute it annotates the value that follows, so both are one reply
    /// (found by the fuzzer; once split in two, every later reply would have
    /// gone to the wrong request).
    #[test]
    fn empty_attribute_annotates_next_value() {
        let reply = b"|0\r\n+OK\r\n";
        assert_eq!(ReplyScanner::new().scan(reply).unwrap(), Some(reply.len()));
    }
}

/// Replies nested as deep as Redis nests them (and far deeper) are framed
/// without recursion, and the stack is let go once they are.
#[cfg(test)]
mod deep {
    use super::*;

    /// What Redis 7.0 sends for `local a = {}; local b = {a}; a[1] = b;
    /// return a`: `*1` levels until Lua's stack gives out, then an error.
    fn self_referencing_table(levels: usize) -> Vec<u8> {
        let mut r = b"*1\r\n".repeat(levels);
        r.extend_from_slice(b"-ERR reached lua stack limit\r\n");
        r
    }

    #[test]
    fn frames_a_reply_deeper_than_redis_sends() {
        for levels in [7_995, 1_000_000] {
            let reply = self_referencing_table(levels);
            let mut joined = reply.clone();
            joined.extend_from_slice(b"+next\r\n");
            let mut sc = ReplyScanner::new();
            assert_eq!(sc.scan(&joined).unwrap(), Some(reply.len()), "{levels}");
            assert_eq!(sc.stack.capacity(), 0, "stack kept after a deep reply");
            assert_eq!(sc.scan(&joined[reply.len()..]).unwrap(), Some(7));
        }
    }

    #[test]
    fn deep_reply_in_small_reads() {
        let mut reply = self_referencing_table(20_000);
        // Wider levels too: maps and sets whose last member goes deeper.
        for _ in 0..5_000 {
            reply.splice(0..0, b"%1\r\n+k\r\n~2\r\n:1\r\n".iter().copied());
        }
        let mut sc = ReplyScanner::new();
        for end in (0..reply.len()).step_by(61) {
            assert_eq!(sc.scan(&reply[..end]).unwrap(), None, "at {end}");
        }
        assert_eq!(sc.scan(&reply).unwrap(), Some(reply.len()));
    }
}

/// Property tests: reply lengths must not depend on how the bytes are split
/// into reads, and must agree with redis-protocol where it decodes the reply.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// A RESP2/RESP3 reply as Redis could send it.
    #[derive(Debug, Clone)]
    enum Value {
        Simple(Vec<u8>),
        Error(Vec<u8>),
        Int(i64),
        Bulk(Vec<u8>),
        NullBulk,
        NullArray,
        Null,
        Double(String),
        Bool(bool),
        BigNum(String),
        Verbatim(Vec<u8>),
        BlobError(Vec<u8>),
        Array(Vec<Value>),
        Set(Vec<Value>),
        Push(Vec<Value>),
        Map(Vec<(Value, Value)>),
        /// Attribute pairs, then the value they annotate.
        Attr(Vec<(Value, Value)>, Box<Value>),
    }

    impl Value {
        fn encode(&self, out: &mut Vec<u8>) {
            let line = |out: &mut Vec<u8>, t: u8, s: &[u8]| {
                out.push(t);
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            };
            let blob = |out: &mut Vec<u8>, t: u8, prefix: &[u8], s: &[u8]| {
                let len = (prefix.len() + s.len()).to_string();
                line(out, t, len.as_bytes());
                out.extend_from_slice(prefix);
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            };
            let header =
                |out: &mut Vec<u8>, t: u8, n: usize| line(out, t, n.to_string().as_bytes());
            match self {
                Value::Simple(s) => line(out, b'+', s),
                Value::Error(s) => line(out, b'-', s),
                Value::Int(i) => line(out, b':', i.to_string().as_bytes()),
                Value::Bulk(b) => blob(out, b'$', b"", b),
                Value::NullBulk => out.extend_from_slice(b"$-1\r\n"),
                Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
                Value::Null => out.extend_from_slice(b"_\r\n"),
                Value::Double(d) => line(out, b',', d.as_bytes()),
                Value::Bool(b) => line(out, b'#', if *b { b"t" } else { b"f" }),
                Value::BigNum(n) => line(out, b'(', n.as_bytes()),
                Value::Verbatim(s) => blob(out, b'=', b"txt:", s),
                Value::BlobError(s) => blob(out, b'!', b"", s),
                Value::Array(v) | Value::Set(v) | Value::Push(v) => {
                    let t = match self {
                        Value::Array(_) => b'*',
                        Value::Set(_) => b'~',
                        _ => b'>',
                    };
                    header(out, t, v.len());
                    v.iter().for_each(|e| e.encode(out));
                }
                Value::Map(kv) | Value::Attr(kv, _) => {
                    let t = if let Value::Map(_) = self { b'%' } else { b'|' };
                    header(out, t, kv.len());
                    for (k, v) in kv {
                        k.encode(out);
                        v.encode(out);
                    }
                    if let Value::Attr(_, v) = self {
                        v.encode(out);
                    }
                }
            }
        }

        /// Made only of the types RESP2 has.
        fn is_resp2(&self) -> bool {
            match self {
                Value::Simple(_)
                | Value::Error(_)
                | Value::Int(_)
                | Value::Bulk(_)
                | Value::NullBulk
                | Value::NullArray => true,
                Value::Array(v) => v.iter().all(Value::is_resp2),
                _ => false,
            }
        }
    }

    fn line_text() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            any::<u8>().prop_map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
            0..20,
        )
    }

    fn blob() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![4 => any::<u8>(), 1 => Just(b'\r'), 1 => Just(b'\n')];
        prop::collection::vec(byte, 0..120)
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            line_text().prop_map(Value::Simple),
            line_text().prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            blob().prop_map(Value::Bulk),
            Just(Value::NullBulk),
            Just(Value::NullArray),
            Just(Value::Null),
            prop_oneof![
                any::<f64>().prop_map(|d| d.to_string()),
                Just("inf".to_string()),
                Just("-inf".to_string()),
                Just("nan".to_string()),
            ]
            .prop_map(Value::Double),
            any::<bool>().prop_map(Value::Bool),
            "-?[0-9]{1,60}".prop_map(Value::BigNum),
            blob().prop_map(Value::Verbatim),
            blob().prop_map(Value::BlobError),
        ]
    }

    /// Nested values, depth at most 4 (a leaf at depth 1).
    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 48, 6, |inner| {
            let list = || prop::collection::vec(inner.clone(), 0..6);
            let pairs = |n: std::ops::Range<usize>| {
                prop::collection::vec((inner.clone(), inner.clone()), n)
            };
            let attr =
                (pairs(0..3), inner.clone()).prop_map(|(kv, v)| Value::Attr(kv, Box::new(v)));
            prop_oneof![
                list().prop_map(Value::Array),
                list().prop_map(Value::Set),
                list().prop_map(Value::Push),
                pairs(0..4).prop_map(Value::Map),
                attr,
            ]
        })
    }

    /// Replies encoded back to back, with the length of each.
    fn replies() -> impl Strategy<Value = (Vec<Value>, Vec<usize>, Vec<u8>)> {
        prop::collection::vec(value(), 1..8).prop_map(|vals| {
            let mut buf = Vec::new();
            let mut lens = Vec::new();
            for v in &vals {
                let before = buf.len();
                v.encode(&mut buf);
                lens.push(buf.len() - before);
            }
            (vals, lens, buf)
        })
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

    /// Reply lengths found when `data` arrives up to each of `cuts`, then the
    /// rest, into a buffer that loses each reply from its front; then the bytes
    /// left over, or the error that stopped the scan.
    fn feed(data: &[u8], cuts: &[usize]) -> (Vec<usize>, Result<usize, ProtocolError>) {
        let mut sc = ReplyScanner::new();
        let mut lens = Vec::new();
        let mut buf = Vec::new();
        let mut received = 0;
        for end in cuts.iter().copied().chain([data.len()]) {
            let end = end.clamp(received, data.len());
            buf.extend_from_slice(&data[received..end]);
            received = end;
            loop {
                match sc.scan(&buf) {
                    Ok(Some(len)) => {
                        assert!(len > 0 && len <= buf.len(), "{len} of {}", buf.len());
                        lens.push(len);
                        buf.drain(..len);
                    }
                    Ok(None) => break,
                    Err(e) => return (lens, Err(e)),
                }
            }
        }
        (lens, Ok(buf.len()))
    }

    /// Mostly RESP tokens, so garbage reaches nested states.
    fn garbage() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            (prop::sample::select(&b"*%~>|"[..]), 0i32..4).prop_map(|(t, n)| format!(
                "{}{n}\r\n",
                t as char
            )
            .into_bytes()),
            (-2i32..40).prop_map(|n| format!("${n}\r\n").into_bytes()),
            Just(b"+OK\r\n".to_vec()),
            Just(b":1\r\n".to_vec()),
            Just(b"_\r\n".to_vec()),
            Just(b"=5\r\ntxt:a\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            prop::collection::vec(any::<u8>(), 0..16),
        ];
        prop::collection::vec(token, 0..48).prop_map(|t| t.concat())
    }

    proptest! {
        #[test]
        fn lengths_at_every_split((_, lens, data) in replies()) {
            prop_assert_eq!(feed(&data, &[]), (lens.clone(), Ok(0)));
            for cut in 0..=data.len() {
                prop_assert_eq!(feed(&data, &[cut]), (lens.clone(), Ok(0)), "cut at {}", cut);
            }
        }

        #[test]
        fn lengths_in_random_reads((_, lens, data) in replies(), cuts in chunks()) {
            prop_assert_eq!(feed(&data, &cuts), (lens, Ok(0)));
        }

        #[test]
        fn agrees_with_redis_protocol((vals, lens, data) in replies()) {
            let mut rest = &data[..];
            for (v, len) in vals.iter().zip(lens) {
                prop_assert_eq!(ReplyScanner::new().scan(rest).unwrap(), Some(len));
                if v.is_resp2() {
                    let got = redis_protocol::resp2::decode::decode_range(rest).unwrap();
                    prop_assert_eq!(got.map(|(_, amt)| amt), Some(len));
                }
                // redis-protocol refuses some valid RESP3 (aggregates as map keys
                // or set members, for one); where it decodes, it must agree.
                if let Ok(got) = redis_protocol::resp3::decode::complete::decode_range(rest) {
                    prop_assert_eq!(got.map(|(_, amt)| amt), Some(len));
                }
                rest = &rest[len..];
            }
        }

        #[test]
        fn garbage_never_panics_and_reads_do_not_matter(data in garbage(), cuts in chunks()) {
            prop_assert_eq!(feed(&data, &[]), feed(&data, &cuts));
        }

        #[test]
        fn random_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000), cuts in chunks()) {
            prop_assert_eq!(feed(&data, &[]), feed(&data, &cuts));
        }
    }
}
