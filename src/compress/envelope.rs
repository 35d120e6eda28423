//! The stored format of a value written through the proxy (see
//! `../shared/DESIGN.md`, "Compression", and docs/DESIGN.md, "Envelope
//! integrity"): magic `F5 52 43`, format version, codec (0 = raw, 1 = lz4
//! block), original length (u32 LE), then, from version 2 on, a 64-bit tag,
//! then the payload.
//!
//! The tag is SipHash-2-4 of the version, codec, length and payload under a
//! key derived from `compression.secret`: respite restores only envelopes
//! whose tag it can verify, so bytes that merely look like an envelope
//! (written by a script, `RESTORE`, `APPEND` to an empty key, ...) read back
//! exactly as Redis stores them. Verification comes before anything is
//! allocated.
//!
//! Changing this format means keeping the old version readable: version 1
//! (no tag) is read only with `compression.accept_v1_envelopes`, because
//! nothing tells an old envelope from a planted one.

use siphasher::sip::SipHasher24;
use siphasher::sip128::{Hasher128, SipHasher24 as SipHasher24x128};
use std::borrow::Cow;
use std::hash::Hasher;

/// First bytes of every envelope. `0xF5` never starts UTF-8 text.
pub const MAGIC: [u8; 3] = [0xF5, 0x52, 0x43];
/// The format version this code writes: tagged.
pub const VERSION: u8 = 2;
/// The untagged format of earlier releases (read with `accept_v1_envelopes`).
pub const VERSION_1: u8 = 1;
/// Payload stored as it is (a value that itself begins with the magic).
pub const CODEC_RAW: u8 = 0;
/// Payload is one lz4 block.
pub const CODEC_LZ4: u8 = 1;
/// Magic, version, codec, original length, tag.
pub const HEADER_LEN: usize = 17;
/// Magic, version, codec, original length (version 1).
pub const V1_HEADER_LEN: usize = 9;
/// Where the tag sits in a version-2 header.
const TAG_AT: usize = 9;
/// An lz4 block cannot expand more than this (one length byte per 255 bytes
/// of match): a header claiming more than this times its payload is corrupt,
/// which is checked before anything is allocated.
const LZ4_MAX_RATIO: usize = 255;
/// Fixed key of the key derivation (any constant: it only separates this use
/// of SipHash from others).
const KDF_KEY: (u64, u64) = (0x7265_7370_6974_6521, 0x656e_7665_6c6f_7065);

/// Why a trusted envelope cannot be restored.
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

/// The keys envelopes are tagged and verified with, and whether untagged
/// version-1 envelopes are trusted. Its `Debug` output names no key.
#[derive(Clone)]
pub struct Seal {
    key: (u64, u64),
    /// Earlier secrets: envelopes tagged with them still verify.
    previous: Vec<(u64, u64)>,
    accept_v1: bool,
}

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("previous", &self.previous.len())
            .field("accept_v1", &self.accept_v1)
            .finish_non_exhaustive()
    }
}

/// A 128-bit SipHash key from a secret of any length.
fn derive(secret: &[u8]) -> (u64, u64) {
    let mut h = SipHasher24x128::new_with_keys(KDF_KEY.0, KDF_KEY.1);
    h.write(b"respite compression envelope tag key\0");
    h.write(secret);
    let k = h.finish128();
    (k.h1, k.h2)
}

impl Seal {
    /// Tags keyed by `secret` (`None`: a built-in key anyone can know, which
    /// makes the tag a checksum), also accepting tags of `previous` secrets.
    pub fn new(secret: Option<&[u8]>, previous: &[&[u8]], accept_v1: bool) -> Seal {
        Seal {
            key: derive(secret.unwrap_or_default()),
            previous: previous.iter().map(|s| derive(s)).collect(),
            accept_v1,
        }
    }

    /// The built-in key, no previous secrets, no version 1 (tests, benches).
    pub fn public() -> Seal {
        Seal::new(None, &[], false)
    }

    fn tag_with(key: (u64, u64), fields: &[u8], payload: &[u8]) -> u64 {
        let mut h = SipHasher24::new_with_keys(key.0, key.1);
        h.write(fields);
        h.write(payload);
        h.finish()
    }

