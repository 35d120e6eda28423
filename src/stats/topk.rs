//! Bounded per-key counters: the Space-Saving heavy-hitter algorithm
//! (Metwally, Agrawal, El Abbadi, 2005).
//!
//! At most `capacity` keys are tracked. A key not tracked replaces the
//! tracked key with the smallest weight and inherits that weight as its error
//! bound, so a key whose true count exceeds `total / capacity` is always
//! tracked, and its counted operations are exact from the moment it entered.
//! The entry with the smallest weight is found with a binary min-heap over
//! entry indices; a hit only moves its entry down the heap (hot keys sit at
//! the bottom and move rarely). Memory is fixed by `capacity`, whatever the
//! keyspace.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

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

#[derive(Debug)]
struct Entry {
    key: Box<[u8]>,
    hash: u64,
    /// Space-Saving estimate: true count <= weight, weight - error <= true count.
    weight: u64,
    /// Index of this entry in `heap`.
    pos: u32,
    c: KeyCounters,
}

/// The map's keys are already hashes.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Space-Saving summary with per-key counters.
#[derive(Debug)]
pub struct TopK {
    capacity: usize,
    entries: Vec<Entry>,
    /// Min-heap of entry indices by weight.
    heap: Vec<u32>,
    /// Key hash -> entry index. Keys are hashed with a per-process random
    /// seed (SipHash), so clients cannot aim collisions at the table.
    index: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    hasher: std::collections::hash_map::RandomState,
    /// Keys that were replaced by another.
    pub evictions: u64,
}

impl TopK {
    pub fn new(capacity: usize) -> TopK {
        let capacity = capacity.clamp(1, u32::MAX as usize - 1);
        TopK {
            capacity,
            entries: Vec::new(),
            heap: Vec::new(),
            index: HashMap::default(),
            hasher: Default::default(),
            evictions: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.heap = Vec::new();
        self.index = HashMap::default();
        self.evictions = 0;
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Count one operation on `key` and return its counters. `None` only in
    /// the negligible case of a 64-bit hash collision with another tracked key.
    pub fn touch(&mut self, key: &[u8]) -> Option<&mut KeyCounters> {
        let hash = self.hash(key);
        let i = match self.index.get(&hash) {
            Some(&i) => {
                let e = &mut self.entries[i as usize];
                if *e.key != *key {
                    return None;
                }
                e.weight += 1;
                let pos = e.pos as usize;
                self.sift_down(pos);
                i as usize
            }
            None if self.entries.len() < self.capacity => {
                let i = self.entries.len();
                self.entries.push(Entry {
                    key: key.into(),
                    hash,
                    weight: 1,
                    pos: self.heap.len() as u32,
                    c: KeyCounters::default(),
                });
                self.heap.push(i as u32);
                self.sift_up(self.heap.len() - 1);
                self.index.insert(hash, i as u32);
                i
            }
            None => {
                // Replace the key with the smallest weight.
                let i = self.heap[0] as usize;
                let e = &mut self.entries[i];
                self.index.remove(&e.hash);
                e.key = key.into();
                e.hash = hash;
                e.weight += 1;
                e.c = KeyCounters::default();
                self.index.insert(hash, i as u32);
                self.evictions += 1;
                self.sift_down(0);
                i
            }
        };
        let c = &mut self.entries[i].c;
        c.ops += 1;
        Some(c)
    }

    /// Counters of a tracked key.
    pub fn get(&self, key: &[u8]) -> Option<&KeyCounters> {
        let i = *self.index.get(&self.hash(key))?;
        let e = &self.entries[i as usize];
        (*e.key == *key).then_some(&e.c)
    }

    /// Counters of a tracked key by hash (hit/miss of a reply).
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut KeyCounters> {
        let i = *self.index.get(&self.hash(key))?;
        let e = &mut self.entries[i as usize];
        (*e.key == *key).then_some(&mut e.c)
    }

    /// Every tracked key and its counters.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &KeyCounters)> {
        self.entries.iter().map(|e| (&*e.key, &e.c))
    }

    /// Bytes held, approximately (for `# Keystats`).
    pub fn memory(&self) -> usize {
        let keys: usize = self.entries.iter().map(|e| e.key.len()).sum();
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.heap.capacity() * 4
            + self.index.capacity() * 13
            + keys
    }

    fn weight_at(&self, pos: usize) -> u64 {
        self.entries[self.heap[pos] as usize].weight
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        let (ia, ib) = (self.heap[a] as usize, self.heap[b] as usize);
        self.entries[ia].pos = a as u32;
        self.entries[ib].pos = b as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.weight_at(parent) <= self.weight_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * pos + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let mut m = l;
            if r < n && self.weight_at(r) < self.weight_at(l) {
                m = r;
            }
            if self.weight_at(pos) <= self.weight_at(m) {
                break;
            }
            self.swap(pos, m);
            pos = m;
        }
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
    fn evicts_the_coldest_and_keeps_memory_bounded() {
        let mut t = TopK::new(3);
        for _ in 0..100 {
            t.touch(b"hot");
        }
        // 100 cold keys over two slots: their weights reach about 50, so
        // the hot key (100) is never the smallest.
        for i in 0..100u32 {
            t.touch(&i.to_be_bytes());
        }
        for _ in 0..10 {
            t.touch(b"hot");
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(b"hot").unwrap().ops, 110);
        assert_eq!(t.evictions, 98);
    }

    #[test]
    fn heap_stays_a_heap() {
        let mut t = TopK::new(50);
        let mut x = 12345u64;
        for _ in 0..20000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = (x % 200).min(x % 37);
            t.touch(&k.to_le_bytes());
        }
        for p in 1..t.heap.len() {
            assert!(t.weight_at((p - 1) / 2) <= t.weight_at(p));
        }
        for (p, &i) in t.heap.iter().enumerate() {
            assert_eq!(t.entries[i as usize].pos as usize, p);
        }
    }
}
