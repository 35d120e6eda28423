//! Write requests re-encoded with their values compressed. The request is
//! rebuilt only when at least one value changed; otherwise the client's bytes
//! are forwarded as they are.

use super::table::Values;
use super::Compressor;
use crate::metrics::Metrics;
use crate::protocol::encode::itoa;
use bytes::{BufMut, BytesMut};

/// A rebuilt request and the spans of its arguments.
#[derive(Debug)]
pub struct Rewritten {
    pub raw: BytesMut,
    pub spans: Vec<(u32, u32)>,
}

/// The value argument indices of a request, each with its key's index.
fn value_positions(values: Values, argc: usize) -> Vec<(usize, usize)> {
    match values {
        Values::At(i) => vec![(i, 1)],
        Values::KeyValuePairs => (2..argc).step_by(2).map(|v| (v, v - 1)).collect(),
        Values::FieldValuePairs => (3..argc).step_by(2).map(|v| (v, 1)).collect(),
    }
}

/// The request with its values as they are to be stored, or `None` when
/// every value is stored as it is.
pub fn rewrite<'a>(
    argc: usize,
    arg: &dyn Fn(usize) -> &'a [u8],
    values: Values,
    c: &Compressor,
    m: &Metrics,
) -> Option<Rewritten> {
    let mut replaced: Vec<(usize, Vec<u8>)> = Vec::new();
    for (v, k) in value_positions(values, argc) {
        if v >= argc {
            continue;
        }
        if let Some(p) = c.pack(arg(k), arg(v), m) {
            replaced.push((v, p));
        }
    }
    if replaced.is_empty() {
        return None;
    }
    let total: usize = (0..argc).map(|i| arg(i).len() + 16).sum();
    let mut raw = BytesMut::with_capacity(total);
    let mut spans = Vec::with_capacity(argc);
    raw.put_u8(b'*');
    raw.put_slice(itoa(argc as i64).as_bytes());
    raw.put_slice(b"\r\n");
    let mut next = replaced.iter().peekable();
    for i in 0..argc {
        let a: &[u8] = match next.peek() {
            Some((v, p)) if *v == i => {
                next.next();
                p
            }
            _ => arg(i),
        };
        raw.put_u8(b'$');
        raw.put_slice(itoa(a.len() as i64).as_bytes());
        raw.put_slice(b"\r\n");
        spans.push((raw.len() as u32, a.len() as u32));
        raw.put_slice(a);
        raw.put_slice(b"\r\n");
    }
    Some(Rewritten { raw, spans })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CompressionConfig;

    #[test]
    fn only_large_values_of_included_keys_change() {
        let c = Compressor::new(&CompressionConfig {
            enabled: true,
            min_size: 64,
            exclude: vec!["raw:*".into()],
            max_decompressed_bytes: 1 << 20,
            secret: None,
            previous_secrets: vec![],
            accept_v1_envelopes: false,
        })
        .unwrap();
        let m = Metrics::default();
        let big = "x".repeat(500);
        let args = [
            "MSET",
            "a",
            "small",
            "raw:b",
            big.as_str(),
            "c",
            big.as_str(),
        ];
        let r = rewrite(
            args.len(),
            &|i| args[i].as_bytes(),
            Values::KeyValuePairs,
            &c,
            &m,
        )
        .unwrap();
        let arg = |i: usize| {
            let (o, l) = r.spans[i];
            &r.raw[o as usize..(o + l) as usize]
        };
        assert_eq!(arg(2), b"small");
        assert_eq!(arg(4), big.as_bytes());
        assert!(super::super::envelope::is_envelope(arg(6)));
        assert_eq!(&*c.unpack(arg(6), &m).unwrap().unwrap(), big.as_bytes());
        let args = ["SET", "k", "v"];
        assert!(rewrite(3, &|i| args[i].as_bytes(), Values::At(2), &c, &m).is_none());
    }
}
