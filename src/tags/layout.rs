//! Where the index lives: key names under the configured prefix.
//!
//! Cluster mode puts every entry of a key in the key's own hash slot, named
//! through a short hashtag precomputed per slot (`{h}` with
//! `key_slot("{h}") == slot`):
//!
//! - `P{h}:t:<tag>`: ZSET, the keys of slot `h` under `<tag>`, scored by
//!   expiry (unix ms, `inf` when persistent).
//! - `P{h}:k:<key>`: STRING, the key's tags (netstrings).
//! - `P{h}:c`: HASH, per tag of the slot whether its directory entry is
//!   confirmed (`ok`) or pending (a token).
//! - `P d:<tag>`: HASH, the directory: slot -> generation, for every slot
//!   holding entries of `<tag>` (lives wherever it hashes).
//!
//! Standalone has one node, so no hashtags, flags or directory: `P t:<tag>`
//! and `P k:<key>`.

use crate::cluster::slots::crc16;

const SLOT_COUNT: usize = crate::cluster::slots::SLOT_COUNT as usize;
use std::sync::OnceLock;

/// The shortest `[0-9a-z]` string hashing to each slot.
fn hashtags() -> &'static [String] {
    static TABLE: OnceLock<Vec<String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut table: Vec<Option<String>> = vec![None; SLOT_COUNT];
        let mut missing = SLOT_COUNT;
        let mut len = 1;
        while missing > 0 {
            let mut idx = vec![0usize; len];
            'all: loop {
                let s: Vec<u8> = idx.iter().map(|&i| ALPHABET[i]).collect();
                let slot = (crc16(&s) as usize) % SLOT_COUNT;
                if table[slot].is_none() {
                    table[slot] = Some(String::from_utf8_lossy(&s).into_owned());
                    missing -= 1;
                    if missing == 0 {
                        break 'all;
                    }
                }
                // Next string of this length (odometer).
                let mut p = len;
                loop {
                    if p == 0 {
                        break 'all;
                    }
                    p -= 1;
                    idx[p] += 1;
                    if idx[p] < ALPHABET.len() {
                        break;
                    }
                    idx[p] = 0;
                }
            }
            len += 1;
        }
        table.into_iter().map(|s| s.unwrap_or_default()).collect()
    })
}

/// The hashtag naming `slot`'s share of the index.
pub fn hashtag(slot: u16) -> &'static str {
    &hashtags()[slot as usize % SLOT_COUNT]
}

/// Index key names for one prefix, in cluster or standalone form.
#[derive(Debug, Clone)]
pub struct Layout {
    pub prefix: String,
    pub cluster: bool,
}

/// The index keys of one bucket: a slot in cluster mode, everything in
/// standalone.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Entry set prefix: `zp + tag` is a tag's ZSET.
    pub zp: Vec<u8>,
    /// Record prefix: `rp + key` is a key's record.
    pub rp: Vec<u8>,
    /// Flag hash, empty in standalone.
    pub fl: Vec<u8>,
}

impl Bucket {
    pub fn zset(&self, tag: &[u8]) -> Vec<u8> {
        [&self.zp[..], tag].concat()
    }

    pub fn record(&self, key: &[u8]) -> Vec<u8> {
        [&self.rp[..], key].concat()
    }
}

impl Layout {
    pub fn new(prefix: &str, cluster: bool) -> Layout {
        Layout {
            prefix: prefix.to_string(),
            cluster,
        }
    }

    /// The bucket of `slot` (ignored in standalone).
    pub fn bucket(&self, slot: u16) -> Bucket {
        let p = &self.prefix;
        if self.cluster {
            let h = hashtag(slot);
            Bucket {
                zp: format!("{p}{{{h}}}:t:").into_bytes(),
                rp: format!("{p}{{{h}}}:k:").into_bytes(),
                fl: format!("{p}{{{h}}}:c").into_bytes(),
            }
        } else {
            Bucket {
                zp: format!("{p}t:").into_bytes(),
                rp: format!("{p}k:").into_bytes(),
                fl: Vec::new(),
            }
        }
    }

    /// The directory of `tag` (cluster mode).
    pub fn dir(&self, tag: &[u8]) -> Vec<u8> {
        [self.prefix.as_bytes(), b"d:", tag].concat()
    }

    /// The sweep lease key: one proxy instance sweeps per interval.
    pub fn sweep_lock(&self) -> Vec<u8> {
        [self.prefix.as_bytes(), b"sweep"].concat()
    }

    /// What an index key found by SCAN is: an entry set (slot, tag) or a
    /// directory (tag).
    pub fn classify<'a>(&self, key: &'a [u8]) -> Option<IndexKey<'a>> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        if let Some(tag) = rest.strip_prefix(b"d:") {
            return Some(IndexKey::Dir(tag));
        }
        if !self.cluster {
            return rest.strip_prefix(b"t:").map(|t| IndexKey::Entries(0, t));
        }
        let rest = rest.strip_prefix(b"{")?;
        let close = rest.iter().position(|&c| c == b'}')?;
        let tag = rest[close + 1..].strip_prefix(b":t:")?;
        Some(IndexKey::Entries(
            crate::cluster::key_slot(&key[..self.prefix.len() + close + 2]),
            tag,
        ))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum IndexKey<'a> {
    Entries(u16, &'a [u8]),
    Dir(&'a [u8]),
}

/// A tag list as the record stores it (netstrings: `3:foo5:hello`).
pub fn encode_tags<T: AsRef<[u8]>>(tags: &[T]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in tags {
        let t = t.as_ref();
        out.extend_from_slice(t.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(t);
    }
    out
}

/// The tags of a record; stops at the first malformed entry.
pub fn decode_tags(mut s: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(c) = s.iter().position(|&b| b == b':') {
        let Some(n) = std::str::from_utf8(&s[..c])
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        else {
            break;
        };
        let Some(t) = s.get(c + 1..c + 1 + n) else {
            break;
        };
        out.push(t.to_vec());
        s = &s[c + 1 + n..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::key_slot;

    #[test]
    fn every_slot_has_a_hashtag_that_hashes_to_it() {
        for slot in 0..crate::cluster::SLOT_COUNT {
            let h = hashtag(slot);
            assert!(!h.is_empty() && h.len() <= 4, "{slot}: {h}");
            assert_eq!(key_slot(format!("{{{h}}}").as_bytes()), slot);
        }
    }

    #[test]
    fn bucket_keys_live_in_their_slot_and_classify_back() {
        let l = Layout::new("__respite:", true);
        for slot in [0u16, 1, 777, 16383] {
            let b = l.bucket(slot);
            let z = b.zset(b"user:{42}");
            assert_eq!(key_slot(&z), slot);
            assert_eq!(key_slot(&b.record(b"k")), slot);
            assert_eq!(key_slot(&b.fl), slot);
            assert_eq!(
                l.classify(&z),
                Some(IndexKey::Entries(slot, &b"user:{42}"[..]))
            );
        }
        assert_eq!(l.classify(b"__respite:d:a"), Some(IndexKey::Dir(&b"a"[..])));
        assert_eq!(l.classify(b"other"), None);
        let s = Layout::new("p:", false);
        assert_eq!(s.classify(b"p:t:x"), Some(IndexKey::Entries(0, &b"x"[..])));
    }

    #[test]
    fn tag_records_round_trip() {
        let tags: Vec<&[u8]> = vec![b"a", b"", b"12:x:", b"\xff\x00"];
        assert_eq!(decode_tags(&encode_tags(&tags)), tags);
    }
}