    /// The tag of a version-2 envelope: `fields` are its version, codec and
    /// length bytes.
    fn tag(&self, fields: &[u8], payload: &[u8]) -> u64 {
        Self::tag_with(self.key, fields, payload)
    }

    fn verifies(&self, fields: &[u8], payload: &[u8], tag: u64) -> bool {
        self.tag(fields, payload) == tag
            || self
                .previous
                .iter()
                .any(|&k| Self::tag_with(k, fields, payload) == tag)
    }
}

/// True when `stored` begins with the magic (it may be an envelope).
#[inline]
pub fn is_envelope(stored: &[u8]) -> bool {
    stored.starts_with(&MAGIC)
}

/// Fill in the header of `out` (`HEADER_LEN` bytes followed by the payload).
fn seal(out: &mut [u8], codec: u8, len: u32, seal: &Seal) {
    out[..3].copy_from_slice(&MAGIC);
    out[3] = VERSION;
    out[4] = codec;
    out[5..9].copy_from_slice(&len.to_le_bytes());
    let (head, payload) = out.split_at_mut(HEADER_LEN);
    let tag = seal.tag(&head[3..TAG_AT], payload);
    head[TAG_AT..].copy_from_slice(&tag.to_le_bytes());
}

/// What to store for `value`, or `None` to store it as it is: an lz4
/// envelope when the value is at least `min_size` bytes and that makes it
/// smaller; a raw envelope when the value itself begins with the magic (so it
/// reads back exactly).
pub fn pack(value: &[u8], min_size: usize, s: &Seal) -> Option<Vec<u8>> {
    // Redis caps values far below 4 GiB (proto-max-bulk-len is at most 512 MB
    // by default); a longer one is stored as it is.
    let len = u32::try_from(value.len()).ok()?;
    if value.len() >= min_size {
        let bound = lz4_flex::block::get_maximum_output_size(value.len());
        let mut out = vec![0u8; HEADER_LEN + bound];
        if let Ok(n) = lz4_flex::block::compress_into(value, &mut out[HEADER_LEN..]) {
            if HEADER_LEN + n < value.len() {
                out.truncate(HEADER_LEN + n);
                seal(&mut out, CODEC_LZ4, len, s);
                return Some(out);
            }
        }
    }
    if is_envelope(value) {
        return Some(raw(value, s));
    }
    None
}

/// A raw (codec 0) envelope of `value`, whatever its size.
pub fn raw(value: &[u8], s: &Seal) -> Vec<u8> {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    let mut out = vec![0u8; HEADER_LEN + value.len()];
    out[HEADER_LEN..].copy_from_slice(value);
    seal(&mut out, CODEC_RAW, len, s);
    out
}

/// The original bytes of a stored value: `Ok(None)` when it is not an
/// envelope respite trusts (no magic, an inconsistent header, a tag that
/// does not verify): then the stored bytes are the value. Borrowed for a raw
/// envelope, owned when it was compressed. Nothing is allocated before the
/// tag verified, and never more than `max` bytes.
pub fn unpack<'a>(
    stored: &'a [u8],
    max: usize,
    s: &Seal,
) -> Result<Option<Cow<'a, [u8]>>, EnvelopeError> {
    if !is_envelope(stored) {
        return Ok(None);
    }
    match stored.get(3) {
        Some(&VERSION) => {}
        Some(&VERSION_1) if s.accept_v1 => return unpack_v1(stored, max).map(Some),
        _ => return Ok(None),
    }
    if stored.len() < HEADER_LEN {
        return Ok(None);
    }
    let claimed = u32::from_le_bytes([stored[5], stored[6], stored[7], stored[8]]) as usize;
    let payload = &stored[HEADER_LEN..];
    let consistent = match stored[4] {
        CODEC_RAW => payload.len() == claimed,
        CODEC_LZ4 => claimed <= payload.len().saturating_mul(LZ4_MAX_RATIO),
        _ => false,
    };
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&stored[TAG_AT..HEADER_LEN]);
    if !consistent || !s.verifies(&stored[3..TAG_AT], payload, u64::from_le_bytes(tag)) {
        return Ok(None);
    }
    if stored[4] == CODEC_RAW {
        return Ok(Some(Cow::Borrowed(payload)));
    }
    if claimed > max {
        return Err(EnvelopeError::TooLarge { claimed, max });
    }
    decompress(payload, claimed).map(|v| Some(Cow::Owned(v)))
}

