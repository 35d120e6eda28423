//! Transparent compression through a Redis Cluster: replies byte-identical to
//! a plain Redis server's (acceptance 1, cluster), including MGET and MSET
//! split over nodes, transactions on one slot, and byte-level commands whose
//! temporary copies must share the key's slot.

mod common;

use common::cluster::RedisCluster;
use common::compression::{self as cmp, runner, Cmd, Names};
use common::{escape, jsongen, Proxy, RedisServer};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::thread;
use std::time::{Duration, Instant};

const MIN: usize = 256;

/// Hashes of one field: a hashtable's field order differs between two Redis
/// servers (seeded hashing), with compression or without.
const CLUSTER: Names = Names {
    keys: cmp::KEYS,
    hashes: cmp::HASHES,
    fields: &["f0"],
};
/// Transactions run on one node: keys of one slot.
const ONE_SLOT: Names = Names {
    keys: &["{t}a", "{t}b"],
    hashes: &["{t}h"],
    fields: &["f0"],
};

fn cluster_proxy(cluster: &RedisCluster) -> (Proxy, tempfile::TempDir) {
    let (p, d) = cmp::proxy_with(&cluster.seed_addr(), &cmp::on(MIN), &["--mode", "cluster"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut c = p.conn();
    while !c.cmd_str(&["DBSIZE"]).starts_with(b":") {
        assert!(Instant::now() < deadline, "no slot map: {}", p.log());
        thread::sleep(Duration::from_millis(50));
    }
    (p, d)
}

fn step() -> impl Strategy<Value = Vec<Cmd>> {
    prop_oneof![
        // MSETNX over slots is Redis Cluster's CROSSSLOT error (as without
        // compression): only same-slot ones are compared.
        6 => cmp::data_cmd_on(MIN, CLUSTER)
            .prop_filter("MSETNX over slots", |c| {
                c[0] != b"MSETNX" || c[1].starts_with(b"{t}") && c[3].starts_with(b"{t}")
            })
            .prop_map(|c| vec![c]),
        // A keyless first command would choose the transaction's node
        // without a key (routing, not compression): every command has its key.
        1 => proptest::collection::vec(
            cmp::data_cmd_on(MIN, ONE_SLOT).prop_filter("keyless", |c| c.len() > 1),
            1..5
        )
        .prop_map(|mut cs| {
            cs.insert(0, vec![b"MULTI".to_vec()]);
            cs.push(vec![b"EXEC".to_vec()]);
            cs
        }),
    ]
}

#[test]
fn cluster_replies_match_plain_redis() {
    let cluster = RedisCluster::start(3, 0);
    let (proxy, _d) = cluster_proxy(&cluster);
    let plain = RedisServer::start();
    for proto in ["2", "3"] {
        let strategy = (proptest::collection::vec(step(), 1..25), any::<bool>());
        runner(16)
            .run(&strategy, |(steps, pipelined)| {
                let mut a = proxy.conn();
                let mut b = plain.conn();
                cmp::reset(&mut a, proto);
                cmp::reset(&mut b, proto);
                // A pipeline that goes on after EXEC stays on the transaction's
                // node (the pinned connection) until every reply is in, so
                // transactions are only mixed with other slots' keys when
                // each reply is awaited (a routing property, not compression's).
                let cmds: Vec<Cmd> = steps
                    .into_iter()
                    .filter(|s| !pipelined || s.len() == 1)
                    .flatten()
                    .collect();
                let ra = cmp::run(&mut a, &cmds, pipelined);
                let rb = cmp::run(&mut b, &cmds, pipelined);
                for (i, cmd) in cmds.iter().enumerate() {
                    prop_assert_eq!(
                        &ra[i],
                        &rb[i],
                        "RESP{} {} (pipelined {}): respite {} redis {}",
                        proto,
                        cmp::show(cmd),
                        pipelined,
                        escape(&ra[i]),
                        escape(&rb[i])
                    );
                }
                Ok::<(), TestCaseError>(())
            })
            .unwrap();
    }
    // Values written through the proxy are compressed on the nodes.
    let mut a = proxy.conn();
    let v = jsongen::value(11, 4096);
    a.cmd(&[b"MSET", b"x1", &v, b"x2", &v, b"x3", &v]);
    let mut compressed = 0;
    for port in cluster.primary_ports() {
        let mut c = cluster.conn(port);
        for k in ["x1", "x2", "x3"] {
            let r = c.cmd_str(&["GET", k]);
            if r.windows(4).any(|w| w == [b'\n', 0xF5, 0x52, 0x43]) {
                compressed += 1;
            }
        }
    }
    assert_eq!(compressed, 3);

    // A byte-level command over slots is Redis Cluster's CROSSSLOT error.
    let lcs = a.cmd_str(&["LCS", "x1", "x2"]);
    assert!(lcs.starts_with(b"-CROSSSLOT"), "{}", escape(&lcs));

    // Byte-level commands, on keys of several slots and on hash-tagged ones.
    for proto in ["2", "3"] {
        let strategy = (
            proptest::collection::vec(any::<u64>(), 4),
            proptest::collection::vec(cmp::byte_cmd(), 1..20),
        );
        runner(8)
            .run(&strategy, |(seeds, cmds)| {
                let mut a = proxy.conn();
                let mut b = plain.conn();
                cmp::reset(&mut a, proto);
                cmp::reset(&mut b, proto);
                let setup = cmp::byte_setup(&seeds, false);
                cmp::run(&mut a, &setup, true);
                cmp::run(&mut b, &setup, true);
                cmp::same_replies(&mut a, &mut b, &cmds, proto)?;
                Ok::<(), TestCaseError>(())
            })
            .unwrap();
    }
}
