//! Hash slots: the CRC16 of a key (or of its hash tag) modulo 16384, and the
//! [`SlotMap`] saying which shard serves each slot.
//!
//! The map is a sorted vector of disjoint slot ranges searched by binary
//! search, as fred.rs does: a healthy cluster has a handful of ranges, so a
//! lookup touches a cache line or two, and a refresh builds one small vector.
//! A 16384-entry array would save the search but cost 32-64 KB per map and
//! hide the structure that logs and tests want to print and compare.

use super::TopologyError;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: u16 = 16384;

/// A node's address as `host:port` (IPv6 hosts in brackets), ready for `connect`.
pub type NodeAddr = String;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0, no reflection),
/// the checksum Redis Cluster hashes keys with. Built at compile time.
static CRC16_TABLE: [u16; 256] = crc16_table();

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC16-XMODEM of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[((crc >> 8) as u8 ^ b) as usize]
    })
}

/// The part of `key` that is hashed: the text between the first `{` and the
/// first `}` after it, when that text is not empty; otherwise the whole key.
/// This is what lets `{user1000}.following` and `{user1000}.followers` share
/// a slot, and why `foo{}{bar}` hashes whole (its first tag is empty).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The hash slot of `key`, as `CLUSTER KEYSLOT` computes it.
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) & (SLOT_COUNT - 1)
}

/// One primary and the replicas that serve its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub primary: NodeAddr,
    /// Replicas usable for reads; unhealthy ones are left out when the map is built.
    pub replicas: Vec<NodeAddr>,
}

impl Shard {
    pub fn new(primary: impl Into<NodeAddr>) -> Shard {
        Shard {
            primary: primary.into(),
            replicas: Vec::new(),
        }
    }
}

/// Slots `start..=end` are served by `shards[shard]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub shard: usize,
}

impl SlotRange {
    /// Number of slots in the range (never zero).
    pub fn count(&self) -> usize {
        (self.end - self.start) as usize + 1
    }
}

/// Which shard serves each slot. Slots no shard claims are simply absent
/// (a cluster being set up or losing a shard); lookups for them return `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// Sorted by `start`, disjoint, and adjacent ranges of one shard merged,
    /// so equal topologies give equal maps.
    ranges: Vec<SlotRange>,
    /// Shards ordered by the first slot they serve; a shard may own no range
    /// (a primary that has no slots yet, or lost them all to `MOVED`).
    shards: Vec<Shard>,
}

impl SlotMap {
    /// An empty map: every lookup misses.
    pub fn new() -> SlotMap {
        SlotMap::default()
    }

    /// A map from shards and `(start, end, shard index)` ranges in any order.
    /// Refuses slots past 16383, reversed or overlapping ranges and shard
    /// indices out of bounds: a topology reply with those is corrupt, and
    /// routing by a guess would write keys to the wrong node.
    pub fn from_parts(
        shards: Vec<Shard>,
        ranges: impl IntoIterator<Item = (u16, u16, usize)>,
    ) -> Result<SlotMap, TopologyError> {
        let mut list = Vec::new();
        for (start, end, shard) in ranges {
            if start > end || end >= SLOT_COUNT {
                return Err(TopologyError::Shape(format!(
                    "invalid slot range {start}-{end}"
                )));
            }
            if shard >= shards.len() {
                return Err(TopologyError::Shape(format!(
                    "slot range {start}-{end} names shard {shard} of {}",
                    shards.len()
                )));
            }
            list.push(SlotRange { start, end, shard });
        }
        list.sort_by_key(|r| r.start);
        if let Some(w) = list.windows(2).find(|w| w[1].start <= w[0].end) {
            return Err(TopologyError::Shape(format!(
                "slot ranges {}-{} and {}-{} overlap",
                w[0].start, w[0].end, w[1].start, w[1].end
            )));
        }
        let mut map = SlotMap {
            ranges: list,
            shards,
        };
        map.normalize();
        Ok(map)
    }

