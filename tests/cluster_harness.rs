//! respite's cluster building blocks against a real Redis Cluster: the slot
//! map parsed from `CLUSTER SHARDS` and `CLUSTER SLOTS` against the
//! harness's own reading of `CLUSTER NODES`, key slots against
//! `CLUSTER KEYSLOT`, writes routed by the map (no `MOVED`), a reshard
//! seen both through `MOVED` replies and through a fresh map, and a failover.
//!
//! One test on purpose: starting a cluster is the expensive part.

mod common;

use common::cluster::{RedisCluster, View};
use common::{encode, escape, RawConn};
use respite::cluster::{key_slot, parse_redirect, RedirectKind, SlotMap, SLOT_COUNT};
use std::time::Instant;

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr}"))
}

fn shards_map(c: &mut RawConn) -> SlotMap {
    let raw = c.cmd_str(&["CLUSTER", "SHARDS"]);
    SlotMap::from_cluster_shards(&raw, "127.0.0.1")
        .unwrap_or_else(|e| panic!("{e}: {}", escape(&raw)))
}

fn slots_map(c: &mut RawConn) -> SlotMap {
    let raw = c.cmd_str(&["CLUSTER", "SLOTS"]);
    SlotMap::from_cluster_slots(&raw, "127.0.0.1")
        .unwrap_or_else(|e| panic!("{e}: {}", escape(&raw)))
}

/// The map says what the harness's `CLUSTER NODES` reading says, slot by
/// slot and replica by replica.
#[track_caller]
fn assert_map_matches_view(map: &SlotMap, view: &View) {
    for slot in 0..SLOT_COUNT {
        let owner = view.owner(slot).expect("harness view covers every slot");
        assert_eq!(
            map.node_for(slot).map(|s| s.primary.as_str()),
            Some(addr(owner).as_str()),
            "slot {slot}"
        );
    }
    for shard in map.shards() {
        let mut want: Vec<String> = view
            .replicas
            .iter()
            .filter(|(_, p)| addr(**p) == shard.primary)
            .map(|(r, _)| addr(*r))
            .collect();
        let mut got = shard.replicas.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "replicas of {}", shard.primary);
    }
}

/// Deterministic pseudo-random keys: plain, with hash tags, with stray
/// braces, with arbitrary bytes.
fn keys(n: usize) -> Vec<Vec<u8>> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let len = 1 + (next() % 12) as usize;
            let mut k: Vec<u8> = (0..len)
                .map(|_| match i % 4 {
                    3 => next() as u8,
                    _ => b"abcdefghijklmnopqrstuvwxyz0123456789{}"[(next() % 38) as usize],
                })
                .collect();
            if i % 5 == 0 {
                k = [b"{user".as_slice(), &k, b"}.tail"].concat();
            }
            k
        })
        .collect()
}

/// Sends every command, then reads every reply (one round trip per batch).
fn pipeline(c: &mut RawConn, cmds: &[Vec<Vec<u8>>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        out.extend(encode(&args));
    }
    c.send(&out);
    cmds.iter().map(|_| c.read_reply()).collect()
}

