//! Transparent compression: values are lz4-compressed on their way into Redis
//! and restored on their way out, so clients never see the difference.
//!
//! - [`envelope`]: the stored format (magic, version, codec, length, payload).
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
use std::sync::Arc;

/// The compression settings in the form the data path uses them.
#[derive(Debug)]
pub struct Compressor {
    pub min_size: usize,
    pub max_decompressed: usize,
    exclude: Vec<Vec<u8>>,
}

impl Compressor {
    /// `None` when compression is disabled.
    pub fn new(cfg: &CompressionConfig) -> Option<Arc<Compressor>> {
        cfg.enabled.then(|| {
            Arc::new(Compressor {
                min_size: cfg.min_size,
                max_decompressed: cfg.max_decompressed_bytes,
                exclude: cfg.exclude.iter().map(|p| p.as_bytes().to_vec()).collect(),
            })
        })
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
        let packed = envelope::pack(value, self.min_size)?;
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
