//! Bounded per-key counters: a heavy-hitter summary in the family of
//! Space-Saving (Metwally, Agrawal, El Abbadi, 2005), made cheap enough to
//! run on every request.
//!
//! At most `capacity` keys are tracked. A tracked key's access costs one hash
//! and two table reads: no ordering is maintained. When a key that is not
//! tracked arrives and the table is full:
//!
//! - an admission filter (a small array of counters indexed by the key's
//!   hash, cleared every `filter.len()` arrivals) must have seen it before,
//!   as in Filtered Space-Saving (Homem and Carvalho, 2010): the flood of
//!   keys seen once in a while never displaces anything;
//! - it then replaces the lightest of [`SAMPLES`] tracked keys picked at
//!   random (as Redis's own LFU eviction samples), inheriting that weight
//!   plus one, as Space-Saving does, so its weight stays an upper bound.
//!
//! A key hot enough to matter is admitted on its second sighting and never
//! sampled as the lightest, so its counters are exact from then on; cold keys
//! come and go. Memory is fixed by `capacity`, whatever the keyspace.

use std::hash::BuildHasher;

/// Tracked keys compared when one must make room.
pub const SAMPLES: usize = 8;

/// Counters of one tracked key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCounters {
    pub reads: u64,
    pub writes: u64,
    pub hits: u64,
    pub misses: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Unix time of the last access, milliseconds.
    pub last_access_ms: u64,
    /// Requests that touched the key since it was tracked (reads, writes and
    /// keyed commands that are neither).
    pub ops: u64,
}

impl KeyCounters {
    pub fn merge(&mut self, o: &KeyCounters) {
        self.reads += o.reads;
        self.writes += o.writes;
        self.hits += o.hits;
        self.misses += o.misses;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.ops += o.ops;
        self.last_access_ms = self.last_access_ms.max(o.last_access_ms);
    }
}

/// One slot of the open-addressing table; `hash == 0` marks it empty.
#[derive(Debug, Default)]
struct Slot {
    hash: u64,
    /// Space-Saving weight: an upper bound of the key's accesses.
    weight: u64,
    key: Box<[u8]>,
    c: KeyCounters,
}

/// Multiply and fold the 128-bit product: the mixing step of the hash.
#[inline]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    (p as u64) ^ ((p >> 64) as u64)
}

/// The heavy-hitter summary with per-key counters.
///
/// Entries live in one linear-probing table (at most 3/4 full) so that a
/// tracked key costs one hash and usually one cache miss; removal shifts
/// followers back, so there are no tombstones. On the hot path keys are told
/// apart by their 64-bit keyed hash alone (the chance that two of 100 000
/// tracked keys collide is about 3e-10); `get` compares bytes.
#[derive(Debug)]
pub struct TopK {
    capacity: usize,
    len: usize,
    slots: Vec<Slot>,
    /// Per-process random seed: clients cannot aim collisions at the table.
    seed: [u64; 2],
    filter: Vec<u8>,
    filter_arrivals: usize,
    rng: u64,
    /// Keys that were replaced by another.
    pub evictions: u64,
}