#[test]
fn building_blocks_against_a_real_cluster() {
    let t0 = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    let started = t0.elapsed();
    let seed = cluster.live_ports()[0];
    let mut conn = cluster.conn(seed);

    // Topology: both commands, every slot, every replica.
    let map = shards_map(&mut conn);
    assert!(map.is_complete(), "{map:?}");
    assert_eq!(map.primaries().len(), 3);
    assert_eq!(map.all_nodes().len(), 6);
    assert!(
        map.shards().iter().all(|s| s.replicas.len() == 1),
        "{map:?}"
    );
    let view = cluster.view();
    assert_map_matches_view(&map, &view);
    assert_eq!(
        slots_map(&mut conn),
        map,
        "CLUSTER SLOTS and CLUSTER SHARDS agree"
    );
    let mut primaries: Vec<u16> = map.primaries().iter().map(|a| port_of(a)).collect();
    primaries.sort();
    let mut want = cluster.primary_ports();
    want.sort();
    assert_eq!(primaries, want);

    // Key slots: ours against the cluster's, for 200 keys.
    let keys = keys(200);
    let asks: Vec<Vec<Vec<u8>>> = keys
        .iter()
        .map(|k| vec![b"CLUSTER".to_vec(), b"KEYSLOT".to_vec(), k.clone()])
        .collect();
    for (key, reply) in keys.iter().zip(pipeline(&mut conn, &asks)) {
        let want = format!(":{}\r\n", key_slot(key));
        assert_eq!(
            escape(&reply),
            escape(want.as_bytes()),
            "key {}",
            escape(key)
        );
    }

    // Writes routed by the map land without a single redirect; the same
    // key sent elsewhere gets a MOVED naming the node the map chose.
    for key in &keys {
        let owner = port_of(&map.node_for_key(key).unwrap().primary);
        let mut c = cluster.conn(owner);
        let reply = c.cmd(&[b"SET", key, b"v"]);
        assert_eq!(reply, b"+OK\r\n", "SET {} on {owner}", escape(key));
        let other = *primaries.iter().find(|p| **p != owner).unwrap();
        let reply = cluster.conn(other).cmd(&[b"GET", key]);
        let redirect = parse_redirect(&reply, "127.0.0.1")
            .unwrap_or_else(|| panic!("GET on {other}: {}", escape(&reply)));
        assert_eq!(redirect.kind, RedirectKind::Moved);
        assert_eq!(redirect.slot, key_slot(key));
        assert_eq!(redirect.addr, addr(owner));
    }

    // Reshard 100 slots between two primaries.
    let (from, to) = (
        port_of(&map.shards()[0].primary),
        port_of(&map.shards()[1].primary),
    );
    let t1 = Instant::now();
    cluster.reshard(from, to, 100);
    let resharded = t1.elapsed();
    let after = shards_map(&mut conn);
    assert!(after.is_complete());
    assert_map_matches_view(&after, &cluster.view());
    let slots_of = |m: &SlotMap, port: u16| -> usize {
        m.ranges()
            .iter()
            .filter(|r| m.shards()[r.shard].primary == addr(port))
            .map(|r| r.count())
            .sum()
    };
    assert_eq!(slots_of(&after, from), slots_of(&map, from) - 100);
    assert_eq!(slots_of(&after, to), slots_of(&map, to) + 100);
    assert_eq!(slots_map(&mut conn), after);

    // The old map, corrected one MOVED at a time, becomes the new map; keys
    // in moved slots went along and are read where the new map says.
    let mut patched = map.clone();
    let moved: Vec<u16> = (0..SLOT_COUNT)
        .filter(|&s| map.node_for(s) != after.node_for(s))
        .collect();
    assert_eq!(moved.len(), 100);
    for &slot in &moved {
        let old_owner = port_of(&map.node_for(slot).unwrap().primary);
        let reply =
            cluster
                .conn(old_owner)
                .cmd_str(&["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]);
        assert_eq!(reply, b":0\r\n", "slot {slot} emptied on the old owner");
        // Any key of that slot gets MOVED there; a hash tag makes one up.
        let key = (0..)
            .map(|i| format!("{{k{i}}}"))
            .find(|k| key_slot(k.as_bytes()) == slot)
            .unwrap();
        let reply = cluster.conn(old_owner).cmd_str(&["GET", &key]);
        let r = parse_redirect(&reply, "127.0.0.1")
            .unwrap_or_else(|| panic!("GET {key} on {old_owner}: {}", escape(&reply)));
        assert_eq!((r.kind, r.slot), (RedirectKind::Moved, slot));
        assert!(patched.update_slot(r.slot, &r.addr));
    }
    assert_eq!(patched, after);
    for key in keys.iter().filter(|k| moved.contains(&key_slot(k))) {
        let owner = port_of(&after.node_for_key(key).unwrap().primary);
        assert_eq!(cluster.conn(owner).cmd(&[b"GET", key]), b"$1\r\nv\r\n");
    }

    // Kill a primary: its replica takes over, and a fresh map says so
    // (the dead node, reported "fail", is nobody's replica).
    let victim = port_of(&after.shards()[2].primary);
    let heir_addr = after.shards()[2].replicas[0].clone();
    let t2 = Instant::now();
    cluster.kill(victim);
    let heir = cluster.wait_failover(victim);
    let failover = t2.elapsed();
    assert_eq!(addr(heir), heir_addr);
    let mut conn = cluster.conn(cluster.live_ports()[0]);
    let promoted = shards_map(&mut conn);
    assert!(promoted.is_complete());
    assert_map_matches_view(&promoted, &cluster.view());
    for shard in promoted.shards() {
        assert!(
            shard.primary != addr(victim) && !shard.replicas.contains(&addr(victim)),
            "{promoted:?}\n{}",
            escape(&conn.cmd_str(&["CLUSTER", "SHARDS"]))
        );
    }
    assert_eq!(promoted.node_for(16383).unwrap().primary, heir_addr);

    eprintln!(
        "cluster start {started:?}, reshard {resharded:?}, failover {failover:?}, total {:?}",
        t0.elapsed()
    );
}
