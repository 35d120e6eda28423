//! The stored format of a value written through the proxy (see
//! `../shared/DESIGN.md`, "Compression"): magic `F5 52 43`, format version,
//! codec (0 = raw, 1 = lz4 block), original length (u32 LE), payload.
//!
//! Changing this format means keeping the old version readable: data written
//! by one respite version is read by the next.

use std::borrow::Cow;

/// First bytes of every envelope. `0xF5` never starts UTF-8 text.
pub const MAGIC: [u8; 3] = [0xF5, 0x52, 0x43];
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Payload stored as it is (a value that itself begins with the magic).
pub const CODEC_RAW: u8 = 0;
/// Payload is one lz4 block.
pub const CODEC_LZ4: u8 = 1;
/// Magic, version, codec, original length.
pub const HEADER_LEN: usize = 9;
/// An lz4 block cannot expand more than this (one length byte per 255 bytes
/// of match): a header claiming more than this times its payload is corrupt,
/// which is checked before anything is allocated.
const LZ4_MAX_RATIO: usize = 255;

/// Why a stored envelope cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("header truncated")]
    Truncated,
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("unknown codec {0}")]
    Codec(u8),
    #[error("claims {claimed} bytes, more than compression.max_decompressed_bytes ({max})")]
    TooLarge { claimed: usize, max: usize },
    #[error("corrupt payload ({0})")]
    Corrupt(&'static str),
}

/// True when `stored` begins with the magic (it is an envelope, or meant to be).
#[inline]
pub fn is_envelope(stored: &[u8]) -> bool {
    stored.starts_with(&MAGIC)
}

fn header(out: &mut Vec<u8>, codec: u8, len: u32) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(codec);
    out.extend_from_slice(&len.to_le_bytes());
}

/// What to store for `value`, or `None` to store it as it is: an lz4
/// envelope when the value is at least `min_size` bytes and that makes it
/// smaller; a raw envelope when the value itself begins with the magic (so it
/// reads back exactly).
pub fn pack(value: &[u8], min_size: usize) -> Option<Vec<u8>> {
    // Redis caps values far below 4 GiB (proto-max-bulk-len is at most 512 MB
    // by default); a longer one is stored as it is.
    let len = u32::try_from(value.len()).ok()?;
    if value.len() >= min_size {
        let bound = lz4_flex::block::get_maximum_output_size(value.len());
        let mut out = Vec::with_capacity(HEADER_LEN + bound);
        header(&mut out, CODEC_LZ4, len);
        out.resize(HEADER_LEN + bound, 0);
        if let Ok(n) = lz4_flex::block::compress_into(value, &mut out[HEADER_LEN..]) {
            if HEADER_LEN + n < value.len() {
                out.truncate(HEADER_LEN + n);
                return Some(out);
            }
        }
    }
    if is_envelope(value) {
        let mut out = Vec::with_capacity(HEADER_LEN + value.len());
        header(&mut out, CODEC_RAW, len);
        out.extend_from_slice(value);
        return Some(out);
    }
    None
}

/// The original bytes of a stored value: borrowed when it is not an envelope
/// (written by someone else) or a raw one, owned when it was compressed.
/// Never allocates more than `max` bytes, nor more than the payload could
/// decompress to.
pub fn unpack(stored: &[u8], max: usize) -> Result<Cow<'_, [u8]>, EnvelopeError> {
    if !is_envelope(stored) {
        return Ok(Cow::Borrowed(stored));
    }
    if stored.len() < HEADER_LEN {
        return Err(EnvelopeError::Truncated);
    }
    if stored[3] != VERSION {
        return Err(EnvelopeError::Version(stored[3]));
    }
    let claimed = u32::from_le_bytes([stored[5], stored[6], stored[7], stored[8]]) as usize;
    let payload = &stored[HEADER_LEN..];
    match stored[4] {
        CODEC_RAW => {
            if payload.len() != claimed {
                return Err(EnvelopeError::Corrupt("length does not match"));
            }
            Ok(Cow::Borrowed(payload))
        }
        CODEC_LZ4 => {
            if claimed > max {
                return Err(EnvelopeError::TooLarge { claimed, max });
            }
            if claimed > payload.len().saturating_mul(LZ4_MAX_RATIO) {
                return Err(EnvelopeError::Corrupt(
                    "length claim exceeds what lz4 can encode",
                ));
            }
            let mut out = vec![0u8; claimed];
            match lz4_flex::block::decompress_into(payload, &mut out) {
                Ok(n) if n == claimed => Ok(Cow::Owned(out)),
                Ok(_) => Err(EnvelopeError::Corrupt("length does not match")),
                Err(_) => Err(EnvelopeError::Corrupt("lz4 data invalid")),
            }
        }
        other => Err(EnvelopeError::Codec(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn small_and_incompressible_values_are_stored_as_they_are() {
        assert_eq!(pack(b"hello", 16), None);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(pack(&noise, 16), None);
    }

    #[test]
    fn compressible_values_shrink_and_restore() {
        let v = b"{\"name\":\"x\",\"tags\":[1,2,3]}".repeat(100);
        let p = pack(&v, 1024).unwrap();
        assert!(p.len() < v.len() / 4);
        assert_eq!(&p[..5], &[0xF5, 0x52, 0x43, VERSION, CODEC_LZ4]);
        assert_eq!(unpack(&p, 1 << 20).unwrap(), &v[..]);
    }

    #[test]
    fn magic_prefixed_values_get_a_raw_envelope() {
        let v = [0xF5, 0x52, 0x43, 1, 2];
        let p = pack(&v, 1024).unwrap();
        assert_eq!(p[4], CODEC_RAW);
        assert_eq!(unpack(&p, 10).unwrap(), &v[..]);
    }

    #[test]
    fn bad_envelopes_are_errors_without_large_allocations() {
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&[VERSION, CODEC_LZ4]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(b"xx");
        assert!(matches!(
            unpack(&huge, 512 << 20),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(matches!(
            unpack(&huge, usize::MAX),
            Err(EnvelopeError::Corrupt(_))
        ));
        assert_eq!(unpack(&MAGIC, 10), Err(EnvelopeError::Truncated));
        let mut p = pack(&b"abcdefgh".repeat(300), 16).unwrap();
        p[3] = 9;
        assert_eq!(unpack(&p, 1 << 20), Err(EnvelopeError::Version(9)));
        p[3] = VERSION;
        p[4] = 7;
        assert_eq!(unpack(&p, 1 << 20), Err(EnvelopeError::Codec(7)));
        p[4] = CODEC_LZ4;
        let n = p.len();
        p.truncate(n - 3);
        assert!(unpack(&p, 1 << 20).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u8>(), 0..3000), min in 16usize..2000, rep in 1usize..4) {
            let v = v.repeat(rep);
            match pack(&v, min) {
                Some(p) => {
                    prop_assert!(is_envelope(&p));
                    prop_assert_eq!(unpack(&p, usize::MAX).unwrap(), &v[..]);
                }
                None => {
                    prop_assert!(!is_envelope(&v));
                    prop_assert_eq!(unpack(&v, 0).unwrap(), &v[..]);
                }
            }
        }

        #[test]
        fn garbage_never_panics(v in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut s = MAGIC.to_vec();
            s.extend_from_slice(&v);
            let _ = unpack(&s, 1 << 16);
        }
    }
}