impl TopK {
    pub fn new(capacity: usize) -> TopK {
        let capacity = capacity.clamp(1, u32::MAX as usize - 1);
        let r = std::collections::hash_map::RandomState::new();
        let seed = [r.hash_one(1u64) | 1, r.hash_one(2u64) | 1];
        TopK {
            capacity,
            len: 0,
            slots: Vec::new(),
            seed,
            filter: Vec::new(),
            filter_arrivals: 0,
            rng: (seed[0] ^ seed[1].rotate_left(17)) | 1,
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.len = 0;
        self.filter = Vec::new();
        self.filter_arrivals = 0;
        self.evictions = 0;
    }

    /// A keyed hash of `key` (8 bytes at a time, folded multiplications); never 0.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut h = self.seed[0] ^ (key.len() as u64).wrapping_mul(K);
        let mut chunks = key.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            h = fold_mul(h ^ w, self.seed[1] ^ K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            h = fold_mul(h ^ u64::from_le_bytes(b), self.seed[1] ^ K);
        }
        fold_mul(h, K).max(1)
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot holding `hash`, or the empty slot where it would go.
    #[inline]
    fn probe(&self, hash: u64) -> (usize, bool) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let h = self.slots[i].hash;
            if h == hash {
                return (i, true);
            }
            if h == 0 {
                return (i, false);
            }
            i = (i + 1) & mask;
        }
    }

    /// Empty slot `gap`, moving back every later entry of the run whose probe
    /// passed through it (so lookups never stop early at the hole).
    fn remove_at(&mut self, mut gap: usize) {
        let mask = self.mask();
        let mut j = gap;
        loop {
            j = (j + 1) & mask;
            let h = self.slots[j].hash;
            if h == 0 {
                break;
            }
            let ideal = h as usize & mask;
            // Movable when its ideal slot is not in the cyclic range (gap, j].
            let dist_j = j.wrapping_sub(ideal) & mask;
            let dist_gap = j.wrapping_sub(gap) & mask;
            if dist_j >= dist_gap {
                self.slots.swap(gap, j);
                gap = j;
            }
        }
        self.slots[gap].hash = 0;
        self.slots[gap].key = Box::default();
        self.len -= 1;
    }

    /// Reads the first slot `key` probes (both ends of it), to bring it into
    /// the cache ahead of [`TopK::touch`]; the value means nothing.
    #[inline]
    pub fn warm(&self, key: &[u8]) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        let s = &self.slots[self.hash(key) as usize & self.mask()];
        s.hash ^ s.c.last_access_ms
    }

    /// Count one operation on `key` and return its counters; `None` when the
    /// key is not (or not yet) tracked.
    #[inline]
    pub fn touch(&mut self, key: &[u8]) -> Option<&mut KeyCounters> {
        if self.slots.is_empty() {
            let n = (self.capacity + self.capacity / 3 + 1).next_power_of_two();
            self.slots.resize_with(n, Slot::default);
        }
        let hash = self.hash(key);
        let (mut i, found) = self.probe(hash);
        if found {
            self.slots[i].weight += 1;
        } else {
            let mut weight = 1;
            if self.len >= self.capacity {
                if !self.admit(hash) {
                    return None;
                }
                let victim = self.lightest();
                weight = self.slots[victim].weight + 1;
                self.remove_at(victim);
                self.evictions += 1;
                i = self.probe(hash).0;
            }
            self.slots[i] = Slot {
                hash,
                weight,
                key: key.into(),
                c: KeyCounters::default(),
            };
            self.len += 1;
        }
        let c = &mut self.slots[i].c;
        c.ops += 1;
        Some(c)
    }

    /// Whether an untracked key was seen recently enough to be admitted.
    fn admit(&mut self, hash: u64) -> bool {
        if self.filter.is_empty() {
            self.filter = vec![0; self.capacity.next_power_of_two().max(64)];
        }
        self.filter_arrivals += 1;
        if self.filter_arrivals > self.filter.len() {
            self.filter.fill(0);
            self.filter_arrivals = 1;
        }
        let mask = self.filter.len() - 1;
        let slot = &mut self.filter[(hash >> 32) as usize & mask];
        if *slot == 0 {
            *slot = 1;
            return false;
        }
        *slot = 0;
        true
    }

    /// The slot of the lightest of [`SAMPLES`] random tracked keys.
    fn lightest(&mut self) -> usize {
        let n = self.slots.len();
        let mut best = usize::MAX;
        let mut best_w = u64::MAX;
        let mut seen = 0;
        // The table is at least about half full; bound the tries anyway.
        for _ in 0..SAMPLES * 8 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let i = self.rng as usize & (n - 1);
            let s = &self.slots[i];
            if s.hash == 0 {
                continue;
            }
            if s.weight < best_w {
                best_w = s.weight;
                best = i;
            }
            seen += 1;
            if seen == SAMPLES {
                break;
            }
        }
        if best == usize::MAX {
            best = self
                .slots
                .iter()
                .position(|s| s.hash != 0)
                .expect("a full table");
        }
        best
    }

    /// Counters of a tracked key.
    pub fn get(&self, key: &[u8]) -> Option<&KeyCounters> {
        if self.slots.is_empty() {
            return None;
        }
        let (i, found) = self.probe(self.hash(key));
        let s = &self.slots[i];
        (found && *s.key == *key).then_some(&s.c)
    }

    /// Every tracked key and its counters.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &KeyCounters)> {
        self.slots
            .iter()
            .filter(|s| s.hash != 0)
            .map(|s| (&*s.key, &s.c))
    }

    /// Bytes held (table, filter and key bytes), approximately.
    pub fn memory(&self) -> usize {
        let keys: usize = self.iter().map(|(k, _)| k.len()).sum();
        self.slots.capacity() * std::mem::size_of::<Slot>() + self.filter.capacity() + keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_exactly_under_capacity() {
        let mut t = TopK::new(10);
        for _ in 0..5 {
            t.touch(b"a").unwrap().reads += 1;
        }
        t.touch(b"b").unwrap().writes += 1;
        assert_eq!(t.get(b"a").unwrap().ops, 5);
        assert_eq!(t.get(b"a").unwrap().reads, 5);
        assert_eq!(t.get(b"b").unwrap().writes, 1);
        assert!(t.get(b"c").is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn hot_keys_survive_a_flood_of_cold_ones() {
        let mut t = TopK::new(100);
        for round in 0..200u32 {
            for h in 0..5u32 {
                t.touch(format!("hot{h}").as_bytes());
            }
            for i in 0..50u32 {
                t.touch(&(round * 50 + i).to_be_bytes());
                // Some cold keys come twice and get admitted.
                if i % 10 == 0 {
                    t.touch(&(round * 50 + i).to_be_bytes());
                }
            }
        }
        assert_eq!(t.len(), 100);
        for h in 0..5u32 {
            assert_eq!(t.get(format!("hot{h}").as_bytes()).unwrap().ops, 200);
        }
        assert!(t.evictions > 0);
    }

    #[test]
    fn hash_depends_on_every_byte() {
        let t = TopK::new(1);
        let a = t.hash(b"0123456789abcdef0");
        assert_ne!(a, t.hash(b"0123456789abcdef1"));
        assert_ne!(a, t.hash(b"1123456789abcdef0"));
        assert_ne!(t.hash(b""), t.hash(b"\0"));
    }

    #[test]
    fn table_survives_churn() {
        let mut t = TopK::new(37);
        let mut x = 99u64;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 500).to_le_bytes();
            t.touch(&k);
            t.touch(&k);
        }
        assert_eq!(t.len(), 37);
        assert_eq!(t.iter().count(), 37);
        // Every tracked key is found where probing looks for it.
        let keys: Vec<Vec<u8>> = t.iter().map(|(k, _)| k.to_vec()).collect();
        for k in keys {
            assert!(t.get(&k).is_some());
        }
    }
}
