//! The checks behind the fuzz targets, shared with the `replay` example so a
//! corpus can be rerun on the stable toolchain without libFuzzer.
//!
//! Each input is parsed twice: whole, and in two reads split at
//! `data[0] % data.len()`. Both must yield the same frames and stop the same
//! way; nothing may panic; every length must lie inside the buffer. Then, as
//! an oracle for what framing means, the first frame is compared with
//! redis-protocol's decoder.

use respite::protocol::{Parsed, ProtocolError, ReplyScanner, RequestParser};

/// `max_bytes` of the fuzzed parser: small, so inputs can reach the limit.
pub const MAX_BYTES: usize = 4096;
/// `max_args` of the fuzzed parser.
pub const MAX_ARGS: usize = 64;

/// Where the second read starts.
fn split_point(data: &[u8]) -> usize {
    data.first().map_or(0, |&b| b as usize % data.len())
}

#[derive(Debug, PartialEq)]
struct Requests {
    frames: Vec<Vec<Vec<u8>>>,
    left: usize,
    error: Option<ProtocolError>,
}

/// Frame `data` arriving as `reads`, as a session does: a growing buffer
/// that loses each handled frame from its front.
fn parse_requests(data: &[u8], reads: &[usize]) -> Requests {
    let mut p = RequestParser::new(MAX_BYTES, MAX_ARGS);
    let mut out = Requests {
        frames: Vec::new(),
        left: 0,
        error: None,
    };
    let mut buf = Vec::new();
    let mut received = 0;
    for &end in reads {
        buf.extend_from_slice(&data[received..end]);
        received = end;
        loop {
            match p.parse(&buf) {
                Ok(Parsed::Frame { len }) => {
                    assert!(len > 0 && len <= buf.len(), "frame {len} of {}", buf.len());
                    assert!(p.argc() > 0 && p.argc() <= MAX_ARGS, "argc {}", p.argc());
                    for &(off, n) in p.spans() {
                        assert!(off as usize + n as usize <= len, "arg outside its frame");
                    }
                    let args = (0..p.argc()).map(|i| p.arg(&buf, i).to_vec()).collect();
                    out.frames.push(args);
                    buf.drain(..len);
                }
                Ok(Parsed::Inline { len, args }) => {
                    assert!(len > 0 && len <= buf.len(), "inline {len} of {}", buf.len());
                    assert!(!args.is_empty() && args.len() <= MAX_ARGS);
                    out.frames.push(args);
                    buf.drain(..len);
                }
                Ok(Parsed::Empty { len }) => {
                    assert!(len > 0 && len <= buf.len(), "empty {len} of {}", buf.len());
                    buf.drain(..len);
                }
                Ok(Parsed::Incomplete { need }) => {
                    // More than is buffered, and a declared length can never
                    // make the caller reserve past max_bytes.
                    assert!(need > buf.len(), "need {need} of {}", buf.len());
                    assert!(need <= (buf.len() + 4).max(MAX_BYTES), "need {need}");
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

pub fn request_parser(data: &[u8]) {
    let whole = parse_requests(data, &[data.len()]);
    let split = parse_requests(data, &[split_point(data), data.len()]);
    assert_eq!(whole, split, "framing depends on where the read ended");
    // Every array of bulk strings we accept is one redis-protocol accepts,
    // with the same length and the same arguments.
    let mut p = RequestParser::new(MAX_BYTES, MAX_ARGS);
    if let Ok(Parsed::Frame { len }) = p.parse(data) {
        use redis_protocol::resp2::types::OwnedFrame;
        let theirs = redis_protocol::resp2::decode::decode(data);
        let Ok(Some((OwnedFrame::Array(args), amt))) = theirs else {
            panic!("we framed {len} bytes, redis-protocol: {theirs:?}");
        };
        assert_eq!(len, amt, "frame length differs from redis-protocol's");
        let ours: Vec<_> = (0..p.argc())
            .map(|i| OwnedFrame::BulkString(p.arg(data, i).to_vec()))
            .collect();
        assert_eq!(ours, args, "arguments differ from redis-protocol's");
    }
}

/// Reply lengths of `data` arriving as `reads`, then what stopped the scan.
fn scan_replies(data: &[u8], reads: &[usize]) -> (Vec<usize>, Result<usize, ProtocolError>) {
    let mut sc = ReplyScanner::new();
    let mut lens = Vec::new();
    let mut buf = Vec::new();
    let mut received = 0;
    for &end in reads {
        buf.extend_from_slice(&data[received..end]);
        received = end;
        loop {
            match sc.scan(&buf) {
                Ok(Some(len)) => {
                    assert!(len > 0 && len <= buf.len(), "reply {len} of {}", buf.len());
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

pub fn reply_scanner(data: &[u8]) {
    let whole = scan_replies(data, &[data.len()]);
    let split = scan_replies(data, &[split_point(data), data.len()]);
    assert_eq!(whole, split, "framing depends on where the read ended");
    // redis-protocol is stricter in places (UTF-8 where RESP has bytes, keys
    // it can hash), so only a reply both frame is compared.
    if let (Some(&ours), Ok(Some((_, theirs)))) = (
        whole.0.first(),
        redis_protocol::resp3::decode::complete::decode_range(data),
    ) {
        assert_eq!(ours, theirs, "reply length differs from redis-protocol's");
    }
}
