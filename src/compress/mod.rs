//! Transparent compression: values are lz4-compressed on their way into Redis
//! and restored on their way out, so clients never see the difference.
//!
//! - [`envelope`]: the stored format (magic, version, codec, length, tag,
//!   payload) and which stored values respite trusts as its own.
//! - [`glob`]: `compression.exclude` key patterns, with Redis's glob semantics.
//! - [`table`]: which commands write values, which replies carry them, which
//!   commands look at a value's bytes.
//! - [`rewrite`]: re-encoding a write request with its values compressed.
//! - [`restore`]: restoring the values inside a reply, byte-identical to what
//!   Redis returns for the uncompressed value (RESP2 and RESP3).
//! - [`bytes_ops`]: byte-level commands (`STRLEN`, `APPEND`, bit commands, ...)
//!   answered as Redis would answer for the uncompressed value.
//!
//! The session calls in through `server::session::compress`; when compression
//! is disabled there is no [`Compressor`] and the data path does nothing else.

pub mod bytes_ops;
pub mod envelope;
pub mod glob;
pub mod restore;
pub mod rewrite;
pub mod table;

use crate::config::CompressionConfig;
use crate::metrics::Metrics;
use envelope::{EnvelopeError, Seal};
use std::borrow::Cow;
use std::sync::Arc;

/// The compression settings in the form the data path uses them.
#[derive(Debug)]
pub struct Compressor {
    pub min_size: usize,
    pub max_decompressed: usize,
    exclude: Vec<Vec<u8>>,
    /// The tag key: which envelopes are respite's own.
    pub seal: Seal,
}

impl Compressor {
    /// `None` when compression is disabled.
    pub fn new(cfg: &CompressionConfig) -> Option<Arc<Compressor>> {
        cfg.enabled.then(|| {
            if cfg.secret.is_none() {
                tracing::warn!(
                    "compression.secret is not set: the tag that marks respite's own \
                     compressed values uses a built-in key, so a client that writes raw \
                     bytes (scripts, RESTORE) can forge a value that reads back decoded; \
                     set the same secret on every respite that shares this Redis"
                );
            }
            let previous: Vec<&[u8]> = cfg
                .previous_secrets
                .iter()
                .map(|s| s.0.as_bytes())
                .collect();
            Arc::new(Compressor {
                min_size: cfg.min_size,
                max_decompressed: cfg.max_decompressed_bytes,
                exclude: cfg.exclude.iter().map(|p| p.as_bytes().to_vec()).collect(),
                seal: Seal::new(
                    cfg.secret.as_ref().map(|s| s.0.as_bytes()),
                    &previous,
                    cfg.accept_v1_envelopes,
                ),
            })
        })
    }

    /// The original bytes of a stored value, `Ok(None)` when the stored
    /// bytes are the value (see [`envelope::unpack`]); a value that begins
    /// with the magic but is not trusted is counted.
    pub fn unpack<'a>(
        &self,
        stored: &'a [u8],
        m: &Metrics,
    ) -> Result<Option<Cow<'a, [u8]>>, EnvelopeError> {
        let r = envelope::unpack(stored, self.max_decompressed, &self.seal);
        if matches!(r, Ok(None)) && envelope::is_envelope(stored) {
            Metrics::add(&m.compress_untrusted, 1);
        }
        r
    }

    /// True when `key` matches a `compression.exclude` pattern.
    pub fn excluded(&self, key: &[u8]) -> bool {
        self.exclude.iter().any(|p| glob::matches(p, key))
    }

    /// What to store for `value` of `key` (`None`: as it is), counted.
    pub fn pack(&self, key: &[u8], value: &[u8], m: &Metrics) -> Option<Vec<u8>> {
        if self.excluded(key) {
            return None;
        }
        let packed = envelope::pack(value, self.min_size, &self.seal)?;
        if packed.get(4) == Some(&envelope::CODEC_LZ4) {
            Metrics::add(&m.compress_values, 1);
            Metrics::add(&m.compress_bytes_in, value.len() as u64);
            Metrics::add(&m.compress_bytes_out, packed.len() as u64);
        }
        Some(packed)
    }
}

/// Printable form of a key for an error line: no CR/LF, bounded length.
pub fn show_key(key: &[u8]) -> String {
    const MAX: usize = 128;
    let mut s: String = key
        .iter()
        .take(MAX)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    if key.len() > MAX {
        s.push_str("...");
    }
    s
}