fn decompress(payload: &[u8], claimed: usize) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = vec![0u8; claimed];
    match lz4_flex::block::decompress_into(payload, &mut out) {
        Ok(n) if n == claimed => Ok(out),
        Ok(_) => Err(EnvelopeError::Corrupt("length does not match")),
        Err(_) => Err(EnvelopeError::Corrupt("lz4 data invalid")),
    }
}

/// A version-1 envelope, trusted as earlier releases did: checked for
/// consistency only.
fn unpack_v1(stored: &[u8], max: usize) -> Result<Cow<'_, [u8]>, EnvelopeError> {
    if stored.len() < V1_HEADER_LEN {
        return Err(EnvelopeError::Truncated);
    }
    let claimed = u32::from_le_bytes([stored[5], stored[6], stored[7], stored[8]]) as usize;
    let payload = &stored[V1_HEADER_LEN..];
    match stored[4] {
        CODEC_RAW if payload.len() == claimed => Ok(Cow::Borrowed(payload)),
        CODEC_RAW => Err(EnvelopeError::Corrupt("length does not match")),
        CODEC_LZ4 => {
            if claimed > max {
                return Err(EnvelopeError::TooLarge { claimed, max });
            }
            if claimed > payload.len().saturating_mul(LZ4_MAX_RATIO) {
                return Err(EnvelopeError::Corrupt(
                    "length claim exceeds what lz4 can encode",
                ));
            }
            decompress(payload, claimed).map(Cow::Owned)
        }
        other => Err(EnvelopeError::Codec(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s() -> Seal {
        Seal::new(Some(b"0123456789abcdef-test"), &[], false)
    }

    /// A version-1 envelope, as earlier releases wrote it.
    fn v1(codec: u8, len: u32, payload: &[u8]) -> Vec<u8> {
        let mut e = MAGIC.to_vec();
        e.extend_from_slice(&[VERSION_1, codec]);
        e.extend_from_slice(&len.to_le_bytes());
        e.extend_from_slice(payload);
        e
    }

    #[test]
    fn small_and_incompressible_values_are_stored_as_they_are() {
        assert_eq!(pack(b"hello", 16, &s()), None);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(pack(&noise, 16, &s()), None);
    }

    #[test]
    fn compressible_values_shrink_and_restore() {
        let v = b"{\"name\":\"x\",\"tags\":[1,2,3]}".repeat(100);
        let p = pack(&v, 1024, &s()).unwrap();
        assert!(p.len() < v.len() / 4);
        assert_eq!(&p[..5], &[0xF5, 0x52, 0x43, VERSION, CODEC_LZ4]);
        assert_eq!(unpack(&p, 1 << 20, &s()).unwrap().unwrap(), &v[..]);
    }

    #[test]
    fn magic_prefixed_values_get_a_raw_envelope() {
        let v = [0xF5, 0x52, 0x43, 1, 2];
        let p = pack(&v, 1024, &s()).unwrap();
        assert_eq!(p[4], CODEC_RAW);
        assert_eq!(p.len(), HEADER_LEN + v.len());
        assert_eq!(unpack(&p, 10, &s()).unwrap().unwrap(), &v[..]);
    }

    #[test]
    fn the_tag_covers_header_and_payload() {
        let v = b"abcdefgh".repeat(300);
        let p = pack(&v, 16, &s()).unwrap();
        // Any changed byte after the magic makes it a plain value.
        for i in 3..p.len() {
            let mut q = p.clone();
            q[i] ^= 0x01;
            assert_eq!(unpack(&q, 1 << 20, &s()), Ok(None), "byte {i}");
        }
        // Another secret does not verify; a previous one does.
        let other = Seal::new(Some(b"another-secret-0123"), &[], false);
        assert_eq!(unpack(&p, 1 << 20, &other), Ok(None));
        let rotated = Seal::new(
            Some(b"another-secret-0123"),
            &[b"0123456789abcdef-test"],
            false,
        );
        assert_eq!(unpack(&p, 1 << 20, &rotated).unwrap().unwrap(), &v[..]);
        // No secret: a public key, still a tag.
        let public = pack(&v, 16, &Seal::public()).unwrap();
        assert_ne!(public, p);
        assert_eq!(unpack(&public, 1 << 20, &s()), Ok(None));
        assert!(unpack(&public, 1 << 20, &Seal::public()).unwrap().is_some());
    }

    #[test]
    fn the_tag_is_the_same_however_the_bytes_are_split() {
        let k = derive(b"x");
        let data = b"0123456789abcdefghijklmnopqrstuvwxyz".repeat(3);
        let whole = Seal::tag_with(k, &[], &data);
        for cut in 0..data.len() {
            assert_eq!(Seal::tag_with(k, &data[..cut], &data[cut..]), whole);
        }
    }

    #[test]
    fn untrusted_envelopes_are_plain_values() {
        // Consistent version-1 envelopes (what clients could plant before).
        let raw1 = v1(CODEC_RAW, 5, b"hello");
        let lz = lz4_flex::block::compress(&b"xyz".repeat(100));
        let lz1 = v1(CODEC_LZ4, 300, &lz);
        let huge = v1(CODEC_LZ4, u32::MAX, b"xx");
        // A consistent version-2 header with a wrong tag.
        let mut forged = pack(&b"xyz".repeat(100), 16, &s()).unwrap();
        forged[TAG_AT] ^= 0xff;
        for e in [&raw1, &lz1, &huge, &forged, &MAGIC.to_vec()] {
            assert_eq!(unpack(e, 512 << 20, &s()), Ok(None), "{e:?}");
        }
        // Trusted version 1, as before.
        let old = Seal::new(Some(b"0123456789abcdef-test"), &[], true);
        assert_eq!(unpack(&raw1, 10, &old).unwrap().unwrap(), &b"hello"[..]);
        assert_eq!(
            unpack(&lz1, 1 << 20, &old).unwrap().unwrap(),
            &b"xyz".repeat(100)[..]
        );
        assert!(matches!(
            unpack(&huge, 512 << 20, &old),
            Err(EnvelopeError::TooLarge { .. })
        ));
        assert!(matches!(
            unpack(&huge, usize::MAX, &old),
            Err(EnvelopeError::Corrupt(_))
        ));
        assert_eq!(unpack(&MAGIC, 10, &old), Ok(None));
        assert_eq!(
            unpack(&[&MAGIC[..], &[VERSION_1, 0]].concat(), 10, &old),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(
            unpack(&v1(7, 1, b"x"), 10, &old),
            Err(EnvelopeError::Codec(7))
        );
    }

    #[test]
    fn trusted_envelopes_over_the_limit_are_errors() {
        let v = b"abcdefgh".repeat(300);
        let p = pack(&v, 16, &s()).unwrap();
        assert_eq!(
            unpack(&p, 100, &s()),
            Err(EnvelopeError::TooLarge {
                claimed: v.len(),
                max: 100
            })
        );
    }

    proptest! {
        #[test]
        fn round_trip(v in proptest::collection::vec(any::<u8>(), 0..3000), min in 16usize..2000, rep in 1usize..4) {
            let v = v.repeat(rep);
            match pack(&v, min, &s()) {
                Some(p) => {
                    prop_assert!(is_envelope(&p));
                    prop_assert_eq!(unpack(&p, usize::MAX, &s()).unwrap().unwrap(), &v[..]);
                }
                None => {
                    prop_assert!(!is_envelope(&v));
                    prop_assert_eq!(unpack(&v, 0, &s()), Ok(None));
                }
            }
        }

        #[test]
        fn garbage_never_panics_and_is_never_trusted(v in proptest::collection::vec(any::<u8>(), 0..200), version in 0u8..4) {
            let mut e = MAGIC.to_vec();
            e.push(version);
            e.extend_from_slice(&v);
            prop_assert_eq!(unpack(&e, 1 << 16, &s()), Ok(None));
            let _ = unpack(&e, 1 << 16, &Seal::new(None, &[], true));
        }
    }
}