    /// Index into [`SlotMap::shards`] of the shard serving `slot`.
    #[inline]
    pub fn shard_index(&self, slot: u16) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.end < slot);
        match self.ranges.get(i) {
            Some(r) if r.start <= slot => Some(r.shard),
            _ => None,
        }
    }

    /// The shard serving `slot`.
    #[inline]
    pub fn node_for(&self, slot: u16) -> Option<&Shard> {
        self.shard_index(slot).map(|i| &self.shards[i])
    }

    /// The shard serving `key`.
    #[inline]
    pub fn node_for_key(&self, key: &[u8]) -> Option<&Shard> {
        self.node_for(key_slot(key))
    }

    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    /// How many of the 16384 slots some shard serves.
    pub fn covered_slots(&self) -> usize {
        self.ranges.iter().map(SlotRange::count).sum()
    }

    /// Whether every slot is served (what `cluster_state:ok` requires by default).
    pub fn is_complete(&self) -> bool {
        self.covered_slots() == SLOT_COUNT as usize
    }

    /// Every shard's primary, in shard order, including primaries that
    /// currently own no slot (fan-outs like `FLUSHALL` must reach them too).
    pub fn primaries(&self) -> Vec<NodeAddr> {
        let mut out: Vec<NodeAddr> = Vec::with_capacity(self.shards.len());
        for s in &self.shards {
            if !out.contains(&s.primary) {
                out.push(s.primary.clone());
            }
        }
        out
    }

    /// The primaries that serve at least one slot, in shard order: the nodes
    /// whose keys together make the keyspace (a node that was just added, or
    /// a replica not yet attached, holds none of it).
    pub fn serving_primaries(&self) -> Vec<NodeAddr> {
        let mut out: Vec<NodeAddr> = Vec::with_capacity(self.shards.len());
        for (i, s) in self.shards.iter().enumerate() {
            if self.ranges.iter().any(|r| r.shard == i) && !out.contains(&s.primary) {
                out.push(s.primary.clone());
            }
        }
        out
    }

    /// Every known node, primaries first, each once.
    pub fn all_nodes(&self) -> Vec<NodeAddr> {
        let mut out = self.primaries();
        for r in self.shards.iter().flat_map(|s| &s.replicas) {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }

    /// Applies `-MOVED slot addr`: `slot` is now served by the primary at
    /// `addr`. The shard with that primary takes the slot (a new shard without
    /// replicas if none has it: the next full refresh will fill in replicas);
    /// the range holding the slot splits around it. Returns whether the map
    /// changed. The caller is expected to schedule a refresh as well, since
    /// one `MOVED` usually means many slots moved.
    pub fn update_slot(&mut self, slot: u16, addr: &str) -> bool {
        if slot >= SLOT_COUNT {
            return false;
        }
        let shard = match self.shards.iter().position(|s| s.primary == addr) {
            Some(i) => i,
            None => {
                self.shards.push(Shard::new(addr));
                self.shards.len() - 1
            }
        };
        let i = self.ranges.partition_point(|r| r.end < slot);
        let single = SlotRange {
            start: slot,
            end: slot,
            shard,
        };
        match self.ranges.get(i).copied() {
            Some(r) if r.start <= slot => {
                if r.shard == shard {
                    return false;
                }
                let mut pieces = Vec::with_capacity(3);
                if r.start < slot {
                    pieces.push(SlotRange { end: slot - 1, ..r });
                }
                pieces.push(single);
                if slot < r.end {
                    pieces.push(SlotRange {
                        start: slot + 1,
                        ..r
                    });
                }
                self.ranges.splice(i..=i, pieces);
            }
            _ => self.ranges.insert(i, single),
        }
        self.normalize();
        true
    }

    /// Puts the map in its canonical form, so that two maps of one topology
    /// compare equal however they were built (a refresh compares the new map
    /// with the current one to know whether anything changed): shards ordered
    /// by the first slot they serve (slotless ones last, by address), and
    /// neighbouring ranges of one shard merged, which also keeps a reshard's
    /// many `MOVED` replies for consecutive slots from leaving thousands of ranges.
    fn normalize(&mut self) {
        let mut first_slot = vec![u32::MAX; self.shards.len()];
        for r in &self.ranges {
            first_slot[r.shard] = first_slot[r.shard].min(r.start as u32);
        }
        let mut order: Vec<usize> = (0..self.shards.len()).collect();
        order.sort_by(|&a, &b| {
            (first_slot[a], &self.shards[a].primary).cmp(&(first_slot[b], &self.shards[b].primary))
        });
        if order.iter().enumerate().any(|(new, &old)| new != old) {
            let mut new_index = vec![0; order.len()];
            for (new, &old) in order.iter().enumerate() {
                new_index[old] = new;
            }
            for r in &mut self.ranges {
                r.shard = new_index[r.shard];
            }
            let mut old: Vec<Option<Shard>> = self.shards.drain(..).map(Some).collect();
            self.shards = order.iter().filter_map(|&i| old[i].take()).collect();
        }
        self.ranges.dedup_by(|next, prev| {
            if prev.shard == next.shard && prev.end + 1 == next.start {
                prev.end = next.end;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc16_known_vectors() {
        // The check value of CRC-16/XMODEM, and Redis's own test vectors
        // (src/crc16.c in the Redis sources).
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
        assert_eq!(CRC16_TABLE[1], 0x1021);
        assert_eq!(CRC16_TABLE[255], 0x1ef0);
    }

    /// Answers of `CLUSTER KEYSLOT` from a real redis-server 7.0.
    const REDIS_KEYSLOTS: &[(&str, u16)] = &[
        ("123456789", 12739),
        ("{user1000}.following", 3443),
        ("{user1000}.followers", 3443),
        ("foo{}{bar}", 8363),
        ("foo{{bar}}zap", 4015),
        ("foo{bar}{zap}", 5061),
        ("bar", 5061),
        ("{}", 15257),
        ("", 0),
        ("a{b", 13340),
        ("}{a}", 15495),
        ("foo", 12182),
        ("hello world", 15332),
    ];

    #[test]
    fn key_slot_matches_redis() {
        for &(key, slot) in REDIS_KEYSLOTS {
            assert_eq!(key_slot(key.as_bytes()), slot, "key {key:?}");
        }
    }

    #[test]
    fn hash_tag_rules() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"no}tag{"), b"no}tag{");
    }

    proptest! {
        /// redis-protocol carries an independent implementation: agree with it
        /// on arbitrary keys, braces included.
        #[test]
        fn key_slot_agrees_with_redis_protocol(key in proptest::collection::vec(
            prop_oneof![Just(b'{'), Just(b'}'), any::<u8>()], 0..24)) {
            prop_assert_eq!(key_slot(&key), redis_protocol::redis_keyslot(&key));
        }
    }

    fn three_shards() -> SlotMap {
        let shards = ["a:1", "b:2", "c:3"].map(Shard::new).to_vec();
        SlotMap::from_parts(shards, [(10923, 16383, 2), (0, 5460, 0), (5461, 10922, 1)]).unwrap()
    }

    #[test]
    fn lookup_by_binary_search() {
        let m = three_shards();
        assert!(m.is_complete());
        assert_eq!(m.node_for(0).unwrap().primary, "a:1");
        assert_eq!(m.node_for(5460).unwrap().primary, "a:1");
        assert_eq!(m.node_for(5461).unwrap().primary, "b:2");
        assert_eq!(m.node_for(16383).unwrap().primary, "c:3");
        assert_eq!(m.node_for(16384), None);
        assert_eq!(m.node_for_key(b"foo").unwrap().primary, "c:3");
        assert_eq!(m.primaries(), ["a:1", "b:2", "c:3"]);
    }

    #[test]
    fn gaps_miss() {
        let m = SlotMap::from_parts(vec![Shard::new("a:1")], [(100, 200, 0)]).unwrap();
        assert_eq!(m.node_for(99), None);
        assert_eq!(m.node_for(150).unwrap().primary, "a:1");
        assert_eq!(m.node_for(201), None);
        assert_eq!(m.covered_slots(), 101);
        assert!(!m.is_complete());
        assert_eq!(SlotMap::new().node_for(0), None);
    }

    #[test]
    fn from_parts_refuses_corrupt_ranges() {
        let one = || vec![Shard::new("a:1")];
        assert!(SlotMap::from_parts(one(), [(5, 4, 0)]).is_err());
        assert!(SlotMap::from_parts(one(), [(0, 16384, 0)]).is_err());
        assert!(SlotMap::from_parts(one(), [(0, 1, 1)]).is_err());
        assert!(SlotMap::from_parts(one(), [(0, 10, 0), (10, 20, 0)]).is_err());
        // Adjacent ranges of one shard become one.
        let m = SlotMap::from_parts(one(), [(11, 20, 0), (0, 10, 0)]).unwrap();
        assert_eq!(m.ranges().len(), 1);
    }

    #[test]
    fn moved_splits_and_merges_ranges() {
        let mut m = three_shards();
        assert!(m.update_slot(3999, "b:2"));
        assert_eq!(m.node_for(3998).unwrap().primary, "a:1");
        assert_eq!(m.node_for(3999).unwrap().primary, "b:2");
        assert_eq!(m.node_for(4000).unwrap().primary, "a:1");
        assert_eq!(m.ranges().len(), 5);
        assert!(!m.update_slot(3999, "b:2"), "same owner again is no change");
        // Moving it back restores the original map exactly.
        assert!(m.update_slot(3999, "a:1"));
        assert_eq!(m, three_shards());
        // Edges of a range: the moved slot joins the neighbouring range.
        assert!(m.update_slot(5460, "b:2"));
        assert_eq!(m.ranges().len(), 3);
        assert_eq!(m.ranges()[1].start, 5460);
    }

    #[test]
    fn equal_topologies_compare_equal() {
        let shards = ["c:3", "a:1", "b:2", "z:9"].map(Shard::new).to_vec();
        let m = SlotMap::from_parts(shards, [(10923, 16383, 0), (0, 5460, 1), (5461, 10922, 2)])
            .unwrap();
        let mut want = three_shards();
        want.shards.push(Shard::new("z:9"));
        assert_eq!(m, want);
        // A MOVED there and back again lands on the same canonical form.
        let mut moved = three_shards();
        moved.update_slot(0, "c:3");
        moved.update_slot(0, "a:1");
        assert_eq!(moved, three_shards());
    }

    #[test]
    fn moved_to_unknown_node_adds_a_shard() {
        let mut m = three_shards();
        assert!(m.update_slot(0, "d:4"));
        assert_eq!(m.node_for(0).unwrap(), &Shard::new("d:4"));
        assert_eq!(m.primaries(), ["d:4", "a:1", "b:2", "c:3"]);
        // a:1 keeps slots 1..=5460, so it stays, after the new first shard.
        assert_eq!(m.node_for(1).unwrap().primary, "a:1");
        // A slot nobody served gets a range of its own.
        let mut g = SlotMap::from_parts(vec![Shard::new("a:1")], [(100, 200, 0)]).unwrap();
        assert!(g.update_slot(300, "a:1"));
        assert!(g.update_slot(50, "a:1"));
        assert_eq!(g.covered_slots(), 103);
        assert!(!g.update_slot(16384, "a:1"));
    }

    proptest! {
        /// Any sequence of MOVED updates leaves the map equal to a plain
        /// per-slot array updated the same way, with ranges sorted, disjoint
        /// and merged.
        #[test]
        fn moved_agrees_with_a_per_slot_model(moves in proptest::collection::vec(
            (prop_oneof![0u16..40, 5440u16..5480, 16350u16..16384], 0usize..5), 0..60)) {
            let nodes = ["a:1", "b:2", "c:3", "d:4", "e:5"];
            let mut m = three_shards();
            let mut model: Vec<&str> = (0..SLOT_COUNT)
                .map(|s| nodes[m.shard_index(s).unwrap()])
                .collect();
            for (slot, node) in moves {
                m.update_slot(slot, nodes[node]);
                model[slot as usize] = nodes[node];
            }
            for (slot, want) in model.iter().enumerate() {
                prop_assert_eq!(m.node_for(slot as u16).map(|s| s.primary.as_str()), Some(*want));
            }
            for w in m.ranges().windows(2) {
                prop_assert!(w[0].end < w[1].start);
                prop_assert!(w[0].shard != w[1].shard || w[0].end + 1 != w[1].start);
            }
        }
    }
}
